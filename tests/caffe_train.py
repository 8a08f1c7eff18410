"""Real `caffe train` runs for the training smoke tests (tests/test_train.py,
tests/test_baselines.py): the CLI in a subprocess on nets built from the generator."""
import os
import subprocess

from transfernet import caffe_log
from transfernet.atomic import write_text


def run_caffe_train(tmp_path, net, solver, iterations):
    """Write `net` (NetParameter) and `solver` (SolverParameter, its net, snapshots and
    initial weights replaced) into tmp_path, train `iterations` iterations from the fillers
    with the `caffe` CLI, and return the parsed train log rows (one per iteration)."""
    net_path = str(tmp_path / "net.prototxt")
    write_text(net_path, str(net))
    solver.net = net_path
    solver.max_iter = iterations
    solver.display = 1
    solver.average_loss = 1
    solver.snapshot_after_train = False
    solver.snapshot_prefix = str(tmp_path / "snapshot")
    del solver.weights[:]
    solver_path = str(tmp_path / "solver.prototxt")
    write_text(solver_path, str(solver))
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    run = subprocess.run(["caffe", "train", "-solver", solver_path], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return [r for r in caffe_log.parse_log(run.stderr.splitlines())["rows"]
            if r["phase"] == "train"]
