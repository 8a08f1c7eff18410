"""tools/gpu_check.py on a machine without a GPU: it says so in one line and fails; its
CPU-vs-GPU comparison (benchmarks/gpu.py), run CPU vs CPU on the tiny joint net, finds the same
weights and batch (differences exactly 0), and a changed gradient fails the bound naming it."""

import subprocess
import sys

import numpy as np
import pytest

from benchmarks import gpu
from transfernet import config, nets


def test_without_a_gpu_it_says_so_and_exits_nonzero(tmp_path):
    out = tmp_path / "gpu-check.json"
    run = subprocess.run(
        [sys.executable, "tools/gpu_check.py", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert run.stderr.startswith("gpu-check: no GPU: ") and run.stderr.count("\n") == 1
    assert run.stderr.rstrip().endswith("nothing checked") and not out.exists()


def test_cpu_gpu_check_runs_both_passes_from_the_same_weights_and_batch(tmp_path, builtin_lmdbs):
    cfg = config.TINY.with_data(source=builtin_lmdbs[0], target=builtin_lmdbs[1])
    inputs = gpu.one_batch(cfg, 2)
    assert inputs["data"].shape == (2, 3, cfg.architecture.crop, cfg.architecture.crop)
    assert set(np.unique(inputs["seg_label"])) <= {0, 1, 255}
    param = nets.joint_train(cfg, batch=2, input_layers=True)
    comparison, results, _ = gpu.check_cpu_gpu(
        param, inputs, str(tmp_path / "w.caffemodel"), modes=("cpu", "cpu")
    )
    losses, gradients = results[0]
    assert {"cls_loss", "seg_loss"} <= set(losses) and all(np.isfinite(list(losses.values())))
    assert any(np.abs(g).sum() > 0 for g in gradients.values())
    assert comparison["ok"] and comparison["worst"][2] == 0.0
    assert set(comparison["gradients"]) == set(gradients)


def test_compare_fails_a_gradient_off_by_more_than_the_bound():
    on_cpu = ({"seg_loss": 0.5}, {"conv/0": np.ones(10), "conv/1": np.zeros(3)})
    on_gpu = (
        {"seg_loss": 0.5 * (1 + 1e-4)},
        {"conv/0": np.ones(10) * (1 + 2e-3), "conv/1": np.zeros(3)},
    )
    comparison = gpu.compare(on_cpu, on_gpu)
    assert not comparison["ok"]
    assert comparison["worst"][:2] == ("gradients", "conv/0")
    assert comparison["worst"][2] == pytest.approx(2e-3)
    assert comparison["losses"]["seg_loss"] == pytest.approx(1e-4)
    assert comparison["gradients"]["conv/1"] == 0.0
