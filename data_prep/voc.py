"""PASCAL VOC 2012 (+ SBD) -> TransferNet target dataset with image-level labels only.

train_aug = VOC 2012 segmentation train + SBD train and val, minus VOC 2012 val (10,582
images); without SBD, VOC 2012 train (1,464 images). The records hold the image and the set
of VOC ids (1..20) present, and no masks at all, so target masks cannot leak into training
(the paper trains on image-level labels for VOC, Sec. 5.1). Labels come from
SegmentationClass PNGs (VOC) or cls/*.mat (SBD, GTcls.Segmentation); VOC takes precedence
for images in both. The val list stays in VOC format for evaluation.

  python3 -m data_prep.voc --voc-root data/VOCdevkit/VOC2012 \
      [--sbd-root data/benchmark_RELEASE/dataset] --out data/lmdb/voc_train_aug
"""

import argparse
import os
import sys

import numpy as np
import scipy.io

from data_prep import common
from transfernet import class_table, classes, config, fileio, records

VOC_FILES = [
    "JPEGImages/",
    "SegmentationClass/",
    "ImageSets/Segmentation/train.txt",
    "ImageSets/Segmentation/val.txt",
]
SBD_FILES = ["img/", "cls/", "train.txt", "val.txt"]
VOC_DOWNLOAD = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ "
    "(VOCtrainval_11-May-2012.tar, unpacks to VOCdevkit/VOC2012)"
)
SBD_DOWNLOAD = (
    "the Semantic Boundaries Dataset page of Hariharan et al., "
    "http://home.bharathh.info/pubs/codes/SBD/download.html "
    "(benchmark.tgz, unpacks to benchmark_RELEASE/dataset)"
)
NO_ANNOTATION = "no_annotation"


def read_voc_label(path):
    """uint8 HxW class-index map of a VOC SegmentationClass palette PNG."""
    try:
        return fileio.read_label_png(path)
    except (OSError, SyntaxError, ValueError) as e:  # ValueError: fileio.FileFormatError too
        raise fileio.Skip(
            common.UNREADABLE_MASK, str(e) if str(path) in str(e) else "%s: %s" % (path, e)
        )


def read_sbd_label(path):
    """uint8 HxW class-index map of an SBD cls/*.mat (GTcls.Segmentation)."""
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as e:  # a broken file raises MatReadError, ValueError, IndexError, ...
        raise fileio.Skip(
            common.UNREADABLE_MASK,
            "%s: not a readable .mat file (%s: %s)" % (path, type(e).__name__, e),
        )
    try:
        return np.asarray(mat["GTcls"].Segmentation, dtype=np.uint8)
    except (KeyError, AttributeError, ValueError, TypeError) as e:
        raise fileio.Skip(
            common.UNREADABLE_MASK,
            "%s: no GTcls.Segmentation (%s: %s)" % (path, type(e).__name__, e),
        )


def encode_one(task):
    """Worker: (image path, label path, size, number of target classes) -> (image record,
    None, class ids)."""
    image_path, label_path, size, count = task
    image = fileio.read_image(image_path)
    labels = (read_sbd_label if label_path.endswith(".mat") else read_voc_label)(label_path)
    if labels.shape != image.shape[:2]:
        raise fileio.Skip(
            common.SIZE_MISMATCH,
            "%s is %dx%d, %s is %dx%d"
            % (
                label_path,
                labels.shape[0],
                labels.shape[1],
                image_path,
                image.shape[0],
                image.shape[1],
            ),
        )
    ids = [int(c) for c in np.unique(labels) if c not in (classes.BACKGROUND, classes.IGNORE)]
    unknown = [c for c in ids if c > count]
    if unknown:
        raise fileio.Skip(
            common.UNKNOWN_CATEGORY,
            "%s: class ids %s outside 1..%d" % (label_path, unknown, count),
        )
    if not ids:
        raise fileio.Skip(NO_ANNOTATION, "%s: no object pixel" % label_path)
    return records.encode_image(records.warp_image(image, size), ids), None, ids


def train_aug_tasks(voc_root, sbd_root, size, count):
    """[(name, task)] of train_aug in name order (`count` target classes), and the list sizes
    for the metadata."""
    seg = os.path.join(voc_root, "ImageSets", "Segmentation")
    voc_train, voc_val = (
        fileio.read_list(os.path.join(seg, "train.txt")),
        fileio.read_list(os.path.join(seg, "val.txt")),
    )
    sources = {
        n: (
            os.path.join(voc_root, "JPEGImages", n + ".jpg"),
            os.path.join(voc_root, "SegmentationClass", n + ".png"),
        )
        for n in voc_train
    }
    lists = {"voc_train": len(voc_train), "voc_val": len(voc_val)}
    if sbd_root:
        sbd = fileio.read_list(os.path.join(sbd_root, "train.txt")) + fileio.read_list(
            os.path.join(sbd_root, "val.txt")
        )
        lists["sbd_train_val"] = len(sbd)
        for n in sbd:
            sources.setdefault(
                n,
                (
                    os.path.join(sbd_root, "img", n + ".jpg"),
                    os.path.join(sbd_root, "cls", n + ".mat"),
                ),
            )
    excluded = set(voc_val) & set(sources)
    lists["removed_voc_val"] = len(excluded)
    names = sorted(set(sources) - set(voc_val))
    return [(n, sources[n] + (size, count)) for n in names], lists


def build_target(
    voc_root,
    out_dir,
    sbd_root=None,
    size=config.PAPER.data.resize,
    workers=2,
    table=class_table.PAPER,
):
    """Build the target dataset (train_aug, or VOC train without SBD) of a ClassTable whose
    target classes are the PNGs' ids 1..T (VOC's 20 in the paper); returns its meta."""
    records.remove_partial(out_dir)
    common.require_files("PASCAL VOC 2012", voc_root, VOC_FILES, VOC_DOWNLOAD)
    if sbd_root:
        common.require_files("SBD", sbd_root, SBD_FILES, SBD_DOWNLOAD)
    else:
        print(
            "data_prep.voc: no SBD root given: the target set is VOC 2012 train only "
            "(1,464 images on the real VOC), not train_aug (10,582)"
        )
    tasks, lists = train_aug_tasks(voc_root, sbd_root, size, len(table.target))
    meta = common.dataset_meta(
        "target",
        size,
        table,
        table.target_names,
        split="train_aug" if sbd_root else "voc_train",
        dropped={},
        params=dict(
            lists,
            voc_root=os.path.abspath(voc_root),
            sbd_root=os.path.abspath(sbd_root) if sbd_root else None,
            size=size,
        ),
    )
    return common.build(out_dir, tasks, encode_one, meta, workers=workers, desc="voc")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--voc-root", required=True, help="VOCdevkit/VOC2012 folder")
    p.add_argument("--sbd-root", default=None, help="benchmark_RELEASE/dataset folder (optional)")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument(
        "--size",
        type=int,
        default=config.PAPER.data.resize,
        help="warp size (default: the paper config's resize)",
    )
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    a = p.parse_args(argv)
    return common.run_build(
        "data_prep.voc",
        a.out,
        lambda: build_target(a.voc_root, a.out, a.sbd_root or None, a.size, a.workers),
    )


if __name__ == "__main__":
    sys.exit(main())
