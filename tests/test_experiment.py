"""transfernet.experiment (run folders, the caffe train stage runner with the real CLI),
transfernet.no_transfer (the rule), transfernet.reports (metrics and report writers) and
transfernet.evaluation's label accuracy."""

import json
import os
import subprocess
import sys

import lmdb
import numpy as np
import pytest

from data_prep.builtin_lmdbs import ensure_lmdbs
from transfernet import caffe_log, config, evaluation, experiment, nets, no_transfer, reports

ITERATIONS = 20


def short_config(source, target):
    """The tiny config on these LMDBs with a short schedule (a new Schedule value)."""
    schedule = config.Schedule(
        stages={k: v._replace(max_iter=ITERATIONS) for k, v in config.TINY.schedule.stages.items()},
        snapshot=ITERATIONS,
        display=5,
    )
    return config.TINY.with_data(source=source, target=target)._replace(schedule=schedule)


def test_prepare_writes_nets_and_chained_solvers(tmp_path, builtin_lmdbs):
    run = experiment.prepare(str(tmp_path / "run"), short_config(*builtin_lmdbs), seed=7)
    for net in nets.NETS:
        assert os.path.isfile(experiment.model_file(run, net))
    with open(experiment.model_file(run, "joint_train")) as f:
        text = f.read()
    assert '\\"seed\\": 7' in text and builtin_lmdbs[0] in text
    with open(experiment.solver_file(run, "attention")) as f:
        solver = f.read()
    assert 'weights: "%s"' % experiment.final_snapshot(run, "classifier") in solver
    assert "random_seed: 7" in solver
    assert experiment.final_snapshot(run, "joint").endswith(
        "snapshots/joint/joint_iter_%d.caffemodel" % ITERATIONS
    )
    with open(experiment.solver_file(run, "classifier")) as f:
        assert "weights:" not in f.read()  # tiny: stage 0 from scratch
    # same config again: accepted; another seed: refused, naming the field
    experiment.prepare(run.dir, short_config(*builtin_lmdbs), seed=7)
    with pytest.raises(ValueError, match="seed"):
        experiment.prepare(run.dir, short_config(*builtin_lmdbs), seed=8)


def test_train_stage_with_caffe_cli_writes_snapshot_and_log(tmp_path, builtin_lmdbs):
    run = experiment.prepare(str(tmp_path / "run"), short_config(*builtin_lmdbs))
    messages = []
    record = experiment.train(run, "classifier", progress=messages.append)
    assert os.path.isfile(experiment.final_snapshot(run, "classifier"))
    assert record["iterations"] == ITERATIONS and record["seconds"] > 0
    parsed = caffe_log.read_log(experiment.log_file(run, "classifier"))
    train = [r for r in parsed["rows"] if r["phase"] == "train"]
    assert [r["iteration"] for r in train] == list(range(0, ITERATIONS + 1, 5))
    assert all(np.isfinite(r["cls_loss"]) for r in train[:-1])
    for ext in (".csv", ".png", ".json"):
        assert os.path.getsize(experiment.log_file(run, "classifier", ext)) > 0
    # finished: not redone; the next stage starts from its snapshot
    mtime = os.path.getmtime(experiment.final_snapshot(run, "classifier"))
    assert experiment.train(run, "classifier", progress=messages.append) == record
    assert os.path.getmtime(experiment.final_snapshot(run, "classifier")) == mtime
    assert "done" in messages[-1]
    assert "classifier: no initial weights: every layer from its filler" in messages
    experiment.train(run, "attention", progress=messages.append)
    loaded = [
        m
        for m in messages
        if m.startswith("attention: weights %s: " % experiment.final_snapshot(run, "classifier"))
    ]
    assert len(loaded) == 1 and "conv5_3" in loaded[0]
    fillers = [m for m in messages if m.startswith("attention: from fillers: ")]
    assert len(fillers) == 1 and "feat_embed" in fillers[0] and "conv5_3" not in fillers[0]
    import caffe

    net = caffe.Net(
        experiment.model_file(run, "attention_train"),
        caffe.TEST,
        weights=experiment.final_snapshot(run, "attention"),
    )
    stage0 = caffe.Net(
        experiment.model_file(run, "classifier_deploy"),
        caffe.TEST,
        weights=experiment.final_snapshot(run, "classifier"),
    )
    # stage 1 froze the encoder it got from stage 0
    np.testing.assert_array_equal(net.params["conv3_1"][0].data, stage0.params["conv3_1"][0].data)
    # retraining stage 0 invalidates stage 1 (it started from the old weights)
    assert experiment.stage_done(run, "attention") is not None
    experiment.train(run, "classifier", force=True, progress=messages.append)
    assert experiment.stage_done(run, "attention") is None


def test_train_stage_needs_previous_snapshot(tmp_path, builtin_lmdbs):
    run = experiment.prepare(str(tmp_path / "run"), short_config(*builtin_lmdbs))
    with pytest.raises(
        RuntimeError,
        match="classifier_iter_%d.caffemodel not found; it is the "
        "final snapshot of the previous stage" % ITERATIONS,
    ):
        experiment.train(run, "attention", progress=lambda m: None)


def test_train_stage_checks_datasets_weights_and_keeps_failed_log(tmp_path, builtin_lmdbs):
    cfg = short_config(builtin_lmdbs[0], str(tmp_path / "no-such-dataset"))
    run = experiment.prepare(str(tmp_path / "run"), cfg)
    with pytest.raises(ValueError, match="no-such-dataset"):
        experiment.train(run, "classifier", progress=lambda m: None)
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"not a caffemodel")
    cfg = short_config(*builtin_lmdbs)
    cfg = cfg._replace(layout=cfg.layout._replace(classifier_init=str(junk)))
    run = experiment.prepare(str(tmp_path / "run2"), cfg)
    with pytest.raises(RuntimeError, match="junk.caffemodel .* is not a caffemodel"):
        experiment.train(run, "classifier", progress=lambda m: None)
    assert not os.path.exists(experiment.log_file(run, "classifier", ".log.failed"))
    # caffe itself fails: its fatal line is reported and the log kept
    run = experiment.prepare(str(tmp_path / "run3"), short_config(*builtin_lmdbs))
    with open(experiment.solver_file(run, "classifier")) as f:
        solver = f.read()
    with open(experiment.solver_file(run, "classifier"), "w") as f:
        f.write(solver.replace('type: "Adam"', 'type: "NoSuchSolver"'))
    with pytest.raises(experiment.TrainingError) as err:
        experiment.train(run, "classifier", progress=lambda m: None)
    failed = experiment.log_file(run, "classifier", ".log.failed")
    first, *tail = str(err.value).splitlines()
    assert first.startswith("caffe train of stage classifier failed (SIGABRT)")
    assert first.endswith("; the end of its log %s:" % failed)
    assert 0 < len(tail) <= experiment.TAIL_LINES and all(line.startswith("  ") for line in tail)
    assert "NoSuchSolver" in tail[-1] and not [line for line in tail if "@ 0x" in line]
    assert "Check failure stack trace" not in str(err.value)
    assert os.path.isfile(failed)
    assert experiment.stage_done(run, "classifier") is None


def test_no_transfer_rule_on_constructed_maps():
    # s on a padded 4x4 square; the image is 4 high, 2 wide: only columns 0-1 count
    s = np.zeros((2, 4, 4), np.float32)
    s[0] = [[0, 10, 99, 99], [2, 8, 99, 99], [4, 6, 99, 99], [1, 9, 99, 99]]
    s[1] = [[5, 5, -9, -9], [5, 5, -9, -9], [7, 5, -9, -9], [5, 5, -9, -9]]
    scores = no_transfer.scores(s, 4, 2)
    # label 0: min 0, max 10 -> fg where s > 5; label 1: min 5, max 7 -> only (2, 0)
    expected0 = np.array([[0, 1], [0, 0.8], [0, 0.6], [0, 0.9]], np.float32)
    np.testing.assert_allclose(scores[0], expected0, atol=1e-6)
    expected1 = np.zeros((4, 2), np.float32)
    expected1[2, 0] = 1
    np.testing.assert_allclose(scores[1], expected1, atol=1e-6)
    labels = no_transfer.labels(s, [3, 16], 4, 2)
    np.testing.assert_array_equal(labels, [[0, 3], [0, 3], [16, 3], [0, 3]])
    # a constant map has no foreground
    flat = no_transfer.scores(np.ones((1, 2, 2), np.float32), 2, 2)
    assert not flat.any()


def fake_result(ious):
    names = ["background", "aeroplane", "bird"]
    valid = [v for v in ious if v is not None]
    return {
        "per_class": dict(zip(names, ious)),
        "mean_iou": sum(valid) / len(valid),
        "pixel_accuracy": 0.9,
        "mean_accuracy": 0.8,
        "num_images": 3,
        "num_pixels": 300,
        "gt_pixels": dict.fromkeys(names, 100),
        "pred_pixels": dict.fromkeys(names, 100),
        "confusion": [[1]],
    }


def test_metrics_and_report_on_fixed_inputs(tmp_path):
    results = {
        ("predicted", "decoder"): fake_result([0.9, 0.6, 0.3]),
        ("gt", "decoder"): fake_result([0.9, 0.7, None]),
        ("predicted", "no_transfer"): fake_result([0.6, 0.2, 0.1]),
        ("gt", "no_transfer"): fake_result([0.5, 0.3, 0.1]),
    }
    rows = reports.result_rows(results)
    assert set(rows) == {
        "predicted_decoder",
        "gt_decoder",
        "predicted_no_transfer",
        "gt_no_transfer",
    }
    assert rows["gt_decoder"]["title"] == "TransferNet-GT"
    assert "confusion" not in rows["gt_decoder"]
    cfg = config.TINY
    metrics = {
        "config": experiment.describe(cfg, 0),
        "results": rows,
        "training": {"classifier": {"seconds": 12.0}},
        "labels": {"exact": 0.5, "precision": 0.75, "recall": 1.0, "images": 3},
    }
    path = str(tmp_path / "metrics.json")
    reports.write_metrics(path, metrics)
    with open(path) as f:
        loaded = json.load(f)
    assert loaded["results"]["predicted_decoder"]["mean_iou"] == pytest.approx(0.6)
    assert loaded["config"]["stages"]["joint"]["max_iter"] == cfg.schedule.stages["joint"].max_iter
    report = str(tmp_path / "report.md")
    reports.write_report(report, metrics, "T", plots=["logs/joint.png"], figures=["figures/a.png"])
    with open(report) as f:
        text = f.read()
    lines = text.splitlines()
    header = "| method | background | aeroplane | bird | mean |"
    table = lines[lines.index(header) : lines.index(header) + 6]
    assert table[2:] == [
        "| TransferNet | 90.0 | 60.0 | 30.0 | 60.0 |",
        "| TransferNet-GT | 90.0 | 70.0 | n/a | 80.0 |",
        "| No transfer: thresholded s | 60.0 | 20.0 | 10.0 | 30.0 |",
        "| No transfer-GT: thresholded s | 50.0 | 30.0 | 10.0 | 30.0 |",
    ]
    assert (
        "Share of scored pixels predicted as foreground: TransferNet 66.7%, "
        "TransferNet-GT 66.7%,"
    ) in text
    assert "- predicted labels: decoder 60.0 vs no transfer 30.0 mIoU (+30.0 points)" in lines
    assert "- ground-truth labels: decoder 80.0 vs no transfer 30.0 mIoU (+50.0 points)" in lines
    assert "| classifier | %d | 8 x 1 |" % cfg.schedule.stages["classifier"].max_iter in text
    assert "| joint |" in text and "| n/a |" in text  # joint has no timing record
    assert "exact label set 50.0%, precision 75.0%, recall 100.0%" in text
    assert "![joint](logs/joint.png)" in lines and "![a](figures/a.png)" in lines


def test_report_joint_seed_table():
    rows = reports.result_rows({("predicted", "decoder"): fake_result([0.9, 0.6, 0.3])})
    metrics = {
        "config": experiment.describe(config.TINY, 0),
        "results": rows,
        "training": {},
        "joint_seeds": {
            "10": {
                "predicted_decoder": 0.4,
                "predicted_no_transfer": 0.3,
                "gt_decoder": 0.5,
                "gt_no_transfer": 0.25,
            },
            "2": {
                "predicted_decoder": 0.2,
                "predicted_no_transfer": 0.3,
                "gt_decoder": 0.35,
                "gt_no_transfer": 0.3,
            },
        },
    }
    lines = reports.report_markdown(metrics, "T").splitlines()
    first = lines.index("## Joint-stage seeds (same stages 0 and 1; mIoU %)")
    assert lines[first + 4 : first + 6] == [  # numeric seed order, gains signed
        "| 2 | 20.0 | 30.0 | -10.0 | 35.0 | 30.0 | +5.0 |",
        "| 10 | 40.0 | 30.0 | +10.0 | 50.0 | 25.0 | +25.0 |",
    ]
    one_seed = dict(metrics, joint_seeds={"0": metrics["joint_seeds"]["2"]})
    assert "Joint-stage seeds" not in reports.report_markdown(one_seed, "T")


def test_label_accuracy():
    acc = evaluation.label_accuracy({"a": [1, 3], "b": [4]}, {"a": [1], "b": [4, 16]})
    assert acc == {"exact": 0.0, "precision": 2 / 3, "recall": 2 / 3, "images": 2}


def test_demo_with_a_failing_caffe_train_stage_is_one_error_with_the_log(tmp_path):
    """tools/demo.py on a built-in dataset whose target records are garbage: the data layer
    fails inside `caffe train`; the demo gives one error with the end of caffe's log."""
    data = tmp_path / "data"
    # The demo's own dataset, as it makes it.
    ensure_lmdbs(str(data), config.TINY.data.resize, lambda line: None)
    target = data / "lmdb" / "target"
    env = lmdb.open(str(target / "images"), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for key, _ in list(txn.cursor()):
            txn.put(key, b"not a record")
    env.close()
    run = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "tools/demo.py", "--run", str(run), "--data", str(data)],
        cwd=experiment.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    start = [k for k, line in enumerate(lines) if line.startswith("demo.py: error: ")]
    assert len(start) == 1 and not [line for line in lines if line.startswith("Traceback")]
    failed = run / "logs" / "classifier.log.failed"
    assert lines[start[0]] == (
        "demo.py: error: caffe train of stage classifier failed (SIGABRT); the end of its log "
        "%s:" % failed
    )
    tail = lines[start[0] + 1 :]
    assert tail and all(line.startswith("  ") for line in tail), res.stderr
    assert "target dataset %s record" % target in tail[-2] and "not a Datum" in tail[-2]
    assert "Aborted at" not in res.stderr
    assert failed.is_file()
