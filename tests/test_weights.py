"""Caffemodels that do not fit: transfernet.weights' checks in real Caffe, the
tools that load weights for inference, and the solver check before training."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from tiny_weights import REPO, SEG_MODEL, make_image

from transfernet import config, inference, nets, solvers
from transfernet.weights import (
    WeightsError,
    check_solver,
    describe_fits,
    net_shapes,
    read_caffemodel,
)


def write_param(path, param):
    with open(path, "wb") as f:
        f.write(param.SerializeToString())
    return str(path)


def read_param(path):
    param = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        param.ParseFromString(f.read())
    return param


@pytest.fixture(scope="module")
def bad_weights(weights, tmp_path_factory):
    """{case: caffemodel path} of files that must be refused as seg_deploy weights."""
    folder = tmp_path_factory.mktemp("bad_weights")
    data = open(weights["seg"], "rb").read()
    paths = {
        "empty": folder / "empty.caffemodel",
        "garbage": folder / "garbage.caffemodel",
        "truncated": folder / "truncated.caffemodel",
    }
    paths["empty"].write_bytes(b"")
    paths["garbage"].write_bytes(np.random.RandomState(0).bytes(5000))
    paths["truncated"].write_bytes(data[: len(data) // 2])
    out = {k: str(v) for k, v in paths.items()}
    out["classifier"] = weights["cls"]  # another net's caffemodel
    param = read_param(weights["seg"])
    layer = next(lay for lay in param.layer if lay.name == "deconv5_1")
    layer.blobs[0].shape.dim[0] += 1
    out["reshaped"] = write_param(folder / "reshaped.caffemodel", param)
    out["missing"] = str(folder / "missing.caffemodel")
    return out


def seg_shapes():
    import caffe

    return net_shapes(caffe.Net(SEG_MODEL, caffe.TEST))


def reshaped(shapes):
    """The shapes with the first dimension of the first blob one larger."""
    return [(shapes[0][0] + 1,) + shapes[0][1:]] + shapes[1:]


SHAPES = seg_shapes()
MESSAGES = {  # case: what the one error line says
    "empty": "is empty (0 bytes), not a caffemodel",
    "garbage": "is not a caffemodel: it does not parse as a Caffe NetParameter",
    "truncated": "is not a caffemodel: it does not parse as a Caffe NetParameter",
    "classifier": "does not fit %s: layer feat_embed (blob shapes %s) is not in the file"
    % (config.TINY.layout.model("seg_deploy"), SHAPES["feat_embed"]),
    "reshaped": "layer deconv5_1 has blob shapes %s in the file, the net expects %s"
    % (reshaped(SHAPES["deconv5_1"]), SHAPES["deconv5_1"]),
    "missing": "not found",
}


@pytest.mark.parametrize("case", sorted(MESSAGES))
def test_load_net_refuses_weights_that_do_not_fit(bad_weights, case):
    with pytest.raises(WeightsError) as err:
        inference.load_net(SEG_MODEL, bad_weights[case])
    assert bad_weights[case] in str(err.value)
    assert MESSAGES[case].replace(config.TINY.layout.model("seg_deploy"), SEG_MODEL) in str(
        err.value
    )


def test_load_net_copies_every_layer_and_reads_legacy_v1_files(weights, tmp_path):
    net = inference.load_net(SEG_MODEL, weights["seg"])
    param = read_param(weights["seg"])
    assert net_shapes(net) and set(net_shapes(net)) <= {layer.name for layer in param.layer}
    for layer in param.layer:
        for blob, proto in zip(
            net.params[layer.name] if layer.name in net.params else [], layer.blobs
        ):
            np.testing.assert_array_equal(blob.data.ravel(), np.array(proto.data, np.float32))
    # The V1 format of the model zoo's VGG-16 caffemodel: `layers`, num/channels/height/width.
    v1 = caffe_pb2.NetParameter()
    for layer in param.layer:
        old = v1.layers.add(name=layer.name)
        for blob in layer.blobs:
            dims = (1,) * (4 - len(blob.shape.dim)) + tuple(blob.shape.dim)
            old.blobs.add(
                num=dims[0], channels=dims[1], height=dims[2], width=dims[3], data=blob.data
            )
    legacy = inference.load_net(SEG_MODEL, write_param(tmp_path / "v1.caffemodel", v1))
    for name, blobs in net.params.items():
        for mine, theirs in zip(blobs, legacy.params[name]):
            np.testing.assert_array_equal(mine.data, theirs.data)
    # A V1 blob of the right count but other dims is refused, as Caffe's ShapeEquals does.
    # InnerProduct: 1 x 1 x out x in
    fc = next(lay for lay in v1.layers if lay.name == "feat_embed")
    assert (fc.blobs[0].num, fc.blobs[0].channels) == (1, 1)
    fc.blobs[0].height, fc.blobs[0].width = fc.blobs[0].width, fc.blobs[0].height
    with pytest.raises(WeightsError, match="layer feat_embed has blob shapes"):
        inference.load_net(SEG_MODEL, write_param(tmp_path / "v1_bad.caffemodel", v1))


def test_a_prototxt_is_not_a_caffemodel():
    with pytest.raises(WeightsError, match="not a caffemodel"):
        read_caffemodel(SEG_MODEL)


def run_tool(tool, *args):
    cmd = [sys.executable, os.path.join(REPO, "tools", tool), "--config", "tiny"] + list(args)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["empty", "garbage", "truncated", "classifier"])
def test_tools_refuse_weights_before_any_output(bad_weights, weights, tmp_path, case):
    image = str(tmp_path / "a.jpg")
    cv2.imwrite(image, make_image(50, 80, seed=1))
    out = tmp_path / "out"
    res = run_tool(
        "infer.py",
        "--image",
        image,
        "--labels",
        "3",
        "--weights",
        bad_weights[case],
        "--out",
        str(out),
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("infer.py: error: weights file %s " % bad_weights[case])
    assert MESSAGES[case] in res.stderr and len(res.stderr.splitlines()) == 1  # no glog
    assert res.stdout == "" and not out.exists()
    # The classifier's weights where the classifier's are expected are fine; the seg
    # net's are not (the other way round).
    fig = tmp_path / "fig.png"
    res = run_tool(
        "visualize.py",
        "--image",
        image,
        "--weights",
        bad_weights[case],
        "--labels",
        "3",
        "--out",
        str(fig),
    )
    assert res.returncode == 2 and "weights file %s" % bad_weights[case] in res.stderr
    assert not fig.exists()
    res = run_tool(
        "infer.py",
        "--image",
        image,
        "--weights",
        weights["seg"],
        "--classifier-weights",
        weights["seg"],
        "--out",
        str(out),
    )
    assert (
        res.returncode == 2
        and "does not fit %s: layer fc6" % config.TINY.layout.model("classifier_deploy")
        in res.stderr
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"layer { name: 'a' type: }", "does not parse as a NetParameter: 1:25 "),
        (b"name: 'caf\xe9'", "byte 0xe9 at line 1 is not UTF-8"),
    ],
)
def test_tools_name_a_prototxt_caffe_would_abort_on(weights, tmp_path, content, message):
    image = str(tmp_path / "a.jpg")
    cv2.imwrite(image, make_image(50, 80, seed=1))
    bad = tmp_path / "bad.prototxt"
    bad.write_bytes(content)
    common = ["--image", image, "--labels", "3", "--weights", weights["seg"]]
    for tool, args in [
        ("infer.py", common + ["--model", str(bad), "--out", str(tmp_path / "out")]),
        ("visualize.py", common + ["--model", str(bad), "--out", str(tmp_path / "f.png")]),
        (
            "infer.py",
            common[:2]
            + common[4:]
            + ["--classifier-model", str(bad), "--out", str(tmp_path / "o")],
        ),
    ]:
        res = run_tool(tool, *args)
        assert res.returncode == 2 and res.stdout == "" and len(res.stderr.splitlines()) == 1
        assert res.stderr.startswith("%s: error: %s" % (tool, bad)) and message in res.stderr
    res = subprocess.run(
        [sys.executable, "tools/train.py", "--solver", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and res.stderr.startswith("train: %s" % bad)
    assert len(res.stderr.splitlines()) == 1


def attention_snapshot(tmp_path):
    """A caffemodel of the tiny attention_train net (fillers), as stage 1 would save it."""
    import caffe

    model = str(tmp_path / "attention.prototxt")
    with open(model, "w") as f:
        f.write(str(nets.build(config.TINY, "attention_train", input_layers=True)))
    path = str(tmp_path / "attention.caffemodel")
    caffe.Net(model, caffe.TRAIN).save(path)
    return path


def write_solver(tmp_path, cfg, stage, init):
    net = str(tmp_path / (stage + "_net.prototxt"))
    with open(net, "w") as f:
        f.write(str(nets.build(cfg, solvers.STAGE_NET[stage])))
    param = solvers.solver(cfg, stage)
    param.net = net
    param.snapshot_prefix = str(tmp_path / stage)
    del param.weights[:]
    param.weights.append(init)
    path = str(tmp_path / (stage + "_solver.prototxt"))
    with open(path, "w") as f:
        f.write(str(param))
    return path


def test_check_solver_says_what_comes_from_the_file_and_from_fillers(
    builtin_lmdbs, bad_weights, tmp_path
):
    source, target = builtin_lmdbs
    cfg = config.TINY.with_data(source=source, target=target)
    snapshot = attention_snapshot(tmp_path)
    solver = write_solver(tmp_path, cfg, "joint", snapshot)
    fits = check_solver(solver)
    assert [f.path for f in fits] == [snapshot]
    assert "conv5_3" in fits[0].loaded and "feat_embed" in fits[0].loaded
    assert "deconv5_1" in fits[0].fillers and "conv5_3" not in fits[0].fillers
    lines = describe_fits(fits)
    assert lines[0].startswith(
        "weights %s: %d layers from the file (conv1_1, " % (snapshot, len(fits[0].loaded))
    )
    assert lines[-1].startswith("from fillers: %d layers (" % len(fits[0].fillers))
    assert "deconv5_1" in lines[-1]
    res = subprocess.run(
        [sys.executable, "tools/check_solver.py", solver],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["%s:" % solver] + ["  " + line for line in lines]
    # Missing (with what to do), not a caffemodel, another net's layers of other shapes.
    vgg = str(tmp_path / "data" / "vgg16" / "VGG_ILSVRC_16_layers.caffemodel")
    for init, message in [
        (
            vgg,
            "weights file %s not found; stage 0 starts from the ImageNet VGG-16 "
            "caffemodel: download VGG_ILSVRC_16_layers.caffemodel" % vgg,
        ),
        (
            str(tmp_path / "joint_iter_5.caffemodel"),
            "it is the final snapshot of the previous stage: train that stage",
        ),
        (bad_weights["truncated"], "does not parse as a Caffe NetParameter"),
        (
            bad_weights["reshaped"],
            "layer deconv5_1 has blob shapes %s" % reshaped(SHAPES["deconv5_1"]),
        ),
    ]:
        solver = write_solver(tmp_path, cfg, "joint", init)
        with pytest.raises(WeightsError) as err:
            check_solver(solver)
        assert message in str(err.value)
        res = subprocess.run(
            [sys.executable, "tools/check_solver.py", solver],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 2 and message in res.stderr
        assert len(res.stderr.splitlines()) == 1


def test_check_solver_names_a_solver_or_net_that_does_not_parse_or_is_missing(tmp_path):
    solver = tmp_path / "solver.prototxt"
    solver.write_text('net: "%s"\nbase_lr: {' % (tmp_path / "none.prototxt"))
    with pytest.raises(ValueError, match="%s does not parse as a SolverParameter" % solver):
        check_solver(str(solver))
    solver.write_bytes(b'net: "x"  # caf\xe9\n')
    with pytest.raises(ValueError, match="%s: byte 0xe9 at line 1 is not UTF-8" % solver):
        check_solver(str(solver))
    missing = tmp_path / "none.prototxt"
    solver.write_text('net: "%s"\nbase_lr: 0.1' % missing)
    with pytest.raises(ValueError, match="its net '%s' is not a file" % missing):
        check_solver(str(solver))
    missing.write_text("layer { name: 'a' type: }")  # Caffe would abort on it
    with pytest.raises(ValueError, match="%s does not parse as a NetParameter" % missing):
        check_solver(str(solver))


def test_check_solver_refuses_a_file_that_initialises_no_layer(builtin_lmdbs, tmp_path):
    source, target = builtin_lmdbs
    cfg = config.TINY.with_data(source=source, target=target)
    other = caffe_pb2.NetParameter()
    other.layer.add(name="fc_elsewhere").blobs.add(data=[1, 2]).shape.dim.append(2)
    path = write_param(tmp_path / "other.caffemodel", other)
    with pytest.raises(WeightsError, match="initialises no layer of .*its layers: fc_elsewhere"):
        check_solver(write_solver(tmp_path, cfg, "classifier", path))
