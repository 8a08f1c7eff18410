#!/usr/bin/env python3
"""Write the stage-0 classifier in fully convolutional form, where BaselineNet's solver starts.

    python3 tools/surgery.py [--config paper] [--weights W] [--out O]

FCN's net surgery (transfernet.surgery): fc6, fc7 and fc8_transfer of the classifier caffemodel
W (default: the config's final stage-0 snapshot) become convolutions, the rest is copied; the
result goes to O (default: beside W, <name>_fcn.caffemodel, which solvers/baselinenet.prototxt
names). Prints each reshaped layer. Exit status 2 with one error naming the file if W is
missing, is not a caffemodel, or is not a classifier of the config.
"""

import argparse
import sys

from transfernet import config, solvers, surgery


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config",
        choices=sorted(config.CONFIGS),
        default="paper",
        help="config of the classifier (default paper)",
    )
    parser.add_argument(
        "--weights", help="stage-0 caffemodel (default: the config's final classifier snapshot)"
    )
    parser.add_argument(
        "--out", help="output caffemodel (default: beside --weights, <name>_fcn.caffemodel)"
    )
    args = parser.parse_args(argv)
    cfg = config.CONFIGS[args.config]
    source = args.weights or solvers.final_snapshot(cfg, "classifier")
    try:
        out, changed = surgery.write_fcn_weights(cfg, source, args.out)
    except (OSError, ValueError) as e:
        print("surgery.py: error: %s" % e, file=sys.stderr)
        return 2
    for name, old, new in changed:
        print("%s: %s -> %s" % (name, old, new))
    print("wrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
