"""Inference (Sec. 5) on the tiny networks with seeded random weights: geometry, label
selection, batched deploy, label maps, and the tools/infer.py command line."""

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from ctrl_c import interrupt_when
from tiny_weights import CLS_MODEL, REPO, SEG_MODEL, make_image

from transfernet import atomic, config, crf, fileio, inference, score

CROP = config.TINY.architecture.crop  # the tiny deploy nets' input side
SIDE = CROP // 16  # their conv5_3


@pytest.fixture(scope="module")
def seg_net(weights):
    return inference.load_net(SEG_MODEL, weights["seg"])


@pytest.fixture(scope="module")
def classifier(weights):
    return inference.load_net(CLS_MODEL, weights["cls"])


def test_preprocess_pads_bottom_right_and_unpad_inverts():
    # A wide 50 x 80 image: the square is 80 x 80, rows 50..79 are padding (the mean).
    yy, xx = np.mgrid[0:50, 0:80].astype(np.float32)
    image = np.stack([xx * 3, yy * 4, xx + yy], -1).astype(np.uint8)
    blob = inference.preprocess(image, 96)
    assert blob.shape == (1, 3, 96, 96) and blob.dtype == np.float32
    assert np.all(blob[0, :, 61:] == 0)  # 50 / 80 * 96 = 60: padded rows are exactly zero
    assert np.all(blob[0, :, :59].std(axis=(1, 2)) > 10)
    expected = image[0, 0].astype(np.float32) - np.float32(inference.MEAN_BGR)
    assert np.allclose(blob[0, :, 0, 0], expected, atol=1e-3)  # top-left stays top-left
    back = inference.unpad(blob[0], 50, 80)
    assert back.shape == (3, 50, 80)
    diff = back.transpose(1, 2, 0) - (image - np.float32(inference.MEAN_BGR))
    assert np.abs(diff[:48]).max() < 3  # bilinear round trip of a smooth ramp
    # A tall 80 x 50 image pads the columns instead.
    tall = inference.preprocess(np.ascontiguousarray(image.transpose(1, 0, 2)), 96)
    assert np.all(tall[0, :, :, 61:] == 0) and np.all(tall[0, :, :59, :59] != 0)


def test_unpad_maps_square_regions_back():
    # A block at rows 24..47, cols 48..71 of the 96-square is rows 20..39, cols 40..59 of the
    # 80-square (scale 80/96), all inside a 50 x 80 image.
    square = np.zeros((1, 96, 96), np.float32)
    square[0, 24:48, 48:72] = 1
    out = inference.unpad(square, 50, 80)
    assert out.shape == (1, 50, 80)
    assert np.all(out[0, 21:39, 41:59] == 1)
    assert np.all(out[0, :19] == 0) and np.all(out[0, 41:] == 0)
    assert np.all(out[0, :, :39] == 0) and np.all(out[0, :, 61:] == 0)


def test_select_labels_threshold_and_argmax_fallback():
    probs = np.zeros(80)
    probs[[2, 7, 30]] = [0.6, 0.9, 0.95]  # ids 3, 8, 31
    assert inference.select_labels(probs, inference.VOC_IDS) == [3, 8]  # >= 0.6 included
    assert inference.select_labels(probs, inference.VOC_IDS, threshold=0.7) == [8]
    assert inference.select_labels(probs, range(1, 81)) == [3, 8, 31]
    probs[:] = 0.1
    probs[[4, 40]] = [0.3, 0.5]  # nothing reaches 0.6: the arg-max candidate
    assert inference.select_labels(probs, inference.VOC_IDS) == [5]
    assert inference.select_labels(probs, [21, 41, 50]) == [41]
    with pytest.raises(ValueError, match="candidate"):
        inference.select_labels(probs, [0, 3])


def test_predict_labels_with_the_classifier(classifier):
    image = make_image(70, 110, seed=3)
    probs = inference.classify(classifier, image)
    assert probs.shape == (80,) and np.all((probs > 0) & (probs < 1))
    assert len(np.unique(np.round(probs, 4))) > 10  # random weights: varied sigmoids
    for candidates in (inference.VOC_IDS, [21, 22, 23], range(1, 81)):
        labels = inference.predict_labels(classifier, image, candidates)
        assert labels == inference.select_labels(probs, candidates, 0.6)
        assert set(labels) <= set(candidates)
    threshold = float(np.sort(probs[:20])[-3])  # exactly the three best VOC classes
    assert inference.predict_labels(classifier, image, threshold=threshold) == sorted(
        (np.argsort(probs[:20])[-3:] + 1).tolist()
    )


def test_batched_deploy_equals_one_forward_per_label(seg_net):
    blob = inference.preprocess(make_image(96, 96, seed=4), CROP)
    ids = [3, 8, 15, 40]
    fg, alpha, s = inference.forward_labels(seg_net, blob, ids)
    assert fg.shape == (4, CROP, CROP) and alpha.shape == s.shape == (4, SIDE, SIDE)
    assert np.allclose(alpha.sum(axis=(1, 2)), 1, atol=1e-5)  # softmax over positions
    for k, cid in enumerate(ids):
        fg1, alpha1, s1 = inference.forward_labels(seg_net, blob, [cid])
        assert np.allclose(fg[k], fg1[0], atol=1e-5)
        assert np.allclose(alpha[k], alpha1[0], atol=1e-6)
        assert np.allclose(s[k], s1[0], rtol=1e-4, atol=1e-6)
    # The label matters (otherwise the comparison above would prove nothing).
    assert np.abs(fg[0] - fg[1]).mean() > 0.01 and np.abs(alpha[0] - alpha[1]).max() > 1e-3


def test_segment_non_square_maps_back_to_original(seg_net):
    image = make_image(50, 80, seed=5)
    seg = inference.segment(seg_net, image, [8, 3])
    assert list(seg.class_ids) == [3, 8]
    assert seg.fg.shape == seg.scores.shape == (2, 50, 80)
    assert seg.labels.shape == (50, 80) and seg.labels.dtype == np.uint8
    fg_square, _, _ = inference.forward_labels(seg_net, inference.preprocess(image, CROP), [3, 8])
    assert np.allclose(seg.fg, inference.unpad(fg_square, 50, 80), atol=1e-6)
    # Final labels: arg-max fg among labels whose fg beats background, else 0.
    best = seg.fg.argmax(0)
    top = seg.fg.max(0)
    expected = np.where(top > 0.5, np.array([3, 8])[best], 0)
    assert np.array_equal(seg.labels, expected)
    assert set(np.unique(seg.labels)) == {0, 3, 8}  # random weights still give all three


def test_segment_with_crf_keeps_valid_ids(seg_net):
    image = make_image(50, 80, seed=6)
    seg = inference.segment(seg_net, image, [3, 8], use_crf=True)
    assert set(np.unique(seg.labels)) <= {0, 3, 8}
    expected = np.stack([crf.dense_crf(image, f) for f in seg.fg])
    assert np.allclose(seg.scores, expected)
    assert np.array_equal(seg.labels, crf.combine_labels(expected, [3, 8]))


def test_segment_without_labels_is_background(seg_net):
    seg = inference.segment(seg_net, make_image(30, 40, seed=7), [])
    assert seg.labels.shape == (30, 40) and not seg.labels.any()


def test_gt_labels_skip_background_and_void(tmp_path):
    gt = np.zeros((20, 30), np.uint8)
    gt[2:5, 3:9], gt[10:12, 4:6], gt[0] = 12, 5, 255
    fileio.write_label_png(str(tmp_path / "a.png"), gt)
    assert inference.gt_labels(str(tmp_path / "a.png")) == [5, 12]


def test_class_table(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"kind": "target", "classes": {"8": "cat", "3": "bird"}}))
    assert inference.class_table(str(meta)) == {3: "bird", 8: "cat"}
    assert sorted(inference.class_table("voc")) == list(range(1, 21))
    assert inference.class_table("21,3") == {21: "truck", 3: "bird"}
    with pytest.raises(ValueError, match="class ids"):
        inference.class_table("0,3")


# ---- tools/infer.py in a subprocess -------------------------------------------------------


def run_infer(weights, *args):
    cmd = [
        sys.executable,
        os.path.join(REPO, "tools", "infer.py"),
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
def image_dir(tmp_path):
    """Three readable images of different sizes, a corrupt JPEG and a non-image file."""
    folder = tmp_path / "images"
    folder.mkdir()
    sizes = {"a": (50, 80), "b": (96, 96), "c": (120, 70)}
    for seed, (name, (h, w)) in enumerate(sorted(sizes.items())):
        cv2.imwrite(str(folder / (name + ".jpg")), make_image(h, w, seed))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg \xff\xd9")
    (folder / "notes.txt").write_text("not an image")
    return folder, sizes


def read_png(path):
    from PIL import Image

    with Image.open(path) as im:
        assert im.mode == "P"  # a VOC palette PNG
    return fileio.read_label_png(path)


def test_cli_predicted_labels_outputs_failures_and_resume(weights, image_dir, tmp_path):
    folder, sizes = image_dir
    out = tmp_path / "out"
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"kind": "target", "classes": {"3": "bird", "8": "cat"}}))
    args = ["--dir", str(folder), "--out", str(out), "--classes", str(meta), "--save-prob", "--vis"]
    res = run_infer(weights, *args)
    assert res.returncode == 1, res.stderr
    assert "broken.jpg" in res.stderr and "unreadable_image" in res.stderr
    assert "4 images: 3 segmented, 0 already done, 1 failed" in res.stdout
    assert sorted(os.listdir(out)) == ["a.png", "b.png", "c.png", "prob", "vis"]
    for name, (h, w) in sizes.items():
        labels = read_png(str(out / (name + ".png")))
        prob = inference.load_prob(str(out / "prob" / (name + ".npz")))
        assert labels.shape == (h, w)
        assert len(prob["class_ids"]) >= 1 and set(prob["class_ids"]) <= {3, 8}
        assert prob["fg"].shape == (len(prob["class_ids"]), h, w)
        assert set(np.unique(labels)) <= {0} | set(prob["class_ids"].tolist())
        assert np.array_equal(labels, crf.combine_labels(prob["scores"], prob["class_ids"]))
        vis = cv2.imread(str(out / "vis" / (name + ".png")))
        assert vis is not None and vis.shape[0] > 100
    # Resume: finished images are skipped and left untouched.
    stamps = {p: os.stat(str(out / p)).st_mtime_ns for p in ("a.png", "b.png", "c.png")}
    os.remove(str(out / "vis" / "b.png"))  # an unfinished image is redone
    res = run_infer(weights, *args)
    assert res.returncode == 1 and "broken.jpg" in res.stderr
    assert "4 images: 1 segmented, 2 already done, 1 failed" in res.stdout
    assert os.path.exists(str(out / "vis" / "b.png"))
    assert os.stat(str(out / "a.png")).st_mtime_ns == stamps["a.png"]
    assert os.stat(str(out / "c.png")).st_mtime_ns == stamps["c.png"]


def test_cli_given_labels_from_a_list(weights, image_dir, tmp_path):
    folder, sizes = image_dir
    listing = tmp_path / "val.txt"
    listing.write_text("a\nc\n")
    out = tmp_path / "out"
    res = run_infer(
        weights,
        "--list",
        str(listing),
        "--root",
        str(folder),
        "--labels",
        "3,8",
        "--out",
        str(out),
        "--save-prob",
    )
    assert res.returncode == 0, res.stderr
    assert "2 images: 2 segmented, 0 already done, 0 failed" in res.stdout
    assert sorted(os.listdir(out)) == ["a.png", "c.png", "prob"]
    found = set()
    for name in ("a", "c"):
        labels = read_png(str(out / (name + ".png")))
        assert labels.shape == sizes[name]
        assert inference.load_prob(str(out / "prob" / (name + ".npz")))["class_ids"].tolist() == [
            3,
            8,
        ]
        found |= set(np.unique(labels).tolist())
    assert found <= {0, 3, 8} and len(found) > 1
    bad = run_infer(
        weights,
        "--image",
        str(folder / "a.jpg"),
        "--labels",
        "3,81",
        "--out",
        str(tmp_path / "bad"),
    )
    assert bad.returncode == 2 and "81" in bad.stderr


def test_cli_list_with_byte_order_mark_and_dotted_ids(weights, image_dir, tmp_path):
    folder, sizes = image_dir
    cv2.imwrite(str(folder / "a.v2.jpg"), make_image(30, 40, 7))  # beside a.jpg (50 x 80)
    listing = tmp_path / "val.txt"
    listing.write_bytes("\ufeffa.v2\r\nb\r\n".encode())
    out = tmp_path / "out"
    res = run_infer(
        weights, "--list", str(listing), "--root", str(folder), "--labels", "3", "--out", str(out)
    )
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(out)) == ["a.v2.png", "b.png"]
    assert read_png(str(out / "a.v2.png")).shape == (30, 40)


@pytest.mark.parametrize(
    "content, message",
    [
        ("a\n".encode("utf-16"), "is UTF-16 text"),
        ("a\nb\xe9\n".encode("latin-1"), "byte 0xe9 at line 2 is not UTF-8"),
    ],
)
def test_cli_list_that_is_not_utf8_is_one_error_naming_it(
    weights, image_dir, tmp_path, content, message
):
    folder, _ = image_dir
    listing = tmp_path / "val.txt"
    listing.write_bytes(content)
    out = tmp_path / "out"
    res = run_infer(
        weights, "--list", str(listing), "--root", str(folder), "--labels", "3", "--out", str(out)
    )
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("infer.py: error: %s" % listing) and message in res.stderr
    assert len(res.stderr.splitlines()) == 1 and not out.exists()


def test_working_image_shrinks_only_large_images():
    small = np.zeros((1024, 700, 3), np.uint8)
    assert inference.working_image(small) is small
    assert inference.working_image(np.zeros((3000, 1500, 3), np.uint8)).shape == (1024, 512, 3)
    assert inference.working_image(np.zeros((1, 5000, 3), np.uint8)).shape == (1, 1024, 3)
    labels = np.array([[1, 2], [3, 4]], np.uint8)
    assert inference.full_size_labels(labels, 2, 2) is labels
    np.testing.assert_array_equal(
        inference.full_size_labels(labels, 4, 6), np.repeat(np.repeat(labels, 2, 0), 3, 1)
    )


# Peak memory of one infer.py process, as docs/inference.md states it.
def memory_bound_mb(pixels, labels):
    return 1024 + 6 * pixels / 2**20 + 25 * labels


def test_cli_memory_of_a_huge_image_with_crf_and_probabilities_is_bounded(weights, tmp_path):
    height, width = 6000, 8000  # 48 megapixels: about 11 GB at full resolution
    rng = np.random.RandomState(0)
    image = cv2.resize(rng.randint(0, 256, (12, 16, 3)).astype(np.uint8), (width, height))
    image = cv2.add(image, rng.randint(0, 20, (height, width, 3)).astype(np.uint8))
    path = str(tmp_path / "huge.jpg")
    cv2.imwrite(path, image)
    del image
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        os.path.join(REPO, "tools", "infer.py"),
        "--config",
        "tiny",
        "--weights",
        weights["seg"],
        "--image",
        path,
        "--labels",
        "3,8",
        "--crf",
        "--save-prob",
        "--workers",
        "0",
        "--out",
        str(out),
    ]
    with open(str(tmp_path / "log"), "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (kB)
    assert os.waitstatus_to_exitcode(status) == 0, (tmp_path / "log").read_text()
    assert usage.ru_maxrss / 1024 < memory_bound_mb(height * width, 2)
    labels = read_png(str(out / "huge.png"))
    assert labels.shape == (height, width)
    prob = inference.load_prob(str(out / "prob" / "huge.npz"))
    assert prob["fg"].shape == (2, 768, 1024)  # the working size
    working = crf.combine_labels(prob["scores"], prob["class_ids"])
    np.testing.assert_array_equal(labels, inference.full_size_labels(working, height, width))


def test_cli_gt_labels(weights, image_dir, tmp_path):
    folder, sizes = image_dir
    gt_dir = tmp_path / "gt"
    for name in ("a", "b"):  # no ground truth for c: reported and skipped
        gt = np.zeros(sizes[name], np.uint8)
        gt[5:20, 5:30], gt[30:40, 10:20], gt[-1] = 12, 5, 255
        fileio.write_label_png(str(gt_dir / (name + ".png")), gt)
    out = tmp_path / "out"
    res = run_infer(
        weights,
        "--dir",
        str(folder),
        "--gt-labels",
        str(gt_dir),
        "--crf",
        "--save-prob",
        "--out",
        str(out),
    )
    assert res.returncode == 1
    assert "c.jpg" in res.stderr and "missing_ground_truth" in res.stderr
    assert "broken.jpg" in res.stderr
    for name in ("a", "b"):
        labels = read_png(str(out / (name + ".png")))
        assert labels.shape == sizes[name] and set(np.unique(labels)) <= {0, 5, 12}
        prob = inference.load_prob(str(out / "prob" / (name + ".npz")))
        assert prob["class_ids"].tolist() == [5, 12]
    assert not os.path.exists(str(out / "c.png"))


def test_cli_on_builtin_val_with_gt_labels_is_scorable(weights, tmp_path):
    """Built-in dataset (data_prep.builtin) VOC val images: list + root + GT labels, scored
    by transfernet.score like tools/eval.py does."""
    from data_prep import builtin

    builtin.generate(
        str(tmp_path / "builtin"), seed=3, source_images=0, target_train=0, target_val=3, workers=1
    )
    voc = tmp_path / "builtin" / "VOCdevkit" / "VOC2012"
    listing = str(voc / "ImageSets" / "Segmentation" / "val.txt")
    out = tmp_path / "pred"
    res = run_infer(
        weights,
        "--list",
        listing,
        "--root",
        str(voc / "JPEGImages"),
        "--gt-labels",
        str(voc / "SegmentationClass"),
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    ids = fileio.read_list(listing)
    assert len(ids) == 3 and sorted(os.listdir(out)) == sorted(i + ".png" for i in ids)
    for i in ids:
        gt = fileio.read_label_png(str(voc / "SegmentationClass" / (i + ".png")))
        pred = read_png(str(out / (i + ".png")))
        assert pred.shape == gt.shape
        assert set(np.unique(pred)) <= {0} | set(
            inference.gt_labels(str(voc / "SegmentationClass" / (i + ".png")))
        )
    result = score.evaluate(
        str(out), str(voc / "SegmentationClass"), ids, score.voc_class_table(), workers=1
    )
    assert 0 <= result["mean_iou"] <= 1


def test_cli_skips_ground_truth_with_ids_the_network_lacks(weights, image_dir, tmp_path):
    folder, sizes = image_dir
    gt_dir = tmp_path / "gt"
    for name, ids in (("a", (5, 200)), ("b", (12,)), ("c", (3,))):
        gt = np.zeros(sizes[name], np.uint8)
        for k, cid in enumerate(ids):
            gt[5 + 10 * k : 10 + 10 * k, 5:30] = cid
        fileio.write_label_png(str(gt_dir / (name + ".png")), gt)
    out = tmp_path / "out"
    res = run_infer(weights, "--dir", str(folder), "--gt-labels", str(gt_dir), "--out", str(out))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "4 images: 2 segmented, 0 already done, 2 failed" in res.stdout
    assert (
        "%s/a.jpg  (class_ids_not_in_network: %s/a.png holds class ids [200]; the network "
        "has [1, 80])" % (folder, gt_dir)
    ) in res.stderr
    assert sorted(os.listdir(out)) == ["b.png", "c.png"]


def test_cli_checks_the_output_folders_before_any_work(weights, image_dir, tmp_path):
    folder, _ = image_dir
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "vis").write_text("")
    for out, extra, message in [
        (
            a_file / "out",
            [],
            "cannot create output folder %s: %s is a file, not a folder" % (a_file / "out", a_file),
        ),
        (a_file, [], "output folder %s exists and is a file, not a folder" % a_file),
        (
            tmp_path / "out",
            ["--vis"],
            "output folder %s exists and is a file, not a folder" % (tmp_path / "out" / "vis"),
        ),
    ]:
        res = run_infer(weights, "--dir", str(folder), "--labels", "3", "--out", str(out), *extra)
        assert res.returncode == 2
        assert res.stderr == "infer.py: error: %s\n" % message and res.stdout == ""
    assert os.listdir(str(tmp_path / "out")) == ["vis"]


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_cli_removes_a_killed_runs_temporaries_and_eval_ignores_them(weights, image_dir, tmp_path):
    folder, sizes = image_dir
    listing = tmp_path / "val.txt"
    listing.write_text("a\nc\n")
    gt_dir = tmp_path / "gt"
    for name in ("a", "c"):
        fileio.write_label_png(str(gt_dir / (name + ".png")), np.full(sizes[name], 3, np.uint8))
    out = tmp_path / "out"
    args = [
        "--list",
        str(listing),
        "--root",
        str(folder),
        "--labels",
        "3",
        "--vis",
        "--out",
        str(out),
    ]
    assert run_infer(weights, *args).returncode == 0
    # What a SIGKILL during the writes of c leaves: truncated temporaries, no c.png.
    os.remove(str(out / "c.png"))
    pid = dead_pid()
    leftovers = [
        out / (".c.png.%d.tmpk2j3h4q0.png" % pid),
        out / "vis" / (".c.png.%d.tmpx8y9z0ab.png" % pid),
    ]
    for path in leftovers:
        path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    live = out / (".x.png.%d.tmpabcdefgh.png" % os.getpid())  # a live writer's: kept
    live.write_bytes(b"")
    assert all(atomic.is_temporary(str(p)) for p in leftovers + [live])
    res = run_infer(weights, *args)
    assert res.returncode == 0, res.stderr
    for path in leftovers:
        assert "infer.py: removed %s (left by an interrupted run)" % path in res.stderr
        assert not path.exists()
    assert live.exists()
    assert "2 images: 1 segmented, 1 already done, 0 failed" in res.stdout
    # tools/eval.py ignores hidden files (the live temporary, an older run's ".c.png.XXXX.png")
    (out / ".c.png.k2j3h4q0.png").write_bytes(b"")
    ev = subprocess.run(
        [
            sys.executable,
            "tools/eval.py",
            "--pred",
            str(out),
            "--gt",
            str(gt_dir),
            "--list",
            str(listing),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert ev.returncode == 0, ev.stderr
    assert "2 images" in ev.stdout


def test_cli_is_quiet_unless_verbose_and_counts_an_empty_image(weights, image_dir, tmp_path):
    folder, _ = image_dir
    (folder / "empty.jpg").write_bytes(b"")
    res = run_infer(weights, "--dir", str(folder), "--out", str(tmp_path / "out"))
    assert res.returncode == 1
    assert "5 images: 3 segmented, 0 already done, 2 failed" in res.stdout
    assert (
        "%s/empty.jpg  (unreadable_image: %s/empty.jpg: empty file)" % (folder, folder)
        in res.stderr
    )
    assert not re.search(r"^[IWEF](\d{4})?\d{4} ", res.stderr, re.M) and "net.cpp" not in res.stderr
    res = run_infer(weights, "--dir", str(folder), "--out", str(tmp_path / "out2"), "--verbose")
    assert res.returncode == 1 and "Network initialization done." in res.stderr
    assert len(re.findall(r"^I(\d{4})?\d{4} ", res.stderr, re.M)) > 500  # glog 0.4 / 0.6 info lines


def test_cli_workers_write_the_same_bytes_and_report_failures_alike(weights, image_dir, tmp_path):
    folder, sizes = image_dir
    for k in range(4):  # more images than 2 workers hold at once (2N ahead)
        cv2.imwrite(str(folder / ("d%d.jpg" % k)), make_image(60 + 7 * k, 90, seed=20 + k))
    runs = {}
    for workers in (0, 2):
        out = tmp_path / ("out%d" % workers)
        (out / "vis" / "b.png").mkdir(parents=True)  # a failed write, in the worker
        res = run_infer(
            weights,
            "--dir",
            str(folder),
            "--crf",
            "--save-prob",
            "--vis",
            "--workers",
            str(workers),
            "--out",
            str(out),
        )
        assert res.returncode == 1, res.stderr
        assert "8 images: 6 segmented, 0 already done, 2 failed" in res.stdout
        runs[workers] = (out, res.stderr[res.stderr.index("failed images:") :])
    (out0, failed0), (out2, failed2) = runs[0], runs[2]
    assert failed2 == failed0.replace(str(out0), str(out2))
    assert "b.jpg  (write failed: Is a directory: %s)" % (out2 / "vis" / "b.png") in failed2
    assert "broken.jpg  (unreadable_image:" in failed2
    files = sorted(
        os.path.relpath(os.path.join(d, f), str(out0))
        for d, _, names in os.walk(str(out0))
        for f in names
    )
    assert len(files) == 6 * 3 + 1  # label PNG, npz, figure each; b's npz, written first
    assert files == sorted(
        os.path.relpath(os.path.join(d, f), str(out2))
        for d, _, names in os.walk(str(out2))
        for f in names
    )
    for name in files:
        assert (out0 / name).read_bytes() == (out2 / name).read_bytes(), name
    # Resume with workers: the finished images are skipped, b is retried.
    os.rmdir(str(out2 / "vis" / "b.png"))
    res = run_infer(
        weights,
        "--dir",
        str(folder),
        "--crf",
        "--save-prob",
        "--vis",
        "--workers",
        "2",
        "--out",
        str(out2),
    )
    assert "8 images: 1 segmented, 6 already done, 1 failed" in res.stdout
    assert cv2.imread(str(out2 / "vis" / "b.png")) is not None


def test_ctrl_c_prints_what_is_finished_and_the_run_resumes(weights, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(40):
        cv2.imwrite(str(folder / ("%02d.jpg" % k)), make_image(120, 160, k))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        os.path.join(REPO, "tools", "infer.py"),
        "--config",
        "tiny",
        "--weights",
        weights["seg"],
        "--dir",
        str(folder),
        "--labels",
        "3,8",
        "--crf",
        "--workers",
        "2",
        "--out",
        str(out),
    ]

    def pngs():
        return sorted(n for n in os.listdir(out) if not n.startswith(".")) if out.exists() else []

    status, stdout, stderr = interrupt_when(cmd, lambda: len(pngs()) >= 3, cwd=REPO)
    assert status == 130 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    done = len(pngs())
    assert 3 <= done < 40
    assert stderr.splitlines()[-1] == (
        "infer.py: interrupted: %d of 40 images finished in %s; run the same command again to "
        "resume (finished images are skipped)" % (done, out)
    )
    for name in pngs():
        assert read_png(str(out / name)).shape == (120, 160)  # each one whole
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "40 images: %d segmented, %d already done, 0 failed" % (40 - done, done) in res.stdout
    assert len(pngs()) == 40 and not [n for n in os.listdir(out) if n.startswith(".")]
