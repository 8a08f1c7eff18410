"""Dense-CRF post-processing and the final per-pixel labelling (paper Sec. 5 and Sec. 6.1,
"Inference").

Parameters are those of the authors' MATLAB inference (TransferNet_inference.m): the CRF
runs on each label's {bkg, fg} probabilities separately, after halving the background
probability ("give more importance to foreground probs") and renormalising; the label's
score is that re-weighted fg probability where the CRF says fg and 0 elsewhere. The final
label of a pixel is the label with the largest score, background where no score is positive
(the paper: "pixel-wise maximums of foreground probabilities across labels").
"""

import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_softmax

from transfernet.classes import BACKGROUND, IGNORE

BKG_WEIGHT = 0.5  # background probability multiplier before the CRF
GAUSSIAN_SXY = 3  # smoothness kernel: position std (pixels)
GAUSSIAN_COMPAT = 3  # smoothness kernel weight (Potts)
BILATERAL_SXY = 20  # appearance kernel: position std (pixels)
BILATERAL_SRGB = 3  # appearance kernel: colour std (same on every channel)
BILATERAL_COMPAT = 5  # appearance kernel weight (Potts)
CRF_ITERATIONS = 10  # mean-field iterations
PROB_CLIP = 1e-5  # probabilities clipped before -log (unary energy)


def reweight_fg(fg_prob, bkg_weight=BKG_WEIGHT):
    """fg / (fg + bkg_weight * (1 - fg)): the fg probability after down-weighting bkg."""
    fg = np.asarray(fg_prob, np.float64)
    return (fg / (fg + bkg_weight * (1.0 - fg))).astype(np.float32)


def dense_crf(image, fg_prob, bkg_weight=BKG_WEIGHT):
    """Refine one label's fg probability map with a fully connected CRF on {bkg, fg}.

    image: (H, W, 3) uint8 colour image (channel order does not matter: the colour std is
    the same on every channel). fg_prob: (H, W) fg probability in [0, 1]. bkg_weight: the
    background's multiplier before the CRF (1: fg_prob is re-weighted already, as in the
    authors' protocol, which re-weights before resizing).
    Returns (H, W) float32: the re-weighted fg probability where the CRF labels the pixel
    fg, 0 elsewhere. The unary energy is -log of the probabilities clipped to PROB_CLIP.
    """
    image = np.asarray(image)
    fg_prob = np.asarray(fg_prob)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            "dense_crf: image must be (H, W, 3) uint8, got %s %s" % (image.dtype, image.shape)
        )
    if fg_prob.shape != image.shape[:2]:
        raise ValueError(
            "dense_crf: fg_prob shape %s differs from the image's %s"
            % (fg_prob.shape, image.shape[:2])
        )
    if not np.all((fg_prob >= 0) & (fg_prob <= 1)):  # also rejects NaN
        raise ValueError("dense_crf: fg_prob must be probabilities in [0, 1]")
    height, width = fg_prob.shape
    fg = reweight_fg(fg_prob, bkg_weight)
    probs = np.stack([1.0 - fg, fg]).astype(np.float32)
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs, clip=PROB_CLIP)))
    crf.addPairwiseGaussian(sxy=GAUSSIAN_SXY, compat=GAUSSIAN_COMPAT)
    crf.addPairwiseBilateral(
        sxy=BILATERAL_SXY,
        srgb=BILATERAL_SRGB,
        rgbim=np.ascontiguousarray(image),
        compat=BILATERAL_COMPAT,
    )
    q = np.array(crf.inference(CRF_ITERATIONS)).reshape(2, height, width)
    return np.where(q[1] > q[0], fg, 0).astype(np.float32)


def combine_labels(fg_probs, class_ids):
    """Final label map: per pixel the class id of the largest fg score, BACKGROUND where no
    score is positive. fg_probs (K, H, W); class_ids K ids in [1, 255). Returns (H, W) uint8.
    Ties go to the first label (as MATLAB's max).
    """
    fg_probs = np.asarray(fg_probs)
    class_ids = np.asarray(class_ids, np.int64).reshape(-1)
    if fg_probs.ndim != 3 or len(class_ids) != fg_probs.shape[0]:
        raise ValueError(
            "combine_labels: expected fg_probs (K, H, W) and K class ids, got "
            "%s and %d ids" % (fg_probs.shape, len(class_ids))
        )
    if ((class_ids <= BACKGROUND) | (class_ids >= IGNORE)).any():
        raise ValueError(
            "combine_labels: class ids must be in [1, %d), got %s" % (IGNORE, class_ids.tolist())
        )
    labels = np.zeros(fg_probs.shape[1:], np.uint8)
    if len(class_ids):
        best = fg_probs.argmax(0)
        score = np.take_along_axis(fg_probs, best[None], 0)[0]
        labels = np.where(score > 0, class_ids[best], BACKGROUND).astype(np.uint8)
    return labels
