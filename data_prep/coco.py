"""COCO-format instances -> TransferNet source dataset (masks and labels).

Paper Sec. 5.1: every COCO training image containing one of the 20 PASCAL categories is
removed (17,443 train2014 images remain); the other 60 categories become ids 21..80 in COCO
category-id order (transfernet/classes.py), whatever subset of them a JSON lists. That is
paper_classes(), the command line's; a dataset spec (data_prep.spec) gives its own
SourceClasses: which category ids become which class ids, and whose images are dropped.

Label map per image (0 background, the class ids, 255 ignore):
  - non-crowd instances are painted largest first (pixel area, ties by annotation id), so a
    smaller instance overlapping a larger one stays visible on top of it;
  - crowd regions (iscrowd=1, RLE), and instances of a category the table leaves out, become
    255 wherever no instance of the table covers them (an unlabelled object is not background).
The image's labels are the ids left in the label map after resizing.

  python3 -m data_prep.coco --root data/coco --out data/lmdb/coco60 [--ratio 0.5 --seed 1]
"""

import argparse
import math
import os
import reprlib
import sys

import numpy as np
from pycocotools import mask as mask_utils

from data_prep import common
from transfernet import class_table, classes, config, fileio, records

DEFAULT_ANNOTATIONS = "annotations/instances_train2014.json"
DEFAULT_IMAGES = "train2014"
DOWNLOAD = "https://cocodataset.org/#download (2014 Train images, 2014 Train/Val annotations)"
MIN_POLYGON_COORDS = 6  # three (x, y) points

TARGET_CATEGORY = "target_category"
NO_ANNOTATION = "no_annotation"
NOT_SAMPLED = "not_sampled_ratio"
NO_OBJECT_PIXELS = "no_object_pixels_after_resize"
MALFORMED_IMAGE = "malformed_image_entry"
MALFORMED_ANNOTATION = "malformed_annotation"
MALFORMED_SEGMENTATION = "malformed_segmentation"
DUPLICATE_IMAGE_ID = "duplicate_image_id"
DUPLICATE_FILE_NAME = "duplicate_file_name"
ANNOTATION_WITHOUT_IMAGE = "annotation_without_image"
# Polygon points farther than this many image sizes outside the image are not coordinates
# (pycocotools rasterises the whole outline: memory grows with its length).
MAX_OUTSIDE = 1.0

# The fields the builder reads from an instances JSON and each of its entries, with their types.
INSTANCES_FIELDS = {"images": list, "annotations": list, "categories": list}
IMAGE_FIELDS = {"id": int, "file_name": str, "height": int, "width": int}
ANNOTATION_FIELDS = {"id": int, "image_id": int, "category_id": int, "segmentation": (list, dict)}
CATEGORY_FIELDS = {"id": int, "name": str}


def paper_classes():
    """The paper's SourceClasses: COCO's 60 non-PASCAL categories -> 21..80, PASCAL dropped."""
    return class_table.SourceClasses(classes.COCO60_ID, classes.PASCAL_COCO_IDS, class_table.PAPER)


def instance_mask(segmentation, height, width, what):
    """Binary HxW mask of one annotation (polygons or RLE); Skip on a bad one (pycocotools
    crashes or decodes uninitialised memory on some, so each is checked first)."""
    if isinstance(segmentation, list):
        polygons = check_polygons(segmentation, height, width, what)
        rles = mask_utils.frPyObjects(polygons, height, width)
        mask = mask_utils.decode(mask_utils.merge(rles))
        if not mask.any():
            raise fileio.Skip(common.DEGENERATE_POLYGON, "%s: polygon covers no pixel" % what)
        return mask.astype(bool)
    if isinstance(segmentation, dict):
        rle = check_rle(segmentation, height, width, what)
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, height, width)
        return mask_utils.decode(rle).astype(bool)
    raise fileio.Skip(MALFORMED_SEGMENTATION, "%s: segmentation is neither polygons nor RLE" % what)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_polygons(polygons, height, width, what):
    """The polygons [[x, y, ...], ...] if each has at least three points of finite coordinates
    within MAX_OUTSIDE image sizes of the image; Skip naming the problem otherwise."""
    if not polygons:
        raise fileio.Skip(common.DEGENERATE_POLYGON, "%s: empty polygon list" % what)
    if all(_is_number(v) for v in polygons):
        raise fileio.Skip(
            MALFORMED_SEGMENTATION,
            "%s: a flat polygon [x, y, ...]; COCO polygons are a list of lists "
            "[[x, y, ...], ...]" % what,
        )
    low = (-MAX_OUTSIDE * width, -MAX_OUTSIDE * height)
    high = ((1 + MAX_OUTSIDE) * width, (1 + MAX_OUTSIDE) * height)
    for k, poly in enumerate(polygons):
        if not isinstance(poly, list):
            raise fileio.Skip(
                MALFORMED_SEGMENTATION,
                "%s: polygon %d is %s, not a list of coordinates" % (what, k, reprlib.repr(poly)),
            )
        bad = [v for v in poly if not (_is_number(v) and math.isfinite(v))]
        if bad:
            raise fileio.Skip(
                MALFORMED_SEGMENTATION,
                "%s: polygon %d has coordinate %s, not a finite number"
                % (what, k, reprlib.repr(bad[0])),
            )
        if len(poly) < MIN_POLYGON_COORDS or len(poly) % 2:
            raise fileio.Skip(
                common.DEGENERATE_POLYGON, "%s: polygon with %d coordinates" % (what, len(poly))
            )
        for x, y in zip(poly[::2], poly[1::2]):
            if not (low[0] <= x <= high[0] and low[1] <= y <= high[1]):
                raise fileio.Skip(
                    MALFORMED_SEGMENTATION,
                    "%s: polygon %d has point (%g, %g), far outside the %dx%d image"
                    % (what, k, x, y, width, height),
                )
    return polygons


def rle_string_counts(counts):
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString), or None if
    it is not one (a character outside '0'..'o', a value cut off at the end)."""
    if isinstance(counts, bytes):
        counts = counts.decode("latin-1")
    values, x, k = [], 0, 0
    for char in counts:
        c = ord(char) - 48
        if not 0 <= c < 64:
            return None
        x |= (c & 0x1F) << (5 * k)
        k += 1
        if c & 0x20:  # more 5-bit groups follow
            continue
        if c & 0x10:  # negative: sign-extend
            x |= -1 << (5 * k)
        if len(values) > 2:  # from the fourth on, a difference to the value two before
            x += values[-2]
        values.append(x)
        x, k = 0, 0
    return values if k == 0 else None


def check_rle(rle, height, width, what):
    """The RLE if its size is the image's and its run lengths (a list, or a compressed
    string) are non-negative integers covering height x width pixels exactly; Skip naming the
    problem otherwise."""
    if "counts" not in rle or "size" not in rle:
        raise fileio.Skip(
            MALFORMED_SEGMENTATION,
            "%s: RLE without %s"
            % (what, " and ".join(repr(k) for k in ("counts", "size") if k not in rle)),
        )
    size = rle["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise fileio.Skip(
            MALFORMED_SEGMENTATION,
            "%s: RLE size %s is not [height, width]" % (what, reprlib.repr(size)),
        )
    if size != [height, width]:
        raise fileio.Skip(
            common.SIZE_MISMATCH, "%s: RLE size %s, image %dx%d" % (what, size, height, width)
        )
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        runs = rle_string_counts(counts)
        if runs is None:
            raise fileio.Skip(
                MALFORMED_SEGMENTATION,
                "%s: RLE counts %s is not a compressed COCO RLE string"
                % (what, reprlib.repr(counts)),
            )
    elif isinstance(counts, list):
        runs = counts
        if not all(_is_int(v) for v in runs):
            raise fileio.Skip(
                MALFORMED_SEGMENTATION,
                "%s: RLE counts %s are not all integers" % (what, reprlib.repr(counts)),
            )
    else:
        raise fileio.Skip(
            MALFORMED_SEGMENTATION,
            "%s: RLE counts is %s, not a list or a string" % (what, reprlib.repr(counts)),
        )
    if any(v < 0 for v in runs):
        raise fileio.Skip(MALFORMED_SEGMENTATION, "%s: RLE with a negative run length" % what)
    if sum(runs) != height * width:
        raise fileio.Skip(
            MALFORMED_SEGMENTATION,
            "%s: RLE run lengths sum to %d, not the %dx%d = %d pixels of the image"
            % (what, sum(runs), height, width, height * width),
        )
    return rle


def label_map(anns, height, width, what, ids):
    """uint8 HxW label map of one image's annotations, `ids` {category id: class id} (rule in
    the module docstring)."""
    labels = np.zeros((height, width), np.uint8)
    crowd = np.zeros((height, width), bool)
    instances = []
    for ann in anns:
        mask = instance_mask(
            ann["segmentation"], height, width, "%s annotation %s" % (what, ann.get("id"))
        )
        if ann.get("iscrowd", 0) or ann["category_id"] not in ids:
            crowd |= mask
        else:
            instances.append((-int(mask.sum()), ann["id"], mask, ids[ann["category_id"]]))
    instances.sort(key=lambda inst: inst[:2])
    covered = np.zeros((height, width), bool)
    for _, _, mask, tid in instances:
        labels[mask] = tid
        covered |= mask
    labels[crowd & ~covered] = classes.IGNORE
    return labels


def encode_one(task):
    """Worker: (image path, JSON height, width, annotations, size, {category id: class id})
    -> records + ids."""
    path, height, width, anns, size, category_ids = task
    image = fileio.read_image(path)
    if image.shape[:2] != (height, width):
        raise fileio.Skip(
            common.SIZE_MISMATCH,
            "%s is %dx%d, its annotations are %dx%d"
            % (path, image.shape[0], image.shape[1], height, width),
        )
    labels = records.warp_mask(label_map(anns, height, width, path, category_ids), size)
    ids = [int(c) for c in np.unique(labels) if c not in (classes.BACKGROUND, classes.IGNORE)]
    if not ids:
        raise fileio.Skip(
            NO_OBJECT_PIXELS, "%s: no object pixel left at %dx%d" % (path, size, size)
        )
    return (
        records.encode_image(records.warp_image(image, size), ids),
        records.encode_mask(labels),
        ids,
    )


def image_path(image_dir, file_name):
    """Where an image entry's file is: its file_name under image_dir, with Windows separators
    read as '/' (Label Studio's COCO export on Windows writes "images\\x.jpg")."""
    return os.path.join(image_dir, *file_name.replace("\\", "/").split("/"))


def field_problem(entry, fields):
    """What is wrong with a JSON entry given its required {field: type}, or None."""
    if not isinstance(entry, dict):
        return "is a %s, not an object" % type(entry).__name__
    for name, kind in fields.items():
        if name not in entry:
            return "has no %r" % name
        if not isinstance(entry[name], kind) or isinstance(entry[name], bool):
            return "has %r = %s" % (name, reprlib.repr(entry[name]))
    return None


def load_instances(path):
    """The instances JSON as a dict; ValueError naming the file if it does not parse, lacks
    its images / annotations / categories lists or has a malformed category."""
    dataset = fileio.read_json(path)
    problem = field_problem(dataset, INSTANCES_FIELDS)
    if problem:
        raise ValueError(
            "%s %s: a COCO instances JSON has 'images', 'annotations' and "
            "'categories' lists" % (path, problem)
        )
    for i, cat in enumerate(dataset["categories"]):
        problem = field_problem(cat, CATEGORY_FIELDS)
        if problem:
            raise ValueError("%s: categories[%d] %s" % (path, i, problem))
    return dataset


def index_instances(dataset):
    """({image id: image entry}, {image id: [annotation]}, skipped rows) of an instances JSON.

    Skipped, as (reason, item, detail) rows: malformed image entries and annotations; every
    entry of an image id that several entries have, and of a file that several entries name
    (whose annotations would be painted on which?); annotations of an image id no entry
    has. An image with a malformed annotation, or one of a category the JSON's `categories`
    do not list, is skipped whole (a bbox-only instance would be painted background; an
    unlisted category would be missing from meta.json's class table).
    """
    images, claimed, skipped = index_images(dataset["images"])
    listed = {cat["id"] for cat in dataset["categories"]}
    anns, broken, orphans = index_annotations(dataset["annotations"], claimed, listed)
    skipped += orphans
    for img_id, (reason, detail) in sorted(broken.items()):
        if img_id in images:
            skipped.append((reason, images.pop(img_id)["file_name"], detail))
    return images, {img_id: anns.get(img_id, []) for img_id in images}, skipped


def index_images(entries):
    """({image id: entry} of the usable entries, {id: [positions of the entries with it]},
    skipped rows): malformed entries, and every entry of a shared id or file name."""
    skipped, usable, claimed, files = [], [], {}, {}
    for i, info in enumerate(entries):
        if isinstance(info, dict) and _is_int(info.get("id")):
            claimed.setdefault(info["id"], []).append(i)
        problem = field_problem(info, IMAGE_FIELDS)
        if problem:
            skipped.append((MALFORMED_IMAGE, "images[%d]" % i, "image entry %s" % problem))
        else:
            usable.append((i, info))
            files.setdefault(info["file_name"], []).append(i)
    images = {}
    for i, info in usable:
        same_id, same_file = claimed[info["id"]], files[info["file_name"]]
        if len(same_id) > 1:
            detail = "images%s have the same id %d" % (same_id, info["id"])
            skipped.append((DUPLICATE_IMAGE_ID, info["file_name"], detail))
        elif len(same_file) > 1:
            ids = ", ".join(str(entries[k]["id"]) for k in same_file)
            detail = "images%s (ids %s) name the same file" % (same_file, ids)
            skipped.append((DUPLICATE_FILE_NAME, info["file_name"], detail))
        else:
            images[info["id"]] = info
    return images, claimed, skipped


def index_annotations(annotations, claimed, listed):
    """({image id: [annotation]}, {image id: (reason, detail)} of the images an annotation
    spoils (malformed, or of a category not `listed`), skipped rows of annotations that name
    no image entry or are malformed without a usable image id)."""
    anns, broken, skipped = {}, {}, []
    for i, ann in enumerate(annotations):
        problem = field_problem(ann, ANNOTATION_FIELDS)
        img_id = ann.get("image_id") if isinstance(ann, dict) else None
        if problem is None and img_id not in claimed:
            detail = "annotation %d: no image entry has its image_id %d" % (ann["id"], img_id)
            skipped.append((ANNOTATION_WITHOUT_IMAGE, "annotations[%d]" % i, detail))
        elif problem is None and ann["category_id"] not in listed:
            detail = (
                "annotations[%d] (id %d) has category id %d, which the JSON's categories "
                "do not list" % (i, ann["id"], ann["category_id"])
            )
            broken.setdefault(img_id, (common.UNKNOWN_CATEGORY, detail))
        elif problem is None:
            anns.setdefault(img_id, []).append(ann)
        elif _is_int(img_id) and img_id in claimed:
            broken.setdefault(img_id, (MALFORMED_ANNOTATION, "annotations[%d] %s" % (i, problem)))
        else:
            detail = "annotations[%d] %s" % (i, problem)
            skipped.append((MALFORMED_ANNOTATION, "annotations[%d]" % i, detail))
    return anns, broken, skipped


def select_images(images, anns, ratio, seed, target_categories):
    """(kept image ids in id order, {reason: count}) after the target-category (PASCAL in the
    paper) / empty / ratio filters."""
    dropped = {TARGET_CATEGORY: 0, NO_ANNOTATION: 0, NOT_SAMPLED: 0}
    candidates = []
    for img_id in sorted(images):
        cats = {a["category_id"] for a in anns[img_id]}
        if cats & target_categories:
            dropped[TARGET_CATEGORY] += 1
        elif not cats:
            dropped[NO_ANNOTATION] += 1
        else:
            candidates.append(img_id)
    if not 0 < ratio <= 1:
        raise ValueError("--ratio must be in (0, 1], got %r" % ratio)
    n = int(round(ratio * len(candidates)))
    if n < len(candidates):
        chosen = np.random.RandomState(seed).choice(len(candidates), n, replace=False)
        dropped[NOT_SAMPLED] = len(candidates) - n
        candidates = [candidates[i] for i in sorted(chosen)]
    return candidates, dropped


def build_source(
    root,
    out_dir,
    annotations=DEFAULT_ANNOTATIONS,
    images=DEFAULT_IMAGES,
    size=config.PAPER.data.resize,
    ratio=1.0,
    seed=0,
    workers=2,
    source_classes=None,
    dataset=None,
):
    """Build the source dataset from a COCO-format root (`annotations` and `images` relative
    to it, or absolute) with the SourceClasses of a spec, or the paper's (whose JSON must use
    COCO's own category ids and names); returns its meta dict. `dataset`: the JSON, if the
    caller has read it already."""
    records.remove_partial(out_dir)
    common.require_files("MS-COCO", root, [annotations, images + "/"], DOWNLOAD)
    ann_path = os.path.join(root, annotations)
    if dataset is None:
        dataset = load_instances(ann_path)
    if source_classes is None:
        classes.check_coco_categories(dataset["categories"], ann_path)
        source_classes = paper_classes()
    infos, anns, skipped = index_instances(dataset)
    kept, dropped = select_images(infos, anns, ratio, seed, source_classes.dropped)
    tasks = []
    for img_id in kept:
        info = infos[img_id]
        tasks.append(
            (
                info["file_name"],
                (
                    image_path(os.path.join(root, images), info["file_name"]),
                    info["height"],
                    info["width"],
                    anns[img_id],
                    size,
                    source_classes.ids,
                ),
            )
        )
    table, ids = source_classes.table, source_classes.ids
    listed = sorted(c["id"] for c in dataset["categories"] if c["id"] in ids)
    meta = common.dataset_meta(
        "source",
        size,
        table,
        {ids[c]: table.names[ids[c]] for c in listed},
        coco_category_ids={str(ids[c]): c for c in listed},
        dropped=dropped,
        params={
            "root": os.path.abspath(root),
            "annotations": annotations,
            "images": images,
            "ratio": ratio,
            "seed": seed,
            "size": size,
            "images_in_json": len(dataset["images"]),
        },
    )
    return common.build(
        out_dir, tasks, encode_one, meta, workers=workers, desc="coco", skipped=skipped
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", required=True, help="COCO root (annotations/, train2014/)")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--annotations", default=DEFAULT_ANNOTATIONS, help="JSON, relative to root")
    p.add_argument("--images", default=DEFAULT_IMAGES, help="image folder, relative to root")
    p.add_argument(
        "--size",
        type=int,
        default=config.PAPER.data.resize,
        help="warp size (default: the paper config's resize)",
    )
    p.add_argument("--ratio", type=float, default=1.0, help="random fraction kept (Fig. 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --ratio subset")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    a = p.parse_args(argv)
    return common.run_build(
        "data_prep.coco",
        a.out,
        lambda: build_source(
            a.root, a.out, a.annotations, a.images, a.size, a.ratio, a.seed, a.workers
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
