#!/usr/bin/env python3
"""Table 1 from the authors' released models on stock Caffe (`make authors-table`).

    python3 tools/authors_table.py --voc-root data/VOCdevkit/VOC2012 --authors-dir data/authors \
        --out runs/authors [--workers N] [--config paper]

1. imports AUTHORS_DIR's transferNet.caffemodel and classificationNet.caffemodel into
   OUT/imported (tools/import_authors.py; kept when already there);
2. segments the val list of VOC_ROOT with the authors' inference protocol, CRF included
   (tools/infer.py --protocol authors), twice: with the imported classifier's labels into
   OUT/transfernet (TransferNet) and with the ground-truth labels into OUT/transfernet_gt
   (TransferNet-GT); each with a progress bar and its ETA, the CRF in --workers processes
   (default: every core), finished images skipped, so an interrupted run resumes;
3. scores both (comp6, 21 classes; OUT/<run>/eval.json) and prints Table 1's rows beside the
   paper's (OUT/table.md, OUT/results.json).
Exit status 2 on a missing input (naming it) or a file the importer refuses, 1 if an image
failed (tools/infer.py lists them).
"""

import argparse
import os
import sys

from tools import import_authors, infer
from transfernet import authors, authors_table, config


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--voc-root", required=True, help="VOC 2012 tree (JPEGImages, ...)")
    parser.add_argument("--authors-dir", required=True, help="the authors' released files")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--config",
        choices=sorted(config.CONFIGS),
        default="paper",
        help="our nets (default paper; tiny for rehearsals on the built-in dataset)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=infer.DEFAULT_WORKERS,
        help="CRF processes (default: the cores available, here %(default)s)",
    )
    parser.add_argument("--verbose", action="store_true", help="show Caffe's log")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = config.CONFIGS[args.config]
    try:
        released = authors_table.released_files(args.authors_dir)
        listing, images, gt = authors_table.voc_paths(args.voc_root)
        for path in (listing, images, gt):
            if not os.path.exists(path):
                raise FileNotFoundError("%s not found: VOC_ROOT is not a VOC 2012 tree" % path)
    except FileNotFoundError as e:
        print("authors_table.py: error: %s" % e, file=sys.stderr)
        return 2
    imported = authors_table.imported_files(args.out)
    extra = ["--verbose"] if args.verbose else []
    status = import_authors.main(
        [released[k] for k in authors_table.NEEDED]
        + ["--out-dir", os.path.dirname(imported["transferNet"]), "--config", cfg.name]
        + extra
    )
    if status:
        return status
    common = ["--config", cfg.name, "--weights", imported["transferNet"], "--list", listing]
    common += ["--root", images, "--protocol", "authors", "--workers", str(args.workers)]
    for folder, title, labels in authors_table.RUNS:
        print("%s: %s labels, the authors' protocol" % (title, labels), flush=True)
        if labels == "gt":
            source = ["--gt-labels", gt]
        else:
            model = authors.prototxt_path(imported["classificationNet"])
            source = ["--classifier-model", model]
            source += ["--classifier-weights", imported["classificationNet"]]
        status = infer.main(common + source + ["--out", os.path.join(args.out, folder)] + extra)
        if status:
            return status
    _, lines = authors_table.evaluate(args.out, args.voc_root)
    print("\n".join(lines))
    print("wrote %s" % os.path.join(args.out, "table.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
