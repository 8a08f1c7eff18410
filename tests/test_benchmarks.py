"""The bench's pure pieces (benchmarks/) and the layers' scratch-buffer reuse.

No timings are asserted: the figures themselves come from `make bench`.
"""

import json
import os

import numpy as np
import pytest
from gradcheck import python_layer_net

from benchmarks import inputs, measure, report, stats
from transfernet.fileio import read_label_png

# The Python layers of the paper-size joint net at batch 1 (shapes from reference-facts.md);
# A (conv5_3_scaled) and the encoder blobs need no gradient: the encoder is frozen.
A, ALPHA, Z, S = (1, 512, 20, 20), (1, 1, 20, 20), (1, 512), (1, 1, 20, 20)
POOL1_MASK, CONV1_2 = (1, 64, 160, 160), (1, 64, 320, 320)
JOINT_PYTHON_LAYERS = [
    {
        "name": "z",
        "type": "AttentionPool",
        "bottoms": [{"shape": A, "needs_diff": False}, {"shape": ALPHA, "needs_diff": True}],
        "tops": [Z],
    },
    {
        "name": "unpool1",
        "type": "Unpool",
        "bottoms": [
            {"shape": POOL1_MASK, "needs_diff": True},
            {"shape": POOL1_MASK, "needs_diff": False},
            {"shape": CONV1_2, "needs_diff": False},
        ],
        "tops": [CONV1_2],
    },
    {
        "name": "frozen",
        "type": "Densify",
        "bottoms": [{"shape": A, "needs_diff": False}, {"shape": Z, "needs_diff": False}],
        "tops": [S],
    },
    {
        "name": "unpool1_positions",
        "type": "UnpoolConstants",
        "bottoms": [
            {"shape": POOL1_MASK, "needs_diff": False},
            {"shape": CONV1_2, "needs_diff": False},
        ],
        "tops": [POOL1_MASK + (2,), POOL1_MASK + (2,)],
    },
]


def test_python_layer_bytes_forward_backward_and_batch():
    got = stats.python_layer_bytes(JOINT_PYTHON_LAYERS)
    # z: A + alpha in, z out; back: dz in, dalpha out.
    assert got["z"] == {
        "forward": 4 * (204800 + 400 + 512),
        "backward": 4 * (512 + 400),
        "total": 4 * (204800 + 400 + 512 + 512 + 400),
    }
    # unpool1: x + mask in (ref: shape only), top out; back: dtop in, dx out.
    pooled, full = 64 * 160 * 160, 64 * 320 * 320
    assert got["unpool1"]["forward"] == 4 * (2 * pooled + full)
    assert got["unpool1"]["backward"] == 4 * (full + pooled)
    # No bottom needs a gradient: Caffe skips the layer's backward.
    assert got["frozen"]["backward"] == 0
    # Shapes read, constant tops written only when the shape changes: nothing per iteration.
    assert got["unpool1_positions"] == {"forward": 0, "backward": 0, "total": 0}
    assert stats.total_mb(got) == pytest.approx(sum(v["total"] for v in got.values()) / 2**20)
    at4 = stats.python_layer_bytes(JOINT_PYTHON_LAYERS, batch=4)
    for name in got:
        assert at4[name]["total"] == 4 * got[name]["total"]


def test_python_layer_share_sums_python_rows_only():
    rows = [
        {"type": "Convolution", "forward_s": 0.9, "backward_s": 0.0},
        {"type": "Python", "forward_s": 0.03, "backward_s": 0.02},
        {"type": "Deconvolution", "forward_s": 0.5, "backward_s": 0.5},
        {"type": "Python", "forward_s": 0.04, "backward_s": 0.01},
    ]
    assert stats.python_layer_share(rows) == pytest.approx(0.1 / 2.0)
    for r in rows:
        r["forward_cpu_s"], r["backward_cpu_s"] = 2 * r["forward_s"], 0.0
    assert stats.python_layer_share(rows, "_cpu") == pytest.approx(0.14 / 2.94)
    with pytest.raises(ValueError, match="python_layer_share"):
        stats.python_layer_share([{"type": "Python", "forward_s": 0, "backward_s": 0}])


def test_speedups_and_targets():
    # Per-round ratios 1.5, 3.0 (a disturbed round), 1.4: the median ignores the outlier.
    assert stats.median_ratio([2.0, 2.0, 5.0], [3.0, 6.0, 7.0]) == 1.5
    assert stats.check_target("deploy_speedup_k3", 1.40) is True
    assert stats.check_target("deploy_speedup_k3", 1.39) is False
    assert stats.check_target("python_layer_share", 0.031) is False
    assert stats.check_target("eval_seconds_1449", 2.9) is True
    assert stats.check_target("seconds", 1.0) is None


def test_median_ratio_interval():
    # identical ratios: a point; spread ratios: an interval around the median, inside the data
    assert stats.median_ratio_interval([1.0] * 5, [1.2] * 5) == pytest.approx((1.2, 1.2))
    ours = [1.0] * 20
    theirs = [0.96, 0.98, 1.0, 1.02, 1.04] * 4
    low, high = stats.median_ratio_interval(ours, theirs)
    assert 0.96 <= low < 1.0 < high <= 1.04
    assert stats.median_ratio_interval(ours, theirs) == (low, high)  # seeded
    # a clearly slower "ours" stays below 1 whatever the resample
    assert stats.median_ratio_interval(ours, [t - 0.1 for t in theirs])[1] < 1.0


def test_cpu_model_from_cpuinfo():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n"
    assert measure.cpu_model(text) == "AMD EPYC 7B13"
    assert measure.cpu_model("processor\t: 0\n") == "unknown"


def fixed_results():
    """Results as the measurement functions return them (numbers chosen by hand)."""
    rows = [
        {"name": "conv1_1", "type": "Convolution", "forward_s": 1.5, "backward_s": 0.0},
        {"name": "z", "type": "Python", "forward_s": 0.01, "backward_s": 0.01},
        {"name": "deconv1_1", "type": "Deconvolution", "forward_s": 1.0, "backward_s": 1.48},
    ]
    layer_bytes = stats.python_layer_bytes(JOINT_PYTHON_LAYERS[:1])
    before = stats.python_layer_bytes(JOINT_PYTHON_LAYERS[:2], batch=4)
    return {
        "machine": {
            "cores": 2,
            "cpu_model": "AMD EPYC",
            "loadavg_start": [1.0, 1.0, 1.0],
            "loadavg_end": [2.0, 1.5, 1.0],
        },
        "joint": {
            "layers": rows,
            "python_layer_share": stats.python_layer_share(rows),
            "python_layer_share_cpu": 0.004,
            "forward_s": 2.51,
            "backward_s": 1.49,
            "python_layer_bytes": {"batch_1": layer_bytes, "batch_4": layer_bytes},
        },
        "deploy": {
            "ours_s": {1: 2.0, 2: 3.0, 3: 4.0},
            "theirs_s": {1: 2.0, 2: 4.0, 3: 6.0},
            "ours_cpu_s": {1: 3.0, 2: 5.0, 3: 7.0},
            "theirs_cpu_s": {1: 3.0, 2: 6.0, 3: 9.0},
            "speedup": {1: 1.0, 2: 1.2, 3: 9 / 7},
            "speedup_wall": {1: 1.0, 2: 4 / 3, 3: 1.5},
            "speedup_ci95": {1: (0.98, 1.01), 2: (1.1, 1.3), 3: (1.2, 1.3)},
            "rounds": {1: [[0.0] * 4] * 18, 2: [[0.0] * 4] * 6, 3: [[0.0] * 4] * 6},
            "python_layer_bytes_k3": layer_bytes,
        },
        "unpool": {
            "time_ratio": 1.02,
            "time_ratio_wall": 1.01,
            "time_ratio_ci95": (1.0, 1.06),
            "stock_cpu_s": 4.08,
            "python_cpu_s": 4.0,
            "unpool_layers_cpu_s": {"stock": 0.05, "python": 0.03},
            "python_unpool_layer_bytes": before,
        },
        "data_layer": {"images_per_s": {1: 300.0, 2: 450.0}, "per_cpu_s_inprocess": 280.0},
        "eval": {"images": 1449, "seconds": 2.5, "cpu_seconds": 4.0, "mean_iou": 0.5},
        "build": {"source": {"records_per_s": 400.0}, "target": {"records_per_s": 500.0}},
        "rss": {"seconds": 40.0, "vmhwm_mb": 5000.0},
    }


def test_summary_report_and_json(tmp_path):
    results = fixed_results()
    results["summary"] = report.summary(results)
    assert results["summary"]["python_layer_share"] == pytest.approx(0.02 / 4.0)
    assert results["summary"]["joint_forward_backward_s_batch1"] == pytest.approx(4.0)
    assert results["summary"]["deploy_speedup_k3"] == 9 / 7
    assert results["summary"]["deploy_speedup_wall_k3"] == 1.5
    assert results["summary"]["data_layer_images_per_s_2workers"] == 450.0
    text = report.format_report(results)
    lines = text.splitlines()
    assert lines[0] == (
        "machine: 2 cores, AMD EPYC; loadavg start [1.0, 1.0, 1.0], end [2.0, 1.5, 1.0]"
    )
    row = {}
    for line in lines:
        if line.strip():
            row.setdefault(line.split()[0], line.split())  # first line of each name
    assert row["data_layer_images_per_s_2workers"][-1] == "NO"  # 450 < 500
    assert row["deploy_speedup_k3"][-1] == "NO"  # 1.286 < 1.40
    assert row["python_layer_share"][1:] == ["0.005", "<=", "0.03", "yes"]
    assert row["z"][:2] == ["z", "Python"] and row["z"][-1] == "0.50%"
    assert row["deploy_speedup_k1_ci95_high"][1:] == ["1.01", ">=", "1", "yes"]
    assert "K=3   6    4.000    6.000 |   7.000    9.000   1.286 [1.200, 1.300] | 1.500" in text
    z_mb = 4 * (204800 + 400 + 512 + 512 + 400) / 2**20
    assert results["summary"]["python_layer_mb_joint_batch4"] == pytest.approx(z_mb)
    assert row["python_layer_mb_joint_batch4"][1:] == ["%.4g" % z_mb, "<=", "13", "yes"]
    # unpool1 (test_python_layer_bytes_forward_backward_and_batch) at batch 4
    unpool1_mb = 4 * 4 * (3 * 64 * 160 * 160 + 2 * 64 * 320 * 320) / 2**20
    assert results["summary"]["python_layer_mb_joint_batch4_python_unpool"] == pytest.approx(
        4 * z_mb + unpool1_mb
    )
    assert row["stock_unpool_time_ratio"][1:] == ["1.02", "<=", "1.05", "yes"]
    assert (
        "stock 4.080, Python Unpool 4.000, ratio 1.0200 [1.0000, 1.0600] (wall 1.0100); "
        "the unpooling layers alone 50.0 / 30.0 ms"
    ) in text
    assert [line.split()[-1] for line in lines if line.startswith("unpool1 ")] == [
        "%.2f" % unpool1_mb
    ]
    totals = [line.split()[1:] for line in lines if line.startswith("total ")]
    assert ["%.2f" % (4 * z_mb + unpool1_mb)] in totals and ["%.2f" % z_mb] * 2 in totals
    path = tmp_path / "bench" / "bench.json"
    report.write_json(str(path), results)
    loaded = json.loads(path.read_text())
    assert loaded["summary"]["deploy_speedup_k1"] == 1.0
    assert loaded["deploy"]["speedup_wall"]["3"] == 1.5  # int keys become strings
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]  # no temp file left


def test_eval_pairs_are_voc_like_label_pngs(tmp_path):
    ids = inputs.write_eval_pairs(str(tmp_path), 3, seed=1)
    assert ids == ["000000", "000001", "000002"]
    for image_id in ids:
        gt = read_label_png(str(tmp_path / "gt" / (image_id + ".png")))
        pred = read_label_png(str(tmp_path / "pred" / (image_id + ".png")))
        assert gt.shape == pred.shape == inputs.VOC_IMAGE
        assert set(np.unique(gt)) <= set(range(21)) | {255}
        assert 255 not in pred and (gt == 255).any() and (gt != 0).any()


def test_infer_inputs_are_voc_sized_with_two_or_three_labels(tmp_path):
    import cv2

    from transfernet.inference import gt_labels

    listing, images, gt = inputs.write_infer_inputs(str(tmp_path / "infer"), 4, seed=1)
    ids = open(listing).read().split()
    assert ids == ["000000", "000001", "000002", "000003"]
    counts = set()
    for image_id in ids:
        assert cv2.imread(os.path.join(images, image_id + ".jpg")).shape == (375, 500, 3)
        labels = gt_labels(os.path.join(gt, image_id + ".png"))
        assert set(labels) <= set(range(1, 21))
        counts.add(len(labels))
    assert counts == {2, 3}
    results = fixed_results()
    results["infer_workers"] = {"speedup": 1.7}
    summary = report.summary(results)
    assert summary["infer_crf_speedup_2workers"] == 1.7
    assert stats.check_target("infer_crf_speedup_2workers", 1.7)
    assert not stats.check_target("infer_crf_speedup_2workers", 1.5)


# -- the layers' scratch buffers ------------------------------------------------------------


def test_unpool_index_buffer_only_grows():
    """Same shapes or a smaller batch (the deploy net's K going down): the same flat-index
    buffer; a larger batch: a larger one. Every value still lands on its switch."""
    rng = np.random.RandomState(0)
    mask = np.array([[[[1, 3], [8, 15]]]], np.float32)  # one 4x4 plane
    net = python_layer_net(
        "unpool",
        "Unpool",
        {"x": np.ones((1, 1, 2, 2)), "mask": mask, "ref": np.zeros((1, 1, 4, 4))},
    )
    layer = net.layers[list(net._layer_names).index("under_test")]
    buffers = []
    for batch in (1, 1, 3, 3, 1, 2):
        x = rng.uniform(1, 2, (batch, 1, 2, 2)).astype(np.float32)
        net.blobs["x"].reshape(*x.shape)
        net.blobs["x"].data[...] = x
        net.forward()
        buffers.append(layer.buffer)
        top = net.blobs["top"].data.reshape(batch, 16)
        expected = np.zeros((batch, 16), np.float32)
        expected[:, [1, 3, 8, 15]] = x.reshape(batch, 4)
        np.testing.assert_array_equal(top, expected)
    assert [b is buffers[0] for b in buffers] == [True, True, False, False, False, False]
    assert all(b is buffers[2] for b in buffers[2:]) and buffers[2].size == 12


def test_bench_authors_times_the_authors_protocol_and_gives_the_bench_keys():
    """bench_authors on the tiny nets (the bench runs it at paper size): a forward and a
    post-processing time per K, their sum the per-image seconds of `make bench`."""
    from transfernet import config

    got = measure.bench_authors(config.TINY, ks=(1, 2), rounds=1)
    assert got["image"] == [375, 500] and got["rounds"] == 1
    for k in (1, 2):
        assert got["seconds"][k] == pytest.approx(got["forward_s"][k] + got["finish_s"][k])
        assert got["forward_cpu_s"][k] > 0 and got["finish_cpu_s"][k] > 0
    results = dict(fixed_results(), authors=got)
    results["summary"] = summary = report.summary(results)
    assert summary["authors_deploy_seconds_per_image_k1"] == got["seconds"][1]
    assert summary["authors_deploy_seconds_per_image_k2"] == got["seconds"][2]
    text = report.format_report(results)
    assert "the authors' protocol per 500x375 image" in text
    assert "  K=2  %7.3f + %7.3f" % (got["forward_s"][2], got["finish_s"][2]) in text
