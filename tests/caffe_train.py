"""Real training runs for the training smoke tests (tests/test_train.py,
tests/test_baselines.py): the `caffe` CLI or tools/train.py in a subprocess on nets built from
the generator."""

import os
import subprocess
import sys

from transfernet import caffe_log, verbosity
from transfernet.atomic import write_text

TRAIN_PY = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "train.py"
)


def write_solver(tmp_path, net, solver, iterations, snapshot=0):
    """Write `net` (NetParameter) and `solver` (SolverParameter: its net, snapshot prefix in
    tmp_path, `snapshot` interval, no initial weights, so training starts from the fillers)
    into tmp_path; returns the solver's path."""
    net_path = str(tmp_path / "net.prototxt")
    write_text(net_path, str(net))
    solver.net = net_path
    solver.max_iter = iterations
    solver.display = 1
    solver.average_loss = 1
    solver.snapshot = snapshot
    solver.snapshot_after_train = snapshot > 0
    solver.snapshot_prefix = str(tmp_path / "snapshot")
    del solver.weights[:]
    solver_path = str(tmp_path / "solver.prototxt")
    write_text(solver_path, str(solver))
    return solver_path


def train_rows(argv):
    """Run a trainer command; (its parsed train log rows, one per iteration, and its stdout)."""
    env = verbosity.logging_env()
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [
        r for r in caffe_log.parse_log(run.stderr.splitlines())["rows"] if r["phase"] == "train"
    ]
    return rows, run.stdout


def caffe_train(solver_path, snapshot=None):
    """argv of `caffe train`."""
    return ["caffe", "train", "-solver", solver_path] + (
        ["-snapshot", snapshot] if snapshot else []
    )


def train_py(solver_path, snapshot=None):
    """argv of tools/train.py on the CPU."""
    return [sys.executable, TRAIN_PY, "--solver", solver_path] + (
        ["--snapshot", snapshot] if snapshot else []
    )


def run_caffe_train(tmp_path, net, solver, iterations):
    """Train `iterations` iterations from the fillers with the `caffe` CLI; the train log rows."""
    return train_rows(caffe_train(write_solver(tmp_path, net, solver, iterations)))[0]
