"""The paper's experiments in miniature (`make repro-mini`): plan, results, table and plot.

Table 1 (Sec. 6.2-6.3): TransferNet with predicted labels, TransferNet-GT (ground-truth labels),
BaselineNet and DecoupledNet-dagger, per-class IoU in the paper's column order.
Figure 4 (Sec. 6.4): TransferNet's mean IoU against the ratio of source images (with their
masks) used by the joint stage, mean and spread over random subsets.

The 'mini' config (MINI) composes the tiny architecture at 112 px, the miniature's built-in
dataset (records at 120 px) and the tiny schedule with a longer stage 1; its nets are written
into the run folders only (transfernet.experiment.prepare), not committed.
Stages 0 and 1 use image labels only: they are trained once (the 100 % run of the first seed)
and shared by every other run (hard links to its snapshots); the baselines start from the same
stage-0 snapshot. Only the joint stage sees a ratio's subset of the source masks.
"""

import collections
import json
import os

import numpy as np

from transfernet import baselines, config, figures
from transfernet.atomic import atomic_path, write_text
from transfernet.config import Stage
from transfernet.reports import pct

# The tiny recipe at 112 px: classifier 80 px against 112 (the paper's 224 against 320): pool5
# 3x3 against 4x4, so BaselineNet's class score maps are 2x2, conv5_3 7x7.
MINI_ARCHITECTURE = config.TINY_ARCHITECTURE._replace(crop=112, classifier_crop=80)
# The built-in dataset of tools/repro_mini.py (--data data/builtin-mini), records at 120 px.
MINI_DATA = config.BUILTIN._replace(
    source="data/builtin-mini/lmdb/source",
    target="data/builtin-mini/lmdb/target",
    resize=120,
    classifier_resize=86,
)
MINI_SCHEDULE = config.Schedule(
    stages=dict(
        config.TINY_SCHEDULE.stages,
        attention=Stage(batch=8, iter_size=1, max_iter=400, base_lr=1e-3),
    ),
    snapshot=800,
    display=20,
)
MINI = config.Config(
    "mini",
    MINI_ARCHITECTURE,
    MINI_DATA,
    MINI_SCHEDULE,
    config.Layout("models/mini", "solvers/mini", "snapshots/mini", None),
)
# Built-in dataset of the miniature (data_prep.builtin.generate arguments): more images than
# the demo's 600 / 400 / 100.
DATASET = {"source_images": 1000, "target_train": 600, "target_val": 150}
RATIOS = (1.0, 0.5, 0.25, 0.1, 0.05, 0.01)  # Sec. 6.4 / Figure 4
SUBSETS = 3  # random subsets per ratio: "average the performance in each size with 3 subsets"

TRANSFERNET = "transfernet"
# Table 1 rows: (title, run method, label source).
TABLE_ROWS = (
    ("TransferNet", TRANSFERNET, "predicted"),
    ("TransferNet-GT", TRANSFERNET, "gt"),
    ("BaselineNet", "baselinenet", "predicted"),
    ("DecoupledNet-dagger", "decouplednet", "predicted"),
)
# Table 1's column headers; index = class id (0 background, VOC ids 1..20).
PAPER_COLUMNS = (
    "bkg",
    "aero",
    "bike",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "table",
    "dog",
    "horse",
    "mbk",
    "person",
    "plant",
    "sheep",
    "sofa",
    "train",
    "tv",
)
# Table 1 (VOC 2012 val, IoU %): the 21 columns above, then the paper's mean.
PAPER_TABLE1 = {
    "TransferNet": (
        85.3,
        68.5,
        26.4,
        69.8,
        36.7,
        49.1,
        68.4,
        55.8,
        77.3,
        6.2,
        75.2,
        14.3,
        69.8,
        71.5,
        61.1,
        31.9,
        25.5,
        74.6,
        33.8,
        49.6,
        43.7,
        52.1,
    ),
    "TransferNet-GT": (
        85.2,
        70.6,
        25.3,
        61.7,
        42.2,
        38.9,
        67.5,
        53.9,
        73.3,
        20.6,
        81.5,
        26.9,
        69.6,
        73.2,
        66.6,
        36.7,
        26.9,
        82.9,
        42.2,
        54.4,
        39.3,
        54.3,
    ),
    "BaselineNet": (
        81.4,
        30.6,
        9.2,
        41.8,
        27.0,
        32.9,
        46.9,
        44.7,
        61.2,
        7.0,
        59.2,
        4.7,
        55.2,
        55.5,
        22.7,
        32.0,
        17.5,
        65.7,
        15.8,
        33.6,
        18.1,
        36.3,
    ),
    "DecoupledNet-dagger": (
        79.2,
        13.1,
        7.7,
        38.4,
        14.3,
        15.0,
        14.7,
        46.0,
        60.5,
        3.7,
        28.0,
        1.7,
        54.0,
        37.5,
        24.0,
        9.2,
        4.5,
        46.2,
        3.4,
        18.7,
        13.0,
        25.4,
    ),
}
PLOT_SIZE = (6.4, 4.0)  # inches
PLOT_DPI = 100  # -> 640 x 400 pixels

RunSpec = collections.namedtuple("RunSpec", "name method ratio seed labels")


def run_name(method, ratio, seed):
    if method != TRANSFERNET:
        return method
    return "%s_r%03d_s%d" % (method, int(round(100 * ratio)), seed)


def plan(seed=0, ratios=RATIOS, subsets=SUBSETS):
    """The runs, in training order: TransferNet at 100 % with the first seed (trains the
    shared stages 0 and 1; also segmented with ground-truth labels), the two baselines, then
    the source-ratio runs. Subset k of a ratio uses seed + k (subset draw, data layer and
    solver); at 100 % the subsets are the whole source set and differ only by that seed."""

    def transfernet(ratio, k):
        labels = ("predicted", "gt") if (ratio, k) == (1.0, 0) else ("predicted",)
        return RunSpec(run_name(TRANSFERNET, ratio, seed + k), TRANSFERNET, ratio, seed + k, labels)

    if 1.0 not in ratios:
        raise ValueError("repro plan: the ratios %s must include 1.0 (the shared run)" % (ratios,))
    runs = [transfernet(1.0, 0)]
    runs += [RunSpec(b, b, 1.0, seed, ("predicted",)) for b in baselines.BASELINES]
    runs += [transfernet(r, k) for r in ratios for k in range(subsets) if (r, k) != (1.0, 0)]
    return runs


def result_path(out, spec):
    return os.path.join(out, spec.name, "result.json")


def read_result(out, spec):
    """The finished run's result.json, or None if it is missing or was made for another
    spec (method, ratio, seed or label sources)."""
    path = result_path(out, spec)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    same = (
        result.get("method"),
        result.get("ratio"),
        result.get("seed"),
        sorted(result.get("labels", {})),
    ) == (spec.method, spec.ratio, spec.seed, sorted(spec.labels))
    return result if same else None


def pending(out, specs):
    """The specs whose run folder under `out` has no matching result.json (to be run)."""
    return [s for s in specs if read_result(out, s) is None]


def run_result(spec, evaluations, seconds=None):
    """result.json of one run: spec fields and {label source: mean and per-class IoU}."""
    return {
        "name": spec.name,
        "method": spec.method,
        "ratio": spec.ratio,
        "seed": spec.seed,
        "seconds": seconds,
        "labels": {
            source: {"mean_iou": res["mean_iou"], "per_class": res["per_class"]}
            for source, res in evaluations.items()
        },
    }


def write_run_result(out, spec, result):
    write_text(result_path(out, spec), json.dumps(result, indent=1, sort_keys=True) + "\n")


def collect(results, ratios=RATIOS):
    """results.json's "methods" and "ratio_study" from finished run results (run_result).

    methods: {Table 1 title: {mean_iou, per_class, seed, run}} of the first-seed runs
    (TransferNet = 100 % with the first seed). ratio_study: {"%g" % ratio: {mean_iou (mean
    over subsets), std, min, max, runs: [{seed, mean_iou, per_class, run}]}}, ratios without
    a finished run are left out.
    """
    methods = {}
    for title, method, source in TABLE_ROWS:
        found = [
            r
            for r in results
            if r["method"] == method and r["ratio"] == 1.0 and source in r["labels"]
        ]
        if found:
            first = min(found, key=lambda r: r["seed"])
            methods[title] = dict(first["labels"][source], seed=first["seed"], run=first["name"])
    study = {}
    for ratio in ratios:
        runs = sorted(
            (r for r in results if r["method"] == TRANSFERNET and r["ratio"] == ratio),
            key=lambda r: r["seed"],
        )
        if runs:
            values = np.array([r["labels"]["predicted"]["mean_iou"] for r in runs], float)
            study["%g" % ratio] = {
                "mean_iou": float(values.mean()),
                "std": float(values.std()),
                "min": float(values.min()),
                "max": float(values.max()),
                "runs": [
                    dict(r["labels"]["predicted"], seed=r["seed"], run=r["name"]) for r in runs
                ],
            }
    return {"methods": methods, "ratio_study": study}


def table_markdown(methods, classes):
    """Table-1-style Markdown: rows TABLE_ROWS (n/a for a missing one), columns the paper's
    order restricted to `classes` ({id: name}, background included), then the mean IoU (%)
    over those columns; `methods` as collect()'s (per_class keyed by name)."""
    ids = sorted(classes)
    lines = [
        "| method | %s | mean |" % " | ".join(PAPER_COLUMNS[i] for i in ids),
        "|---" * (len(ids) + 2) + "|",
    ]
    for title, _, _ in TABLE_ROWS:
        row = methods.get(title, {})
        cells = [pct(row.get("per_class", {}).get(classes[i])) for i in ids]
        lines.append("| %s | %s | %s |" % (title, " | ".join(cells), pct(row.get("mean_iou"))))
    return "\n".join(lines) + "\n"


def paper_markdown(classes):
    """The paper's Table 1 rows on the same columns as table_markdown, with the mean over
    those columns and the paper's 21-class mean."""
    ids = sorted(classes)
    lines = [
        "| method (paper, VOC 2012 val) | %s | mean (these columns) | mean (21) |"
        % " | ".join(PAPER_COLUMNS[i] for i in ids),
        "|---" * (len(ids) + 3) + "|",
    ]
    for title, _, _ in TABLE_ROWS:
        values = PAPER_TABLE1[title]
        lines.append(
            "| %s | %s | %.1f | %.1f |"
            % (
                title,
                " | ".join("%.1f" % values[i] for i in ids),
                np.mean([values[i] for i in ids]),
                values[-1],
            )
        )
    return "\n".join(lines) + "\n"


def ratio_markdown(study):
    """Figure 4's numbers: one row per ratio, mean and spread over the subsets (IoU %)."""
    lines = [
        "| source ratio | subsets | mean IoU | std | min | max | per subset (seed: mIoU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted(study, key=float, reverse=True):
        st = study[key]
        lines.append(
            "| %g %% | %d | %s | %s | %s | %s | %s |"
            % (
                100 * float(key),
                len(st["runs"]),
                pct(st["mean_iou"]),
                pct(st["std"]),
                pct(st["min"]),
                pct(st["max"]),
                ", ".join("%d: %s" % (r["seed"], pct(r["mean_iou"])) for r in st["runs"]),
            )
        )
    return "\n".join(lines) + "\n"


def plot_ratio(path, study, references=None, title=None):
    """Figure-4-style PNG (PLOT_SIZE at PLOT_DPI): TransferNet's mean IoU (%) against the
    source ratio on a log axis, mean over subsets with a min-max bar and every subset as a dot;
    `references` {label: mean IoU} are drawn as dashed horizontal lines (the paper draws the
    weakly-supervised methods; the miniature's baselines here)."""
    plt = figures.pyplot()
    keys = sorted(study, key=float)
    x = np.array([float(k) for k in keys])
    mean = np.array([100 * study[k]["mean_iou"] for k in keys])
    low = mean - np.array([100 * study[k]["min"] for k in keys])
    high = np.array([100 * study[k]["max"] for k in keys]) - mean
    fig, ax = plt.subplots(figsize=PLOT_SIZE)
    ax.errorbar(
        x,
        mean,
        yerr=[low, high],
        fmt="o-",
        color="C3",
        capsize=4,
        label="TransferNet (mean, min-max over subsets)",
    )
    for k in keys:
        ax.plot(
            [float(k)] * len(study[k]["runs"]),
            [100 * r["mean_iou"] for r in study[k]["runs"]],
            ".",
            color="C3",
            alpha=0.5,
        )
    for i, (label, value) in enumerate(sorted((references or {}).items())):
        if value is not None:
            ax.axhline(100 * value, linestyle="--", color="C%d" % i, label=label)
    ax.set_xscale("log")  # 1-10 % readable beside 100 %
    ax.set_xticks(x)
    ax.set_xticklabels(["%g %%" % (100 * v) for v in x])
    ax.minorticks_off()
    ax.set_xlim(x.min() / 1.5, x.max() * 1.5)
    ax.set_xlabel("Ratio of segmentation annotations from the source domain")
    ax.set_ylabel("Mean IoU (%)")
    ax.set_title(title or "Source-ratio study (Figure 4 in miniature)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=PLOT_DPI)
    plt.close(fig)
