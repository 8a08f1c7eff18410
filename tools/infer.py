#!/usr/bin/env python3
"""TransferNet inference: VOC palette label PNGs for images (paper Sec. 5).

    python tools/infer.py --dir VOC2012/JPEGImages --out runs/paper/pred          # predicted labels
    python tools/infer.py --list VOC2012/ImageSets/Segmentation/val.txt \
        --root VOC2012/JPEGImages --gt-labels VOC2012/SegmentationClass --crf --out runs/gt_crf
    python tools/infer.py --config tiny --image x.jpg --labels 3,8 --vis --out /tmp/x

Labels per image: the stage-0 classifier's classes with sigmoid >= --threshold among the
--classes candidates (the arg-max candidate if none), or the ground truth (--gt-labels,
TransferNet-GT), or --labels. --protocol authors follows the authors' MATLAB inference
instead of ours (transfernet/inference.py): for their released models, imported with
tools/import_authors.py; it includes the CRF. Writes OUT/<stem>.png (the folder tools/eval.py
scores), OUT/prob/<stem>.npz with --save-prob, OUT/vis/<stem>.png with --vis. Images whose label PNG
(and requested extras) exist are skipped (resume); temporaries of a killed earlier run are
removed. Ctrl-C stops after the images in the workers' hands with one line saying how many
images are finished (exit status 130). Unreadable images, images without ground truth and
ground truth holding class ids the network does not have are reported and skipped; the exit
status is 1 if any image failed, with the list of failures. Weights that do not fit the nets
and an output folder that cannot be written are errors before any output (exit status 2).
Caffe's log is shown with --verbose.

The main process reads the images and runs the networks, in order; with --workers N > 0 the
CRF, the label maps and the writes of each image run in N forked processes (the same
functions, so the same bytes as --workers 0), at most 2N images ahead of them.
An image whose longer side exceeds inference.MAX_SIDE (1024) is segmented shrunk to it and its
label PNG enlarged back to the image's size (nearest); its --save-prob maps and --vis figure
are at the shrunk size. This bounds memory (docs/inference.md).
"""

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import time
from concurrent.futures.process import BrokenProcessPool

from transfernet.verbosity import quiet_caffe

quiet_caffe(sys.argv)  # before caffe is imported

from tqdm import tqdm  # noqa: E402

from tools import cli  # noqa: E402
from transfernet import atomic, attention_figures, fileio, inference, interrupt  # noqa: E402
from transfernet.fileio import Skip, read_image  # noqa: E402

# Reason under which an image whose ground truth holds ids the network lacks is skipped.
UNKNOWN_CLASS_IDS = "class_ids_not_in_network"
MAX_WORKERS = 8
DEFAULT_WORKERS = min(MAX_WORKERS, len(os.sched_getaffinity(0)))
RESUME = "run the same command again to resume (finished images are skipped)"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_model_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="one image file")
    source.add_argument("--dir", help="every image (.jpg .png ...) of a folder")
    source.add_argument("--list", help="VOC ImageSets-style list of ids (with --root)")
    parser.add_argument("--root", help="image folder of --list: <root>/<id><ext>")
    parser.add_argument("--ext", default=".jpg", help="image extension of --list (.jpg)")
    parser.add_argument("--out", required=True, help="output folder")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        "--gt-labels",
        metavar="DIR",
        help="labels from ground-truth PNGs DIR/<stem>.png (TransferNet-GT)",
    )
    labels.add_argument(
        "--labels",
        help="the same labels for every image: ids (3,8) or names of --classes (cat,dog)",
    )
    parser.add_argument("--crf", action="store_true", help="dense CRF per label")
    parser.add_argument(
        "--protocol",
        choices=inference.PROTOCOLS,
        default="ours",
        help="ours (default) or the authors' MATLAB inference (black padding, MATLAB's "
        "antialiased bilinear and bicubic resizing, background halved before resizing, the "
        "classifier on the padded image; always with the CRF)",
    )
    parser.add_argument(
        "--save-prob",
        action="store_true",
        help="write per-label fg probabilities to OUT/prob/<stem>.npz",
    )
    parser.add_argument(
        "--vis", action="store_true", help="write a figure per image to OUT/vis/<stem>.png"
    )
    parser.add_argument("--gpu", type=int, default=-1, help="GPU id (default -1: CPU)")
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="processes for the CRF, label maps and writes (0: in the main "
        "process; default: the cores available, at most %d, here "
        "%%(default)s)" % MAX_WORKERS,
    )
    parser.add_argument("--verbose", action="store_true", help="show Caffe's log")
    args = parser.parse_args(argv)
    if args.list and not args.root:
        parser.error("--list needs --root")
    if args.workers < 0:
        parser.error("--workers must be >= 0, got %d" % args.workers)
    cli.resolve_model_arguments(args)
    args.crf = args.crf or args.protocol == "authors"
    return args


def image_paths(args):
    if args.image:
        return [args.image]
    if args.dir:
        return fileio.list_dir(args.dir)
    return fileio.list_file(args.list, args.root, args.ext)


def labels_of(args, path, image, classifier, candidates, count):
    """Class ids of an image (--labels, --gt-labels or the classifier); Skip if the ground
    truth is missing or holds ids outside the network's [1, count]."""
    if args.labels:
        return args.labels
    if args.gt_labels:
        gt_path = os.path.join(args.gt_labels, fileio.stem(path) + ".png")
        if not os.path.isfile(gt_path):
            raise Skip("missing_ground_truth", gt_path)
        ids = inference.gt_labels(gt_path)
        unknown = [i for i in ids if i > count]
        if unknown:
            raise Skip(
                UNKNOWN_CLASS_IDS,
                "%s holds class ids %s; the network has [1, %d]" % (gt_path, unknown, count),
            )
        return ids
    return inference.predict_labels(classifier, image, candidates, args.threshold, args.protocol)


def output_paths(out_dir, image_path, save_probs=False, vis=False):
    """{kind: path} of an image's outputs: label PNG in out_dir (the folder tools/eval.py
    scores), probabilities in out_dir/prob, figures in out_dir/vis."""
    name = fileio.stem(image_path)
    paths = {"png": os.path.join(out_dir, name + ".png")}
    if save_probs:
        paths["prob"] = os.path.join(out_dir, "prob", name + ".npz")
    if vis:
        paths["vis"] = os.path.join(out_dir, "vis", name + ".png")
    return paths


def write_outputs(paths, image, shape, seg, names=None):
    """Write the outputs of one image: probabilities and figure at the working size (`image`,
    seg), the label PNG at the image's (height, width) `shape`, last, so it marks a finished
    image."""
    if "prob" in paths:
        inference.save_prob(paths["prob"], seg)
    if "vis" in paths:
        attention_figures.write_figure(paths["vis"], image, seg, names)
    fileio.write_label_png(paths["png"], inference.full_size_labels(seg.labels, *shape))


def prepare_out(args):
    """Create the output folders, check they can be written, remove the temporaries a killed
    earlier run left in them (OSError naming a folder that cannot be written)."""
    folders = {
        os.path.dirname(p) for p in output_paths(args.out, "x", args.save_prob, args.vis).values()
    }
    for folder in sorted(folders):
        atomic.check_writable_folder(folder)
        for path in atomic.remove_stale_temporaries(folder):
            print("infer.py: removed %s (left by an interrupted run)" % path, file=sys.stderr)


def finish_image(outputs, image, shape, forwarded, use_crf, table, protocol):
    """Steps 3-5 of Sec. 5 on the working image and the writes of one image (in a worker with
    --workers); the reason of a failed write, or None."""
    seg = inference.finish(image, *forwarded, use_crf=use_crf, protocol=protocol)
    try:
        write_outputs(outputs, image, shape, seg, table)
    except OSError as e:  # the target, not the temporary, names the file
        return "write failed: %s: %s" % (e.strerror or e, e.filename2 or e.filename)
    return None


def _init_worker():
    import cv2

    interrupt.ignore_in_worker()
    cv2.setNumThreads(1)  # one process per core already


def finished_images(args, paths):
    """How many of `paths` have all their outputs."""
    return sum(
        all(
            os.path.exists(p)
            for p in output_paths(args.out, path, args.save_prob, args.vis).values()
        )
        for path in paths
    )


def worker_pool(workers):
    """The processes that finish images (CRF, label maps, writes), or None for none."""
    if not workers:
        return None
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker
    )


def forward_image(args, path, outputs, net, classifier, table):
    """The network's part for one image (read, labels, forward): finish_image's arguments.
    Skip, fileio.FileFormatError or OSError for an unreadable image or ground-truth PNG."""
    image = read_image(path)
    shape = image.shape[:2]
    image = inference.working_image(image)  # the full image is not kept
    class_ids = labels_of(args, path, image, classifier, table, inference.num_classes(net))
    forwarded = inference.forward(net, image, class_ids, args.protocol)
    return (outputs, image, shape, forwarded, args.crf, table, args.protocol)


def segment_all(args, paths, net, classifier, table):
    """Segment and write every image not done yet; ({"done", "skipped"}, [(path, reason)]
    in input order). The network runs here in order; finish_image in --workers processes."""
    counts, failures = {"done": 0, "skipped": 0}, {}
    bar = tqdm(total=len(paths), desc="infer", unit="img")

    def record(index, path, reason):
        if reason is None:
            counts["done"] += 1
        else:
            tqdm.write("infer.py: skipping %s: %s" % (path, reason), file=sys.stderr)
            failures[index] = (path, reason)
        bar.update()

    pool = worker_pool(args.workers)
    pending = {}  # future -> (index, path)

    def collect(futures):
        for future in futures:
            index, path = pending.pop(future)
            try:
                reason = future.result()
            except BrokenProcessPool:
                reason = "a worker process died"
            record(index, path, reason)

    try:
        for index, path in enumerate(paths):
            outputs = output_paths(args.out, path, args.save_prob, args.vis)
            if all(os.path.exists(p) for p in outputs.values()):
                counts["skipped"] += 1
                bar.update()
                continue
            try:
                task = forward_image(args, path, outputs, net, classifier, table)
            except (Skip, fileio.FileFormatError, OSError) as e:  # unreadable image or GT PNG
                record(index, path, str(e))
                continue
            if pool is None:
                record(index, path, finish_image(*task))
                continue
            while len(pending) >= 2 * args.workers:
                collect(
                    concurrent.futures.wait(
                        pending, return_when=concurrent.futures.FIRST_COMPLETED
                    ).done
                )
            try:
                pending[pool.submit(finish_image, *task)] = (index, path)
            except BrokenProcessPool:
                record(index, path, "a worker process died")
        collect(list(pending))
    except KeyboardInterrupt:
        if pool is not None:  # the workers (which ignore Ctrl-C) finish the images they have
            pool.shutdown(cancel_futures=True)
        raise interrupt.Interrupted(
            "%d of %d images finished in %s" % (finished_images(args, paths), len(paths), args.out)
        ) from None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    return counts, [failures[i] for i in sorted(failures)]


def main(argv=None):
    args = parse_args(argv)
    import caffe

    if args.gpu >= 0:
        caffe.set_mode_gpu()
        caffe.set_device(args.gpu)
    else:
        caffe.set_mode_cpu()
    try:
        table = inference.class_table(args.classes)
        paths = fileio.check_unique_stems(image_paths(args))
        if not paths:
            raise ValueError("no input images (%s)" % (args.image or args.dir or args.list))
        net = inference.load_net(args.model, args.weights)
        if args.labels:
            args.labels = inference.check_ids(
                inference.parse_labels(args.labels, table), inference.num_classes(net), "--labels"
            )
        classifier = None
        if not (args.labels or args.gt_labels):
            classifier = inference.load_net(args.classifier_model, args.classifier_weights)
            inference.check_ids(table, classifier.blobs["prob"].shape[1], "--classes")
        prepare_out(args)
    except (OSError, ValueError) as e:
        print("infer.py: error: %s" % e, file=sys.stderr)
        return 2
    start = time.time()
    counts, failures = segment_all(args, paths, net, classifier, table)
    seconds = time.time() - start
    print(
        "%d images: %d segmented, %d already done, %d failed; outputs in %s (%.1f s, "
        "%.2f images/s)"
        % (
            len(paths),
            counts["done"],
            counts["skipped"],
            len(failures),
            args.out,
            seconds,
            counts["done"] / max(seconds, 1e-9),
        )
    )
    if failures:
        print("failed images:", file=sys.stderr)
        for path, reason in failures:
            print("  %s  (%s)" % (path, reason), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(interrupt.run(main, "infer.py", RESUME))
