#!/usr/bin/env python3
"""Write every network (models/<config>/*.prototxt) and solver (solvers/**) of the committed
configs, as transfernet/generated.py lists them (TransferNet's, and BaselineNet's and
DecoupledNet-dagger's of Sec. 6.3); --check lists committed files that differ.

    runtime/run.sh 'python3 tools/generate_models.py'          # (re)write, print each path
    runtime/run.sh 'python3 tools/generate_models.py --check'  # exit 1 if anything differs
"""

import argparse
import os
import sys

from transfernet import config, generated
from transfernet.atomic import write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATED_DIRS = ("models", "solvers")


def differences(root=ROOT):
    """Paths (relative) that are missing, differ, or are prototxts the generator does not make."""
    expected = generated.committed_files(config.CONFIGS.values())
    bad = []
    for path, text in sorted(expected.items()):
        full = os.path.join(root, path)
        if not os.path.exists(full):
            bad.append(path + " (missing)")
            continue
        with open(full) as f:
            if f.read() != text:
                bad.append(path + " (differs)")
    for top in GENERATED_DIRS:
        for folder, _, names in os.walk(os.path.join(root, top)):
            for name in names:
                path = os.path.relpath(os.path.join(folder, name), root)
                if name.endswith(".prototxt") and path not in expected:
                    bad.append(path + " (not generated)")
    return bad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 listing files that differ"
    )
    args = parser.parse_args(argv)
    if args.check:
        bad = differences()
        for path in bad:
            print(path)
        if bad:
            print(
                "%d generated file(s) out of date: run tools/generate_models.py" % len(bad),
                file=sys.stderr,
            )
        return 1 if bad else 0
    for path, text in sorted(generated.committed_files(config.CONFIGS.values()).items()):
        write_text(os.path.join(ROOT, path), text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
