"""Generated networks and solvers: committed files, paper shapes, deploy batching, training.

Paper-size nets are built one at a time with Input layers (batch 1) and freed; the values
that only the paper's architecture gives (Sec. 4, reference facts) are written out here
independently of transfernet/nets.py.
"""

import gc
import importlib.util
import json
import math
import os
import subprocess
import sys

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from gradcheck import assert_per_label_equal, deploy_batched_and_per_label, net_from_prototxt
from tiny_weights import randomize

from transfernet import baselines, config, generated, nets, solvers
from transfernet.atomic import write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CROP = config.TINY.architecture.crop  # the tiny nets' input side
_spec = importlib.util.spec_from_file_location(
    "generate_models", os.path.join(ROOT, "tools", "generate_models.py")
)
generate_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate_models)


def conv_params(cin, cout, k=3):
    return cin * cout * k * k + cout


def ip_params(n_in, n_out):
    return n_in * n_out + n_out


# VGG-16 conv1_1..conv5_3 (in, out); 14,714,688 parameters, the well-known figure.
VGG16_CONVS = [
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
]
# Decoder deconv5_1 (on the one-channel s of Eq. 7), 4_1..4_3, 3_1..3_3, 2_1..2_2, 1_1..1_2.
DECONVS = [
    (1, 512),
    (512, 512),
    (512, 512),
    (512, 256),
    (256, 256),
    (256, 256),
    (256, 128),
    (128, 128),
    (128, 64),
    (64, 64),
    (64, 64),
]
M, D, FACTORS, CLASSES = 20 * 20, 512, 1024, 80
ATTENTION_PARAMS = (
    ip_params(M * D, FACTORS)
    + ip_params(CLASSES, FACTORS)  # Eq. 4
    + ip_params(FACTORS, FACTORS)
    + ip_params(FACTORS, M)
)
F_CLS_PARAMS = ip_params(D, 512) + ip_params(512, CLASSES)
JOINT_PARAMS = (
    sum(conv_params(a, b) for a, b in VGG16_CONVS)
    + ATTENTION_PARAMS
    + F_CLS_PARAMS
    + sum(conv_params(a, b) for a, b in DECONVS)
    + conv_params(64, 2, k=1)
)

PAPER_BLOBS = {
    "classifier_train": {
        "data": (1, 3, 224, 224),
        "pool5": (1, 512, 7, 7),
        "fc7": (1, 4096),
        "fc8_transfer": (1, 80),
        "label": (1, 80),
    },
    "classifier_deploy": {"data": (1, 3, 224, 224), "pool5": (1, 512, 7, 7), "prob": (1, 80)},
    "attention_train": {
        "conv5_3": (1, 512, 20, 20),
        "conv5_3_scaled": (1, 512, 20, 20),
        "feat_embed": (1, 1024),
        "alpha": (1, 1, 20, 20),
        "z": (1, 512),
        "cls_score": (1, 80),
        "label_index": (1, 1),
    },
    "joint_train": {
        "conv5_3": (1, 512, 20, 20),
        "alpha": (1, 1, 20, 20),
        "z": (1, 512),
        "s": (1, 1, 20, 20),
        "seg_score": (1, 2, 320, 320),
        "pool4_mask": (1, 512, 20, 20),
        "pool1_mask": (1, 64, 160, 160),
        "unpool4": (1, 512, 40, 40),
        "unpool1": (1, 64, 320, 320),
        "cls_score": (1, 80),
        "seg_label": (1, 1, 320, 320),
    },
    "seg_deploy": {
        "conv5_3": (1, 512, 20, 20),
        "alpha": (1, 1, 20, 20),
        "z": (1, 512),
        "s": (1, 1, 20, 20),
        "seg_prob": (1, 2, 320, 320),
        "pool4_mask": (1, 512, 20, 20),
    },
}
PAPER_PARAM_SHAPES = {
    "feat_embed": [(1024, 204800), (1024,)],
    "cls_embed": [(1024, 80), (1024,)],
    "att_hidden": [(1024, 1024), (1024,)],
    "att_score": [(400, 1024), (400,)],
    "cls_fc1": [(512, 512), (512,)],
    "cls_score": [(80, 512), (80,)],
    "fc6": [(4096, 25088), (4096,)],
    "fc7": [(4096, 4096), (4096,)],
    "fc8_transfer": [(80, 4096), (80,)],
    "conv5_3": [(512, 512, 3, 3), (512,)],
    "deconv5_1": [(1, 512, 3, 3), (512,)],
    "deconv4_3": [(512, 256, 3, 3), (256,)],
    "seg_score": [(2, 64, 1, 1), (2,)],
}
PAPER_PARAM_TOTALS = {
    "joint_train": JOINT_PARAMS,
    "attention_train": JOINT_PARAMS
    - sum(conv_params(a, b) for a, b in DECONVS)
    - conv_params(64, 2, k=1),
    "seg_deploy": JOINT_PARAMS - F_CLS_PARAMS,
}


def committed(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def committed_net(cfg, net):
    return text_format.Merge(committed(cfg.layout.model(net)), caffe_pb2.NetParameter())


def committed_solver(cfg, stage):
    return text_format.Merge(committed(cfg.layout.solver(stage)), caffe_pb2.SolverParameter())


def layer(proto, name):
    found = [lay for lay in proto.layer if lay.name == name]
    assert len(found) == 1, name
    return found[0]


def build_net(cfg, net, phase=caffe.TEST, **kwargs):
    return net_from_prototxt(str(nets.build(cfg, net, **kwargs)), phase)


def train_kwargs(net, batch=1):
    return {} if net.endswith("deploy") else dict(batch=batch, input_layers=True)


def one_hot(class_ids, num_classes=80):
    label = np.zeros((len(class_ids), num_classes), np.float32)
    label[np.arange(len(class_ids)), np.asarray(class_ids) - 1] = 1
    return label


# (a) committed files ----------------------------------------------------------------------


def test_committed_files_equal_generator_output():
    assert generate_models.differences() == []
    check = subprocess.run(
        [sys.executable, "tools/generate_models.py", "--check"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_check_lists_changed_missing_and_stray_files(tmp_path):
    for path, text in generated.committed_files(config.CONFIGS.values()).items():
        write_text(str(tmp_path / path), text)
    assert generate_models.differences(str(tmp_path)) == []
    (tmp_path / "models/tiny/joint_train.prototxt").write_text('name: "edited"\n')
    (tmp_path / "solvers/joint.prototxt").unlink()
    (tmp_path / "models/paper/old_net.prototxt").write_text("")
    assert generate_models.differences(str(tmp_path)) == [
        "models/tiny/joint_train.prototxt (differs)",
        "solvers/joint.prototxt (missing)",
        "models/paper/old_net.prototxt (not generated)",
    ]
    assert not [p for p in os.listdir(tmp_path / "models/paper") if p.startswith(".")]


def test_generated_paths():
    assert sorted(generated.committed_files(config.CONFIGS.values())) == sorted(
        ["models/%s/%s.prototxt" % (c, n) for c in ("paper", "tiny") for n in nets.NETS]
        + ["models/%s/%s.prototxt" % (c, n) for c in ("paper", "tiny") for n in baselines.NETS]
        + ["solvers/%s.prototxt" % s for s in solvers.STAGES + baselines.BASELINES]
        + ["solvers/tiny/%s.prototxt" % s for s in solvers.STAGES + baselines.BASELINES]
    )


PYTHON_LAYERS = {
    ("data_layer", "SourceTargetData"),
    ("attention_ops", "AttentionPool"),
    ("attention_ops", "Densify"),
    ("unpool", "UnpoolConstants"),
}


def test_committed_nets_unpool_with_stock_layers():
    """No committed net runs the reference Unpool layer; every unpooled blob unpool1..4 is
    made by stock layers, and its constants come with propagate_down false."""
    for cfg in (config.PAPER, config.TINY):
        for net in nets.NETS + baselines.NETS:
            proto = committed_net(cfg, net)
            python = {
                (lay.python_param.module, lay.python_param.layer)
                for lay in proto.layer
                if lay.type == "Python"
            }
            assert python <= PYTHON_LAYERS, (cfg.name, net)
            if net in ("joint_train", "seg_deploy") or net in baselines.NETS:
                for block in (1, 2, 3, 4):
                    assert layer(proto, "unpool%d" % block).type == "Reshape"
                    constants = layer(proto, "unpool%d_positions" % block)
                    assert list(constants.propagate_down) == [False, False]
    with pytest.raises(ValueError, match="unknown unpool_kind 'numpy'"):
        nets.joint_train(config.TINY, unpool_kind="numpy")


def test_tiny_comments_carry_tiny_sizes():
    for net in nets.NETS:
        comments = "".join(
            line
            for line in committed(config.TINY.layout.model(net)).splitlines(True)
            if line.startswith("#")
        )
        for stale in ("320", "224", "20x20", "1024", "4096"):
            assert stale not in comments, (net, stale)
    assert "128x128" in committed("models/tiny/joint_train.prototxt")
    assert "conv5_3 512x20x20 (M = 400, D = 512, receptive field 196 px)" in committed(
        "models/paper/joint_train.prototxt"
    )


def test_kernel_sizes_and_receptive_field():
    # VGG-16 without pool5: 13 3x3 convolutions, 4 poolings (Sec. 6.1's conv5_3)
    assert nets.receptive_field(config.PAPER.architecture) == 196
    assert (
        nets.kernel_sizes(config.PAPER.architecture)
        == ((3, 3), (3, 3), (3, 3, 3)) + ((3,) * 3,) * 2
    )
    # tiny: 3x3 in the first convolution of blocks 1-4: 3 + 1 + 2*2 + 2 + 2*4 + 4 + 2*8 + 8
    assert nets.receptive_field(config.TINY.architecture) == 46
    net = build_net(config.TINY, "seg_deploy", caffe.TEST)
    assert net.params["conv4_1"][0].data.shape[2:] == (3, 3)
    assert net.params["conv4_2"][0].data.shape[2:] == (1, 1)
    assert net.blobs["conv5_3"].data.shape[2:] == net.blobs["pool4"].data.shape[2:]
    for bad in (((3, 1),) * 5, ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 2, 3))):
        arch = config.TINY.architecture._replace(kernels=bad)
        with pytest.raises(ValueError, match="kernels"):
            nets.kernel_sizes(arch)


# (b) paper architecture ---------------------------------------------------------------------


@pytest.mark.parametrize("phase", [caffe.TRAIN, caffe.TEST], ids=["TRAIN", "TEST"])
@pytest.mark.parametrize("net_name", nets.NETS)
def test_paper_net_shapes_and_parameters(net_name, phase):
    net = build_net(config.PAPER, net_name, phase, **train_kwargs(net_name))
    try:
        for blob, shape in PAPER_BLOBS[net_name].items():
            assert net.blobs[blob].data.shape == shape, blob
        for name, shapes in PAPER_PARAM_SHAPES.items():
            if name in net.params:
                assert [b.data.shape for b in net.params[name]] == shapes, name
        total = sum(b.data.size for blobs in net.params.values() for b in blobs)
        if net_name in PAPER_PARAM_TOTALS:
            assert total == PAPER_PARAM_TOTALS[net_name]
        if net_name == "seg_deploy":
            net.blobs["label"].reshape(3, 80)
            net.reshape()
            assert net.blobs["seg_prob"].data.shape == (3, 2, 320, 320)
            assert net.blobs["alpha"].data.shape == (3, 1, 20, 20)
            assert net.blobs["unpool4"].data.shape == (3, 512, 40, 40)
            # the encoder ran once: its blobs keep batch 1
            assert net.blobs["conv5_3"].data.shape == (1, 512, 20, 20)
            assert net.blobs["pool1_mask"].data.shape == (1, 64, 160, 160)
    finally:
        del net
        gc.collect()


def test_independent_parameter_count():
    assert sum(conv_params(a, b) for a, b in VGG16_CONVS) == 14714688
    # encoder + attention (feat_embed alone 209,716,224) + f_cls + decoder and seg_score
    assert JOINT_PARAMS == 14714688 + 211258768 + 303696 + 7675202 == 233952354


def learning(proto, name):
    return [(p.lr_mult, p.decay_mult) for p in layer(proto, name).param]


@pytest.mark.parametrize("net_name", ["attention_train", "joint_train", "seg_deploy"])
def test_encoder_frozen_in_stage_1_and_2(net_name):
    for cfg in (config.PAPER, config.TINY):
        proto = committed_net(cfg, net_name)
        convs = [
            lay.name
            for lay in proto.layer
            if lay.name.startswith("conv") and lay.type == "Convolution"
        ]
        assert convs == ["conv%d_%d" % (b, i) for b, _, n in nets.ENCODER for i in range(1, n + 1)]
        for name in convs:
            assert learning(proto, name) == [(0, 0), (0, 0)], name
        for name in ("feat_embed", "cls_embed", "att_score", "deconv1_2", "seg_score"):
            if any(lay.name == name for lay in proto.layer):
                assert learning(proto, name) == [(1, 1), (2, 0)], name
        if net_name != "seg_deploy":
            assert learning(proto, "cls_score") == [(10, 1), (20, 0)]
        assert not any(lay.name == "pool5" for lay in proto.layer)


def test_classifier_encoder_trainable():
    proto = committed_net(config.PAPER, "classifier_train")
    assert learning(proto, "conv1_1") == [(1, 1), (2, 0)]
    assert layer(proto, "cls_loss").type == "SigmoidCrossEntropyLoss"
    assert list(layer(proto, "cls_loss").bottom) == ["fc8_transfer", "label"]


def test_paper_losses_and_data_layers():
    joint = committed_net(config.PAPER, "joint_train")
    seg = layer(joint, "seg_loss")
    assert (list(seg.bottom), list(seg.loss_weight), seg.loss_param.ignore_label) == (
        ["seg_score", "seg_label"],
        [2],
        255,
    )
    for block, x, ref in ((4, "deconv5_1", "conv4_3"), (1, "deconv2_2", "conv1_2")):
        name = "unpool%d" % block
        assert list(layer(joint, name + "_positions").bottom) == [x, ref]
        assert list(layer(joint, name + "_offset").bottom) == [
            name + "_positions",
            "pool%d_mask" % block,
        ]
        assert list(layer(joint, name + "_values").bottom) == [name + "_zeros", x]
        assert list(layer(joint, "deconv%d_1" % block).bottom) == [name]
    assert layer(joint, "conv5_3_scaled").power_param.scale == pytest.approx(0.004)
    expected = {  # net: tops, batch, crop, resize, multilabel
        "classifier_train": (["data", "label"], 8, 224, 240, True),
        "attention_train": (["data", "label"], 8, 320, 330, False),
        "joint_train": (["data", "label", "seg_label"], 4, 320, 330, False),
    }
    for net_name, (tops, batch, crop, resize, multilabel) in expected.items():
        data = layer(committed_net(config.PAPER, net_name), "data")
        assert (data.python_param.module, data.python_param.layer) == (
            "data_layer",
            "SourceTargetData",
        )
        assert list(data.top) == tops
        param = json.loads(data.python_param.param_str)
        assert (
            param["batch_size"],
            param["crop"],
            param["resize"],
            param["multilabel"],
            param["num_classes"],
        ) == (batch, crop, resize, multilabel, 80)


# (c) deploy: K labels in one forward == K forwards of one label ---------------------------


def test_seg_deploy_batched_equals_per_label():
    net = net_from_prototxt(committed(config.TINY.layout.model("seg_deploy")))
    randomize(net, seed=1)
    image = np.random.RandomState(2).randn(1, 3, TINY_CROP, TINY_CROP).astype(np.float32) * 50
    labels = one_hot([5, 17, 42])
    batched, single = deploy_batched_and_per_label(net, image, labels, ("seg_prob", "alpha", "s"))
    assert batched["seg_prob"].shape == (3, 2, TINY_CROP, TINY_CROP)
    assert batched["alpha"].shape == (3, 1, TINY_CROP // 16, TINY_CROP // 16)
    np.testing.assert_allclose(batched["seg_prob"].sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(batched["alpha"].sum(axis=(1, 2, 3)), 1, rtol=1e-5)
    # different labels attend and segment differently, so the comparison below has teeth
    assert np.abs(batched["seg_prob"][0] - batched["seg_prob"][1]).max() > 1e-2
    assert np.abs(batched["alpha"][0] - batched["alpha"][2]).max() > 1e-3
    assert_per_label_equal(batched, single)


def test_seg_deploy_matches_joint_train_with_shared_weights():
    train = build_net(config.TINY, "joint_train", caffe.TEST, batch=1, input_layers=True)
    deploy = net_from_prototxt(committed(config.TINY.layout.model("seg_deploy")))
    randomize(train, seed=3)
    for name, blobs in deploy.params.items():
        assert [b.data.shape for b in blobs] == [b.data.shape for b in train.params[name]]
        for mine, theirs in zip(blobs, train.params[name]):
            mine.data[...] = theirs.data
    assert set(train.params) - set(deploy.params) == {"cls_fc1", "cls_score"}
    image = np.random.RandomState(4).randn(1, 3, TINY_CROP, TINY_CROP).astype(np.float32) * 50
    for net in (train, deploy):
        net.blobs["data"].data[...] = image
        net.blobs["label"].data[...] = one_hot([12])
        net.forward()
    for blob in ("alpha", "s", "seg_score"):
        np.testing.assert_allclose(
            deploy.blobs[blob].data, train.blobs[blob].data, rtol=1e-4, atol=1e-6, err_msg=blob
        )


def test_joint_stock_unpooling_equals_python_unpool_layer():
    """The tiny joint net with the stock unpooling and with the reference Python Unpool
    layer, same weights and inputs: the same unpooled blobs, losses and gradients."""
    stock = build_net(config.TINY, "joint_train", caffe.TRAIN, batch=2, input_layers=True)
    python = build_net(
        config.TINY, "joint_train", caffe.TRAIN, batch=2, input_layers=True, unpool_kind="python"
    )
    randomize(stock, seed=6)
    python.share_with(stock)
    rng = np.random.RandomState(7)
    inputs = {
        "data": rng.randn(2, 3, TINY_CROP, TINY_CROP) * 50,
        "label": one_hot([4, 33]),
        "seg_label": rng.choice([0, 1, 255], size=(2, 1, TINY_CROP, TINY_CROP)),
    }
    for net in (stock, python):
        for name, value in inputs.items():
            net.blobs[name].data[...] = value
        net.forward()
        net.backward()
    assert "unpool1_offset" in stock.blobs and "unpool1_offset" not in python.blobs
    for block in (1, 2, 3, 4):
        up = stock.blobs["unpool%d" % block].data
        assert np.count_nonzero(up) > 0.02 * up.size  # at most 1 in 4: one per window
        np.testing.assert_array_equal(up, python.blobs["unpool%d" % block].data)
        np.testing.assert_array_equal(
            stock.blobs["unpool%d" % block].diff, python.blobs["unpool%d" % block].diff
        )
    for blob in ("seg_score", "seg_loss", "cls_loss", "deconv5_1"):
        np.testing.assert_array_equal(stock.blobs[blob].data, python.blobs[blob].data)
        np.testing.assert_array_equal(stock.blobs[blob].diff, python.blobs[blob].diff)


def test_weights_chain_between_stages_by_name():
    """Every stage-1 parameter exists with the same shape in stage 2; the stage-0 encoder
    has the stage-1 encoder's shapes (so the solvers' `weights` copy them)."""
    shapes = {}
    for net_name in ("classifier_train", "attention_train", "joint_train"):
        net = build_net(config.TINY, net_name, **train_kwargs(net_name))
        shapes[net_name] = {k: [b.data.shape for b in v] for k, v in net.params.items()}
    for name, shape in shapes["attention_train"].items():
        assert shapes["joint_train"][name] == shape
        if name.startswith("conv"):
            assert shapes["classifier_train"][name] == shape


# (d) tiny joint training step ------------------------------------------------------------


def test_tiny_joint_forward_backward():
    caffe.set_random_seed(0)
    net = build_net(config.TINY, "joint_train", caffe.TRAIN, batch=2, input_layers=True)
    rng = np.random.RandomState(0)
    net.blobs["data"].data[...] = rng.randn(2, 3, TINY_CROP, TINY_CROP) * 50
    net.blobs["label"].data[...] = one_hot([3, 60])
    net.blobs["seg_label"].data[...] = rng.choice([0, 1, 255], size=(2, 1, TINY_CROP, TINY_CROP))
    out = net.forward()
    # near-zero initial scores: softmax over 80 classes and over {bkg, fg}
    assert out["cls_loss"] == pytest.approx(math.log(80), abs=5e-2)
    assert out["seg_loss"] == pytest.approx(math.log(2), abs=1e-2)
    assert net.blobs["seg_loss"].diff.flat[0] == 2  # lambda of Eq. 9
    net.backward()
    for name, blobs in net.params.items():
        for blob in blobs:
            assert np.all(np.isfinite(blob.diff)), name
        if name.startswith("conv"):
            assert not blobs[0].diff.any(), name  # frozen encoder: no backward at all
        else:
            assert blobs[0].diff.any(), name


# solvers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cfg", [config.PAPER, config.TINY], ids=["paper", "tiny"])
def test_committed_solvers(cfg):
    previous = None
    for stage in solvers.STAGES:
        text = committed(cfg.layout.solver(stage))
        assert not [
            line for line in text.splitlines() if "solver_mode" in line and not line.startswith("#")
        ]
        param = committed_solver(cfg, stage)
        assert not param.HasField("solver_mode")
        st = cfg.schedule.stages[stage]
        assert param.type == "Adam" and param.base_lr == pytest.approx(st.base_lr)
        if st.lr_step:  # the tiny classifier: lr / 10 after lr_step iterations
            assert (param.lr_policy, param.stepsize) == ("step", st.lr_step)
            assert param.gamma == pytest.approx(0.1) and st.lr_step < param.max_iter
        else:
            assert param.lr_policy == "fixed"
        if cfg.name == "paper":
            assert not st.lr_step
        assert (param.momentum, param.momentum2) == (pytest.approx(0.9), pytest.approx(0.999))
        assert os.path.exists(os.path.join(ROOT, param.net))
        data = layer(text_format.Merge(committed(param.net), caffe_pb2.NetParameter()), "data")
        batch = json.loads(data.python_param.param_str)["batch_size"]
        if cfg.name == "paper":
            assert batch * param.iter_size == 64
            assert param.max_iter == 15000
        else:
            # make demo within 15 minutes: at most ~30k training images per stage
            assert param.iter_size == 1 and batch * param.max_iter <= 30000
        assert param.snapshot_prefix == "%s/%s/%s" % (cfg.layout.snapshots, stage, stage)
        # caffe train aborts at start-up if it cannot write there: the folder is committed
        assert os.path.isdir(os.path.join(ROOT, os.path.dirname(param.snapshot_prefix)))
        if previous is None:
            assert list(param.weights) == (
                ["data/vgg16/VGG_ILSVRC_16_layers.caffemodel"] if cfg.name == "paper" else []
            )
        else:
            assert list(param.weights) == [
                "%s_iter_%d.caffemodel" % (previous.snapshot_prefix, previous.max_iter)
            ]
        previous = param
    lrs = [committed_solver(cfg, s).base_lr for s in solvers.STAGES]
    if cfg.name == "paper":
        assert lrs == [pytest.approx(1e-4), pytest.approx(1e-3), pytest.approx(5e-4)]
        assert [committed_solver(cfg, s).iter_size for s in solvers.STAGES] == [8, 8, 16]


def test_tiny_attention_solver_starts_from_classifier_and_keeps_encoder(tmp_path):
    """The solver's `weights` copies the stage-0 encoder by name; an Adam step leaves it."""
    classifier = build_net(config.TINY, "classifier_train", batch=2, input_layers=True)
    randomize(classifier, seed=5)
    classifier.save(str(tmp_path / "classifier.caffemodel"))
    net_path = tmp_path / "attention.prototxt"
    net_path.write_text(str(nets.attention_train(config.TINY, batch=2, input_layers=True)))
    param = solvers.solver(config.TINY, "attention")
    param.net = str(net_path)
    param.weights[:] = [str(tmp_path / "classifier.caffemodel")]
    param.snapshot_prefix = str(tmp_path / "attention")
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(text_format.MessageToString(param))
    solver = caffe.get_solver(str(solver_path))
    assert solver.iter == 0
    net = solver.net
    net.blobs["data"].data[...] = np.random.RandomState(6).randn(2, 3, TINY_CROP, TINY_CROP) * 50
    net.blobs["label"].data[...] = one_hot([7, 70])
    before = net.params["feat_embed"][0].data.copy()
    solver.step(1)
    for name in ("conv1_1", "conv5_3"):
        np.testing.assert_array_equal(net.params[name][0].data, classifier.params[name][0].data)
    assert not np.array_equal(net.params["feat_embed"][0].data, before)
