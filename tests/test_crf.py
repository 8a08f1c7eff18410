"""Dense CRF on {bkg, fg} and the final labelling, on constructed images and probabilities."""

import numpy as np
import pytest

from transfernet import crf


def scene():
    """64x64: dark left half (bkg), bright right half (object). Confident probabilities
    except two 6x6 low-confidence patches: one inside the object (fg prob 0.3, below 1/2
    even after the bkg halving), one inside the background (fg prob 0.45, above 1/2 after
    it)."""
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = (200, 180, 160)
    fg = np.full((64, 64), 0.02, np.float32)
    fg[:, 32:] = 0.9
    fg[29:35, 45:51] = 0.3
    fg[29:35, 13:19] = 0.45
    return image, fg


def test_reweight_halves_background():
    # fg / (fg + (1 - fg) / 2)
    assert crf.reweight_fg(np.array([0.3, 0.45, 0.9, 0.0, 1.0])) == pytest.approx(
        [0.3 / 0.65, 0.45 / 0.725, 0.9 / 0.95, 0.0, 1.0], rel=1e-6
    )


def test_crf_changes_low_confidence_and_keeps_confident_pixels():
    image, fg = scene()
    out = crf.dense_crf(image, fg)
    assert out.shape == (64, 64) and out.dtype == np.float32
    reweighted = crf.reweight_fg(fg)
    # Without the CRF, the patch in the object would be bkg (0.46 < 0.5) and the patch in
    # the background fg (0.62 > 0.5); the CRF follows the surrounding colour region.
    assert reweighted[29:35, 45:51].max() < 0.5 < reweighted[29:35, 13:19].min()
    assert np.allclose(out[29:35, 45:51], 0.3 / 0.65)  # flipped to fg, value kept
    assert (out[29:35, 13:19] == 0).all()  # flipped to bkg
    # Confident pixels keep their label; fg keeps its re-weighted probability.
    assert np.allclose(out[:, 36:42], 0.9 / 0.95) and np.allclose(out[:, 56:], 0.9 / 0.95)
    assert (out[:, :8] == 0).all() and (out[:, 24:32] == 0).all()


def test_crf_follows_image_edges():
    # The probabilities put the boundary 4 pixels left of the colour edge at column 32,
    # with low confidence near it; the bilateral kernel moves it to the edge.
    image, _ = scene()
    fg = np.full((64, 64), 0.02, np.float32)
    fg[:, 28:] = 0.9
    fg[:, 26:34] = 0.4
    out = crf.dense_crf(image, fg)
    assert (out[:, 28:32] == 0).all() and (out[:, 32:34] > 0).all()


def test_crf_rejects_bad_inputs():
    image, fg = scene()
    with pytest.raises(ValueError, match="uint8"):
        crf.dense_crf(image.astype(np.float32), fg)
    with pytest.raises(ValueError, match="differs"):
        crf.dense_crf(image, fg[:, :10])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        crf.dense_crf(image, fg * 2)
    bad = fg.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        crf.dense_crf(image, bad)


def test_combine_labels_argmax_and_background():
    probs = np.array(
        [
            [[0.0, 0.7, 0.2, 0.5]],  # label 15
            [[0.0, 0.1, 0.6, 0.5]],
        ],  # label 3
        np.float32,
    )
    labels = crf.combine_labels(probs, [15, 3])
    # no positive score -> 0; larger score wins; tie -> first label
    assert labels.dtype == np.uint8 and labels.tolist() == [[0, 15, 3, 15]]
    one = crf.combine_labels(np.array([[[0.0, 0.01]]]), [20])
    assert one.tolist() == [[0, 20]]
    assert crf.combine_labels(np.zeros((0, 2, 3)), []).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_combine_labels_rejects_bad_ids():
    with pytest.raises(ValueError, match="K class ids"):
        crf.combine_labels(np.zeros((2, 3, 3)), [1])
    with pytest.raises(ValueError, match=r"\[1, 255\)"):
        crf.combine_labels(np.zeros((1, 3, 3)), [0])
    with pytest.raises(ValueError, match=r"\[1, 255\)"):
        crf.combine_labels(np.zeros((1, 3, 3)), [255])
