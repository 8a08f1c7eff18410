"""Smoke test of training: the real `caffe train` CLI on the tiny joint net (Eq. 9) lowers
both the classification and the segmentation loss on a small generated dataset."""
import os
import subprocess

import numpy as np
import pytest

from data_prep import builtin, coco, voc
from transfernet import caffe_log, nets, solvers
from transfernet.atomic import write_text

ITERATIONS = 200
WINDOW = 30  # iterations averaged at the start and at the end


@pytest.fixture(scope="module")
def builtin_lmdbs(tmp_path_factory):
    """A small built-in dataset in the real formats, built into LMDBs by the real builders."""
    root = tmp_path_factory.mktemp("builtin")
    builtin.generate(str(root), seed=1, source_images=80, target_train=40, target_val=4)
    size = nets.TINY.resize
    source, target = str(root / "lmdb" / "source"), str(root / "lmdb" / "target")
    coco.build_source(str(root / "coco"), source, size=size)
    voc.build_target(str(root / "VOCdevkit" / "VOC2012"), target, size=size)
    return source, target


def run_caffe_train(tmp_path, cfg, stage):
    """Write the stage's net and solver for `cfg` into tmp_path, train from scratch with the
    `caffe` CLI, and return the parsed log rows (one per iteration)."""
    net_path = str(tmp_path / ("%s.prototxt" % stage))
    write_text(net_path, str(nets.build(cfg, solvers.STAGE_NET[stage])))
    solver = solvers.solver(cfg, stage)
    solver.net = net_path
    solver.max_iter = ITERATIONS
    solver.display = 1
    solver.average_loss = 1
    solver.snapshot_after_train = False
    solver.snapshot_prefix = str(tmp_path / stage)
    del solver.weights[:]
    solver_path = str(tmp_path / "solver.prototxt")
    write_text(solver_path, str(solver))
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    run = subprocess.run(["caffe", "train", "-solver", solver_path], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [r for r in caffe_log.parse_log(run.stderr.splitlines())["rows"]
            if r["phase"] == "train"]
    return rows


def test_caffe_train_tiny_joint_lowers_both_losses(tmp_path, builtin_lmdbs):
    source, target = builtin_lmdbs
    cfg = nets.TINY._replace(source=source, target=target)
    rows = run_caffe_train(tmp_path, cfg, "joint")
    assert [r["iteration"] for r in rows][:ITERATIONS] == list(range(ITERATIONS))
    for loss in ("cls_loss", "seg_loss"):
        values = np.array([r[loss] for r in rows[:ITERATIONS]])
        assert np.all(np.isfinite(values)), loss
        first, last = values[:WINDOW].mean(), values[-WINDOW:].mean()
        assert last < 0.9 * first, "%s did not fall: %.4f -> %.4f" % (loss, first, last)
