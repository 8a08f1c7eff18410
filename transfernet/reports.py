"""The demo's metrics.json and report.md: result rows per (label source, method), the
Markdown report with its tables, and the percentage format every table here uses.
"""

import collections
import json
import os

from transfernet import evaluation, inference, no_transfer, score, solvers
from transfernet.atomic import write_text
from transfernet.tables import markdown, num, pct, points

SUMMARY_KEYS = (
    "mean_iou",
    "per_class",
    "pixel_accuracy",
    "mean_accuracy",
    "num_images",
    "num_pixels",
    "gt_pixels",
    "pred_pixels",
)
# Report rows: (label source, method, row title), in table order.
ROWS = (
    ("predicted", "decoder", "TransferNet"),
    ("predicted", "decoder_crf", "TransferNet + CRF"),
    ("gt", "decoder", "TransferNet-GT"),
    ("gt", "decoder_crf", "TransferNet-GT + CRF"),
    ("predicted", "no_transfer", "No transfer: thresholded s"),
    ("gt", "no_transfer", "No transfer-GT: thresholded s"),
)


def row_key(label_source, method):
    return "%s_%s" % (label_source, method)


def result_rows(results):
    """metrics["results"]: {row_key: title, labels, method and the summary of the
    evaluation} from {(label source, method): evaluation result}, for the ROWS present."""
    rows = {}
    for label_source, method, title in ROWS:
        if (label_source, method) in results:
            res = results[label_source, method]
            rows[row_key(label_source, method)] = dict(
                {k: res[k] for k in SUMMARY_KEYS}, title=title, labels=label_source, method=method
            )
    return rows


def write_metrics(path, metrics):
    """metrics.json (sorted keys), atomically."""
    write_text(path, json.dumps(metrics, indent=1, sort_keys=True) + "\n")


def _foreground_share(result):
    pixels = result["pred_pixels"]
    total = sum(pixels.values())
    return (total - pixels[score.BACKGROUND_NAME]) / total if total else None


def report_markdown(metrics, title, plots=(), figures=()):
    """Markdown report of a metrics dict with keys "results" (result_rows), "training"
    ({stage: timing record}), "labels" (label_accuracy), "config" (describe), optional
    "wall_seconds", "data" and "joint_seeds" ({seed: {row key: mIoU}}); `plots` and
    `figures` are paths relative to the report."""
    lines = ["# %s" % title, ""]
    if "wall_seconds" in metrics:
        lines += [
            "Wall time of this run: %.0f s (work already done in an earlier run is "
            "not counted)." % metrics["wall_seconds"],
            "",
        ]
    if "data" in metrics:
        lines += [
            "Data: %s" % ", ".join("%s %s" % (k, v) for k, v in sorted(metrics["data"].items())),
            "",
        ]
    lines += training_lines(metrics["config"], metrics["training"])
    lines += segmentation_lines(metrics["results"])
    lines += transfer_lines(metrics["results"])
    if "attention" in metrics:
        rows = [("final (joint) snapshot", metrics["attention"])]
        if "attention_stage1" in metrics:
            rows.insert(0, ("stage-1 snapshot", metrics["attention_stage1"]))
        lines += attention_lines(rows)
    if len(metrics.get("joint_seeds", {})) > 1:
        lines += joint_seed_lines(metrics["joint_seeds"])
    if "labels" in metrics:
        acc = metrics["labels"]
        lines += [
            "",
            "## Image labels predicted by the stage-0 classifier",
            "",
            "Over %d images: exact label set %s%%, precision %s%%, recall %s%% "
            "(threshold %g, arg-max if none)."
            % (
                acc["images"],
                pct(acc["exact"]),
                pct(acc["precision"]),
                pct(acc["recall"]),
                inference.CLASSIFIER_THRESHOLD,
            ),
        ]
    if plots:
        lines += ["", "## Training losses (parsed from the caffe train logs)", ""]
        lines += [_image_line(p) for p in plots]
    if figures:
        lines += [
            "",
            "## Examples (image, attention alpha, densified attention s, segmentation)",
            "",
            "Val images with two or more classes, one row per ground-truth label (the paper's "
            "Figures 2 and 3): a class-specific attention moves to that label's object.",
            "",
        ]
        lines += [_image_line(p) for p in figures]
    return "\n".join(lines) + "\n"


def _image_line(path):
    return "![%s](%s)" % (os.path.splitext(os.path.basename(path))[0], path)


def training_lines(cfg, training):
    """The config line and the per-stage table (iterations, batch, lr, train time)."""
    lines = [
        'Config "%s" (width %g, crop %d, seed %d, source fraction %g, classifier from '
        "%s)."
        % (
            cfg["name"],
            cfg["width"],
            cfg["crop"],
            cfg["seed"],
            cfg["source_fraction"],
            cfg["classifier_init"] or "scratch",
        ),
        "",
    ]
    rows = []
    for stage in solvers.STAGES:
        st, rec = cfg["stages"][stage], training.get(stage, {})
        seconds = "%.0f" % rec["seconds"] if "seconds" in rec else "n/a"
        numbers = ("%d" % st["max_iter"], "%d x %d" % (st["batch"], st["iter_size"]))
        rows.append([stage, *numbers, "%g" % st["base_lr"], seconds])
    header = ["stage", "iterations", "batch x iter_size", "Adam lr", "train time (s)"]
    return lines + markdown(header, rows)


def segmentation_lines(results):
    """The IoU table of the ROWS present and each row's share of foreground pixels."""
    rows = [(title, results[row_key(s, m)]) for s, m, title in ROWS if row_key(s, m) in results]
    return [
        "",
        "## Segmentation (comp6 IoU %, target classes + background)",
        "",
        score.markdown_table(collections.OrderedDict(rows)).rstrip("\n"),
        "",
        "Share of scored pixels predicted as foreground: "
        + ", ".join("%s %s%%" % (name, pct(_foreground_share(res))) for name, res in rows)
        + ".",
        "",
    ]


def transfer_lines(results):
    """The no-transfer rule and the decoder's gain over it, per label source."""
    lines = [
        "## Transfer vs no transfer",
        "",
        "No transfer = the densified attention s (Eq. 7) of the same forward, upsampled "
        "to the image, min-max normalised per label, foreground where > %g, labels "
        "combined by the largest score: what the labels and attention give without the "
        "decoder." % no_transfer.THRESHOLD,
        "",
    ]
    for label_source, name in (("predicted", "predicted labels"), ("gt", "ground-truth labels")):
        dec, base = (results.get(row_key(label_source, m)) for m in ("decoder", "no_transfer"))
        if dec and base:
            lines.append(
                "- %s: decoder %s vs no transfer %s mIoU (%s points)"
                % (
                    name,
                    pct(dec["mean_iou"]),
                    pct(base["mean_iou"]),
                    points(dec["mean_iou"] - base["mean_iou"]),
                )
            )
    return lines


def attention_lines(rows):
    """The section of the attention measures (transfernet.attention_metrics) of [(title,
    summary)]: what they mean, then attention_table."""
    first = rows[0][1]
    return [
        "",
        "## What the attention attends to (val, ground-truth labels)",
        "",
        "%d image/label pairs, %d of them on images with two or more classes. pointing: "
        "arg-max of alpha in a cell at least half covered by the label's class (its ceiling: "
        "the share of pairs with such a cell); inside: "
        "alpha's mass on the class; own (multi-class images): mass on the class / mass on "
        "any object." % (first["pairs"], first["multi_class_pairs"]),
        "",
    ] + attention_table(rows)


def attention_table(rows):
    """Markdown rows of [(title, attention summary)], then uniform attention's values and
    pointing's ceiling (the first summary's; n/a in a summary made before it was measured)."""
    first = rows[0][1]
    cells = [[title, num(m["pointing"]), num(m["inside"]), num(m["own"])] for title, m in rows]
    uniform = ["uniform attention", "-", num(first["inside_uniform"]), num(first["own_uniform"])]
    ceiling = ["the best cell (pointing's ceiling)", num(first.get("pointing_ceiling")), "-", "-"]
    return markdown(["attention of", "pointing", "inside", "own"], cells + [uniform, ceiling])


def joint_seed_lines(joint_seeds):
    """TransferNet against no transfer for each joint seed, in numeric seed order."""
    rows = []
    for seed, r in sorted(joint_seeds.items(), key=lambda kv: int(kv[0])):
        cells = [str(seed)]
        for label_source in evaluation.LABEL_SOURCES:
            dec, base = (r[row_key(label_source, m)] for m in ("decoder", "no_transfer"))
            cells += [pct(dec), pct(base), points(dec - base)]
        rows.append(cells)
    header = ["joint seed", "TransferNet", "no transfer", "gain"]
    header += ["TransferNet-GT", "no transfer-GT", "gain"]
    return ["", "## Joint-stage seeds (same stages 0 and 1; mIoU %)", ""] + markdown(header, rows)


def write_report(path, metrics, title, plots=(), figures=()):
    """report_markdown written to `path`, atomically."""
    write_text(path, report_markdown(metrics, title, plots, figures))
