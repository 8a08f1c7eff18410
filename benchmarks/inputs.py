"""Generated VOC-like inputs: label-map pairs for the evaluation, images with their ground
truth for tools/infer.py and the authors' protocol."""

import os

import cv2
import numpy as np

from transfernet.atomic import write_text
from transfernet.classes import IGNORE
from transfernet.fileio import write_label_png

VOC_IMAGE = (375, 500)  # (H, W) of a VOC image


def label_map_pair(rng, shape=VOC_IMAGE):
    """A VOC-like ground truth (objects of ids 1..20 with a 255 border) and a prediction
    (the objects shifted by a few pixels, one of them mislabelled)."""
    gt = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for _ in range(rng.randint(1, 4)):
        cls = int(rng.randint(1, 21))
        center = (int(rng.randint(0, shape[1])), int(rng.randint(0, shape[0])))
        axes = (int(rng.randint(20, 150)), int(rng.randint(20, 120)))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(gt, center, axes, angle, 0, 360, cls, -1)
        cv2.ellipse(gt, center, axes, angle, 0, 360, IGNORE, 4)
        shifted = (center[0] + int(rng.randint(-8, 9)), center[1] + int(rng.randint(-8, 9)))
        cv2.ellipse(
            pred,
            shifted,
            axes,
            angle,
            0,
            360,
            cls if rng.rand() < 0.8 else int(rng.randint(1, 21)),
            -1,
        )
    return gt, pred


def write_eval_pairs(folder, count, seed=0):
    """Write <folder>/gt/<id>.png and <folder>/pred/<id>.png (VOC palette PNGs); ids."""
    rng = np.random.RandomState(seed)
    ids = ["%06d" % i for i in range(count)]
    for image_id in ids:
        for sub, label_map in zip(("gt", "pred"), label_map_pair(rng)):
            write_label_png(os.path.join(folder, sub, image_id + ".png"), label_map)
    return ids


def voc_like_image(rng):
    """A 500x375 BGR image (blurred noise) with 2 or 3 filled ellipses of VOC classes, and its
    label map."""
    image = rng.randint(0, 256, VOC_IMAGE + (3,)).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 4)
    labels = np.zeros(VOC_IMAGE, np.uint8)
    for cls in rng.choice(np.arange(1, 21), rng.randint(2, 4), replace=False):
        centre = (int(rng.randint(50, 450)), int(rng.randint(50, 325)))
        axes = (int(rng.randint(30, 120)), int(rng.randint(30, 100)))
        colour = tuple(int(c) for c in rng.randint(0, 256, 3))
        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1)
        cv2.ellipse(labels, centre, axes, 0, 0, 360, int(cls), -1)
    return image, labels


def write_infer_inputs(folder, count, seed=0):
    """`count` 500x375 JPEG images, each with a ground-truth PNG of 2 or 3 VOC classes, and
    their list; returns (list, image folder, ground-truth folder)."""
    rng = np.random.RandomState(seed)
    images, gt = os.path.join(folder, "images"), os.path.join(folder, "gt")
    os.makedirs(images)
    os.makedirs(gt)
    ids = ["%06d" % i for i in range(count)]
    for image_id in ids:
        image, labels = voc_like_image(rng)
        cv2.imwrite(os.path.join(images, image_id + ".jpg"), image)
        write_label_png(os.path.join(gt, image_id + ".png"), labels)
    write_text(os.path.join(folder, "list.txt"), "".join(i + "\n" for i in ids))
    return os.path.join(folder, "list.txt"), images, gt
