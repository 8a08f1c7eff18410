"""BaselineNet and DecoupledNet-dagger (Sec. 6.3, Appendix B): generated files, paper shapes,
what each head computes, K-label deploy, deploy == train, tools/infer.py, real training."""

import gc
import math
import os
import subprocess
import sys

import caffe
import cv2
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from caffe_train import run_caffe_train
from google.protobuf import text_format
from gradcheck import assert_per_label_equal, deploy_batched_and_per_label, net_from_prototxt
from test_models import ROOT, committed, layer, one_hot
from tiny_weights import randomize

from transfernet import baselines, config, experiment, generated, inference, nets, solvers, surgery
from transfernet.weights import WeightsError

ITERATIONS = 150
WINDOW = 30  # iterations averaged at the start and at the end of training


def build_net(cfg, net, phase=caffe.TEST, batch=1):
    kwargs = {} if net.endswith("deploy") else dict(batch=batch, input_layers=True)
    return net_from_prototxt(str(baselines.build(cfg, net, **kwargs)), phase)


def committed_deploy(baseline):
    return net_from_prototxt(committed(config.TINY.layout.model(baseline + "_deploy")))


TINY_CROP = config.TINY.architecture.crop
TINY_SIDE = TINY_CROP // 16  # conv5_3


def random_image(seed, side=TINY_CROP):
    return np.random.RandomState(seed).randn(1, 3, side, side).astype(np.float32) * 50


# generated files --------------------------------------------------------------------------


def test_generated_files_and_comments():
    for cfg in (config.PAPER, config.TINY):
        for net in baselines.NETS:
            text = committed(cfg.layout.model(net))
            file = next(f for f in generated.FILES if f.name == net)
            assert text == generated.committed_text(file, cfg)
            comments = "".join(line for line in text.splitlines(True) if line.startswith("#"))
            stale = ("320", "20x20", "512x") if cfg is config.TINY else ("128x128", "8x8")
            for value in stale:
                assert value not in comments, (cfg.name, net, value)
    assert "class score maps 80x4x4" in committed("models/paper/baselinenet_train.prototxt")
    assert "class score maps 80x2x2" in committed("models/tiny/baselinenet_train.prototxt")
    assert "conv5_3 (64x8x8)" in committed("models/tiny/decouplednet_deploy.prototxt")
    with pytest.raises(ValueError, match="unknown baseline net 'baselinenet_test'"):
        baselines.build(config.TINY, "baselinenet_test")
    with pytest.raises(ValueError, match="unknown baseline 'fcn'"):
        baselines.solver(config.TINY, "fcn")


@pytest.mark.parametrize("cfg", [config.PAPER, config.TINY], ids=["paper", "tiny"])
@pytest.mark.parametrize("baseline", baselines.BASELINES)
def test_solvers_are_the_joint_stage_from_the_stage_0_encoder(cfg, baseline):
    text = committed(cfg.layout.solver(baseline))
    param = text_format.Merge(text, caffe_pb2.SolverParameter())
    joint = solvers.solver(cfg, "joint")
    for field in (
        "type",
        "base_lr",
        "momentum",
        "momentum2",
        "lr_policy",
        "iter_size",
        "max_iter",
        "random_seed",
    ):
        assert getattr(param, field) == getattr(joint, field), field
    assert param.net == "models/%s/%s_train.prototxt" % (cfg.name, baseline)
    stage0 = solvers.final_snapshot(cfg, "classifier")
    assert list(param.weights) == [
        stage0 if baseline == "decouplednet" else stage0.replace(".caffemodel", "_fcn.caffemodel")
    ]
    assert param.snapshot_prefix == "%s/%s/%s" % (cfg.layout.snapshots, baseline, baseline)
    assert os.path.isdir(os.path.join(ROOT, os.path.dirname(param.snapshot_prefix)))
    assert cfg.layout.snapshot(baseline, joint.max_iter) == "%s_iter_%d.caffemodel" % (
        param.snapshot_prefix,
        joint.max_iter,
    )
    train = text_format.Merge(committed(param.net), caffe_pb2.NetParameter())
    joint_net = text_format.Merge(committed(joint.net), caffe_pb2.NetParameter())
    assert layer(train, "data") == layer(joint_net, "data")  # the same data layer and batch
    for name in ("conv1_1", "conv5_3", "deconv5_1", "unpool1", "seg_score", "seg_loss", "cls_loss"):
        assert layer(train, name) == layer(joint_net, name), name
    convs = [
        lay for lay in train.layer if lay.name.startswith("conv") and lay.type == "Convolution"
    ]
    assert len(convs) == 13 and all(p.lr_mult == 0 for lay in convs for p in lay.param)


# paper architecture -------------------------------------------------------------------------

PAPER_BLOBS = {
    "baselinenet": {
        "conv5_3": (1, 512, 20, 20),
        "pool5": (1, 512, 10, 10),
        "fc6": (1, 4096, 4, 4),
        "fc7": (1, 4096, 4, 4),
        "fc8_transfer": (1, 80, 4, 4),
        "cls_score": (1, 80, 1, 1),
        "class_map": (1, 1, 4, 4),
        "s": (1, 1, 20, 20),
        "unpool4": (1, 512, 40, 40),
        "seg_score": (1, 2, 320, 320),
    },
    "decouplednet": {
        "conv5_3_scaled": (1, 512, 20, 20),
        "cls_fc1": (1, 512),
        "cls_score": (1, 80),
        "relu_mask": (1, 512),
        "score_weight": (1, 512),
        "feat_grad": (1, 512, 20, 20),
        "grad_x_feat_norm": (1, 512, 20, 20),
        "bridge1": (1, 512, 20, 20),
        "s": (1, 1, 20, 20),
        "seg_score": (1, 2, 320, 320),
    },
}
PAPER_PARAMS = {
    "baselinenet": {
        "fc6": [(4096, 512, 7, 7), (4096,)],
        "fc7": [(4096, 4096, 1, 1), (4096,)],
        "fc8_transfer": [(80, 4096, 1, 1), (80,)],
        "s_fc": [(400, 16), (400,)],
        "deconv5_1": [(1, 512, 3, 3), (512,)],
    },
    "decouplednet": {
        "cls_fc1": [(512, 204800), (512,)],
        "cls_score": [(80, 512), (80,)],
        "score_weight": [(80, 512)],
        "feat_grad_flat": [(512, 204800)],
        "bridge1": [(512, 512, 3, 3), (512,)],
        "s": [(1, 512, 1, 1), (1,)],
        "deconv5_1": [(1, 512, 3, 3), (512,)],
    },
}


@pytest.mark.parametrize("kind", ["train", "deploy"])
@pytest.mark.parametrize("baseline", baselines.BASELINES)
def test_paper_shapes(baseline, kind):
    net = build_net(config.PAPER, "%s_%s" % (baseline, kind), caffe.TRAIN)
    try:
        for blob, shape in PAPER_BLOBS[baseline].items():
            if kind == "deploy" and blob == "cls_score":
                assert blob not in net.blobs
                continue
            assert net.blobs[blob].data.shape == shape, blob
        for name, shapes in PAPER_PARAMS[baseline].items():
            if kind == "train" or name != "cls_score":
                assert [b.data.shape for b in net.params[name]] == shapes, name
        if kind == "deploy":
            assert net.outputs == ["seg_prob"]
            net.blobs["label"].reshape(3, 80)
            net.reshape()
            assert net.blobs["seg_prob"].data.shape == (3, 2, 320, 320)
            assert net.blobs["s"].data.shape == (3, 1, 20, 20)
            assert net.blobs["conv5_3"].data.shape == (1, 512, 20, 20)  # encoder once
            assert net.blobs["pool1_mask"].data.shape == (1, 64, 160, 160)
    finally:
        del net
        gc.collect()


# what the heads compute ---------------------------------------------------------------------


def forward_train(baseline, labels, seed):
    net = build_net(config.TINY, baseline + "_train", batch=len(labels))
    randomize(net, seed)
    net.blobs["data"].data[...] = np.concatenate(
        [random_image(seed + k) for k in range(len(labels))]
    )
    net.blobs["label"].data[...] = one_hot(labels)
    net.blobs["seg_label"].data[...] = 0
    net.forward()
    return net


def test_baselinenet_selects_the_chosen_class_map():
    labels = [4, 61]
    net = forward_train("baselinenet", labels, seed=10)
    maps = net.blobs["fc8_transfer"].data
    assert maps.shape == (2, 80, 2, 2)
    np.testing.assert_allclose(
        net.blobs["cls_score"].data[:, :, 0, 0], maps.mean(axis=(2, 3)), rtol=1e-5, atol=1e-6
    )
    chosen = maps[np.arange(2), np.array(labels) - 1]
    np.testing.assert_allclose(net.blobs["class_map"].data[:, 0], chosen, rtol=1e-6)
    weight, bias = (b.data for b in net.params["s_fc"])
    s = chosen.reshape(2, -1) @ weight.T + bias
    np.testing.assert_allclose(net.blobs["s"].data.reshape(2, -1), s, rtol=1e-4, atol=1e-5)


def test_decouplednet_gradient_is_the_class_score_gradient():
    """feat_grad = d cls_score[c] / dA, checked by central differences of the classifier
    (recomputed from the net's weights, its output checked against cls_score first)."""
    labels = [9, 33]
    net = forward_train("decouplednet", labels, seed=20)
    A = net.blobs["conv5_3_scaled"].data.reshape(2, -1).astype(np.float64)
    w1, b1 = (b.data.astype(np.float64) for b in net.params["cls_fc1"])
    w2, b2 = (b.data.astype(np.float64) for b in net.params["cls_score"])

    def scores(a):
        return np.maximum(a @ w1.T + b1, 0) @ w2.T + b2

    expected = scores(A)  # up to 1e3: float32 sums are good to about 1e-6 of that scale
    atol = 1e-6 * np.abs(expected).max()
    np.testing.assert_allclose(net.blobs["cls_score"].data, expected, rtol=1e-4, atol=atol)
    step = 1e-4
    for n, c in enumerate(np.array(labels) - 1):
        plus = A[n] + step * np.eye(A.shape[1])
        minus = A[n] - step * np.eye(A.shape[1])
        numeric = (scores(plus)[:, c] - scores(minus)[:, c]) / (2 * step)
        analytic = net.blobs["feat_grad"].data[n].reshape(-1)
        assert np.abs(numeric).max() > 1e-2
        np.testing.assert_allclose(analytic, numeric, rtol=1e-3, atol=1e-4 * np.abs(numeric).max())
    product = net.blobs["feat_grad"].data * net.blobs["conv5_3_scaled"].data
    np.testing.assert_allclose(net.blobs["grad_x_feat"].data, product, rtol=1e-6)
    normalised = net.blobs["grad_x_feat_norm"].data.reshape(2, -1)
    np.testing.assert_allclose(normalised.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(axis=1), 1, rtol=1e-3)


@pytest.mark.parametrize("baseline", baselines.BASELINES)
def test_training_step_reaches_every_learned_layer(baseline):
    caffe.set_random_seed(0)
    net = build_net(config.TINY, baseline + "_train", caffe.TRAIN, batch=2)
    rng = np.random.RandomState(0)
    net.blobs["data"].data[...] = rng.randn(2, 3, TINY_CROP, TINY_CROP) * 50
    net.blobs["label"].data[...] = one_hot([3, 60])
    net.blobs["seg_label"].data[...] = rng.choice([0, 1, 255], size=(2, 1, TINY_CROP, TINY_CROP))
    out = net.forward()
    if baseline == "decouplednet":  # small initial scores (0.01 Gaussians): about chance
        assert out["cls_loss"] == pytest.approx(math.log(80), rel=0.1)
    else:  # the classifier's MSRA fillers (its training starts from the classifier's weights)
        assert math.log(80) * 0.9 < out["cls_loss"] < 3 * math.log(80)
    assert out["seg_loss"] == pytest.approx(math.log(2), abs=1e-2)
    net.backward()
    for name, blobs in net.params.items():
        if name.startswith("conv"):
            assert not blobs[0].diff.any(), name  # frozen encoder
        else:
            assert blobs[0].diff.any() and np.all(np.isfinite(blobs[0].diff)), name


# FCN's surgery of the stage-0 classifier ------------------------------------------------------


def saved_classifier(tmp_path, cfg, seed):
    """A tiny classifier_deploy net with random O(1) weights, and its caffemodel's path."""
    net = net_from_prototxt(str(nets.classifier_deploy(cfg)))
    randomize(net, seed)
    path = str(tmp_path / "classifier.caffemodel")
    net.save(path)
    return net, path


def test_surgery_copies_the_classifier_and_gives_its_scores(tmp_path):
    """The convolutional fc6-fc8 hold the classifier's weights; at the classifier's own crop
    BaselineNet's score map is 1x1 and equals the classifier's scores."""
    cfg = config.TINY
    classifier, path = saved_classifier(tmp_path, cfg, seed=60)
    run = subprocess.run(
        [sys.executable, "tools/surgery.py", "--config", "tiny", "--weights", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = str(tmp_path / "classifier_fcn.caffemodel")
    assert run.stdout.splitlines() == [
        "fc6: (512, 576) -> (512, 64, 3, 3)",
        "fc7: (512, 512) -> (512, 512, 1, 1)",
        "fc8_transfer: (80, 512) -> (80, 512, 1, 1)",
        "wrote %s" % out,
    ]
    arch, data = cfg.architecture, cfg.data
    same_crop = cfg._replace(
        architecture=arch._replace(crop=arch.classifier_crop),
        data=data._replace(resize=data.classifier_resize),
    )
    assert (
        baselines.score_map_side(same_crop.architecture) == 1
        and baselines.score_map_side(arch) == 2
    )
    fcn = net_from_prototxt(str(baselines.build(same_crop, "baselinenet_deploy")))
    fcn.copy_from(out)
    for name in ("conv1_1", "conv5_3", "fc6", "fc7", "fc8_transfer"):
        for mine, theirs in zip(fcn.params[name], classifier.params[name]):
            np.testing.assert_array_equal(
                mine.data.reshape(theirs.data.shape), theirs.data, err_msg=name
            )
    image = random_image(61, side=arch.classifier_crop)
    classifier.blobs["data"].data[...] = image
    classifier.forward()
    scores = classifier.blobs["fc8_transfer"].data.copy()
    fcn.blobs["data"].data[...] = image
    fcn.blobs["label"].data[...] = one_hot([7])
    fcn.forward()
    assert fcn.blobs["fc8_transfer"].data.shape == (1, 80, 1, 1)
    assert np.abs(scores).max() > 1e-2
    np.testing.assert_allclose(
        fcn.blobs["fc8_transfer"].data[:, :, 0, 0],
        scores,
        rtol=1e-4,
        atol=1e-5 * np.abs(scores).max(),
    )


def test_surgery_refuses_weights_of_another_net_or_crop(tmp_path):
    seg = net_from_prototxt(committed(config.TINY.layout.model("seg_deploy")))
    seg.save(str(tmp_path / "seg.caffemodel"))
    with pytest.raises(WeightsError, match=r"seg.caffemodel has no layer fc6: not a stage-0"):
        surgery.write_fcn_weights(config.TINY, str(tmp_path / "seg.caffemodel"))
    _, path = saved_classifier(
        tmp_path,
        config.TINY._replace(architecture=config.TINY.architecture._replace(classifier_crop=64)),
        seed=62,
    )
    with pytest.raises(
        WeightsError,
        match=r"layer fc6 has weight shape \(512, 256\), 131072 "
        r"values; its convolution form \(512, 64, 3, 3\)",
    ):
        surgery.write_fcn_weights(config.TINY, path)
    assert not os.path.exists(surgery.fcn_path(path))
    run = subprocess.run(
        [
            sys.executable,
            "tools/surgery.py",
            "--config",
            "tiny",
            "--weights",
            str(tmp_path / "none.caffemodel"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [
        "surgery.py: error: weights file %s not found" % (tmp_path / "none.caffemodel")
    ]


# deploy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", baselines.BASELINES)
def test_deploy_batched_equals_per_label(baseline):
    net = committed_deploy(baseline)
    randomize(net, seed=1)
    image, labels = random_image(2), one_hot([5, 17, 42])
    batched, single = deploy_batched_and_per_label(net, image, labels, ("seg_prob", "s"))
    assert batched["seg_prob"].shape == (3, 2, TINY_CROP, TINY_CROP)
    assert batched["s"].shape == (3, 1, TINY_SIDE, TINY_SIDE)
    np.testing.assert_allclose(batched["seg_prob"].sum(axis=1), 1, rtol=1e-5)
    assert np.abs(batched["s"][0] - batched["s"][1]).max() > 1e-3
    assert np.abs(batched["seg_prob"][0] - batched["seg_prob"][2]).max() > 1e-3
    assert_per_label_equal(batched, single)


@pytest.fixture(scope="module")
def trained_weights(tmp_path_factory):
    """Random O(1) weights of each tiny baseline training net, saved as caffemodels."""
    folder = tmp_path_factory.mktemp("baseline_weights")
    paths = {}
    for seed, baseline in enumerate(baselines.BASELINES):
        net = build_net(config.TINY, baseline + "_train")
        randomize(net, seed=30 + seed)
        paths[baseline] = str(folder / (baseline + ".caffemodel"))
        net.save(paths[baseline])
    return paths


@pytest.mark.parametrize("baseline", baselines.BASELINES)
def test_deploy_loads_training_weights_and_matches_train(baseline, trained_weights):
    train = build_net(config.TINY, baseline + "_train")
    train.copy_from(trained_weights[baseline])
    deploy = inference.load_net(
        os.path.join(ROOT, config.TINY.layout.model(baseline + "_deploy")),
        trained_weights[baseline],
    )
    for name, blobs in deploy.params.items():
        for mine, theirs in zip(blobs, train.params[name]):
            np.testing.assert_array_equal(mine.data, theirs.data, err_msg=name)
    for net in (train, deploy):
        net.blobs["data"].data[...] = random_image(40)
        net.blobs["label"].data[...] = one_hot([12])
        net.forward()
    for blob in ("s", "seg_score"):
        np.testing.assert_allclose(
            deploy.blobs[blob].data, train.blobs[blob].data, rtol=1e-4, atol=1e-6, err_msg=blob
        )


@pytest.mark.parametrize("baseline", baselines.BASELINES)
def test_tools_infer_runs_the_baseline_deploy_net(baseline, trained_weights, tmp_path):
    image = (np.random.RandomState(50).rand(70, 90, 3) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "img.png"), image)
    model = config.TINY.layout.model(baseline + "_deploy")
    run = subprocess.run(
        [
            sys.executable,
            "tools/infer.py",
            "--config",
            "tiny",
            "--model",
            model,
            "--weights",
            trained_weights[baseline],
            "--image",
            str(tmp_path / "img.png"),
            "--labels",
            "3,8",
            "--save-prob",
            "--vis",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "out" / "img.png").is_file()
    assert (tmp_path / "out" / "vis" / "img.png").is_file()  # figure without alpha
    saved = inference.load_prob(str(tmp_path / "out" / "prob" / "img.npz"))
    net = inference.load_net(os.path.join(ROOT, model), trained_weights[baseline])
    seg = inference.segment(net, image, [3, 8])
    assert seg.alpha is None and seg.s.shape == (2, TINY_SIDE, TINY_SIDE)
    assert saved["fg"].shape == (2, 70, 90)
    np.testing.assert_allclose(saved["fg"], seg.fg, atol=1e-5)


# real training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", baselines.BASELINES)
def test_caffe_train_lowers_both_losses(baseline, tmp_path, builtin_lmdbs):
    source, target = builtin_lmdbs
    cfg = config.TINY.with_data(source=source, target=target)
    rows = run_caffe_train(
        tmp_path,
        baselines.build(cfg, baseline + "_train"),
        baselines.solver(cfg, baseline),
        ITERATIONS,
    )
    assert [r["iteration"] for r in rows][:ITERATIONS] == list(range(ITERATIONS))
    for loss in ("cls_loss", "seg_loss"):
        values = np.array([r[loss] for r in rows[:ITERATIONS]])
        assert np.all(np.isfinite(values)), loss
        first, last = values[:WINDOW].mean(), values[-WINDOW:].mean()
        assert last < 0.9 * first, "%s did not fall: %.4f -> %.4f" % (loss, first, last)


def test_baselinenet_run_trains_from_the_surgered_stage_0_snapshot(tmp_path, builtin_lmdbs):
    """experiment.train writes the fully convolutional classifier before caffe starts, and the
    baseline's fc6-fc8 come from it, the decoder and s_fc from their fillers."""
    source, target = builtin_lmdbs
    schedule = config.TINY.schedule._replace(
        snapshot=2,
        stages=dict(
            config.TINY.schedule.stages,
            joint=config.Stage(batch=2, iter_size=1, max_iter=2, base_lr=1e-4),
        ),
    )
    cfg = config.TINY.with_data(source=source, target=target)._replace(schedule=schedule)
    run = experiment.prepare(str(tmp_path / "run"), cfg, 0, baseline="baselinenet")
    stage0 = experiment.final_snapshot(run, "classifier")
    os.makedirs(os.path.dirname(stage0), exist_ok=True)  # prepare makes the stages' folders
    classifier, saved = saved_classifier(tmp_path, cfg, seed=63)
    os.replace(saved, stage0)
    messages = []
    experiment.train(run, "joint", progress=messages.append)
    fcn = surgery.fcn_path(stage0)
    assert "joint: fc6, fc7, fc8_transfer as convolutions (FCN surgery) in %s" % fcn in messages
    loaded = [m for m in messages if m.startswith("joint: weights %s: " % fcn)]
    assert len(loaded) == 1 and "fc6, fc7, fc8_transfer" in loaded[0]
    fillers = [m for m in messages if m.startswith("joint: from fillers:")][0]
    assert "s_fc" in fillers and "deconv5_1" in fillers and "fc6" not in fillers
    trained = inference.load_net(
        experiment.model_file(run, "baselinenet_deploy"), experiment.final_snapshot(run, "joint")
    )
    np.testing.assert_array_equal(
        trained.params["conv3_1"][0].data, classifier.params["conv3_1"][0].data
    )  # frozen encoder
