"""The authors' inference protocol (inference.py protocol="authors", imresize.py), step by step
against values computed by hand from their MATLAB (TransferNet_inference.m, preprocess_image.m)
and MATLAB's imresize."""

import numpy as np
import pytest

from transfernet import crf, imresize, inference
from transfernet.fileio import MEAN_BGR


def test_bilinear_antialiased_shrink_by_hand():
    """4 -> 2 samples: scale 1/2 stretches the triangle to width 4, u = 1.5 and 3.5 (1-based),
    taps 1/8, 3/8, 3/8, 1/8 at 0, 1, 2, 3 (0-based, index -1 mirrored onto 0): out[0] = x0 / 8 +
    3 x0 / 8 + 3 x1 / 8 + x2 / 8."""
    x = np.array([[0.0, 1, 2, 3]])
    np.testing.assert_allclose(imresize.imresize(x, (1, 2), "bilinear"), [[0.625, 2.375]])
    # without antialiasing, plain interpolation at u: the means of the pairs
    np.testing.assert_allclose(
        imresize.imresize(x, (1, 2), "bilinear", antialias=False), [[0.5, 2.5]]
    )


def test_bicubic_enlargement_by_hand():
    """2 -> 4 samples: u = 0.75, 1.25, 1.75, 2.25; Keys' cubic (a = -0.5) at 0.25, 0.75, 1.25,
    1.75 is 0.8671875, 0.2265625, -0.0703125, -0.0234375; mirrored indices fold the taps onto
    x0 and x1: out[0] = 1.09375 x0 - 0.09375 x1, out[1] = 0.796875 x0 + 0.203125 x1."""
    np.testing.assert_allclose(
        imresize.cubic(np.array([0.25, 0.75, 1.25, 1.75, 2.5])),
        [0.8671875, 0.2265625, -0.0703125, -0.0234375, 0],
    )
    np.testing.assert_allclose(
        imresize.imresize(np.array([[0.0, 1]]), (1, 4), "bicubic"),
        [[-0.09375, 0.203125, 0.796875, 1.09375]],
    )


def test_imresize_is_separable_and_keeps_constants():
    rng = np.random.RandomState(0)
    column, row = rng.rand(7), rng.rand(9)
    out = imresize.imresize(np.outer(column, row), (4, 13), "bicubic")
    expected = np.outer(
        imresize.imresize(column[:, None], (4, 1), "bicubic")[:, 0],
        imresize.imresize(row[None], (1, 13), "bicubic")[0],
    )
    np.testing.assert_allclose(out, expected)
    np.testing.assert_allclose(imresize.imresize(np.full((5, 8, 3), 7.0), (3, 11)), 7.0)


def test_their_padding_is_black_then_the_antialiased_resize_then_their_mean():
    """A 2x4 image of colour (10, 20, 30) is padded with two black rows to 4x4 and resized to
    2x2: rows 0.5 r0 + 0.375 r1 + 0.125 r2 and 0.125 r1 + 0.375 r2 + 0.5 r3, i.e. 7/8 and 1/8
    of the colour (constant along the columns)."""
    colour = np.array([10.0, 20, 30])
    image = np.tile(colour.astype(np.uint8), (2, 4, 1))
    blob = inference.preprocess(image, 2, protocol="authors")
    expected = np.stack([colour * 7 / 8, colour / 8])[:, None, :] - inference.AUTHORS_MEAN_BGR
    np.testing.assert_allclose(blob[0].transpose(1, 2, 0), np.repeat(expected, 2, 1), rtol=1e-6)
    # ours pads with the mean colour instead: the padded half is 0 after the mean
    ours = inference.preprocess(image, 4, protocol="ours")
    np.testing.assert_allclose(ours[0, :, 2:], 0, atol=1e-4)
    np.testing.assert_allclose(ours[0, :, 0, 0], colour - MEAN_BGR, rtol=1e-5)


def test_their_classifier_sees_the_padded_input():
    image = np.random.RandomState(1).randint(0, 256, (30, 50, 3)).astype(np.uint8)
    np.testing.assert_array_equal(
        inference.preprocess_classifier(image, 16, "authors"),
        inference.preprocess(image, 16, "authors"),
    )
    # ours warps the whole image instead
    assert not np.allclose(
        inference.preprocess_classifier(image, 16), inference.preprocess(image, 16)
    )


def test_the_threshold_and_the_argmax_fallback():
    assert inference.select_labels([0.2, 0.6, 0.59, 0.9], [1, 2, 3, 4]) == [2, 4]
    assert inference.select_labels([0.2, 0.5, 0.59, 0.1], [1, 2, 3, 4]) == [3]
    assert inference.CLASSIFIER_THRESHOLD == 0.6


@pytest.mark.parametrize("fg, expected", [(0.5, 2 / 3), (0.2, 1 / 3), (0.0, 0.0), (1.0, 1.0)])
def test_the_background_is_halved_before_resizing(fg, expected):
    """p_fg / (p_fg + (1 - p_fg) / 2) at the net's size; a constant map stays constant."""
    out = inference.authors_fg(np.full((1, 4, 4), fg, np.float32), 6, 6)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_the_maps_are_resized_bicubic_then_cropped_and_clipped():
    """Columns 0 | 1 (unchanged by the re-weighting) at 2x2, to a 3x4 image (padded side 4):
    each row is the bicubic enlargement of [0, 1], clipped to [0, 1]."""
    fg = np.array([[[0.0, 1.0], [0.0, 1.0]]], np.float32)
    out = inference.authors_fg(fg, 3, 4)
    np.testing.assert_allclose(out, np.tile([0, 0.203125, 0.796875, 1], (1, 3, 1)), rtol=1e-6)


def test_their_crf_runs_on_the_already_halved_map():
    """On a flat image the CRF keeps the unary's decision. A re-weighted map of 0.45 is bkg
    (the authors' CRF on -log p, bkg_weight 1); ours halves it again (0.45 -> 0.62, fg)."""
    image = np.full((8, 8, 3), 128, np.uint8)
    fg = np.full((8, 8), 0.45, np.float32)
    np.testing.assert_array_equal(crf.dense_crf(image, fg, bkg_weight=1), 0)
    np.testing.assert_allclose(crf.dense_crf(image, fg), 0.45 / (0.45 + 0.275), rtol=1e-6)
    np.testing.assert_allclose(crf.dense_crf(image, np.full((8, 8), 0.55), bkg_weight=1), 0.55)


def test_the_score_is_p_fg_where_the_crf_says_fg_and_the_label_its_arg_max():
    """Constant maps 0.8, 0.6, 0.3 for labels 5, 7, 9: re-weighted 0.889, 0.75, 0.4615; the CRF
    keeps the first two fg and the third bkg; every pixel is label 5; a label alone whose map is
    bkg gives background."""
    image = np.full((6, 9, 3), 90, np.uint8)
    maps = np.stack([np.full((4, 4), v, np.float32) for v in (0.8, 0.6, 0.3)])
    seg = inference.finish(image, np.array([5, 7, 9]), maps, None, None, True, "authors")
    np.testing.assert_allclose(seg.scores[:, 0, 0], [0.8 / 0.9, 0.6 / 0.8, 0], rtol=1e-6)
    np.testing.assert_array_equal(seg.labels, 5)
    alone = inference.finish(image, np.array([9]), maps[2:], None, None, True, "authors")
    np.testing.assert_array_equal(alone.labels, 0)


def test_the_authors_protocol_always_has_the_crf():
    with pytest.raises(ValueError, match="includes the CRF"):
        inference.finish(
            np.zeros((4, 4, 3), np.uint8),
            np.array([1]),
            np.zeros((1, 4, 4)),
            None,
            None,
            False,
            "authors",
        )
    with pytest.raises(ValueError, match="protocol 'matlab'"):
        inference.preprocess(np.zeros((4, 4, 3), np.uint8), 4, "matlab")
