#!/usr/bin/env python3
"""Write every network (models/<config>/*.prototxt) and solver (solvers/**) of the committed
configs, as transfernet/generated.py lists them (TransferNet's, and BaselineNet's and
DecoupledNet-dagger's of Sec. 6.3); --check lists committed files that differ. With --spec,
write instead a run folder of a dataset spec's class table (`make models SPEC=...`): its nets,
solvers, snapshot folders and classes.json, for the spec's LMDBs (data_prep.build).

    runtime/run.sh 'python3 tools/generate_models.py'          # (re)write, print each path
    runtime/run.sh 'python3 tools/generate_models.py --check'  # exit 1 if anything differs
    runtime/run.sh 'python3 tools/generate_models.py --spec my.json --config tiny \
        [--run runs/<spec name>]'
"""

import argparse
import os
import sys

from data_prep import spec
from transfernet import class_table, config, experiment, generated
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


def write_spec_run(spec_path, config_name, run_dir=None):
    """experiment.prepare of the config for a spec's class table and LMDBs in run_dir (default
    runs/<spec name>), with the table as <run>/classes.json; returns the Run. ValueError if
    the spec's datasets are not built."""
    dataset_spec = spec.load(spec_path)
    table_file = spec.table_path(dataset_spec)
    if not os.path.isfile(table_file):
        raise ValueError(
            "%s: its datasets are not built (no %s): run `make data SPEC=%s` first"
            % (spec_path, table_file, spec_path)
        )
    table = class_table.read(table_file)
    cfg = config.for_table(config.CONFIGS[config_name], table).with_data(
        source=spec.source_folder(dataset_spec), target=spec.target_folder(dataset_spec)
    )
    run = experiment.prepare(run_dir or os.path.join("runs", dataset_spec.name), cfg)
    class_table.write(
        os.path.join(run.dir, class_table.FILE_NAME), table, spec=os.path.abspath(spec_path)
    )
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 listing files that differ"
    )
    parser.add_argument("--spec", help="dataset spec: write a run folder for its class table")
    parser.add_argument(
        "--config", default="tiny", choices=sorted(config.CONFIGS), help="with --spec (tiny)"
    )
    parser.add_argument("--run", help="with --spec: the run folder (default runs/<spec name>)")
    args = parser.parse_args(argv)
    if args.spec:
        try:
            run = write_spec_run(args.spec, args.config, args.run)
        except (OSError, ValueError) as e:
            print("generate_models.py: error: %s" % e, file=sys.stderr)
            return 1
        print(
            "wrote %s (config %s, class table %s)"
            % (run.dir, args.config, run.cfg.architecture.classes)
        )
        for stage in ("classifier", "attention", "joint"):
            print("  caffe train -solver %s" % experiment.solver_file(run, stage))
        return 0
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
