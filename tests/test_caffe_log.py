"""Caffe log parsing on the log of a real `caffe train` run of a one-layer net."""

import csv
import subprocess
import sys

import cv2
import pytest

from transfernet import caffe_log, verbosity

NET = """name: "tiny"
layer { name: "data" type: "DummyData" top: "x" top: "y" top: "cls"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } shape { dim: 4 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 0.5 }
    data_filler { type: "constant" value: 0 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "euclid" type: "EuclideanLoss" bottom: "fc" bottom: "y" top: "euclid" }
layer { name: "euclid_half" type: "EuclideanLoss" bottom: "fc" bottom: "y"
  top: "euclid_half" loss_weight: 0.5 }
layer { name: "accuracy" type: "Accuracy" bottom: "fc" bottom: "cls" top: "accuracy"
  include { phase: TEST } }
layer { name: "silence" type: "Silence" bottom: "cls" include { phase: TRAIN } }
"""

SOLVER = """net: "net.prototxt"
type: "Adam"
base_lr: 0.01
lr_policy: "step"
gamma: 0.1
stepsize: 10
max_iter: 20
display: 5
test_iter: 2
test_interval: 10
snapshot_prefix: "snap"
random_seed: 1
solver_mode: CPU
"""


@pytest.fixture(scope="module")
def train_log(tmp_path_factory):
    """Run the real caffe CLI (glog to stderr, all levels) and return its log path."""
    folder = tmp_path_factory.mktemp("caffe_train")
    (folder / "net.prototxt").write_text(NET)
    (folder / "solver.prototxt").write_text(SOLVER)
    env = verbosity.logging_env()
    run = subprocess.run(
        ["caffe", "train", "-solver", "solver.prototxt"],
        cwd=str(folder),
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    log = folder / "train.log"
    log.write_text(run.stderr)
    return str(log)


def test_real_caffe_log(train_log):
    parsed = caffe_log.read_log(train_log)
    rows = parsed["rows"]
    train = [r for r in rows if r["phase"] == "train"]
    test = [r for r in rows if r["phase"] == "test"]
    assert [r["iteration"] for r in train] == [0, 5, 10, 15, 20]  # 20: the final loss line
    assert [r["iteration"] for r in test] == [0, 10, 20]
    assert parsed["losses"] == {"euclid", "euclid_half"}
    assert parsed["metrics"] == {"accuracy"}
    # step policy: lr 0.01 until iteration 10, then 0.001
    assert [r["lr"] for r in train[:4]] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    for r in train[:4]:
        # both losses see the same value; the smoothed total (average_loss 1) = 1.5 x it
        assert r["euclid"] == r["euclid_half"]
        assert r[caffe_log.TOTAL] == pytest.approx(1.5 * r["euclid"], rel=1e-4)
        assert "accuracy" not in r
    assert set(train[4]) == {"phase", "iteration", caffe_log.TOTAL}
    for r in test:
        assert 0 <= r["accuracy"] <= 1 and r["accuracy"] * 8 == int(r["accuracy"] * 8)
        assert r["euclid"] > 0 and caffe_log.TOTAL not in r
    # Adam on a fixed batch: the loss goes down
    assert train[3]["euclid"] < train[0]["euclid"]


def test_cli_writes_csv_and_plot(train_log, tmp_path):
    out_csv, out_png = tmp_path / "log.csv", tmp_path / "log.png"
    run = subprocess.run(
        [
            sys.executable,
            "tools/parse_log.py",
            train_log,
            "--csv",
            str(out_csv),
            "--png",
            str(out_png),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "train: 5 rows; iteration 20" in run.stdout and "test: 3 rows" in run.stdout
    with open(str(out_csv)) as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == [
        "phase",
        "iteration",
        "lr",
        "smoothed_loss",
        "accuracy",
        "euclid",
        "euclid_half",
    ]
    parsed = caffe_log.read_log(train_log)
    assert len(table) == len(parsed["rows"]) == 8
    first_train = next(r for r in table if r["phase"] == "train")
    assert float(first_train["euclid"]) == parsed["rows"][1]["euclid"]
    assert first_train["accuracy"] == ""
    image = cv2.imread(str(out_png))
    assert image is not None and image.shape[1] == 1200  # two panels (loss, accuracy)


def test_handwritten_lines(tmp_path):
    lines = [
        "I0101 00:00:00.000000 1 solver.cpp:347] Iteration 0, Testing net (#1)",
        "I0101 00:00:00.000000 1 solver.cpp:414]     Test net output #0: acc = 0.25",
        "I0101 00:00:00.000000 1 solver.cpp:239] Iteration 40, loss = 1.5",
        "I0101 00:00:00.000000 1 solver.cpp:258]     Train net output #0: seg_loss = 0.75 "
        "(* 2 = 1.5 loss)",
        "I0101 00:00:00.000000 1 solver.cpp:414]     Test net output #0: acc = 0.5",
        "I0101 00:00:00.000000 1 sgd_solver.cpp:112] Iteration 39, lr = 0.1",
        "I0101 00:00:00.000000 1 sgd_solver.cpp:112] Iteration 40, lr = 0.001",
        "W0101 unrelated line, loss = 3",
    ]
    parsed = caffe_log.parse_log(lines)
    assert parsed["rows"] == [
        {"phase": "test1", "iteration": 0, "acc": 0.25},
        {"phase": "train", "iteration": 40, caffe_log.TOTAL: 1.5, "seg_loss": 0.75, "lr": 0.001},
    ]
    assert parsed["losses"] == {"seg_loss"} and parsed["metrics"] == {"acc"}


def test_cli_rejects_log_without_solver_lines(tmp_path):
    log = tmp_path / "empty.log"
    log.write_text("nothing here\n")
    run = subprocess.run(
        [sys.executable, "tools/parse_log.py", str(log)], capture_output=True, text=True
    )
    assert run.returncode == 1 and "no Caffe solver lines" in run.stderr


def test_cli_unreadable_log_or_output_is_one_error(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(
        "I0101 00:00:00.0 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 1\n"
    )
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for args, message in [
        (
            [str(tmp_path / "none.log")],
            "cannot read %s: No such file or directory" % (tmp_path / "none.log"),
        ),
        ([str(tmp_path)], "cannot read %s: Is a directory" % tmp_path),
        (
            [str(log), "--csv", str(a_file / "x.csv")],
            "folder of the --csv file %s exists and is a file, not a folder" % a_file,
        ),
    ]:
        run = subprocess.run(
            [sys.executable, "tools/parse_log.py"] + args, capture_output=True, text=True
        )
        assert run.returncode == 1 and run.stdout == ""
        assert run.stderr == "parse_log.py: error: %s\n" % message
