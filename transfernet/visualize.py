"""Rows of the Gram matrix G = A A^T of the conv5_3 features (paper Appendix A, Eq. 10,
Figure 6), next to attention alpha and densified attention s (Figures 2 and 3).

Eq. 10: s_l = A A^T alpha_l = G alpha_l, so row i of G is the densified attention of the
one-hot attention e_i: G e_i = densify(A, attention_pool(A, e_i)) (Eq. 7 of Eq. 5).
A is the seg_deploy blob conv5_3_scaled, (1, D, h, w) = the D x M matrix A^T per image.
"""
import numpy as np

from attention_ops import attention_pool, densify
from transfernet import inference

FEATURES = "conv5_3_scaled"  # A in the seg_deploy net


def gram_rows(A, cells):
    """Rows G[i] of G = A A^T (Eq. 10) for feature-map cells i = (row, col), each reshaped
    to the map: A (1, D, h, w), cells [(r, c), ...] -> (len(cells), h, w)."""
    height, width = A.shape[2:]
    onehot = np.zeros((len(cells), height * width), A.dtype)
    for k, (row, col) in enumerate(cells):
        onehot[k, row * width + col] = 1
    return densify(A, attention_pool(A, onehot))[:, 0]


def pixel_cell(pixel, height, width, cells):
    """Feature-map cell (row, col) of image pixel (y, x) under inference.preprocess's
    geometry: the image sits at the top-left of a square of side max(H, W), which is
    resized to the net input and maps onto a cells x cells feature map, so the pixel centre
    (y + 0.5, x + 0.5) falls into cell floor((y + 0.5) * cells / side).
    ValueError for a pixel outside the image."""
    y, x = pixel
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError("pixel (%d, %d) is outside the %d x %d (rows x columns) image"
                         % (y, x, height, width))
    side = max(height, width)
    return tuple(min(int((c + 0.5) * cells / side), cells - 1) for c in (y, x))


def gram_panels(image, A, pixels):
    """One row of panels per pixel (y, x): the image with the pixel marked, the Gram row of
    its cell mapped onto the image (as alpha and s are), and the row on the feature map
    with the cell marked (Figure 6); the map covers the padded square, so for a
    non-square image its last rows or columns are padding."""
    if not len(pixels):
        return []
    height, width = image.shape[:2]
    cells = [pixel_cell(p, height, width, A.shape[2]) for p in pixels]
    rows = gram_rows(A, cells)
    on_image = inference.unpad(rows, height, width)
    rgb = image[:, :, ::-1]
    return [[inference.Panel("pixel (%d, %d)" % tuple(p), rgb, None, p),
             inference.Panel("G row of cell (%d, %d)" % c, rgb, row_image, p),
             inference.Panel("G row on the %dx%d map" % row.shape, None, row, c)]
            for p, c, row, row_image in zip(pixels, cells, rows, on_image)]


def visualize(net, image, class_ids, pixels=(), names=None):
    """Segment a BGR uint8 image for its labels with seg_deploy `net` (one forward) and
    return (Segmentation, figure rows): label_panels per label, then gram_panels per pixel
    from the A of that forward."""
    if not len(class_ids):
        raise ValueError("visualize: no labels")
    seg = inference.segment(net, image, class_ids)
    A = net.blobs[FEATURES].data.copy()  # the encoder ran once, on this image
    return seg, inference.label_panels(image, seg, names) + gram_panels(image, A, pixels)
