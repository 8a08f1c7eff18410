#!/usr/bin/env python3
"""What a trained run's attention (or BaselineNet's class map) adds: ablations of its net.

    python3 tools/ablate.py RUN --voc-root VOC [--split val]
    python3 tools/ablate.py RUN --spec SPEC                    # the dataset spec's val set

RUN is a run folder of tools/demo.py or tools/repro_mini.py (its config.json, models and
final joint snapshot). Its joint net segments the VOC-style split (JPEGImages,
SegmentationClass), or a dataset spec's val set (data_prep.spec), with ground-truth labels,
intact and with each ablation of transfernet.ablation that applies to it: TransferNet with
uniform attention and with each label swapped for another label of the same image,
BaselineNet with its class map cut off.
Prints one line per ablation and a table, writes RUN/ablations.json. Exit status 2 with one
error for a folder that is not a finished run.
"""

import argparse
import json
import os
import sys

from transfernet.verbosity import quiet_caffe

quiet_caffe(sys.argv)  # before caffe is imported

from data_prep import spec  # noqa: E402
from transfernet import evaluation, experiment  # noqa: E402
from transfernet.atomic import write_text  # noqa: E402
from transfernet.tables import markdown, pct, points  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="run folder (tools/demo.py --run, a repro-mini run)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--voc-root", help="VOC-style tree of the evaluation images")
    where.add_argument("--spec", help="dataset spec whose val set is scored")
    parser.add_argument("--split", default="val", help="with --voc-root: the list (val)")
    return parser.parse_args(argv)


def table_lines(rows):
    """Markdown table of evaluation.ablate's rows."""
    cells = []
    for name, r in rows.items():
        intact, ablated = r["intact"]["mean_iou"], r["ablated"]["mean_iou"]
        cells.append(
            [name, "%d" % r["images"], pct(intact), pct(ablated), points(intact - ablated)]
        )
    header = ["ablation", "images", "intact mIoU", "ablated mIoU", "what it adds"]
    return markdown(header, cells)


def main(argv=None):
    args = parse_args(argv)
    import caffe

    caffe.set_mode_cpu()
    try:
        run = experiment.open_run(args.run)
        if args.spec:
            val = evaluation.eval_set(*spec.load(args.spec).val, run.cfg.data.target)
        else:
            val = evaluation.voc_eval_set(args.voc_root, run.cfg.data.target, args.split)
        rows = evaluation.ablate(run, val, progress=experiment.timestamped_log("ablate"))
    except (OSError, ValueError) as e:
        print("ablate.py: error: %s" % e, file=sys.stderr)
        return 2
    out = os.path.join(run.dir, "ablations.json")
    write_text(out, json.dumps(rows, indent=1, sort_keys=True) + "\n")
    print("\n".join(table_lines(rows)))
    print("wrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
