#!/usr/bin/env python3
"""Check a solver's initial weights against its train net before `caffe train`.

    python3 tools/check_solver.py solvers/classifier.prototxt solvers/attention.prototxt

Builds each solver's train net (TRAIN phase: the data layer checks its datasets) and reads
every caffemodel of the solver's `weights`; prints which layers come from each file and which
keep their fillers. Exit status 2 with one error naming the file and what to do if a file is
missing, is not a caffemodel (empty, garbage, truncated), has a layer of other shapes, or
initialises no layer of the net. Caffe's log is shown with --verbose.
"""

import argparse
import sys

from transfernet.verbosity import quiet_caffe

quiet_caffe(sys.argv)  # before caffe is imported

from transfernet import weights  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("solvers", nargs="+", help="solver prototxt(s)")
    parser.add_argument("--verbose", action="store_true", help="show Caffe's log")
    args = parser.parse_args(argv)
    import caffe

    caffe.set_mode_cpu()
    for solver in args.solvers:
        try:
            fits = weights.check_solver(solver)
        except (OSError, ValueError) as e:
            print("check_solver.py: error: %s: %s" % (solver, e), file=sys.stderr)
            return 2
        print("%s:" % solver)
        for line in weights.describe_fits(fits):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
