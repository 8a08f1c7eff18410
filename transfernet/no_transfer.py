"""The no-transfer comparison of the demo: what the labels and the attention give without the
decoder trained on the source masks.

The densified attention s (Eq. 7) of each label, bilinearly upsampled to the image, min-max
normalised per label over the image, is foreground where it exceeds THRESHOLD; labels are
combined as the decoder's outputs are (largest score wins, background where none is
foreground).
"""

import numpy as np

from transfernet import crf, inference

THRESHOLD = 0.5


def scores(s, height, width, threshold=THRESHOLD):
    """Score maps (K, height, width) of the no-transfer rule from s (K, h, w) on the padded
    square: s upsampled to the image (inference.unpad), min-max normalised per label over
    the image, kept where > threshold, 0 elsewhere. A constant map gives no foreground."""
    maps = inference.unpad(s, height, width).reshape(len(s), -1)
    low, high = maps.min(1, keepdims=True), maps.max(1, keepdims=True)
    norm = (maps - low) / np.maximum(high - low, np.finfo(np.float32).tiny)
    return np.where(norm > threshold, norm, 0).reshape(len(s), height, width).astype(np.float32)


def labels(s, class_ids, height, width, threshold=THRESHOLD):
    """Label map (height, width) uint8 of the no-transfer rule (see scores)."""
    return crf.combine_labels(scores(s, height, width, threshold), class_ids)
