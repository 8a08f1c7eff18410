"""Generator of the built-in datasets, written in the real COCO / VOC / SBD formats, each with the
dataset spec (data_prep.spec) of its split beside its trees (spec.json).

Split "paper" (the paper's categories). Source domain: a COCO-style instances JSON (polygons,
some iscrowd RLE) listing the 80 COCO categories, with objects of six non-PASCAL ones, random
outlines (as COCO's 60 categories show the decoder objects of every shape); ~10% of the images
also hold an "airplane" (a PASCAL category, so the COCO builder must drop them) and every 50th
image has no object. Target domain: a VOC 2012-style tree (JPEGImages, SegmentationClass
palette PNGs with 255 object borders, ImageSets/Segmentation/{train,val}.txt) for four VOC
classes, each a fixed shape family (cross, chevron, triangle, five-pointed star); optionally an
SBD-style tree (img/, cls/*.mat, train.txt, val.txt).
Split "shapes3" (classes of its own, so that nothing is tied to the paper's): the same source
images with seven categories blob ... wave and a "cross" (a target class) in ~10% of them
(coco/annotations/instances.json, coco/images); image-level tags of the target images
(target/tags.csv, target/images) for three classes cross, chevron, triangle; val images with
VOC-style masks (val/JPEGImages, val/SegmentationClass, val/val.txt).
Images: smooth, low-saturation textured backgrounds with a few faint strokes; one to three
outlined objects with random scale, rotation, aspect and texture, coloured around a hue of
their category (so a small network trained from scratch can learn the labels; the source
categories' wider hue bands together span every target colour); instances drawn largest
first, so smaller ones occlude larger ones (the COCO builder's overlap rule). Deterministic by
--seed.

  python3 -m data_prep.builtin --out data/builtin [--split paper|shapes3]
  python3 -m data_prep.build data/builtin/spec.json --size 138     # its class table and LMDBs
"""

import argparse
import collections
import inspect
import json
import math
import multiprocessing
import os
import shutil
import sys

import cv2
import numpy as np
import scipy.io
from pycocotools import mask as mask_utils

from data_prep import common
from transfernet import class_table, classes, fileio, interrupt, records
from transfernet.atomic import write_text


def _star(points, inner):
    t = np.arange(2 * points) * np.pi / points - np.pi / 2
    r = np.where(np.arange(2 * points) % 2, inner, 1.0)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


# Unit-size outlines (x, y in about [-1, 1]) of each shape family.
SHAPES = {
    "cross": np.array(
        [
            [-0.12, -1],
            [0.12, -1],
            [0.12, -0.35],
            [0.95, -0.35],
            [0.95, -0.1],
            [0.12, -0.1],
            [0.12, 1],
            [-0.12, 1],
            [-0.12, -0.1],
            [-0.95, -0.1],
            [-0.95, -0.35],
            [-0.12, -0.35],
        ]
    ),
    "chevron": np.array([[-1, -0.6], [0, 0.2], [1, -0.6], [1, -0.1], [0, 0.7], [-1, -0.1]]),
    "triangle": np.array([[0, -1], [0.9, 0.65], [-0.9, 0.65]]),
    "star": _star(5, 0.45),
}

# Source objects are random outlines (_random_outline): as COCO's 60 categories teach the
# decoder to segment attended objects of any shape, not six templates (with one fixed family
# per source category the decoder learnt the six shapes and segmented no target object).
RANDOM_SHAPE = "random"
# The paper split. (COCO category id, shape): six non-PASCAL source categories, and airplane
# (PASCAL).
SOURCE_SHAPES = tuple((cid, RANDOM_SHAPE) for cid in (10, 13, 28, 38, 52, 84))
PASCAL_DISTRACTOR = (5, "cross")  # COCO "airplane": images holding it are dropped
# (VOC id, shape): target categories, one shape family each.
TARGET_SHAPES = ((1, "cross"), (3, "chevron"), (4, "triangle"), (16, "star"))
# The shapes3 split: source categories 1..7, "cross" (8) the target class in some source
# images; target classes 1..3.
SHAPES3_CATEGORIES = tuple(
    enumerate(("blob", "gear", "leaf", "drop", "bolt", "ring", "wave", "cross"), 1)
)
SHAPES3_CLASSES = ("cross", "chevron", "triangle")

VERSION = 6  # of the rendering: 2 = calm backgrounds, class hues, outlined objects; 3 = larger;
# 4 = random source outlines; 5 = source hue bands cover the target hues; 6 = splits, spec.json
SPLITS = ("paper", "shapes3")
DISTRACTOR_FRACTION = 0.1
CROWD_FRACTION = 0.25
EMPTY_EVERY = 50
MARKER = "builtin.json"  # the settings and VERSION of the trees beside it
SPEC = "spec.json"  # the dataset spec (data_prep.spec) of the trees beside it
BUILDING = ".building"  # where the trees are built before they are swapped in
# Every split's top-level folders: a generation removes those its split does not write.
TREES = ("coco", "VOCdevkit", "benchmark_RELEASE", "target", "val")
# Target image formats, and their folders (images first) in a tree: VOC (palette PNG masks),
# SBD (.mat masks), TAGS (images only: their labels go into the tree's TAGS_CSV).
VOC, SBD, TAGS = "voc", "sbd", "tags"
FORMAT_DIRS = {VOC: ("JPEGImages", "SegmentationClass"), SBD: ("img", "cls"), TAGS: ("images",)}
TAGS_CSV = "tags.csv"
# _rng's domains: the random streams of the source, target and SBD-only images.
SOURCE_DOMAIN, TARGET_DOMAIN, SBD_DOMAIN = 0, 1, 2
MIN_VISIBLE = 0.35
VOC_BORDER = 3  # width in pixels of the 255 band drawn along VOC object boundaries
MIN_RADIUS, MAX_RADIUS = 0.25, 0.5  # object size, fraction of the image's shorter side
MAX_STROKES = 2  # faint clutter lines per background
BACKGROUND_TINT = 25  # backgrounds: grey levels tinted by at most this much per channel
# Every category has a hue tendency (degrees), so labels are learnable from colour by a small
# network trained from scratch; objects vary +- HUE_SPREAD around it (bands 33 apart).
HUE_SPREAD = 14
# Source objects vary more widely, +- the spacing of the hues rounded up (33 degrees in the paper
# split, 36 in shapes3): the bands of neighbouring source categories meet at the target hues, so
# the source images show the decoder objects of every colour (as COCO's objects span VOC's
# colours): the tiny encoder's pooling switches are hue-selective, and with the target hues
# absent from the source images the decoder learns source-hue objectness (docs/decisions.md
# has the measurements).


def _paper_layout(target_train, target_val, sbd):
    """The paper split's target trees: VOC 2012 train and val images; with sbd > 0 an SBD tree of
    `sbd` new images in train.txt, plus (as in the real SBD) the first three VOC val names in
    train.txt and the first three VOC train names in val.txt. Returns _layout's triple."""
    voc, sbd_dir = "VOCdevkit/VOC2012", "benchmark_RELEASE/dataset"
    voc_train = ["2012_%06d" % i for i in range(target_train)]
    voc_val = ["2012_%06d" % i for i in range(target_train, target_train + target_val)]
    voc_names = voc_train + voc_val
    trees = [(voc, VOC, TARGET_DOMAIN, list(enumerate(voc_names)))]
    seg = voc + "/ImageSets/Segmentation/"
    lists = {seg + "train.txt": voc_train, seg + "val.txt": voc_val}
    target = {"voc": voc, "classes": list(classes.VOC_CLASSES)}
    if sbd:
        sbd_new = ["2011_%06d" % i for i in range(sbd)]
        again = voc_val[:3] + voc_train[:3]
        trees += [
            (sbd_dir, SBD, SBD_DOMAIN, list(enumerate(sbd_new))),
            (sbd_dir, SBD, TARGET_DOMAIN, [(voc_names.index(n), n) for n in again]),
        ]
        lists[sbd_dir + "/train.txt"] = sbd_new + voc_val[:3]
        lists[sbd_dir + "/val.txt"] = voc_train[:3]
        target["sbd"] = sbd_dir
    spec = {
        "name": class_table.PAPER.name,  # the paper's split: the committed tiny nets' table
        "target": target,
        "val": {"voc": voc, "split": "val"},
        "overlaps": dict(classes.PAPER_OVERLAPS),
    }
    return trees, lists, spec


def _shapes3_layout(target_train, target_val, sbd):
    """The shapes3 split's target trees: the train images with their tags (target/), the val
    images with VOC-format masks (val/). Returns _layout's triple."""
    if sbd:
        raise ValueError("the shapes3 split has no SBD tree (sbd=%d)" % sbd)
    train = [(i, "t_%06d" % (i + 1)) for i in range(target_train)]
    val = [(target_train + i, "v_%06d" % (i + 1)) for i in range(target_val)]
    trees = [("target", TAGS, TARGET_DOMAIN, train), ("val", VOC, TARGET_DOMAIN, val)]
    spec = {
        "name": "shapes3",
        "target": {
            "csv": "target/" + TAGS_CSV,
            "images": "target/" + FORMAT_DIRS[TAGS][0],
            "classes": list(SHAPES3_CLASSES),
        },
        "val": {
            "images": "val/" + FORMAT_DIRS[VOC][0],
            "masks": "val/" + FORMAT_DIRS[VOC][1],
            "list": "val/val.txt",
        },
    }
    return trees, {"val/val.txt": [n for _, n in val]}, spec


# A split: `categories` ((id, name), ...) the COCO JSON lists; `source` ((category id, shape),
# ...) drawn in the source images; `distractor` (category id, shape), a target class drawn
# into some source images, which the spec's rule must drop; `classes` the target class names
# (id = position + 1); `target` ((class id, shape), ...) drawn in the target images; the COCO
# JSON's and image folder's names in coco/annotations and coco/, the images' file name pattern
# (of the image id, from 1); `layout` (target_train, target_val, sbd) -> _layout's triple.
Split = collections.namedtuple(
    "Split", "categories source distractor classes target coco_json coco_images coco_name layout"
)
SPLIT = {
    "paper": Split(
        classes.COCO_CATEGORIES,
        SOURCE_SHAPES,
        PASCAL_DISTRACTOR,
        classes.VOC_CLASSES,
        TARGET_SHAPES,
        "instances_train2014.json",
        "train2014",
        "COCO_train2014_%012d.jpg",
        _paper_layout,
    ),
    "shapes3": Split(
        SHAPES3_CATEGORIES,
        tuple((cid, RANDOM_SHAPE) for cid in range(1, 8)),
        (8, "cross"),
        SHAPES3_CLASSES,
        tuple((k + 1, shape) for k, shape in enumerate(SHAPES3_CLASSES)),
        "instances.json",
        "images",
        "src_%06d.jpg",
        _shapes3_layout,
    ),
}

# A domain's colours: {label: hue tendency in degrees}; the labels in `wide` vary +- `spread`
# degrees around it, the others +- HUE_SPREAD.
Palette = collections.namedtuple("Palette", "hue wide spread")
Palettes = collections.namedtuple("Palettes", "source target")


def _palettes(split):
    """The source and target Palettes of a Split: its classes' hues spread evenly round the
    circle, source and target classes interleaved (so the source bands meet at each target
    hue), then the remaining ones, then the distractor unless it is a target class (then it is
    the same class and has that class's hue). By name, as source and target ids may coincide."""
    names = dict(split.categories)
    source = [names[cid] for cid, _ in split.source]
    target = [split.classes[tid - 1] for tid, _ in split.target]
    order = [n for pair in zip(source, target) for n in pair]
    order += source[len(target) :] + target[len(source) :]
    order += [n for n in [names[split.distractor[0]]] if n not in order]
    hue = {n: 360.0 * i / len(order) for i, n in enumerate(order)}
    spread = math.ceil(360.0 / len(order))
    return Palettes(
        Palette(
            {cid: hue[names[cid]] for cid, _ in split.source + (split.distractor,)},
            frozenset(cid for cid, _ in split.source),
            spread,
        ),
        Palette({tid: hue[split.classes[tid - 1]] for tid, _ in split.target}, frozenset(), 0),
    )


PALETTES = {name: _palettes(split) for name, split in SPLIT.items()}
# The paper split's hues and wide-band categories by COCO category id and VOC id (they differ):
# _class_color's default palette.
SOURCE_IDS = PALETTES["paper"].source.wide
CLASS_HUE = {**PALETTES["paper"].source.hue, **PALETTES["paper"].target.hue}
PAPER_PALETTE = Palette(CLASS_HUE, SOURCE_IDS, PALETTES["paper"].source.spread)


def _texture(rng, h, w):
    """Zero-mean float HxW texture: stripes, checks or smooth noise."""
    kind = rng.randint(3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:
        a, f = rng.uniform(0, np.pi), rng.uniform(0.15, 0.8)
        return np.sin(f * (xx * np.cos(a) + yy * np.sin(a)))
    if kind == 1:
        f = rng.uniform(0.1, 0.5)
        return np.sign(np.sin(f * xx) * np.sin(f * yy)) * 0.7
    small = rng.randn(rng.randint(6, 20), rng.randint(6, 20)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _background(rng, h, w):
    """Smooth, low-saturation colour field with a faint texture and a few faint strokes."""
    gh, gw = rng.randint(2, 5, 2)
    grey = rng.uniform(60, 190, (gh, gw, 1))
    tint = rng.uniform(-BACKGROUND_TINT, BACKGROUND_TINT, (gh, gw, 3))
    img = cv2.resize((grey + tint).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img += _texture(rng, h, w)[..., None] * rng.uniform(3, 15, 3)
    for _ in range(rng.randint(0, MAX_STROKES + 1)):  # faint clutter strokes
        p, q = rng.randint(0, max(h, w), 2), rng.randint(0, max(h, w), 2)
        shade = img[min(int(p[1]), h - 1), min(int(p[0]), w - 1)] + rng.uniform(-40, 40, 3)
        cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), shade.tolist(), 1)
    return img


def _random_outline(rng):
    """Unit-size star-shaped polygon: 4 to 11 vertices at sorted random angles, random radii
    in [0.3, 1] (convex, concave, spiky or thin)."""
    n = rng.randint(4, 12)
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = rng.uniform(0.3, 1.0, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _polygon(rng, shape, cx, cy, radius):
    """Flat COCO polygon [x0, y0, ...] of a shape (a SHAPES name or RANDOM_SHAPE): random
    aspect, rotation, placement."""
    outline = _random_outline(rng) if shape == RANDOM_SHAPE else SHAPES[shape]
    u = rng.uniform(0.8, 1.25)
    a = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = outline * [radius * u, radius / u]
    pts = pts @ rot.T + [cx, cy]
    return [float(round(v, 2)) for v in pts.reshape(-1)]


def _mask(poly, h, w):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], h, w))).astype(bool)


def _class_color(rng, label, palette=PAPER_PALETTE):
    """BGR colour of an object of category `label`: a hue band of the category (hue
    palette.hue[label] +- HUE_SPREAD degrees, palette.spread for palette.wide), random
    saturation and brightness."""
    spread = palette.spread if label in palette.wide else HUE_SPREAD
    hue = (palette.hue[label] + rng.uniform(-spread, spread)) % 360
    hsv = np.array([[[hue / 2, rng.uniform(150, 255), rng.uniform(120, 255)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _paint(rng, img, mask, label, palette):
    h, w = mask.shape
    colour = _class_color(rng, label, palette)
    fill = colour + _texture(rng, h, w)[..., None] * rng.uniform(3, 20, 3)
    img[mask] = fill[mask]
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    img[edge] = rng.choice([20.0, 235.0])  # dark or light outline


def _rle_counts(mask):
    """Uncompressed COCO RLE counts (column-major, starting with a run of zeros)."""
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0] + counts if flat[0] else counts


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]


def make_image(rng, shapes, n_objects, palette, crowd_shape=None, extra_shape=None):
    """Render one image: (BGR uint8, [(label, polygon, mask)] in drawing order, crowd).

    shapes: [(label, shape name)] the objects are drawn from, coloured by the Palette;
    extra_shape is added as one more object; crowd_shape (label, shape) adds a cluster of small
    instances under the objects, returned as (label, union mask).
    """
    h, w = rng.randint(120, 201, 2)
    img = _background(rng, h, w)
    side = min(h, w)
    crowd = None
    if crowd_shape is not None:
        union = np.zeros((h, w), bool)
        cx, cy = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
        for _ in range(rng.randint(4, 9)):
            poly = _polygon(
                rng,
                crowd_shape[1],
                cx + rng.randn() * 0.12 * side,
                cy + rng.randn() * 0.12 * side,
                rng.uniform(0.05, 0.09) * side,
            )
            m = _mask(poly, h, w)
            _paint(rng, img, m, crowd_shape[0], palette)
            union |= m
        crowd = (crowd_shape[0], union) if union.any() else None
    picks = [shapes[i] for i in rng.randint(len(shapes), size=n_objects)]
    if extra_shape is not None:
        picks.append(extra_shape)
    objects = []
    for label, shape in picks:
        for _ in range(10):  # placements until every object stays mostly visible
            radius = rng.uniform(MIN_RADIUS, MAX_RADIUS) * side
            poly = _polygon(
                rng,
                shape,
                rng.uniform(0.3 * radius, w - 0.3 * radius),
                rng.uniform(0.3 * radius, h - 0.3 * radius),
                radius,
            )
            m = _mask(poly, h, w)
            trial = sorted(objects + [(label, poly, m)], key=lambda o: -int(o[2].sum()))
            if m.sum() > 30 and _all_visible(trial):
                objects = trial
                break
    for label, _, m in objects:
        _paint(rng, img, m, label, palette)
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.1, 0.8)) + rng.randn(h, w, 3) * 4
    return np.clip(img, 0, 255).astype(np.uint8), objects, crowd


def _all_visible(objects):
    covered = np.zeros(objects[0][2].shape, bool)
    for _, _, m in reversed(objects):
        if (m & ~covered).sum() < MIN_VISIBLE * m.sum():
            return False
        covered |= m
    return True


def _label_map(objects, shape):
    labels = np.zeros(shape, np.uint8)
    for label, _, m in objects:
        labels[m] = label
    return labels


def _rng(seed, domain, index):
    return np.random.RandomState([seed, domain, index])


def _write_jpeg(path, img):
    cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def coco_image(job):
    """Worker: render COCO image `index` of a split, write it; return its JSON image and
    annotations."""
    root, split, seed, index = job
    s = SPLIT[split]
    rng = _rng(seed, SOURCE_DOMAIN, index)
    n = 0 if index % EMPTY_EVERY == EMPTY_EVERY - 1 else rng.randint(1, 4)
    crowd_shape = (
        s.source[rng.randint(len(s.source))] if n and rng.rand() < CROWD_FRACTION else None
    )
    extra = s.distractor if n and rng.rand() < DISTRACTOR_FRACTION else None
    img, objects, crowd = make_image(
        rng, list(s.source), n, PALETTES[split].source, crowd_shape, extra
    )
    image_id = index + 1
    name = s.coco_name % image_id
    _write_jpeg(os.path.join(root, s.coco_images, name), img)
    anns = [
        {
            "image_id": image_id,
            "category_id": cid,
            "segmentation": [poly],
            "area": float(m.sum()),
            "bbox": _bbox(m),
            "iscrowd": 0,
        }
        for cid, poly, m in objects
    ]
    if crowd is not None:
        anns.append(
            {
                "image_id": image_id,
                "category_id": crowd[0],
                "segmentation": {
                    "counts": _rle_counts(crowd[1]),
                    "size": [img.shape[0], img.shape[1]],
                },
                "area": float(crowd[1].sum()),
                "bbox": _bbox(crowd[1]),
                "iscrowd": 1,
            }
        )
    info = {"id": image_id, "file_name": name, "height": img.shape[0], "width": img.shape[1]}
    return info, anns


def target_image(job):
    """Worker: render target image (domain, index) of a split, write it as `name` into the tree
    `root` in format `fmt` (FORMAT_DIRS); return the ids of the classes it shows."""
    root, split, seed, domain, index, name, fmt = job
    rng = _rng(seed, domain, index)
    img, objects, _ = make_image(
        rng, list(SPLIT[split].target), rng.randint(1, 4), PALETTES[split].target
    )
    labels = _label_map(objects, img.shape[:2])
    present = np.unique(labels[labels > 0]).astype(np.uint8)
    _write_jpeg(os.path.join(root, FORMAT_DIRS[fmt][0], name + ".jpg"), img)
    if fmt == SBD:  # SBD: no void borders, labels in a .mat
        scipy.io.savemat(
            os.path.join(root, "cls", name + ".mat"),
            {"GTcls": {"Segmentation": labels, "CategoriesPresent": present}},
        )
    elif fmt == VOC:
        kernel = np.ones((VOC_BORDER, VOC_BORDER), np.uint8)
        labels[cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)] = classes.IGNORE
        fileio.write_label_png(os.path.join(root, "SegmentationClass", name + ".png"), labels)
    return present.tolist()


def _layout(split, target_train, target_val, sbd):
    """(trees, lists, spec entries) of a split's target side: trees [(folder, format, domain,
    [(index, name)])] of the target images, lists {path: names} of the list files, and the
    spec's entries but "source" and "out"; paths relative to <out>. ValueError on settings
    the split cannot have."""
    if split not in SPLIT:
        raise ValueError("unknown split %r: one of %s" % (split, ", ".join(SPLITS)))
    return SPLIT[split].layout(target_train, target_val, sbd)


def _top_folders(trees):
    """The folders of <out> that a layout's generation writes."""
    return sorted({"coco"} | {folder.split("/")[0] for folder, _, _, _ in trees})


def _write_list(path, names):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(n + "\n" for n in names))


def generate(
    out,
    seed=0,
    source_images=600,
    target_train=400,
    target_val=100,
    sbd=0,
    workers=2,
    split="paper",
):
    """Write the trees of a split (one of SPLITS) into <out> (paper: coco, VOCdevkit/VOC2012
    and, sbd > 0, benchmark_RELEASE, _paper_layout; shapes3: coco, target, val) and its dataset
    spec <out>/spec.json; ValueError, before anything is written, on an unknown split or an sbd
    > 0 for shapes3.

    Each tree is built under <out>/.building and swapped in when complete; out/builtin.json,
    the settings marker `ensure` checks, is removed first and written last, so an
    interrupted run leaves no marker and the next `ensure` generates again.
    """
    layout = _layout(split, target_train, target_val, sbd)  # before anything is removed
    marker = os.path.join(out, MARKER)
    if os.path.exists(marker):
        os.remove(marker)
    build = os.path.join(out, BUILDING)
    try:
        _generate(out, build, split, layout, seed, source_images, workers)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    params = {
        "version": VERSION,
        "split": split,
        "seed": seed,
        "source_images": source_images,
        "target_train": target_train,
        "target_val": target_val,
        "sbd": sbd,
    }
    write_text(marker, json.dumps(params, indent=1, sort_keys=True))
    return params


def _generate(out, build, split, layout, seed, source_images, workers):
    if os.path.exists(build):
        shutil.rmtree(build)
    s = SPLIT[split]
    trees, lists, spec = layout
    coco = os.path.join(build, "coco")
    for d in [os.path.join(coco, "annotations"), os.path.join(coco, s.coco_images)] + [
        os.path.join(build, folder, sub) for folder, fmt, _, _ in trees for sub in FORMAT_DIRS[fmt]
    ]:
        os.makedirs(d, exist_ok=True)
    jobs = [
        (os.path.join(build, folder), split, seed, domain, index, name, fmt)
        for folder, fmt, domain, images in trees
        for index, name in images
    ]
    with multiprocessing.Pool(workers, initializer=interrupt.ignore_in_worker) as pool:
        coco_out = pool.map(
            coco_image, [(coco, split, seed, i) for i in range(source_images)], chunksize=8
        )
        shown = iter(pool.map(target_image, jobs, chunksize=8))
    for folder, fmt, _, images in trees:
        ids = [next(shown) for _ in images]
        if fmt == TAGS:  # image-level labels: the names of the classes shown, by class id
            lists[folder + "/" + TAGS_CSV] = ["image,labels"] + [
                "%s.jpg,%s" % (name, ";".join(s.classes[k - 1] for k in image_ids))
                for (_, name), image_ids in zip(images, ids)
            ]
    infos, anns = [], []
    for info, image_anns in coco_out:
        infos.append(info)
        for a in image_anns:
            anns.append(dict(a, id=len(anns) + 1))
    dataset = {
        "info": {"description": "TransferNet built-in dataset (COCO format)", "seed": seed},
        "licenses": [],
        "images": infos,
        "annotations": anns,
        "categories": [  # every category, also those no image holds (as COCO's own JSON)
            {"id": c, "name": name, "supercategory": "shape"} for c, name in s.categories
        ],
    }
    with open(os.path.join(coco, "annotations", s.coco_json), "w") as f:
        json.dump(dataset, f)
    for path, names in lists.items():
        _write_list(os.path.join(build, path), names)
    folders = _top_folders(trees)
    for tree in folders:
        records.swap_in(os.path.join(build, tree), os.path.join(out, tree))
    for tree in set(TREES) - set(folders):  # another split's, or an sbd > 0 run's SBD tree
        if os.path.exists(os.path.join(out, tree)):
            shutil.rmtree(os.path.join(out, tree))
    spec = dict(
        spec,
        source={
            "coco": "coco/annotations/" + s.coco_json,
            "images": "coco/" + s.coco_images,
            "categories": "all_except_target",
        },
        out="lmdb",
    )
    write_text(os.path.join(out, SPEC), json.dumps(spec, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(build)


def ensure(out, workers=2, **settings):
    """Generate into `out` (generate's keyword settings: split, seed, image counts, sbd) unless
    out/builtin.json already records the same settings and generator VERSION and the trees and
    spec.json are there; returns True if it generated. A leftover <out>/.building is removed
    either way."""
    bound = inspect.signature(generate).bind(out, **settings)
    bound.apply_defaults()
    wanted = dict(bound.arguments, version=VERSION)
    del wanted["out"], wanted["workers"]
    if _recorded(out) == wanted and _complete(out, wanted):
        shutil.rmtree(os.path.join(out, BUILDING), ignore_errors=True)
        return False
    generate(out, workers=workers, **settings)
    return True


def _complete(out, settings):
    """Whether the spec.json and trees generate's `settings` write are in `out`."""
    trees, _, _ = _layout(
        settings["split"], settings["target_train"], settings["target_val"], settings["sbd"]
    )
    return os.path.isfile(os.path.join(out, SPEC)) and all(
        os.path.isdir(os.path.join(out, tree)) for tree in _top_folders(trees)
    )


def _recorded(out):
    """The settings out/builtin.json records, or None."""
    try:
        with open(os.path.join(out, MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="data/builtin", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source-images", type=int, default=600, help="COCO-style images")
    p.add_argument("--target-train", type=int, default=400, help="VOC-style train images")
    p.add_argument("--target-val", type=int, default=100, help="VOC-style val images")
    p.add_argument("--sbd", type=int, default=0, help="extra SBD-style images (0: no SBD tree)")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--split", choices=SPLITS, default="paper", help="which split's classes")
    a = p.parse_args(argv)

    def build():
        generated = ensure(
            a.out,
            a.workers,
            split=a.split,
            seed=a.seed,
            source_images=a.source_images,
            target_train=a.target_train,
            target_val=a.target_val,
            sbd=a.sbd,
        )
        print(
            "data_prep.builtin: %s %s (%s)"
            % (
                "wrote" if generated else "up to date:",
                a.out,
                json.dumps(_recorded(a.out), sort_keys=True),
            ),
            file=sys.stderr,
        )

    return common.run_build("data_prep.builtin", a.out, build)


if __name__ == "__main__":
    sys.exit(main())
