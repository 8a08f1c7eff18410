"""Smoke tests of training on the tiny joint net (Eq. 9) and a small generated dataset: the
real `caffe train` CLI lowers both the classification and the segmentation loss; so does
tools/train.py on the CPU, with the same losses, snapshots and resumed run as the CLI."""

import json
import os
import re
import subprocess

import numpy as np
import pytest
from caffe.proto import caffe_pb2
from caffe_train import caffe_train, run_caffe_train, train_py, train_rows, write_solver
from ctrl_c import interrupt_when
from google.protobuf import text_format

from tools import train
from transfernet import config, nets, solvers

ITERATIONS = 200
WINDOW = 30  # iterations averaged at the start and at the end


def test_caffe_train_tiny_joint_lowers_both_losses(tmp_path, builtin_lmdbs):
    source, target = builtin_lmdbs
    cfg = config.TINY.with_data(source=source, target=target)
    rows = run_caffe_train(
        tmp_path,
        nets.build(cfg, solvers.STAGE_NET["joint"]),
        solvers.solver(cfg, "joint"),
        ITERATIONS,
    )
    assert [r["iteration"] for r in rows][:ITERATIONS] == list(range(ITERATIONS))
    for loss in ("cls_loss", "seg_loss"):
        values = np.array([r[loss] for r in rows[:ITERATIONS]])
        assert np.all(np.isfinite(values)), loss
        first, last = values[:WINDOW].mean(), values[-WINDOW:].mean()
        assert last < 0.9 * first, "%s did not fall: %.4f -> %.4f" % (loss, first, last)


SHORT = 40  # iterations of the tools/train.py runs
SNAPSHOT = 30  # snapshot interval of those runs (snapshots at 30 and, after training, at 40)
SHORT_WINDOW = 8


def _tiny_joint_solver(folder, builtin_lmdbs):
    source, target = builtin_lmdbs
    cfg = config.TINY.with_data(source=source, target=target)
    folder.mkdir()
    return write_solver(
        folder,
        nets.build(cfg, solvers.STAGE_NET["joint"]),
        solvers.solver(cfg, "joint"),
        SHORT,
        snapshot=SNAPSHOT,
    )


def _weights(path):
    net = caffe_pb2.NetParameter.FromString(path.read_bytes())
    return {
        (layer.name, i): np.array(blob.data)
        for layer in net.layer
        for i, blob in enumerate(layer.blobs)
    }


def _same_weights(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_train_py_on_cpu_lowers_losses_and_is_caffe_train(tmp_path, builtin_lmdbs):
    runs = {}
    for name, trainer in (("train_py", train_py), ("caffe", caffe_train)):
        solver = _tiny_joint_solver(tmp_path / name, builtin_lmdbs)
        rows, stdout = train_rows(trainer(solver))
        final = _weights(tmp_path / name / ("snapshot_iter_%d.caffemodel" % SHORT))
        state = str(tmp_path / name / ("snapshot_iter_%d.solverstate" % SNAPSHOT))
        resumed, _ = train_rows(trainer(solver, state))
        runs[name] = rows, stdout, final, resumed, sorted(os.listdir(str(tmp_path / name)))
    rows, stdout, final, resumed, files = runs["train_py"]
    for loss in ("cls_loss", "seg_loss"):
        values = np.array([r[loss] for r in rows[:SHORT]])
        first, last = values[:SHORT_WINDOW].mean(), values[-SHORT_WINDOW:].mean()
        assert last < 0.9 * first, "%s did not fall: %.4f -> %.4f" % (loss, first, last)
    batch = json.loads(
        next(
            layer.python_param.param_str
            for layer in nets.build(config.TINY, solvers.STAGE_NET["joint"]).layer
            if layer.type == "Python" and layer.top[0] == "data"
        )
    )["batch_size"]
    iter_size = solvers.solver(config.TINY, "joint").iter_size
    assert stdout.splitlines()[0] == (
        "train: effective batch %d per iteration = batch %d x iter_size %d x 1 solver"
        % (batch * iter_size, batch, iter_size)
    )
    assert "train: iteration %d/%d, " % (SNAPSHOT, SHORT) in stdout
    # Same iterations and losses, same snapshots and final weights, same resumed run.
    cli_rows, _, cli_final, cli_resumed, cli_files = runs["caffe"]
    assert rows == cli_rows and resumed == cli_resumed
    assert [r["iteration"] for r in resumed][0] == SNAPSHOT
    assert files == cli_files and "snapshot_iter_%d.caffemodel" % SNAPSHOT in files
    assert _same_weights(final, cli_final)


def test_train_py_gpus_without_a_gpu_fails_in_one_line(tmp_path):
    solver = tmp_path / "solver.prototxt"
    solver.write_text(str(solvers.solver(config.TINY, "joint")))
    run = subprocess.run(
        train_py(str(solver)) + ["--gpus", "0"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 1
    assert run.stderr.startswith("train: --gpus 0: no GPU: ") and run.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "iter_size,devices,lines",
    [
        (16, 1, ["effective batch 64 per iteration = batch 4 x iter_size 16 x 1 solver"]),
        (
            16,
            2,
            [
                "effective batch 128 per iteration = batch 4 x iter_size 16 x 2 GPUs",
                "warning: effective batch 128 differs from the solver's single-GPU 64 (batch 4 x "
                "iter_size 16); --iter-size 8 keeps it",
            ],
        ),
        (8, 2, ["effective batch 64 per iteration = batch 4 x iter_size 8 x 2 GPUs"]),
        (
            16,
            3,
            [
                "effective batch 192 per iteration = batch 4 x iter_size 16 x 3 GPUs",
                "warning: effective batch 192 differs from the solver's single-GPU 64 (batch 4 x "
                "iter_size 16)",
            ],
        ),
    ],
)
def test_batch_report_warns_when_the_effective_batch_changes(iter_size, devices, lines):
    assert train.batch_report(4, iter_size, 16, devices) == ["train: " + line for line in lines]


def test_train_py_ctrl_c_snapshots_the_iteration_reached(tmp_path, builtin_lmdbs):
    solver = _tiny_joint_solver(tmp_path / "run", builtin_lmdbs)
    param = caffe_pb2.SolverParameter()
    text_format.Merge((tmp_path / "run" / "solver.prototxt").read_text(), param)
    param.max_iter, param.snapshot = 100000, 5
    (tmp_path / "run" / "solver.prototxt").write_text(str(param))
    first = tmp_path / "run" / "snapshot_iter_5.solverstate"
    status, _, stderr = interrupt_when(
        train_py(solver), first.exists, env=dict(os.environ, GLOG_minloglevel="2")
    )
    assert status == 130 and "Traceback" not in stderr, stderr
    line = stderr.splitlines()[-1]
    found = re.fullmatch(
        r"train: interrupted: stopped at iteration (\d+) of 100000; snapshot (\S+); resume with "
        r"the same command and --snapshot that \.solverstate",
        line,
    )
    assert found, line
    state = found.group(2)
    assert state == str(tmp_path / "run" / ("snapshot_iter_%s.solverstate" % found.group(1)))
    import caffe

    restored = caffe.get_solver(solver)
    restored.restore(state)
    assert restored.iter == int(found.group(1)) >= 5
