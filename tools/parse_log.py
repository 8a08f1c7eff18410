#!/usr/bin/env python3
"""Parse a Caffe training log into a CSV and a loss/accuracy plot.

    python tools/parse_log.py runs/stage1/train.log --csv runs/stage1/log.csv \
        --png runs/stage1/log.png

Defaults: LOG with .csv / .png. Prints the number of train/test rows and the last values.
Exit status 1 with one error if LOG cannot be read, has no solver lines, or an output cannot
be written.
"""

import argparse
import os
import sys

from transfernet import atomic, caffe_log


def error(message):
    print("parse_log.py: error: %s" % message, file=sys.stderr)
    return 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", help="glog text of `caffe train` (or a pycaffe solver)")
    parser.add_argument("--csv", help="CSV output (default: LOG with .csv)")
    parser.add_argument("--png", help="plot output (default: LOG with .png)")
    parser.add_argument("--title", help="plot title (default: the log's file name)")
    args = parser.parse_args(argv)
    stem = os.path.splitext(args.log)[0]
    csv_path, png_path = args.csv or stem + ".csv", args.png or stem + ".png"
    try:
        parsed = caffe_log.read_log(args.log)
    except OSError as e:
        return error("cannot read %s: %s" % (args.log, e.strerror or e))
    rows = parsed["rows"]
    if not rows:
        return error(
            "%s has no Caffe solver lines (Iteration N ..., Train/Test net output)" % args.log
        )
    try:
        for flag, path in (("--csv", csv_path), ("--png", png_path)):
            atomic.check_writable_file(path, "%s file" % flag)
    except OSError as e:
        return error(e)
    caffe_log.write_csv(csv_path, parsed)
    caffe_log.plot(png_path, parsed, args.title or os.path.basename(args.log))
    for phase in sorted({r["phase"] for r in rows}):
        last = [r for r in rows if r["phase"] == phase][-1]
        values = ", ".join(
            "%s = %g" % (k, v) for k, v in sorted(last.items()) if k not in ("phase", "iteration")
        )
        print(
            "%s: %d rows; iteration %d: %s"
            % (phase, sum(r["phase"] == phase for r in rows), last["iteration"], values)
        )
    print("wrote %s and %s" % (csv_path, png_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
