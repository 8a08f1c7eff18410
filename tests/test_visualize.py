"""Attention figures (Figures 2, 3, 6): Gram rows of the real seg_deploy features, the pixel
-> feature-cell geometry, and tools/visualize.py on the tiny net with seeded random weights
(the weights fixture of conftest.py)."""

import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from tiny_weights import CLS_MODEL, REPO, SEG_MODEL, make_image

from transfernet import attention, attention_figures, config, inference

TOOL = os.path.join(REPO, "tools", "visualize.py")
SIDE = config.TINY.architecture.crop // 16  # the tiny seg_deploy's conv5_3
PANEL = 240  # figure pixels per row and column: 3 inches at 80 dpi (figures.draw_figure)


@pytest.fixture(scope="module")
def seg_net(weights):  # noqa: F811
    return inference.load_net(SEG_MODEL, weights["seg"])


def test_gram_rows_match_numpy_and_eq_10(seg_net):
    image = make_image(50, 80, seed=11)
    seg, rows = attention_figures.attention_rows(seg_net, image, [3, 8], [(10, 70)])
    A = seg_net.blobs["conv5_3_scaled"].data.astype(np.float64)
    _, depth, height, width = A.shape
    assert (height, width) == (SIDE, SIDE) and A.std() > 0
    # Independent Gram matrix: paper A is M x D, the blob holds A^T (D x M); G = A A^T.
    features = A[0].reshape(depth, height * width).T  # M x D
    gram = features.dot(features.T)
    cells = [(1, 4), (5, 0), (2, 2)]
    got = attention.gram_rows(seg_net.blobs["conv5_3_scaled"].data, cells)
    assert got.shape == (3, SIDE, SIDE)
    for k, (r, c) in enumerate(cells):
        expected = gram[r * width + c].reshape(height, width)
        assert np.allclose(got[k], expected, rtol=1e-4, atol=1e-7 * np.abs(gram).max())
        assert not np.allclose(expected, expected.T, rtol=1e-2)  # row-major order matters
    # Eq. 10: the net's densified attention is G alpha_l for each label.
    for alpha_l, s_l in zip(seg.alpha, seg.s):
        assert np.allclose(
            gram.dot(alpha_l.ravel()).reshape(SIDE, SIDE),
            s_l,
            rtol=1e-3,
            atol=1e-4 * np.abs(s_l).max(),
        )
    # Figure rows: a row per label (4 panels), then per pixel the Gram row of its cell.
    assert [len(r) for r in rows] == [4, 4, 3]
    pixel_row = rows[2]
    assert pixel_row[0].marker == (10, 70) and pixel_row[1].marker == (10, 70)
    # (10, 70) of the 80 x 80 padded square on the 8 x 8 grid: cell (1, 7), row-major 15
    assert pixel_row[2].marker == (1, 7)
    assert np.allclose(
        pixel_row[2].heat, gram[15].reshape(SIDE, SIDE), rtol=1e-4, atol=1e-7 * np.abs(gram).max()
    )
    assert pixel_row[1].heat.shape == (50, 80)


def test_figure_of_a_net_without_attention(tmp_path):
    """Baseline deploy nets have no alpha / s (inference.forward_labels gives None): their
    panels are left blank, the rest of the figure is drawn."""
    image = make_image(50, 80, seed=13)
    labels = np.zeros((50, 80), np.uint8)
    labels[10:30, 20:60] = 8
    seg = inference.Segmentation(np.array([3, 8]), None, None, labels, None, None)
    rows = attention_figures.label_panels(image, seg, {8: "cat"})
    assert [[p.title for p in row] for row in rows] == [
        ["3", "no alpha", "no s (densified)", "3 pixels"],  # a label the table does not name
        ["cat", "no alpha", "no s (densified)", "cat pixels"],
    ]
    assert rows[1][1].heat is None and rows[1][1].background is None
    assert np.array_equal(rows[0][3].background, image[:, :, ::-1])  # no pixels of 3
    assert not np.array_equal(rows[1][3].background, image[:, :, ::-1])
    path = str(tmp_path / "fig.png")
    attention_figures.write_figure(path, image, seg)
    assert cv2.imread(path).shape == (2 * PANEL, 4 * PANEL, 3)


def test_pixel_cell_follows_the_padded_geometry():
    # 50 x 80: the 80-square (padding below row 50) maps onto 6 x 6 cells of 80/6 pixels.
    assert inference.pixel_cell((0, 0), 50, 80, 6) == (0, 0)
    assert inference.pixel_cell((49, 79), 50, 80, 6) == (3, 5)  # warping would give (5, 5)
    assert inference.pixel_cell((12, 12), 50, 80, 6) == (0, 0)  # centre 12.5 < 13.33
    assert inference.pixel_cell((13, 13), 50, 80, 6) == (1, 1)  # centre 13.5 > 13.33
    assert inference.pixel_cell((79, 49), 80, 50, 6) == (5, 3)  # tall: padding on the right
    # Against the preprocessing itself: a bright dot lands in the input window (16 x 16
    # pixels of the 96 input per conv5_3 cell) of the cell pixel_cell names.
    for y, x in [(5, 40), (30, 75), (45, 20), (22, 58)]:
        image = np.zeros((50, 80, 3), np.uint8)
        image[y, x] = 255
        blob = inference.preprocess(image, 96)[0, 0]
        peak = np.unravel_index(np.argmax(blob), blob.shape)
        assert inference.pixel_cell((y, x), 50, 80, 6) == (peak[0] // 16, peak[1] // 16)
    for bad in [(50, 0), (0, 80), (-1, 3)]:
        with pytest.raises(ValueError, match="outside the 50 x 80"):
            inference.pixel_cell(bad, 50, 80, 6)


# ---- tools/visualize.py ------------------------------------------------------------------


def run_tool(weights, *args):  # noqa: F811
    cmd = [
        sys.executable,
        TOOL,
        "--config",
        "tiny",
        "--weights",
        weights["seg"],
        "--classifier-weights",
        weights["cls"],
    ] + list(args)
    return subprocess.run(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
    )


@pytest.fixture
def image_path(tmp_path):
    path = str(tmp_path / "wide.jpg")
    cv2.imwrite(path, make_image(50, 80, seed=12))
    return path


def test_cli_writes_a_row_per_label_and_pixel(weights, image_path, tmp_path):  # noqa: F811
    one = str(tmp_path / "one.png")
    res = run_tool(weights, "--image", image_path, "--labels", "3", "--out", one)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["labels: 3 bird", one]
    assert cv2.imread(one).shape == (PANEL, 4 * PANEL, 3)  # 1 row x 4 columns
    four = str(tmp_path / "sub" / "four.png")
    res = run_tool(
        weights, "--image", image_path, "--labels", "8,3", "--pixel", "10,70", "45,5", "--out", four
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "labels: 3 bird, 8 cat",
        "pixel (10, 70) -> feature cell (1, 7) of 8x8",
        "pixel (45, 5) -> feature cell (4, 0) of 8x8",
        four,
    ]
    assert cv2.imread(four).shape == (4 * PANEL, 4 * PANEL, 3)  # 2 labels + 2 pixels
    assert [n for n in os.listdir(str(tmp_path / "sub")) if n != "four.png"] == []  # atomic


def test_cli_classifier_labels(weights, image_path, tmp_path):  # noqa: F811
    out = str(tmp_path / "pred.png")
    res = run_tool(
        weights, "--image", image_path, "--classes", "3,8,12", "--pixel", "0,0", "--out", out
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    ids = [int(item.split()[0]) for item in lines[0][len("labels: ") :].split(", ")]
    assert ids and set(ids) <= {3, 8, 12}
    assert lines[-1] == out
    assert cv2.imread(out).shape == ((len(ids) + 1) * PANEL, 4 * PANEL, 3)


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("visualize_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "args, message",
    [
        (["--labels", "3,81"], "--labels: class ids [81] outside the network's [1, 80]"),
        (["--labels", "cat,kat"], "'kat' not a class id or a name of the classes (aeroplane"),
        (["--labels", "3", "--pixel", "10,70", "50,10"], "pixel (50, 10) is outside the 50 x 80"),
        (["--labels", "3", "--image", "MISSING"], "unreadable_image"),
        (["--labels", "3", "--image", "BROKEN"], "not a decodable image"),
        (["--labels", "3", "--model", CLS_MODEL, "--weights", "CLS"], "has no blob conv5_3_scaled"),
    ],
)
def test_cli_bad_input_fails_clearly(
    tool,
    weights,
    image_path,
    tmp_path,
    capsys,  # noqa: F811
    args,
    message,
):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    args = [
        {
            "MISSING": str(tmp_path / "missing.jpg"),
            "BROKEN": str(broken),
            "CLS": weights["cls"],
        }.get(a, a)
        for a in args
    ]
    out = str(tmp_path / "fig.png")
    argv = [
        "--config",
        "tiny",
        "--weights",
        weights["seg"],
        "--image",
        image_path,
        "--out",
        out,
    ] + args
    assert tool.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("visualize.py: error: ") and message in err
    assert not os.path.exists(out)


def test_cli_checks_out_before_the_figure(
    tool,
    weights,
    image_path,
    tmp_path,  # noqa: F811
    capsys,
):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    (tmp_path / "taken.png").mkdir()
    for out, message in [
        (
            tmp_path / "taken.png",
            "--out file %s is a folder; name a file" % (tmp_path / "taken.png"),
        ),
        (
            a_file / "fig.png",
            "folder of the --out file %s exists and is a file, not a folder" % a_file,
        ),
    ]:
        argv = [
            "--config",
            "tiny",
            "--weights",
            weights["seg"],
            "--image",
            image_path,
            "--labels",
            "3",
            "--out",
            str(out),
        ]
        assert tool.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.err == "visualize.py: error: %s\n" % message and captured.out == ""


def test_cli_usage_errors(tool, image_path):
    for argv in (
        ["--image", image_path, "--out", "x.jpg"],
        ["--image", image_path, "--out", "x.png", "--pixel", "10"],
    ):
        with pytest.raises(SystemExit) as exit_:
            tool.parse_args(argv)
        assert exit_.value.code == 2
