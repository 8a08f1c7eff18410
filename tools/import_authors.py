#!/usr/bin/env python3
"""Import the authors' released caffemodels (maga33/TransferNet) for our stock-Caffe nets.

    python3 tools/import_authors.py transferNet.caffemodel --out runs/authors/transferNet.caffemodel
    python3 tools/import_authors.py data/authors/*.caffemodel --out-dir runs/authors/imported

Each file is read with the authors' own field numbers (transfernet/authors_caffe.proto) and
recognised from its layers (transfernet/authors.py): transferNet and attentionNet become
caffemodels of our --config's joint_train / attention_train layers (tools/infer.py --weights
takes the first with models/<config>/seg_deploy.prototxt), classificationNet a stock
caffemodel and the deploy prototxt generated from its layers (same name, .prototxt), and
pretrainedCNN needs nothing (stock Caffe reads it). --out-dir names each output after its
input. An output that exists is kept (--force rewrites it). Prints what each file was and what
was written; a file that is not one of these, or does not fit our nets, is one line `import_
authors.py: error: ...` naming the file and the layers, with exit status 2 and nothing written.
"""

import argparse
import os
import sys

from transfernet.verbosity import quiet_caffe

quiet_caffe(sys.argv)  # before caffe is imported

from transfernet import authors, config  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", help="the authors' caffemodels")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="output caffemodel (one input file)")
    where.add_argument("--out-dir", help="output folder: <out-dir>/<input name>.caffemodel")
    parser.add_argument(
        "--config",
        choices=sorted(config.CONFIGS),
        default="paper",
        help="our nets to map onto (default paper; tiny for rehearsals)",
    )
    parser.add_argument("--force", action="store_true", help="rewrite outputs that exist")
    parser.add_argument("--verbose", action="store_true", help="show Caffe's log")
    args = parser.parse_args(argv)
    if args.out and len(args.files) > 1:
        parser.error("--out takes one input file; use --out-dir for several")
    return args


def outputs(args):
    """[(input, output caffemodel)]; ValueError if an output would replace an input."""
    pairs = [
        (path, args.out or os.path.join(args.out_dir, os.path.basename(path)))
        for path in args.files
    ]
    for path, out in pairs:
        if os.path.realpath(os.path.dirname(out)) == os.path.realpath(os.path.dirname(path)):
            raise ValueError(
                "%s: the output %s would be written beside the authors' files (and replace "
                "them or their classificationNet.prototxt): choose another folder" % (path, out)
            )
    return pairs


def main(argv=None):
    args = parse_args(argv)
    cfg = config.CONFIGS[args.config]
    try:
        for path, out in outputs(args):
            if os.path.exists(out) and not args.force:
                print("%s: %s exists, kept (--force rewrites it)" % (path, out))
                continue
            imported = authors.import_model(path, out, cfg)
            for line in imported.lines:
                print("%s: %s" % (path, line))
            for written in imported.outputs:
                print("wrote %s" % written)
    except (ValueError, OSError) as e:  # FormatError, AuthorsModelError, WeightsError
        print("import_authors.py: error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
