"""Smoke test of training: the real `caffe train` CLI on the tiny joint net (Eq. 9) lowers
both the classification and the segmentation loss on a small generated dataset."""
import numpy as np

from caffe_train import run_caffe_train
from transfernet import nets, solvers

ITERATIONS = 200
WINDOW = 30  # iterations averaged at the start and at the end


def test_caffe_train_tiny_joint_lowers_both_losses(tmp_path, builtin_lmdbs):
    source, target = builtin_lmdbs
    cfg = nets.TINY._replace(source=source, target=target)
    rows = run_caffe_train(tmp_path, nets.build(cfg, solvers.STAGE_NET["joint"]),
                           solvers.solver(cfg, "joint"), ITERATIONS)
    assert [r["iteration"] for r in rows][:ITERATIONS] == list(range(ITERATIONS))
    for loss in ("cls_loss", "seg_loss"):
        values = np.array([r[loss] for r in rows[:ITERATIONS]])
        assert np.all(np.isfinite(values)), loss
        first, last = values[:WINDOW].mean(), values[-WINDOW:].mean()
        assert last < 0.9 * first, "%s did not fall: %.4f -> %.4f" % (loss, first, last)
