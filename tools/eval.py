#!/usr/bin/env python3
"""comp6 evaluation of label PNGs against ground truth (one confusion matrix, mIoU).

    python tools/eval.py --pred runs/x/pred --gt VOC2012/SegmentationClass \
        --list VOC2012/ImageSets/Segmentation/val.txt --out runs/x/eval.json

Prints the per-class IoU table (class-table order: VOC = the paper's Table 1 columns) and
writes --out (JSON: per_class {name: IoU or null}, mean_iou, pixel_accuracy, ... as
fractions) and the same table as CSV (--csv, default: --out with .csv). Exit status 1 with
the list of offending files on missing/extra predictions or size mismatches, when more than
0.1 % of the non-void ground-truth pixels have ids outside --classes (a wrong table; a trace
is scored as void with a warning, all of them with --ignore-unlisted), or (before the
evaluation) if --out or --csv cannot be written. Hidden files in --pred (such as the
temporaries of an interrupted tools/infer.py) are not predictions.
"""

import argparse
import os
import sys

from transfernet import atomic, fileio, score


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pred", required=True, help="folder of predicted <id>.png")
    parser.add_argument("--gt", required=True, help="folder of ground-truth <id>.png")
    parser.add_argument("--list", required=True, help="image ids, one per line")
    parser.add_argument("--out", help="JSON result file (CSV written next to it)")
    parser.add_argument("--csv", help="CSV result file (default: --out with .csv)")
    parser.add_argument(
        "--classes",
        default="voc",
        help="'voc' (21 classes) or a JSON {id: name} / dataset meta.json "
        "(its classes + background are scored; other predicted ids count as wrong)",
    )
    parser.add_argument(
        "--ignore-unlisted",
        action="store_true",
        help="score ground-truth pixels whose ids are not in --classes as void (without it, "
        "more than a trace of them is an error)",
    )
    parser.add_argument("--workers", type=int, default=2, help="PNG reading threads")
    args = parser.parse_args(argv)
    csv_path = args.csv or (os.path.splitext(args.out)[0] + ".csv" if args.out else None)
    try:
        for flag, path in (("--out", args.out), ("--csv", csv_path)):
            if path:
                atomic.check_writable_file(path, "%s file" % flag)
        table = (
            score.voc_class_table()
            if args.classes == "voc"
            else score.load_class_table(args.classes)
        )
        result = score.evaluate(
            args.pred,
            args.gt,
            fileio.read_list(args.list),
            table,
            workers=args.workers,
            ignore_unlisted=args.ignore_unlisted,
        )
    except (score.EvalError, fileio.FileFormatError, OSError) as e:
        print("eval.py: error: %s" % e, file=sys.stderr)
        return 1
    print(score.format_table(result))
    if args.out:
        score.write_json(args.out, result)
        print("wrote %s" % args.out)
    if csv_path:
        score.write_csv(csv_path, result)
        print("wrote %s" % csv_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
