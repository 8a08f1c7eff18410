#!/usr/bin/env python3
"""Attention figures of one image (paper Figures 2, 3 and 6).

    python tools/visualize.py --image x.jpg --labels 3,8 --pixel 40,60 --pixel 10,90 \
        --out runs/vis/x.png
    python tools/visualize.py --config tiny --image x.jpg --out /tmp/x.png   # predicted labels

A row per label: the image, attention alpha (Eq. 3) and densified attention s (Eq. 7)
mapped onto the image, the pixels the label map gives the label. Then a row per --pixel Y,X
(row, column in the image): the image with the pixel marked, the row of the Gram matrix
G = A A^T (Eq. 10) of the pixel's conv5_3 cell mapped onto the image, and that row on the
feature map with the cell marked. Labels: --labels, or those of the stage-0 classifier
(sigmoid >= --threshold among --classes, the arg-max one if none). Prints the path written.
Weights that do not fit the nets and an --out that cannot be written are errors before the
figure is computed (exit status 2). Caffe's log is shown with --verbose.
"""

import argparse
import sys

from transfernet.verbosity import quiet_caffe

quiet_caffe(sys.argv)  # before caffe is imported

from tools import cli  # noqa: E402
from transfernet import atomic, attention_figures, figures, inference  # noqa: E402
from transfernet.fileio import Skip, read_image  # noqa: E402


def parse_pixel(text):
    """'Y,X' -> (Y, X) for argparse."""
    try:
        y, x = (int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected a pixel as Y,X (row,column), got %r" % text)
    return y, x


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", required=True, help="image file")
    parser.add_argument("--out", required=True, help="figure to write (.png)")
    parser.add_argument(
        "--labels", help="class ids (3,8) or names of --classes (default: the classifier's)"
    )
    parser.add_argument(
        "--pixel",
        type=parse_pixel,
        nargs="+",
        action="extend",
        default=[],
        metavar="Y,X",
        help="image pixels whose Gram row to show",
    )
    cli.add_model_arguments(parser)
    parser.add_argument("--verbose", action="store_true", help="show Caffe's log")
    args = parser.parse_args(argv)
    if not args.out.lower().endswith(".png"):
        parser.error("--out must name a .png file, got %r" % args.out)
    cli.resolve_model_arguments(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    import caffe

    caffe.set_mode_cpu()
    try:
        table = inference.class_table(args.classes)
        image = read_image(args.image)
        height, width = image.shape[:2]
        net = inference.load_net(args.model, args.weights)
        if attention_figures.FEATURES not in net.blobs:
            raise ValueError(
                "%s has no blob %s (A): not a TransferNet seg_deploy net"
                % (args.model, attention_figures.FEATURES)
            )
        cells = net.blobs[attention_figures.FEATURES].shape[2]
        for pixel in args.pixel:
            inference.pixel_cell(pixel, height, width, cells)
        if args.labels:
            class_ids = inference.check_ids(
                inference.parse_labels(args.labels, table), inference.num_classes(net), "--labels"
            )
        else:
            classifier = inference.load_net(args.classifier_model, args.classifier_weights)
            inference.check_ids(table, classifier.blobs["prob"].shape[1], "--classes")
            class_ids = inference.predict_labels(classifier, image, table, args.threshold)
        atomic.check_writable_file(args.out, "--out file")
    except (Skip, OSError, ValueError) as e:
        print("visualize.py: error: %s" % e, file=sys.stderr)
        return 2
    seg, rows = attention_figures.attention_rows(net, image, class_ids, args.pixel, table)
    figures.draw_figure(args.out, rows)
    names = [table.get(c, str(c)) for c in map(int, seg.class_ids)]
    print("labels: %s" % ", ".join("%d %s" % item for item in zip(seg.class_ids, names)))
    for pixel in args.pixel:
        print(
            "pixel (%d, %d) -> feature cell (%d, %d) of %dx%d"
            % (pixel + inference.pixel_cell(pixel, height, width, cells) + (cells, cells))
        )
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
