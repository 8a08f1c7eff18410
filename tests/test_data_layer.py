"""SourceTargetData on real Caffe nets and real LMDB datasets.

The synthetic records encode where every pixel came from: B = x gradient, G = y gradient,
R = record number, so the crop window, the mirror and the record of every output sample can be
read back from `data` and the seg-label checked against the record's own mask exactly.
"""

import json
import os
import subprocess
import sys
import time

import caffe
import data_layer
import data_params
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from transfernet import records

SIZE, RESIZE, CROP = 40, 40, 32
MEAN = np.array(data_params.DEFAULTS["mean"], np.float32)
STEP = 200.0 / (SIZE - 1)  # B (G) value per column (row)
SOURCE_IDS = [[21], [30, 45], [80, 22, 60]]
TARGET_IDS = [[1], [7, 15], [20, 3, 12]]


def _image(r, size=SIZE):
    ramp = np.round(np.arange(size) * 200.0 / (size - 1))
    image = np.empty((size, size, 3), np.uint8)
    image[..., 0] = ramp[None, :]
    image[..., 1] = ramp[:, None]
    image[..., 2] = 30 + 40 * r
    return image


def _mask(r, ids, size=SIZE):
    """Asymmetric blocks: one per class, one 255 (void) block; background 0."""
    rng = np.random.RandomState(100 + r)
    mask = np.zeros((size, size), np.uint8)
    for value in list(ids) + [255]:
        y, x = rng.randint(0, size // 2, 2)
        h, w = rng.randint(size // 4, size // 2, 2)
        mask[y : y + h, x : x + w] = value
    return mask


def _write(path, kind, ids_list, size=SIZE, masks=True, num_classes=80):
    recs = [
        (
            records.encode_image(_image(r, size), ids),
            records.encode_mask(_mask(r, ids, size)) if masks else None,
        )
        for r, ids in enumerate(ids_list)
    ]
    records.write_dataset(
        path,
        recs,
        {
            "kind": kind,
            "size": size,
            "num_classes": num_classes,
            "classes": {},
            "dropped": {},
            "params": {},
        },
    )
    return path


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    return {
        "source": _write(str(root / "source"), "source", SOURCE_IDS),
        "target": _write(str(root / "target"), "target", TARGET_IDS, masks=False),
        "big": _write(str(root / "big"), "source", SOURCE_IDS, size=2 * SIZE),
        "classes20": _write(
            str(root / "classes20"), "target", TARGET_IDS, masks=False, num_classes=20
        ),
        "broken": _broken(str(root / "broken")),
        "root": str(root),
    }


def _broken(path):
    """Source dataset whose record 1 holds bytes that are no JPEG."""
    bad = caffe_pb2.Datum(encoded=True, data=b"not a jpeg", channels=3, height=SIZE, width=SIZE)
    bad.float_data.append(22)
    recs = [
        (records.encode_image(_image(0), [21]), records.encode_mask(_mask(0, [21]))),
        (bad.SerializeToString(), records.encode_mask(_mask(1, [22]))),
    ]
    records.write_dataset(path, recs, {"kind": "source", "size": SIZE, "num_classes": 80})
    return path


def _params(datasets, **kw):
    params = {
        "source": datasets["source"],
        "target": datasets["target"],
        "source_fraction": 0.5,
        "batch_size": 16,
        "resize": RESIZE,
        "crop": CROP,
        "num_classes": 80,
        "workers": 0,
    }
    params.update(kw)
    return params


def _net(tmp_path, params, tops=3, phase=caffe.TRAIN, raw=None):
    text = data_layer.net_prototxt(params, seg=tops == 3)
    if raw is not None or tops not in (2, 3):
        tops_text = " ".join('top: "t%d"' % i for i in range(tops))
        text = (
            'layer { name: "data" type: "Python" %s python_param { module: "data_layer" '
            'layer: "SourceTargetData" param_str: %s } }'
            % (tops_text, json.dumps(json.dumps(params) if raw is None else raw))
        )
    path = tmp_path / ("net%d.prototxt" % len(list(tmp_path.iterdir())))
    path.write_text(text)
    return caffe.Net(str(path), phase)


def _batches(net, n):
    out = []
    for _ in range(n):
        net.forward()
        out.append({name: net.blobs[name].data.copy() for name in net.blobs})
    return out


def _decode(data, size=SIZE):
    """Per sample: record number, y0, x0, flipped, from the position-encoding image."""
    bgr = data + MEAN[None, :, None, None]
    np.testing.assert_allclose(bgr, np.round(bgr), atol=1e-3)  # BGR mean subtracted per channel
    scale = (size - 1) / 200.0
    xs = np.round(bgr[:, 0] * scale).astype(int)
    ys = np.round(bgr[:, 1] * scale).astype(int)
    record = np.round((np.median(bgr[:, 2], axis=(1, 2)) - 30) / 40).astype(int)
    crop = data.shape[-1]
    cols = np.arange(crop)
    flipped = xs[:, :, -1].mean(1) < xs[:, :, 0].mean(1)
    x_rel = np.where(flipped[:, None], crop - 1 - cols[None], cols[None])
    x0 = np.median(xs - x_rel[:, None, :], axis=(1, 2)).astype(int)
    y0 = np.median(ys - cols[None, :, None], axis=(1, 2)).astype(int)
    expect_x = x0[:, None, None] + x_rel[:, None, :]
    expect_y = y0[:, None, None] + cols[None, :, None]
    assert np.abs(xs - expect_x).max() <= 1 and np.abs(ys - expect_y).max() <= 1
    assert (xs == expect_x).mean() > 0.95 and (ys == expect_y).mean() > 0.95
    return record, y0, x0, flipped


def _check_samples(batch, crop=CROP, train=True):
    """Every invariant of one batch; returns (is_source, chosen, y0, x0, flipped)."""
    data, label, seg = batch["data"], batch["label"], batch["seg-label"]
    assert data.shape == (16, 3, crop, crop) and label.shape == (16, 80)
    assert seg.shape == (16, 1, crop, crop)
    assert set(np.unique(label)) == {0, 1} and (label.sum(1) == 1).all()
    chosen = label.argmax(1) + 1
    is_source = chosen > 20
    record, y0, x0, flipped = _decode(data)
    for i in range(16):
        ids = (SOURCE_IDS if is_source[i] else TARGET_IDS)[record[i]]
        assert chosen[i] in ids
        if not is_source[i]:
            assert (seg[i] == 255).all()
            continue
        window = _mask(record[i], ids)[y0[i] : y0[i] + crop, x0[i] : x0[i] + crop]
        window = window[:, ::-1] if flipped[i] else window
        expected = np.where(window == chosen[i], 1, np.where(window == 255, 255, 0))
        np.testing.assert_array_equal(seg[i, 0], expected)
    return is_source, chosen, y0, x0, flipped


def test_train_batches_keep_image_mask_and_label_aligned(tmp_path, datasets):
    net = _net(tmp_path, _params(datasets))
    batches = _batches(net, 12)
    checks = [_check_samples(b) for b in batches]
    is_source, chosen, y0, x0, flipped = [np.concatenate(c) for c in zip(*checks)]
    assert 0.35 < is_source.mean() < 0.65  # source_fraction 0.5, 192 samples
    seg = np.concatenate([b["seg-label"][:, 0] for b in batches])[is_source]
    assert 0.05 < (seg == 1).mean() < 0.6 and (seg == 0).any() and (seg == 255).any()
    assert flipped.any() and not flipped.all()
    assert y0.min() == 0 and y0.max() == RESIZE - CROP and len(set(x0)) == RESIZE - CROP + 1
    two = chosen[np.isin(chosen, SOURCE_IDS[1])]  # record 1: classes 30, 45
    assert 0.25 < (two == 30).mean() < 0.75  # one present class, uniformly


def test_test_phase_is_centre_crop_without_mirror(tmp_path, datasets):
    net = _net(tmp_path, _params(datasets), phase=caffe.TEST)
    for batch in _batches(net, 3):
        _, _, y0, x0, flipped = _check_samples(batch)
        assert (y0 == 4).all() and (x0 == 4).all() and not flipped.any()


def test_mirror_false_never_flips(tmp_path, datasets):
    net = _net(tmp_path, _params(datasets, mirror=False))
    flipped = np.concatenate([_check_samples(b)[4] for b in _batches(net, 4)])
    assert not flipped.any()


@pytest.mark.parametrize("fraction,source_share", [(1.0, 1.0), (0.0, 0.0), (1, 1.0)])
def test_source_fraction_extremes(tmp_path, datasets, fraction, source_share):
    net = _net(tmp_path, _params(datasets, source_fraction=fraction))
    shares = [_check_samples(b)[0].mean() for b in _batches(net, 3)]
    assert shares == [source_share] * 3


def test_single_domain_datasets(tmp_path, datasets):
    target_only = _net(tmp_path, _params(datasets, source=None, seed=3))
    for batch in _batches(target_only, 2):
        assert not _check_samples(batch)[0].any()
    source_only = _net(tmp_path, _params(datasets, target=None), tops=2)
    assert set(source_only.blobs) == {"data", "label"}
    for batch in _batches(source_only, 2):
        assert (batch["label"].argmax(1) >= 20).all()


def test_resize_warps_image_bilinear_and_mask_nearest(tmp_path, datasets):
    net = _net(
        tmp_path,
        _params(datasets, source=datasets["big"], source_fraction=1.0, crop=RESIZE),
        phase=caffe.TEST,
    )
    net.forward()
    bgr = net.blobs["data"].data + MEAN[None, :, None, None]
    record = np.round((bgr[:, 2, 0, 0] - 30) / 40).astype(int)
    chosen = net.blobs["label"].data.argmax(1) + 1
    # The whole 80-column ramp (0..200) squeezed into 40 columns, each the mean of 2 sources.
    warped = 200.0 / (2 * SIZE - 1) * (2 * np.arange(SIZE) + 0.5)
    assert np.abs(bgr[:, 0].mean(axis=(0, 1)) - warped).max() < 2.0
    for i in range(16):
        big = _mask(record[i], SOURCE_IDS[record[i]], 2 * SIZE)[::2, ::2]  # nearest: 2 * dst
        expected = np.where(big == chosen[i], 1, np.where(big == 255, 255, 0))
        np.testing.assert_array_equal(net.blobs["seg-label"].data[i, 0], expected)


def test_multilabel_gives_multi_hot_of_all_classes(tmp_path, datasets):
    net = _net(tmp_path, _params(datasets, multilabel=True), tops=2)
    for batch in _batches(net, 3):
        record = _decode(batch["data"])[0]
        for i, r in enumerate(record):
            is_source = batch["label"][i, 20:].any()
            ids = (SOURCE_IDS if is_source else TARGET_IDS)[r]
            expected = np.zeros(80)
            expected[np.array(ids) - 1] = 1
            np.testing.assert_array_equal(batch["label"][i], expected)


def _stream(tmp_path, datasets, n=4, **kw):
    net = _net(tmp_path, _params(datasets, **kw))
    try:
        return _batches(net, n)
    finally:
        net.layers[0].close()


def _same(a, b):
    return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_stream_depends_on_seed_only(tmp_path, datasets):
    reference = _stream(tmp_path, datasets, seed=7)
    assert _same(reference, _stream(tmp_path, datasets, seed=7))
    assert not _same(reference, _stream(tmp_path, datasets, seed=8))
    # Worker processes produce the very batches of the in-process path, in order.
    assert _same(reference, _stream(tmp_path, datasets, seed=7, workers=1))
    assert _same(reference, _stream(tmp_path, datasets, seed=7, workers=2))


@pytest.fixture
def solver_rank():
    """set(rank, count): Caffe's solver rank and count as tools/train.py sets them in each of
    its processes (multiprocess, which lets Python layers run with several solvers)."""

    def set_rank(rank, count):
        caffe.set_solver_count(count)
        caffe.set_solver_rank(rank)
        caffe.set_multiprocess(count > 1)

    yield set_rank
    set_rank(0, 1)


def _test_stream(tmp_path, datasets, n, **kw):
    net = _net(tmp_path, _params(datasets, **kw), phase=caffe.TEST)
    try:
        return _batches(net, n)
    finally:
        net.layers[0].close()


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_solver_ranks_take_disjoint_parts_whose_union_is_the_stream(
    tmp_path, datasets, solver_rank, workers
):
    whole = _stream(tmp_path, datasets, n=6, seed=3)
    whole_test = _test_stream(tmp_path, datasets, n=2, seed=3)
    assert not any(_same([a], [b]) for i, a in enumerate(whole) for b in whole[:i])
    parts = []
    for rank in (0, 1):
        solver_rank(rank, 2)
        parts.append(_stream(tmp_path, datasets, n=3, seed=3, workers=workers))
        # The TEST net is not replicated per solver: it keeps the whole stream.
        assert _same(whole_test, _test_stream(tmp_path, datasets, n=2, seed=3, workers=workers))
    assert _same(parts[0], whole[0::2]) and _same(parts[1], whole[1::2])


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_stop_on_close(tmp_path, datasets):
    net = _net(tmp_path, _params(datasets, workers=2))
    layer = net.layers[0]
    net.forward()
    pids = layer.worker_pids()
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    layer.close()
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.parametrize("exit", ["sys.exit(0)", "os._exit(0)"])  # os._exit: no Python clean-up
def test_workers_die_with_their_process(tmp_path, datasets, exit):
    proto = tmp_path / "net.prototxt"
    proto.write_text(data_layer.net_prototxt(_params(datasets, workers=2)))
    script = (
        "import os, sys, caffe; net = caffe.Net(%r, caffe.TRAIN); net.forward(); "
        "print(net.layers[0].worker_pids(), flush=True); %s" % (str(proto), exit)
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, GLOG_minloglevel="2"),
    )
    assert out.returncode == 0, out.stderr
    pids = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(pids) == 2
    deadline = time.time() + 10
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.parametrize("workers,error", [(0, ValueError), (1, RuntimeError)])
def test_undecodable_record_fails_naming_it(tmp_path, datasets, workers, error):
    net = _net(
        tmp_path,
        _params(
            datasets, source=datasets["broken"], source_fraction=1.0, batch_size=8, workers=workers
        ),
    )
    try:
        with pytest.raises(error, match="source dataset .*broken record 1: decode_image"):
            for _ in range(4):
                net.forward()
    finally:
        net.layers[0].close()


BAD = [  # (param_str or overrides, tops, words the error must contain)
    ('{"batch_size": 4', 3, ["JSON"]),
    ({"shuffle": True}, 3, ["unknown", "shuffle"]),
    ({"source": "{root}/nowhere"}, 3, ["source", "{root}/nowhere", "does not exist"]),
    ({"target": "{root}"}, 3, ["target", "{root}", "not a TransferNet dataset"]),
    ({"source": None, "target": None}, 3, ["both null"]),
    ({"source_fraction": 1.5}, 3, ["source_fraction", "[0, 1]"]),
    ({"source_fraction": -0.1}, 3, ["source_fraction", "[0, 1]"]),
    ({"source_fraction": "half"}, 3, ["source_fraction", "a number", "'half'"]),
    ({"crop": 48}, 3, ["crop 48", "resize 40"]),
    ({"source": "{target}"}, 3, ["{target}", "no masks/"]),
    ({"target": "{classes20}"}, 3, ["{classes20}", "num_classes 20", "num_classes 80"]),
    ({"multilabel": True}, 3, ["multilabel", "2 tops"]),
    ({}, 1, ["2 tops", "got 1"]),
    ({"workers": -1}, 3, ["workers"]),
    ({"mean": [1, 2]}, 3, ["mean"]),
]


@pytest.mark.parametrize("change,tops,words", BAD)
def test_bad_params_raise_naming_layer_problem_and_path(tmp_path, datasets, change, tops, words):
    words = [w.format(**datasets) for w in words]
    if isinstance(change, str):
        params, raw = {}, change
    else:
        params = _params(
            datasets,
            **{k: v.format(**datasets) if isinstance(v, str) else v for k, v in change.items()},
        )
        raw = None
    with pytest.raises(ValueError) as info:
        _net(tmp_path, params, tops=tops, raw=raw)
    message = str(info.value)
    assert message.startswith("SourceTargetData")
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize(
    "key", ["source", "target", "source_fraction", "batch_size", "resize", "crop", "num_classes"]
)
def test_a_missing_geometry_or_dataset_key_is_refused_naming_it(tmp_path, datasets, key):
    params = _params(datasets)
    del params[key]
    with pytest.raises(ValueError) as info:
        _net(tmp_path, params)
    assert str(info.value) == "SourceTargetData param_str: missing required key(s) %r" % key
