"""Python layer errors reach the terminal under the `caffe` CLI: every layer of
the generated nets reports its exceptions (layer_params.report_errors), shown by a real
`caffe train` whose data layer cannot open its datasets; under pycaffe the exception reaches
the caller once, unprinted."""

import importlib
import subprocess

import caffe
import pytest

from transfernet import baselines, config, nets, solvers, verbosity
from transfernet.atomic import write_text


def python_layers():
    """{(module, layer)} of every Python layer in every generated net of every config."""
    found = set()
    for cfg in config.CONFIGS.values():
        protos = [nets.build(cfg, net) for net in nets.NETS] + [
            baselines.build(cfg, net) for net in baselines.NETS
        ]
        found |= {
            (layer.python_param.module, layer.python_param.layer)
            for proto in protos
            for layer in proto.layer
            if layer.type == "Python"
        }
    return sorted(found)


def test_every_python_layer_of_the_generated_nets_reports_its_errors():
    layers = python_layers()
    assert ("data_layer", "SourceTargetData") in layers and len(layers) >= 3
    for module, layer in layers:
        cls = getattr(importlib.import_module(module), layer)
        assert getattr(cls, "reports_errors", False), "%s.%s: not @report_errors" % (module, layer)


def caffe_train(tmp_path, net):
    """`caffe train` (the CLI, in a subprocess) of NetParameter `net` for one iteration."""
    write_text(str(tmp_path / "net.prototxt"), str(net))
    solver = solvers.solver(config.TINY, "classifier")
    solver.net, solver.snapshot_prefix = str(tmp_path / "net.prototxt"), str(tmp_path / "s")
    solver.max_iter = 1
    write_text(str(tmp_path / "solver.prototxt"), str(solver))
    env = verbosity.logging_env()
    return subprocess.run(
        ["caffe", "train", "-solver", str(tmp_path / "solver.prototxt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_caffe_train_shows_the_data_layer_message(tmp_path):
    missing = str(tmp_path / "no_such_lmdb")
    net = nets.build(config.TINY.with_data(source=missing, target=None), "classifier_train")
    run = caffe_train(tmp_path, net)
    assert run.returncode != 0
    assert (
        "terminate called after throwing an instance of 'boost::python::error_already_set'"
        in run.stderr
    )  # what alone was printed before
    assert (
        "Error in Python layer SourceTargetData.setup: ValueError: SourceTargetData: "
        "source dataset %s does not exist (build it with `make data`)" % missing
    ) in run.stderr.splitlines()


def test_pycaffe_raises_layer_errors_to_the_caller_unprinted(tmp_path, capfd):
    missing = str(tmp_path / "no_such_lmdb")
    write_text(
        str(tmp_path / "net.prototxt"),
        str(nets.build(config.TINY.with_data(source=missing, target=None), "classifier_train")),
    )
    with pytest.raises(ValueError, match="source dataset %s does not exist" % missing):
        caffe.Net(str(tmp_path / "net.prototxt"), caffe.TRAIN)
    assert "Error in Python layer" not in capfd.readouterr().err


def test_caffe_train_shows_a_reshape_error_of_another_layer(tmp_path):
    net = caffe.proto.caffe_pb2.NetParameter()
    net.layer.add(name="A", type="Input", top=["A"]).input_param.shape.add(dim=[1, 4, 3, 3])
    net.layer.add(name="alpha", type="Input", top=["alpha"]).input_param.shape.add(dim=[2, 1, 3, 4])
    pool = net.layer.add(name="z", type="Python", bottom=["A", "alpha"], top=["z"])
    pool.python_param.module, pool.python_param.layer = "attention_ops", "AttentionPool"
    run = caffe_train(tmp_path, net)
    assert run.returncode != 0
    assert any(
        line.startswith(
            "Error in Python layer AttentionPool.reshape: ValueError: "
            "AttentionPool: bottom alpha must have shape"
        )
        for line in run.stderr.splitlines()
    ), run.stderr[-2000:]
