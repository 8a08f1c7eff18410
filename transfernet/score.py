"""comp6 segmentation scoring: one confusion matrix over all pixels of a set, IoU, reports.

As in FCN's score.py and mmsegmentation: intersections and unions are summed over every
pixel of the listed images (not averaged per image); ground-truth pixels of 255 (VOC void) are
ignored; a class absent from both the ground truth and the predictions has no IoU (n/a) and
is left out of the mean. Predicted ids outside the class table count as wrong (they enlarge
the union of the true class) and are reported. Ground-truth ids outside the class table are
ignored too if they are a trace (at most GT_OUTSIDE_TRACE of the non-void pixels, reported);
more is an error (a class table that is not the ground truth's), unless ignore_unlisted.
The label PNGs are read by transfernet.fileio.
"""

import concurrent.futures
import csv
import io
import json
import os

import numpy as np

from transfernet.atomic import write_text
from transfernet.classes import BACKGROUND, IGNORE, VOC_CLASSES
from transfernet.fileio import read_json, read_label_png
from transfernet.tables import markdown, pct

BACKGROUND_NAME = "background"
# Ground-truth pixels with ids outside the class table, as a fraction of the non-void ones,
# that evaluate() ignores with a warning; more is an error unless ignore_unlisted.
GT_OUTSIDE_TRACE = 1e-3


class EvalError(ValueError):
    """Inputs that cannot be scored (missing/extra/mis-sized files, bad class table)."""


def voc_class_table():
    """{id: name} of the 21 VOC classes, background 0 first (the paper's Table 1 order)."""
    table = {BACKGROUND: BACKGROUND_NAME}
    table.update((k + 1, name) for k, name in enumerate(VOC_CLASSES))
    return table


def load_class_table(path):
    """Read a class table {id: name} from JSON.

    Accepts a plain {"id": "name"} object or a dataset meta.json (its "classes" key).
    Background (id 0) is added when missing. Ids must be integers in [0, 255).
    """
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("classes"), dict):
        data = data["classes"]
    if not isinstance(data, dict) or not data:
        raise EvalError(
            "%s: expected a JSON object {id: name} or a meta.json with a 'classes' object" % path
        )
    table = {}
    for key, name in data.items():
        try:
            cid = int(key)
        except ValueError:
            raise EvalError("%s: class id %r is not an integer" % (path, key))
        if not 0 <= cid < IGNORE or not isinstance(name, str):
            raise EvalError(
                "%s: class %r: %r; expected an id in [0, %d) and a name" % (path, key, name, IGNORE)
            )
        table[cid] = name
    table.setdefault(BACKGROUND, BACKGROUND_NAME)
    return dict(sorted(table.items()))


def _listing(title, names, limit=20):
    shown = ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")
    return "%d %s: %s" % (len(names), title, shown)


def check_files(pred_dir, gt_dir, ids, subset=False):
    """Raise EvalError listing missing predictions, missing ground truth and extra PNGs
    (unless `subset`: ids are part of the images pred_dir holds). Hidden files are not
    predictions: atomic-write temporaries (e.g. of a killed tools/infer.py) are hidden, and
    no image id starts with a dot."""
    problems = []
    missing_gt = [i + ".png" for i in ids if not os.path.isfile(os.path.join(gt_dir, i + ".png"))]
    if missing_gt:
        problems.append(_listing("ground-truth files missing in " + gt_dir, missing_gt))
    present = {f for f in os.listdir(pred_dir) if f.endswith(".png") and not f.startswith(".")}
    wanted = {i + ".png" for i in ids}
    missing = sorted(wanted - present)
    extra = sorted(present - wanted)
    if missing:
        problems.append(_listing("predictions missing in " + pred_dir, missing))
    if extra and not subset:
        problems.append(_listing("extra predictions (not in the list) in " + pred_dir, extra))
    if problems:
        raise EvalError("\n".join(problems))


def pair_counts(gt, pred):
    """Counts of every (ground-truth id, predicted id) pair: (65536,) int64, index gt*256+pred.

    gt and pred are uint8 label maps of one shape. The class table is applied once to the
    summed counts (confusion_from_pairs), so the per-image work is one bincount.
    """
    pairs = gt.astype(np.uint16)
    pairs <<= 8
    pairs |= pred
    return np.bincount(pairs.ravel(), minlength=1 << 16)


def confusion_from_pairs(counts, class_ids):
    """(K, K+1) confusion matrix from pair counts: row = ground-truth class, column =
    predicted class, last column = predictions outside class_ids. Ground-truth ids not in
    class_ids (255 void) are dropped.
    """
    k = len(class_ids)
    rows = np.full(256, k, np.int64)
    cols = np.full(256, k, np.int64)
    rows[class_ids] = np.arange(k)
    cols[class_ids] = np.arange(k)
    index = (rows[:, None] * (k + 1) + cols[None, :]).ravel()
    conf = np.bincount(index, weights=counts, minlength=(k + 1) ** 2)
    return np.rint(conf).astype(np.int64).reshape(k + 1, k + 1)[:k]


def scores(conf, class_table):
    """Per-class IoU and summary metrics from a (K, K+1) confusion matrix.

    IoU_c = TP_c / (GT_c + PRED_c - TP_c); None (n/a) when GT_c + PRED_c = 0.
    mean_iou = mean over classes with an IoU. All values are fractions in [0, 1].
    """
    names = list(class_table.values())
    k = len(names)
    conf = np.asarray(conf, np.int64)
    tp = np.diag(conf[:, :k]).astype(np.float64)
    gt_count = conf.sum(1).astype(np.float64)
    pred_count = conf[:, :k].sum(0).astype(np.float64)
    union = gt_count + pred_count - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_count > 0, tp / gt_count, np.nan)
    total = gt_count.sum()
    valid = ~np.isnan(iou)

    def opt(x):
        return None if np.isnan(x) else float(x)

    return {
        "per_class": {n: opt(v) for n, v in zip(names, iou)},
        "mean_iou": opt(iou[valid].mean()) if valid.any() else None,
        "pixel_accuracy": opt(tp.sum() / total) if total else None,
        "mean_accuracy": opt(np.nanmean(acc)) if (gt_count > 0).any() else None,
        "frequency_weighted_iou": (
            opt((gt_count[valid] * iou[valid]).sum() / total) if total else None
        ),
        "per_class_accuracy": {n: opt(v) for n, v in zip(names, acc)},
        "class_ids": [int(c) for c in class_table],
        "gt_pixels": {n: int(v) for n, v in zip(names, gt_count)},
        "pred_pixels": {n: int(v) for n, v in zip(names, pred_count)},
        "pred_outside_classes": int(conf[:, k].sum()),
        "num_pixels": int(total),
        "confusion": conf.tolist(),
    }


def _count_images(pred_dir, gt_dir, ids):
    """Summed pair counts of `ids` and the list of size mismatches (one reading thread)."""
    counts = np.zeros(1 << 16, np.int64)
    mismatched = []
    for image_id in ids:
        name = image_id + ".png"
        gt = read_label_png(os.path.join(gt_dir, name))
        pred = read_label_png(os.path.join(pred_dir, name))
        if gt.shape != pred.shape:
            mismatched.append(
                "%s (prediction %dx%d, ground truth %dx%d)"
                % (name, pred.shape[1], pred.shape[0], gt.shape[1], gt.shape[0])
            )
        else:
            counts += pair_counts(gt, pred)
    return counts, mismatched


def evaluate(
    pred_dir, gt_dir, ids, class_table=None, workers=2, ignore_unlisted=False, subset=False
):
    """Score the predictions of `ids` (PNGs `<id>.png` in both folders) in one matrix.

    Raises EvalError listing missing/extra files (extra ones are allowed with `subset`: ids
    are part of the images pred_dir holds), then (after reading all pairs) listing every size
    mismatch, then naming the ground-truth ids outside the class table if they are more than
    a trace (GT_OUTSIDE_TRACE) and not ignore_unlisted; fileio.FileFormatError for a PNG that
    is not a label PNG. Returns the dict of `scores` plus num_images and gt_outside_classes
    ({id: pixels} of the ground-truth ids outside the table, ignored).
    """
    class_table = class_table or voc_class_table()
    if len(set(class_table.values())) != len(class_table):
        raise EvalError("class table has duplicate names: %s" % sorted(class_table.values()))
    check_files(pred_dir, gt_dir, ids, subset)
    workers = max(1, min(workers, len(ids)))
    chunks = [ids[w::workers] for w in range(workers)]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda chunk: _count_images(pred_dir, gt_dir, chunk), chunks))
    mismatched = sorted(m for _, part in parts for m in part)
    if mismatched:
        raise EvalError(
            _listing("predictions whose size differs from the ground truth (WxH)", mismatched)
        )
    counts = sum(c for c, _ in parts)
    gt_pixels = counts.reshape(256, 256).sum(1)  # per ground-truth id
    outside = {
        int(c): int(gt_pixels[c])
        for c in np.flatnonzero(gt_pixels)
        if c != IGNORE and c not in class_table
    }
    non_void = int(gt_pixels.sum() - gt_pixels[IGNORE])
    if sum(outside.values()) > GT_OUTSIDE_TRACE * non_void and not ignore_unlisted:
        raise EvalError(
            "%.1f %% of the non-void ground-truth pixels have class ids outside the class table "
            "(ids %s; the table has %d classes): is it the table of this ground truth? (to "
            "score those pixels as void: ignore_unlisted, tools/eval.py --ignore-unlisted)"
            % (
                100.0 * sum(outside.values()) / non_void,
                ", ".join("%d: %d pixels" % kv for kv in outside.items()),
                len(class_table),
            )
        )
    result = scores(confusion_from_pairs(counts, list(class_table)), class_table)
    result["num_images"] = len(ids)
    result["gt_outside_classes"] = {str(k): v for k, v in outside.items()}
    return result


def format_table(result):
    """Plain-text per-class table (IoU and accuracy in %, table order) and the summary."""
    names = list(result["per_class"])
    width = max(len(n) for n in names + ["mean IoU"])
    lines = ["%-*s  %6s  %6s  %12s" % (width, "class", "IoU", "acc", "GT pixels")]
    for n in names:
        lines.append(
            "%-*s  %6s  %6s  %12d"
            % (
                width,
                n,
                pct(result["per_class"][n]),
                pct(result["per_class_accuracy"][n]),
                result["gt_pixels"][n],
            )
        )
    lines.append("%-*s  %6s" % (width, "mean IoU", pct(result["mean_iou"])))
    lines.append(
        "%d images, %d scored pixels; pixel acc %s, mean acc %s, fw IoU %s"
        % (
            result["num_images"],
            result["num_pixels"],
            pct(result["pixel_accuracy"]),
            pct(result["mean_accuracy"]),
            pct(result["frequency_weighted_iou"]),
        )
    )
    if result["pred_outside_classes"]:
        lines.append(
            "warning: %d scored pixels predicted with ids outside the class table"
            % result["pred_outside_classes"]
        )
    outside = result.get("gt_outside_classes")
    if outside:
        lines.append(
            "warning: %d ground-truth pixels with ids outside the class table (%s) scored as "
            "void" % (sum(outside.values()), ", ".join(sorted(outside, key=int)))
        )
    return "\n".join(lines)


def markdown_table(results):
    """Paper-style Markdown table (Table 1): one row per {row label: result}, IoU in %."""
    names = list(next(iter(results.values()))["per_class"])
    rows = []
    for label, res in results.items():
        if list(res["per_class"]) != names:
            raise ValueError("markdown_table: %r has other classes than the first row" % label)
        rows.append([label] + [pct(res["per_class"][n]) for n in names] + [pct(res["mean_iou"])])
    return "\n".join(markdown(["method"] + names + ["mean"], rows)) + "\n"


def write_json(path, result):
    """Write the result dict as JSON, atomically."""
    write_text(path, json.dumps(result, indent=1) + "\n")


def write_csv(path, result):
    """Write one row per class (id, name, IoU, accuracy, pixel counts) and a mean row."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(["class_id", "class", "iou", "accuracy", "gt_pixels", "pred_pixels"])
    for cid, name in zip(result["class_ids"], result["per_class"]):
        iou, acc = result["per_class"][name], result["per_class_accuracy"][name]
        out.writerow(
            [
                cid,
                name,
                "" if iou is None else "%.6f" % iou,
                "" if acc is None else "%.6f" % acc,
                result["gt_pixels"][name],
                result["pred_pixels"][name],
            ]
        )
    out.writerow(
        [
            "",
            "mean",
            "" if result["mean_iou"] is None else "%.6f" % result["mean_iou"],
            "" if result["mean_accuracy"] is None else "%.6f" % result["mean_accuracy"],
            result["num_pixels"],
            "",
        ]
    )
    write_text(path, buf.getvalue())
