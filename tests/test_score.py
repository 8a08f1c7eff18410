"""comp6 scoring on constructed label maps with hand-computed IoU."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from transfernet import fileio, score

TABLE = {0: "bkg", 1: "a", 2: "b", 3: "c"}

# Image 1 (2x4). Pixel (1,2) is void (255); its prediction 2 must not count.
GT1 = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
PRED1 = np.array([[0, 1, 1, 1], [2, 0, 2, 1]], np.uint8)
# Image 2 (2x2): all class 1, all right.
GT2 = np.ones((2, 2), np.uint8)
PRED2 = np.ones((2, 2), np.uint8)


def confusion(gt, pred, class_ids):
    """The confusion matrix of one pair of label maps, as score.evaluate computes it."""
    return score.confusion_from_pairs(score.pair_counts(gt, pred), class_ids)


def write_set(tmp_path, pairs, extra_pred=()):
    """Write {id: (gt, pred)} as palette PNGs and a list file; return (pred, gt, list)."""
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    for image_id, (gt, pred) in pairs.items():
        fileio.write_label_png(str(gt_dir / (image_id + ".png")), gt)
        if pred is not None:
            fileio.write_label_png(str(pred_dir / (image_id + ".png")), pred)
    for image_id in extra_pred:
        fileio.write_label_png(str(pred_dir / (image_id + ".png")), GT2)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(i + "\n" for i in pairs))
    return str(pred_dir), str(gt_dir), str(lst)


def test_confusion_one_image_by_hand():
    conf = confusion(GT1, PRED1, list(TABLE))
    # rows gt bkg,a,b,c; columns pred bkg,a,b,c,other
    assert conf.tolist() == [[1, 1, 0, 0, 0], [0, 3, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    res = score.scores(conf, TABLE)
    # bkg: TP 1, GT 2, PRED 2 -> 1/3; a: 3/(3+4-3); b: 1/(2+1-1) (void pixel's "2" ignored)
    assert res["per_class"] == pytest.approx({"bkg": 1 / 3, "a": 3 / 4, "b": 1 / 2, "c": None})
    assert res["per_class"]["c"] is None
    assert res["mean_iou"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert res["pixel_accuracy"] == pytest.approx(5 / 7)
    assert res["mean_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert res["num_pixels"] == 7


def test_evaluate_pools_pixels_over_images(tmp_path):
    pred, gt, lst = write_set(tmp_path, {"im1": (GT1, PRED1), "im2": (GT2, PRED2)})
    res = score.evaluate(pred, gt, fileio.read_list(lst), TABLE)
    # One matrix: class a gains TP 4, GT 4, PRED 4 -> 7/8 (a per-image mean would differ).
    assert res["per_class"] == pytest.approx({"bkg": 1 / 3, "a": 7 / 8, "b": 1 / 2, "c": None})
    assert res["mean_iou"] == pytest.approx((1 / 3 + 7 / 8 + 1 / 2) / 3)
    assert res["num_images"] == 2 and res["num_pixels"] == 11


def test_class_only_predicted_counts_as_zero():
    gt = np.array([[0, 0]], np.uint8)
    pred = np.array([[0, 3]], np.uint8)
    res = score.scores(confusion(gt, pred, list(TABLE)), TABLE)
    assert res["per_class"] == {"bkg": 0.5, "a": None, "b": None, "c": 0.0}
    assert res["mean_iou"] == pytest.approx(0.25)


def test_prediction_outside_class_table_is_wrong():
    gt = np.array([[1, 1, 255]], np.uint8)
    pred = np.array([[1, 7, 7]], np.uint8)
    res = score.scores(confusion(gt, pred, list(TABLE)), TABLE)
    assert res["per_class"]["a"] == 0.5
    assert res["pred_outside_classes"] == 1  # the void pixel's prediction is not scored
    assert res["mean_iou"] == 0.5


def test_all_void_gives_no_scores():
    res = score.scores(
        confusion(np.full((2, 2), 255, np.uint8), np.ones((2, 2), np.uint8), list(TABLE)),
        TABLE,
    )
    assert res["mean_iou"] is None and res["pixel_accuracy"] is None
    assert set(res["per_class"].values()) == {None}


def test_missing_and_extra_predictions_are_listed(tmp_path):
    pred, gt, lst = write_set(
        tmp_path, {"im1": (GT1, PRED1), "im2": (GT2, None)}, extra_pred=["stray"]
    )
    with pytest.raises(score.EvalError) as err:
        score.evaluate(pred, gt, fileio.read_list(lst), TABLE)
    assert "1 predictions missing" in str(err.value) and "im2.png" in str(err.value)
    assert "extra predictions" in str(err.value) and "stray.png" in str(err.value)


def test_missing_ground_truth_is_listed(tmp_path):
    pred, gt, lst = write_set(tmp_path, {"im1": (GT1, PRED1)})
    with open(lst, "a") as f:
        f.write("im3\n")
    fileio.write_label_png(os.path.join(pred, "im3.png"), GT2)
    with pytest.raises(score.EvalError, match=r"ground-truth files missing .*: im3\.png"):
        score.evaluate(pred, gt, fileio.read_list(lst), TABLE)


def test_size_mismatch_lists_every_file(tmp_path):
    pred, gt, lst = write_set(tmp_path, {"im1": (GT1, PRED1[:, :3]), "im2": (GT2, PRED1)})
    with pytest.raises(score.EvalError) as err:
        score.evaluate(pred, gt, fileio.read_list(lst), TABLE)
    msg = str(err.value)
    assert "2 predictions whose size differs" in msg
    assert "im1.png (prediction 3x2, ground truth 4x2)" in msg
    assert "im2.png (prediction 4x2, ground truth 2x2)" in msg


def test_voc_table_order():
    table = score.voc_class_table()
    assert list(table) == list(range(21))
    assert table[0] == "background" and table[1] == "aeroplane" and table[20] == "tvmonitor"
    assert table[15] == "person"


def test_class_table_from_meta_json_ignores_other_ids(tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"kind": "target", "classes": {"21": "truck", "3": "bird"}}))
    table = score.load_class_table(str(meta))
    assert table == {0: "background", 3: "bird", 21: "truck"}
    gt = np.array([[0, 3, 21, 5]], np.uint8)  # id 5 is not scored
    pred = np.array([[0, 21, 21, 0]], np.uint8)
    res = score.scores(confusion(gt, pred, list(table)), table)
    assert res["per_class"] == {"background": 1.0, "bird": 0.0, "truck": 0.5}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x": "cat"}))
    with pytest.raises(score.EvalError, match="not an integer"):
        score.load_class_table(str(bad))


def test_writers_and_table(tmp_path):
    res = score.scores(confusion(GT1, PRED1, list(TABLE)), TABLE)
    res["num_images"] = 1
    score.write_json(str(tmp_path / "r.json"), res)
    loaded = json.loads((tmp_path / "r.json").read_text())
    assert loaded["per_class"]["c"] is None and loaded["per_class"]["a"] == 0.75
    score.write_csv(str(tmp_path / "r.csv"), res)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "class_id,class,iou,accuracy,gt_pixels,pred_pixels"
    assert lines[2] == "1,a,0.750000,1.000000,3,4"
    assert lines[4] == "3,c,,,0,0"
    assert lines[5].startswith(",mean,%.6f," % ((1 / 3 + 3 / 4 + 1 / 2) / 3))
    text = score.format_table(res)
    assert "c" in text and "n/a" in text and "52.8" in text  # mean 19/36
    md = score.markdown_table({"run": res})
    assert md.splitlines()[0] == "| method | bkg | a | b | c | mean |"
    assert md.splitlines()[2] == "| run | 33.3 | 75.0 | 50.0 | n/a | 52.8 |"


def test_cli_writes_json_csv_and_reports_errors(tmp_path):
    pred, gt, lst = write_set(tmp_path, {"im1": (GT1, PRED1), "im2": (GT2, PRED2)})
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({str(k): v for k, v in TABLE.items()}))
    out = tmp_path / "out" / "eval.json"
    cmd = [
        sys.executable,
        "tools/eval.py",
        "--pred",
        pred,
        "--gt",
        gt,
        "--list",
        lst,
        "--classes",
        str(classes),
        "--out",
        str(out),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "mean IoU" in run.stdout and "56.9" in run.stdout  # (1/3 + 7/8 + 1/2) / 3 = 41/72
    assert json.loads(out.read_text())["mean_iou"] == pytest.approx((1 / 3 + 7 / 8 + 1 / 2) / 3)
    assert (tmp_path / "out" / "eval.csv").read_text().startswith("class_id,class,iou")
    os.remove(os.path.join(pred, "im2.png"))
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 1 and "im2.png" in run.stderr


def test_cli_checks_out_and_csv_before_evaluating(tmp_path):
    pred, gt, lst = write_set(tmp_path, {"im1": (GT1, PRED1)})
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    (tmp_path / "taken.json").mkdir()
    base = [sys.executable, "tools/eval.py", "--pred", pred, "--gt", gt, "--list", lst]
    for extra, message in [
        (
            ["--out", str(tmp_path / "taken.json")],
            "--out file %s is a folder; name a file" % (tmp_path / "taken.json"),
        ),
        (
            ["--out", str(a_file / "eval.json")],
            "folder of the --out file %s exists and is a file, not a folder" % a_file,
        ),
        (
            ["--out", str(tmp_path / "ok.json"), "--csv", str(a_file / "e.csv")],
            "folder of the --csv file %s exists and is a file, not a folder" % a_file,
        ),
    ]:
        run = subprocess.run(base + extra, capture_output=True, text=True)
        assert run.returncode == 1
        assert run.stderr == "eval.py: error: %s\n" % message and run.stdout == ""
    assert not (tmp_path / "ok.json").exists()


def test_hidden_files_are_not_predictions(tmp_path):
    pred, gt, lst = write_set(tmp_path, {"im1": (GT1, PRED1)})
    before = score.evaluate(pred, gt, ["im1"], TABLE, workers=1)
    for name in (".im1.png.4711.tmpk2j3h4q0.png", ".im2.png.k2j3h4q0.png", "im3.png"):
        with open(os.path.join(pred, name), "wb") as f:
            f.write(b"\x89PNG truncated")
    with pytest.raises(score.EvalError) as err:  # a visible extra file is one
        score.evaluate(pred, gt, ["im1"], TABLE, workers=1)
    assert str(err.value) == "1 extra predictions (not in the list) in %s: im3.png" % pred
    os.remove(os.path.join(pred, "im3.png"))
    assert score.evaluate(pred, gt, ["im1"], TABLE, workers=1) == before


def run_eval(*args):
    return subprocess.run(
        [sys.executable, "tools/eval.py"] + list(args), capture_output=True, text=True
    )


def test_cli_reads_a_windows_list_with_dotted_ids(tmp_path):
    # im.v2 is scored against im.v2.png, not im.png (which would score 100 %).
    pred, gt, lst = write_set(tmp_path, {"im.v2": (GT1, PRED1), "im": (GT1, GT1)})
    with open(lst, "wb") as f:
        f.write("\ufeffim.v2\r\n".encode())
    classes = tmp_path / "classes.json"
    classes.write_bytes(("\ufeff" + json.dumps({str(k): v for k, v in TABLE.items()})).encode())
    os.remove(os.path.join(pred, "im.png"))
    run = run_eval("--pred", pred, "--gt", gt, "--list", lst, "--classes", str(classes))
    assert run.returncode == 0, run.stderr
    assert "mean IoU    52.8" in run.stdout and "1 images" in run.stdout  # GT1/PRED1 by hand


@pytest.mark.parametrize(
    "which, content, message",
    [
        ("list", "im1\n".encode("utf-16"), "is UTF-16 text"),
        ("list", "im1\ncaf\u00e9\n".encode("latin-1"), "byte 0xe9 at line 2 is not UTF-8"),
        ("classes", b'{"0": "bkg", "1": "a",}', "is not valid JSON: Expecting property name"),
        ("classes", b'["a", "b"]', "expected a JSON object {id: name}"),
        ("classes", None, "No such file or directory"),
        ("list", None, "No such file or directory"),
    ],
)
def test_cli_unreadable_list_or_class_table_is_one_error_naming_it(
    tmp_path, which, content, message
):
    pred, gt, lst = write_set(tmp_path, {"im1": (GT1, PRED1)})
    path = str(tmp_path / ("bad_" + which))
    if content is not None:
        with open(path, "wb") as f:
            f.write(content)
    args = {"list": lst, "classes": "voc", which: path}
    run = run_eval("--pred", pred, "--gt", gt, "--list", args["list"], "--classes", args["classes"])
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("eval.py: error: ") and path in run.stderr
    assert message in run.stderr and len(run.stderr.splitlines()) == 1


def test_ground_truth_ids_outside_the_table_are_refused_unless_a_trace(tmp_path):
    # VOC-like ground truth scored with a table that lacks its class 7: 9 of 12 labelled
    # pixels would silently become void and the score would look fine.
    gt = np.array([[0, 7, 7, 7], [7, 7, 7, 255], [1, 7, 7, 7]], np.uint8)
    pred, gt_dir, lst = write_set(tmp_path, {"im1": (gt, np.where(gt == 255, 0, gt))})
    with pytest.raises(score.EvalError) as err:
        score.evaluate(pred, gt_dir, ["im1"], TABLE)
    assert str(err.value).startswith(
        "81.8 % of the non-void ground-truth pixels have class ids outside the class table "
        "(ids 7: 9 pixels; the table has 4 classes)"
    )
    result = score.evaluate(pred, gt_dir, ["im1"], TABLE, ignore_unlisted=True)
    assert result["gt_outside_classes"] == {"7": 9} and result["num_pixels"] == 2
    assert "warning: 9 ground-truth pixels with ids outside the class table (7) scored as void" in (
        score.format_table(result)
    )
    run = run_eval("--pred", pred, "--gt", gt_dir, "--list", lst, "--classes", "voc")
    assert run.returncode == 0, run.stderr  # 7 is a VOC class
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({str(k): v for k, v in TABLE.items()}))
    run = run_eval("--pred", pred, "--gt", gt_dir, "--list", lst, "--classes", str(classes))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("eval.py: error: 81.8 % of the non-void ground-truth pixels")
    run = run_eval(
        "--pred",
        pred,
        "--gt",
        gt_dir,
        "--list",
        lst,
        "--classes",
        str(classes),
        "--ignore-unlisted",
    )
    assert run.returncode == 0 and "warning: 9 ground-truth pixels" in run.stdout


def test_a_trace_of_ground_truth_outside_the_table_is_scored_as_void_with_a_warning(tmp_path):
    gt = np.ones((40, 40), np.uint8)
    gt[0, 0] = 9  # one pixel in 1,600: a trace (e.g. an annotation slip)
    pred, gt_dir, lst = write_set(tmp_path, {"im1": (gt, np.ones_like(gt))})
    result = score.evaluate(pred, gt_dir, ["im1"], TABLE)
    assert result["gt_outside_classes"] == {"9": 1} and result["per_class"]["a"] == 1.0
    assert "warning: 1 ground-truth pixels with ids outside the class table (9)" in (
        score.format_table(result)
    )
