"""Attention measures (transfernet.attention_metrics) on hand-made alpha maps with known
answers, and on a real seg_deploy net whose attention is made uniform or put on one cell."""

import os

import numpy as np
import pytest
from tiny_weights import SEG_MODEL

from transfernet import attention_metrics as am
from transfernet import evaluation, fileio, inference
from transfernet.classes import IGNORE


def test_cell_weights_split_pixels_between_cells():
    w = am.cell_weights(6, 4)  # cells 1.5 pixels wide: pixel 1 is half in cell 0, half in 1
    assert w.shape == (4, 6)
    np.testing.assert_allclose(w.sum(axis=1), 1.5)
    np.testing.assert_allclose(w.sum(axis=0), 1.0)
    np.testing.assert_allclose(w[:, 1], [0.5, 0.5, 0, 0])


def test_cell_fractions_count_padding_as_not_the_class_and_leave_out_void():
    # 4 x 8 image: the padded square is 8 x 8, so on a 2 x 2 grid the bottom cells are all
    # padding; the top-left cell (rows 0-3, cols 0-3) holds 8 class-1 pixels, 4 void pixels
    # and 4 background pixels: 8 / 12 of its labelled pixels are class 1.
    labels = np.zeros((4, 8), np.uint8)
    labels[:, :2] = 1
    labels[:, 2] = IGNORE
    labels[:, 4:8] = 2
    f = am.cell_fractions(labels, [1, 2], 2)
    np.testing.assert_allclose(f[1], [[8 / 12, 0], [0, 0]])
    np.testing.assert_allclose(f[2], [[0, 1], [0, 0]])
    np.testing.assert_allclose(f["objects"], [[8 / 12, 1], [0, 0]])


def two_objects():
    """8 x 8 map on a 4 x 4 grid: class 1 fills cell (0, 0), class 2 cells (3, 2) and (3, 3)."""
    labels = np.zeros((8, 8), np.uint8)
    labels[:2, :2] = 1
    labels[6:, 4:] = 2
    return labels


def test_pair_measures_of_an_attention_on_the_queried_object():
    fractions = am.cell_fractions(two_objects(), [1, 2], 4)
    alpha = np.zeros((4, 4))
    alpha[0, 0] = 1
    m = am.pair_measures(alpha, fractions, 1, multi_class=True)
    assert m["pointing"] and m["pointing_ceiling"] and m["inside"] == 1 and m["own"] == 1
    assert m["inside_uniform"] == pytest.approx(1 / 16)
    assert m["own_uniform"] == pytest.approx(1 / 3)  # one object cell of three
    # the same attention queried for class 2: on the other object
    m = am.pair_measures(alpha, fractions, 2, multi_class=True)
    assert not m["pointing"] and m["pointing_ceiling"] and m["inside"] == 0 and m["own"] == 0
    assert m["own_uniform"] == pytest.approx(2 / 3)


def test_pair_measures_of_split_uniform_and_background_attention():
    fractions = am.cell_fractions(two_objects(), [1, 2], 4)
    split = np.zeros((4, 4))
    split[0, 0] = split[3, 3] = 0.5  # half on each object
    m = am.pair_measures(split, fractions, 2, multi_class=True)
    assert m["inside"] == pytest.approx(0.5) and m["own"] == pytest.approx(0.5)
    uniform = np.full((4, 4), 1 / 16)
    m = am.pair_measures(uniform, fractions, 2, multi_class=True)
    assert m["inside"] == pytest.approx(m["inside_uniform"])
    assert m["own"] == pytest.approx(m["own_uniform"])
    background = np.zeros((4, 4))
    background[1, 3] = 1
    m = am.pair_measures(background, fractions, 1, multi_class=True)
    assert m["own"] == 0 and not m["pointing"]
    single = am.pair_measures(background, fractions, 1, multi_class=False)
    assert single["own"] is None and single["own_uniform"] is None


def test_pointing_ceiling_is_false_for_a_class_that_covers_no_cell_half():
    """A one-pixel-wide line through four cells covers each 1/4 (2 of 8 pixels in a row of a
    4x4-pixel cell): no argmax can point at it."""
    labels = np.zeros((8, 8), np.uint8)
    labels[:, 1] = 1
    fractions = am.cell_fractions(labels, [1], 2)
    np.testing.assert_allclose(fractions[1], [[0.25, 0], [0.25, 0]])
    m = am.pair_measures(np.eye(2), fractions, 1, multi_class=False)
    assert not m["pointing"] and not m["pointing_ceiling"]


def test_summarise_takes_own_over_multi_class_pairs_only():
    row = dict(pointing_ceiling=True)
    pairs = [
        dict(row, pointing=True, inside=1.0, inside_uniform=0.1, own=None, own_uniform=None),
        dict(row, pointing=False, inside=0.2, inside_uniform=0.3, own=0.5, own_uniform=0.4),
        dict(
            pointing=True,
            pointing_ceiling=False,
            inside=0.6,
            inside_uniform=0.2,
            own=1.0,
            own_uniform=0.6,
        ),
    ]
    s = am.summarise(pairs)
    assert s["pairs"] == 3 and s["multi_class_pairs"] == 2
    assert s["pointing_ceiling"] == pytest.approx(2 / 3)
    assert s["pointing"] == pytest.approx(2 / 3) and s["inside"] == pytest.approx(0.6)
    assert s["own"] == pytest.approx(0.75) and s["own_uniform"] == pytest.approx(0.5)
    assert am.summarise([])["pointing"] is None


@pytest.fixture(scope="module")
def val_set(tmp_path_factory):
    from data_prep import builtin

    root = tmp_path_factory.mktemp("attention_val")
    builtin.generate(str(root), seed=5, source_images=0, target_train=0, target_val=6, workers=1)
    voc = os.path.join(str(root), "VOCdevkit", "VOC2012")
    ids = fileio.read_list(os.path.join(voc, "ImageSets", "Segmentation", "val.txt"))
    gt_dir = os.path.join(voc, "SegmentationClass")
    labels = {i: inference.gt_labels(os.path.join(gt_dir, i + ".png")) for i in ids}
    val = evaluation.EvalSet(ids, os.path.join(voc, "JPEGImages"), gt_dir, {}, {})
    return val, labels


def test_uniform_attention_of_a_real_net_scores_the_uniform_values(weights, val_set):
    """att_score zeroed: alpha is uniform for every image and label, so each measure equals
    its uniform value."""
    val, labels = val_set
    net = inference.load_net(SEG_MODEL, weights["seg"])
    for blob in net.params["att_score"]:
        blob.data[...] = 0
    s = evaluation.attention(net, val, labels)
    assert s["pairs"] == sum(len(v) for v in labels.values()) and s["multi_class_pairs"] > 0
    assert s["inside"] == pytest.approx(s["inside_uniform"], rel=1e-5)
    assert s["own"] == pytest.approx(s["own_uniform"], rel=1e-5)


def test_attention_on_one_cell_of_a_real_net_points_where_that_cell_is_covered(weights, val_set):
    """att_score's weights zeroed and one bias large: alpha is the one-hot of that cell, so
    pointing is the share of pairs whose class covers it at least half."""
    val, labels = val_set
    net = inference.load_net(SEG_MODEL, weights["seg"])
    side = net.blobs["alpha"].shape[-1]
    cell = (side // 2, side // 2)
    net.params["att_score"][0].data[...] = 0
    net.params["att_score"][1].data[...] = 0
    net.params["att_score"][1].data[cell[0] * side + cell[1]] = 50
    s = evaluation.attention(net, val, labels)
    hits = []
    for i in val.ids:
        gt = fileio.read_label_png(os.path.join(val.gt_dir, i + ".png"))
        f = am.cell_fractions(gt, labels[i], side)
        hits += [f[c][cell] >= am.POINTING_COVER for c in labels[i]]
    assert s["pointing"] == pytest.approx(np.mean(hits))
    assert 0 < s["pairs"] == len(hits)
