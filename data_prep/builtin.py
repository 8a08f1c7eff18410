"""Generator of the built-in dataset, written in the real COCO / VOC / SBD formats.

Source domain: a COCO-style instances JSON (polygons, some iscrowd RLE) for six non-PASCAL
COCO categories whose instances are random outlines (as COCO's 60 categories show the decoder
objects of every shape); ~10% of the images also hold an "airplane" (a PASCAL category, so the
COCO builder must drop them) and every 50th image has no object.
Target domain: a VOC 2012-style tree (JPEGImages, SegmentationClass palette PNGs with 255
object borders, ImageSets/Segmentation/{train,val}.txt) for four VOC classes, each a fixed
shape family (cross, chevron, triangle, five-pointed star); optionally an SBD-style tree (img/,
cls/*.mat, train.txt, val.txt).
Images: smooth, low-saturation textured backgrounds with a few faint strokes; one to three
outlined objects with random scale, rotation, aspect and texture, coloured around a hue of
their category (so a small network trained from scratch can learn the labels; the source
categories' wider hue bands together span every target colour); instances drawn largest
first, so smaller ones occlude larger ones (the COCO builder's overlap rule). Deterministic by
--seed.

  python3 -m data_prep.builtin --out data/builtin
  python3 -m data_prep.coco --root data/builtin/coco --out data/builtin/lmdb/source --size 138
  python3 -m data_prep.voc --voc-root data/builtin/VOCdevkit/VOC2012 \
      --out data/builtin/lmdb/target --size 138
"""

import argparse
import inspect
import json
import multiprocessing
import os
import shutil
import sys

import cv2
import numpy as np
import scipy.io
from pycocotools import mask as mask_utils

from data_prep import common
from transfernet import classes, fileio, interrupt, records
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
# (COCO category id, shape): six non-PASCAL source categories, and airplane (PASCAL).
SOURCE_SHAPES = tuple((cid, RANDOM_SHAPE) for cid in (10, 13, 28, 38, 52, 84))
PASCAL_DISTRACTOR = (5, "cross")  # COCO "airplane": images holding it are dropped
# (VOC id, shape): target categories, one shape family each.
TARGET_SHAPES = ((1, "cross"), (3, "chevron"), (4, "triangle"), (16, "star"))

VERSION = 5  # of the rendering: 2 = calm backgrounds, class hues, outlined objects; 3 = larger;
# 4 = random source outlines; 5 = source hue bands cover the target hues
AIRPLANE_FRACTION = 0.1
CROWD_FRACTION = 0.25
EMPTY_EVERY = 50
MARKER = "builtin.json"  # the settings and VERSION of the trees beside it
BUILDING = ".building"  # where the trees are built before they are swapped in
MIN_VISIBLE = 0.35
VOC_BORDER = 3  # width in pixels of the 255 band drawn along VOC object boundaries
MIN_RADIUS, MAX_RADIUS = 0.25, 0.5  # object size, fraction of the image's shorter side
MAX_STROKES = 2  # faint clutter lines per background
BACKGROUND_TINT = 25  # backgrounds: grey levels tinted by at most this much per channel
# Every category has a hue tendency (degrees), so labels are learnable from colour by a small
# network trained from scratch; objects vary +- HUE_SPREAD around it (bands 33 apart).
HUE_SPREAD = 14
# Source objects vary more widely, +- SOURCE_HUE_SPREAD: the bands of neighbouring source
# categories meet at the target hues, so the source images show the decoder objects of every
# colour (as COCO's objects span VOC's colours): the tiny encoder's pooling switches are
# hue-selective, and with the target hues absent from the source images the decoder learns
# source-hue objectness (docs/decisions.md has the measurements).
SOURCE_HUE_SPREAD = 33
SOURCE_IDS = frozenset(cid for cid, _ in SOURCE_SHAPES)
CLASS_HUE = {cid: 360.0 * i / 11 for i, cid in enumerate((10, 1, 13, 3, 28, 4, 38, 16, 52, 84, 5))}


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


def _class_color(rng, label):
    """BGR colour of an object of category `label`: a hue band of the category (hue
    CLASS_HUE[label] +- HUE_SPREAD degrees, SOURCE_HUE_SPREAD for the source categories),
    random saturation and brightness."""
    spread = SOURCE_HUE_SPREAD if label in SOURCE_IDS else HUE_SPREAD
    hue = (CLASS_HUE[label] + rng.uniform(-spread, spread)) % 360
    hsv = np.array([[[hue / 2, rng.uniform(150, 255), rng.uniform(120, 255)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _paint(rng, img, mask, label):
    h, w = mask.shape
    fill = _class_color(rng, label) + _texture(rng, h, w)[..., None] * rng.uniform(3, 20, 3)
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


def make_image(rng, shapes, n_objects, crowd_shape=None, extra_shape=None):
    """Render one image: (BGR uint8, [(label, polygon, mask)] in drawing order, crowd).

    shapes: [(label, shape name)] the objects are drawn from; extra_shape is added as one
    more object; crowd_shape (label, shape) adds a cluster of small instances under the
    objects, returned as (label, union mask).
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
            _paint(rng, img, m, crowd_shape[0])
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
        _paint(rng, img, m, label)
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


def coco_image(job):
    """Worker: render COCO image `index`, write it; return its JSON image + annotations."""
    root, seed, index = job
    rng = _rng(seed, 0, index)
    n = 0 if index % EMPTY_EVERY == EMPTY_EVERY - 1 else rng.randint(1, 4)
    crowd_shape = (
        SOURCE_SHAPES[rng.randint(len(SOURCE_SHAPES))]
        if n and rng.rand() < CROWD_FRACTION
        else None
    )
    extra = PASCAL_DISTRACTOR if n and rng.rand() < AIRPLANE_FRACTION else None
    img, objects, crowd = make_image(rng, list(SOURCE_SHAPES), n, crowd_shape, extra)
    image_id = index + 1
    name = "COCO_train2014_%012d.jpg" % image_id
    cv2.imwrite(os.path.join(root, "train2014", name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
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


def voc_image(job):
    """Worker: render target image (domain, index), write it as `name` in VOC or SBD format."""
    root, seed, domain, index, name, sbd_format = job
    rng = _rng(seed, domain, index)
    img, objects, _ = make_image(rng, list(TARGET_SHAPES), rng.randint(1, 4))
    labels = _label_map(objects, img.shape[:2])
    if sbd_format:  # SBD: no void borders, labels in a .mat
        cv2.imwrite(os.path.join(root, "img", name + ".jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        present = np.unique(labels[labels > 0]).astype(np.uint8)
        scipy.io.savemat(
            os.path.join(root, "cls", name + ".mat"),
            {"GTcls": {"Segmentation": labels, "CategoriesPresent": present}},
        )
        return
    kernel = np.ones((VOC_BORDER, VOC_BORDER), np.uint8)
    labels[cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)] = classes.IGNORE
    cv2.imwrite(
        os.path.join(root, "JPEGImages", name + ".jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    fileio.write_label_png(os.path.join(root, "SegmentationClass", name + ".png"), labels)


def _trees(sbd):
    return ["coco", "VOCdevkit"] + (["benchmark_RELEASE"] if sbd else [])


def _write_list(path, names):
    with open(path, "w") as f:
        f.write("".join(n + "\n" for n in names))


def generate(out, seed=0, source_images=600, target_train=400, target_val=100, sbd=0, workers=2):
    """Write <out>/coco, <out>/VOCdevkit/VOC2012 and (sbd > 0) <out>/benchmark_RELEASE.

    Each tree is built under <out>/.building and swapped in when complete; out/builtin.json,
    the settings marker `ensure` checks, is removed first and written last, so an
    interrupted run leaves no marker and the next `ensure` generates again.
    SBD: `sbd` new images in train.txt, plus (as in the real SBD) the first three VOC val
    names in train.txt and the first three VOC train names in val.txt.
    """
    marker = os.path.join(out, MARKER)
    if os.path.exists(marker):
        os.remove(marker)
    build = os.path.join(out, BUILDING)
    try:
        params = _generate(out, build, seed, source_images, target_train, target_val, sbd, workers)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    write_text(marker, json.dumps(params, indent=1, sort_keys=True))
    return params


def _generate(out, build, seed, source_images, target_train, target_val, sbd, workers):
    if os.path.exists(build):
        shutil.rmtree(build)
    coco, voc = os.path.join(build, "coco"), os.path.join(build, "VOCdevkit", "VOC2012")
    sbd_dir = os.path.join(build, "benchmark_RELEASE", "dataset")
    for d in [
        os.path.join(coco, "annotations"),
        os.path.join(coco, "train2014"),
        os.path.join(voc, "JPEGImages"),
        os.path.join(voc, "SegmentationClass"),
        os.path.join(voc, "ImageSets", "Segmentation"),
    ] + ([os.path.join(sbd_dir, "img"), os.path.join(sbd_dir, "cls")] if sbd else []):
        os.makedirs(d)
    voc_train = ["2012_%06d" % i for i in range(target_train)]
    voc_val = ["2012_%06d" % i for i in range(target_train, target_train + target_val)]
    sbd_new = ["2011_%06d" % i for i in range(sbd)]
    voc_names = voc_train + voc_val
    jobs_voc = [(voc, seed, 1, i, n, False) for i, n in enumerate(voc_names)] + [
        (sbd_dir, seed, 2, i, n, True) for i, n in enumerate(sbd_new)
    ]
    if sbd:  # SBD also holds VOC images: the first three val and three train ones
        jobs_voc += [
            (sbd_dir, seed, 1, voc_names.index(n), n, True) for n in voc_val[:3] + voc_train[:3]
        ]
    with multiprocessing.Pool(workers, initializer=interrupt.ignore_in_worker) as pool:
        coco_out = pool.map(
            coco_image, [(coco, seed, i) for i in range(source_images)], chunksize=8
        )
        pool.map(voc_image, jobs_voc, chunksize=8)
    images, anns = [], []
    for info, image_anns in coco_out:
        images.append(info)
        for a in image_anns:
            anns.append(dict(a, id=len(anns) + 1))
    used = [SOURCE_SHAPES[i][0] for i in range(len(SOURCE_SHAPES))] + [PASCAL_DISTRACTOR[0]]
    dataset = {
        "info": {"description": "TransferNet built-in dataset (COCO format)", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": c, "name": classes.COCO_NAME_BY_ID[c], "supercategory": "shape"}
            for c in sorted(used)
        ],
    }
    with open(os.path.join(coco, "annotations", "instances_train2014.json"), "w") as f:
        json.dump(dataset, f)
    seg = os.path.join(voc, "ImageSets", "Segmentation")
    _write_list(os.path.join(seg, "train.txt"), voc_train)
    _write_list(os.path.join(seg, "val.txt"), voc_val)
    if sbd:
        _write_list(os.path.join(sbd_dir, "train.txt"), sbd_new + voc_val[:3])
        _write_list(os.path.join(sbd_dir, "val.txt"), voc_train[:3])
    for tree in _trees(sbd):
        records.swap_in(os.path.join(build, tree), os.path.join(out, tree))
    if not sbd and os.path.exists(os.path.join(out, "benchmark_RELEASE")):
        shutil.rmtree(os.path.join(out, "benchmark_RELEASE"))
    shutil.rmtree(build)
    return {
        "version": VERSION,
        "seed": seed,
        "source_images": source_images,
        "target_train": target_train,
        "target_val": target_val,
        "sbd": sbd,
    }


def ensure(out, workers=2, **settings):
    """Generate into `out` (generate's keyword settings: seed, image counts, sbd) unless
    out/builtin.json already records the same settings and generator VERSION and the trees are
    there; returns True if it generated. A leftover <out>/.building is removed either way."""
    bound = inspect.signature(generate).bind(out, **settings)
    bound.apply_defaults()
    wanted = dict(bound.arguments, version=VERSION)
    del wanted["out"], wanted["workers"]
    if _recorded(out) == wanted and all(
        os.path.isdir(os.path.join(out, tree)) for tree in _trees(wanted["sbd"])
    ):
        shutil.rmtree(os.path.join(out, BUILDING), ignore_errors=True)
        return False
    generate(out, workers=workers, **settings)
    return True


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
    a = p.parse_args(argv)

    def build():
        generated = ensure(
            a.out,
            a.workers,
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
