"""The attention figures of one image (paper Figures 2, 3 and 6), as rows of figures.Panel.

A row per label (label_panels): the image, attention alpha (Eq. 3-4) and densified
attention s (Eq. 7) mapped onto the image, the label's pixels. A row per chosen pixel
(gram_panels): the row of the Gram matrix G = A A^T (Eq. 10, attention.gram_rows) of the
pixel's conv5_3 cell, on the image and on the feature map.
"""

import numpy as np

from transfernet import attention, figures, inference
from transfernet.classes import BACKGROUND
from transfernet.figures import Panel
from transfernet.fileio import voc_colormap

FEATURES = "conv5_3_scaled"  # A in the seg_deploy net


def overlay(image, labels, opacity=0.5):
    """RGB uint8 image blended with the VOC colours of a label map (background untouched)."""
    rgb = image[:, :, ::-1].astype(np.float32)
    colours = voc_colormap()[labels].astype(np.float32)
    mask = (labels != BACKGROUND)[:, :, np.newaxis]
    return np.where(mask, (1 - opacity) * rgb + opacity * colours, rgb).astype(np.uint8)


def label_panels(image, seg, names=None):
    """One row of panels per label: the image, attention alpha (Eq. 3), densified attention
    s (Eq. 7), both mapped onto the image, and the pixels the final label map gives this
    label (VOC colour overlay); `names` {id: name} titles them (by id where it has none)."""
    names = names or {}
    height, width = image.shape[:2]
    rgb = image[:, :, ::-1]
    if not len(seg.class_ids):
        return [[Panel("no label", rgb)]]

    def heat(maps, title):  # a panel per label; blank when the net has no such map
        if maps is None:
            return [Panel("no " + title)] * len(seg.class_ids)
        return [Panel(title, rgb, m) for m in inference.unpad(maps, height, width)]

    rows = []
    for cid, alpha, s in zip(seg.class_ids, heat(seg.alpha, "alpha"), heat(seg.s, "s (densified)")):
        name = names.get(int(cid), str(cid))
        mine = np.where(seg.labels == cid, seg.labels, BACKGROUND)
        rows.append([Panel(name, rgb), alpha, s, Panel("%s pixels" % name, overlay(image, mine))])
    return rows


def gram_panels(image, A, pixels):
    """One row of panels per pixel (y, x): the image with the pixel marked, the Gram row of
    its cell mapped onto the image (as alpha and s are), and the row on the feature map
    with the cell marked (Figure 6); the map covers the padded square, so for a
    non-square image its last rows or columns are padding."""
    if not len(pixels):
        return []
    height, width = image.shape[:2]
    cells = [inference.pixel_cell(p, height, width, A.shape[2]) for p in pixels]
    rows = attention.gram_rows(A, cells)
    on_image = inference.unpad(rows, height, width)
    rgb = image[:, :, ::-1]
    return [
        [
            Panel("pixel (%d, %d)" % tuple(p), rgb, None, p),
            Panel("G row of cell (%d, %d)" % c, rgb, row_image, p),
            Panel("G row on the %dx%d map" % row.shape, None, row, c),
        ]
        for p, c, row, row_image in zip(pixels, cells, rows, on_image)
    ]


def attention_rows(net, image, class_ids, pixels=(), names=None):
    """Segment a BGR uint8 image for its labels with seg_deploy `net` (one forward) and
    return (Segmentation, figure rows): label_panels per label, then gram_panels per pixel
    (y, x) of the image from the A of that forward; drawn on the working image
    (inference.working_image), where the pixels are scaled to."""
    if not len(class_ids):
        raise ValueError("visualize: no labels")
    small = inference.working_image(image)
    pixels = [
        tuple(int(c * n / full) for c, n, full in zip(p, small.shape[:2], image.shape[:2]))
        for p in pixels
    ]
    image = small
    seg = inference.segment(net, image, class_ids)
    A = net.blobs[FEATURES].data.copy()  # the encoder ran once, on this image
    return seg, label_panels(image, seg, names) + gram_panels(image, A, pixels)


def write_figure(path, image, seg, names=None):
    """Figure (PNG) of an image's segmentation: the label_panels rows."""
    figures.draw_figure(path, label_panels(image, seg, names))
