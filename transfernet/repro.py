"""The paper's experiments in miniature (`make repro-mini`): plan, results, table and plot.

Table 1 (Sec. 6.2-6.3): TransferNet with predicted labels, TransferNet-GT (ground-truth labels),
BaselineNet and DecoupledNet-dagger, per-class IoU in the paper's column order.
Figure 4 (Sec. 6.4): TransferNet's mean IoU against the ratio of source images (with their
masks) used by the joint stage, mean and spread over random subsets.

The runs use config.MINI: the tiny architecture and schedule on the miniature's larger
built-in dataset.
Stages 0 and 1 use image labels only: they are trained once (the 100 % run of the first seed)
and shared by every other run (hard links to its snapshots); the baselines start from the same
stage-0 snapshot. Only the joint stage sees a ratio's subset of the source masks.
"""

import collections
import json
import os

import numpy as np

from transfernet import baselines, figures, fileio
from transfernet.atomic import atomic_path, write_text
from transfernet.reports import attention_table
from transfernet.tables import markdown, pct, points

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
# Rows under Table 1: what a part of the model adds, the first-seed run's ablation
# (transfernet.ablation; ground-truth labels): (title, run method, ablation).
ABLATION_ROWS = (
    (
        "what the attention adds (GT labels, minus uniform attention)",
        TRANSFERNET,
        "uniform_attention",
    ),
    (
        "what the queried label adds (GT labels, multi-class images, minus swapped labels)",
        TRANSFERNET,
        "swapped_labels",
    ),
    (
        "what BaselineNet's class map adds (GT labels, minus s_fc zeroed)",
        "baselinenet",
        "no_class_map",
    ),
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
        return "%s_s%d" % (method, seed)
    return "%s_r%03d_s%d" % (method, int(round(100 * ratio)), seed)


def plan(seed=0, ratios=RATIOS, subsets=SUBSETS):
    """The runs, in training order: TransferNet at 100 % with the first seed (trains the
    shared stages 0 and 1), the two baselines with `subsets` seeds each, then the source-ratio
    runs. Subset k of a ratio uses seed + k (subset draw, data layer and solver); at 100 % the
    subsets are the whole source set and differ only by that seed, as the baselines' seeds
    do. Every 100 % run is also segmented with ground-truth labels (TransferNet-GT, the
    ablations)."""

    def transfernet(ratio, k):
        labels = ("predicted", "gt") if ratio == 1.0 else ("predicted",)
        return RunSpec(run_name(TRANSFERNET, ratio, seed + k), TRANSFERNET, ratio, seed + k, labels)

    if 1.0 not in ratios:
        raise ValueError("repro plan: the ratios %s must include 1.0 (the shared run)" % (ratios,))
    runs = [transfernet(1.0, 0)]
    runs += [
        RunSpec(run_name(b, 1.0, seed + k), b, 1.0, seed + k, ("predicted", "gt"))
        for b in baselines.BASELINES
        for k in range(subsets)
    ]
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
    result = fileio.read_json(path)
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


def run_result(spec, evaluations, seconds=None, attention=None, ablations=None):
    """result.json of one run: spec fields, {label source: mean and per-class IoU}, the
    attention measures of its joint net (transfernet.attention_metrics; None for a baseline)
    and its ablations (transfernet.evaluation.ablate; None if not measured)."""
    return {
        "attention": attention,
        "ablations": ablations,
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
    return {"methods": methods, "ratio_study": study, "ablations": ablation_differences(results)}


def _first(results, method):
    """The finished run of `method` at 100 % with the smallest seed, or None."""
    found = [r for r in results if r["method"] == method and r["ratio"] == 1.0]
    return min(found, key=lambda r: r["seed"]) if found else None


def ablation_differences(results):
    """{ABLATION_ROWS title: {mean_iou, per_class (intact minus ablated), intact, ablated,
    images, run}} of the first-seed runs that measured the ablation."""
    out = {}
    for title, method, name in ABLATION_ROWS:
        run = _first(results, method)
        row = ((run or {}).get("ablations") or {}).get(name)
        if row:
            intact, ablated = row["intact"], row["ablated"]
            out[title] = {
                "mean_iou": intact["mean_iou"] - ablated["mean_iou"],
                "per_class": {
                    c: None
                    if v is None or ablated["per_class"].get(c) is None
                    else v - ablated["per_class"][c]
                    for c, v in intact["per_class"].items()
                },
                "intact": intact["mean_iou"],
                "ablated": ablated["mean_iou"],
                "images": row["images"],
                "run": run["name"],
            }
    return out


def table_markdown(methods, classes, ablations=None):
    """Table-1-style Markdown: rows TABLE_ROWS (n/a for a missing one), columns the paper's
    order restricted to `classes` ({id: name}, background included), then the mean IoU (%)
    over those columns; `methods` as collect()'s (per_class keyed by name). Then the
    ABLATION_ROWS of `ablations` (collect()'s) present, in signed points."""
    ids = sorted(classes)
    rows = []
    for title, _, _ in TABLE_ROWS:
        row = methods.get(title, {})
        cells = [pct(row.get("per_class", {}).get(classes[i])) for i in ids]
        rows.append([title] + cells + [pct(row.get("mean_iou"))])
    for title, _, _ in ABLATION_ROWS:
        row = (ablations or {}).get(title)
        if row:
            cells = [points(row["per_class"].get(classes[i])) for i in ids]
            rows.append([title] + cells + [points(row["mean_iou"])])
    header = ["method"] + [PAPER_COLUMNS[i] for i in ids] + ["mean"]
    return "\n".join(markdown(header, rows)) + "\n"


def paper_markdown(classes):
    """The paper's Table 1 rows on the same columns as table_markdown, with the mean over
    those columns and the paper's 21-class mean."""
    ids = sorted(classes)
    rows = []
    for title, _, _ in TABLE_ROWS:
        values = PAPER_TABLE1[title]
        these = [values[i] for i in ids] + [np.mean([values[i] for i in ids]), values[-1]]
        rows.append([title] + ["%.1f" % v for v in these])
    header = ["method (paper, VOC 2012 val)"] + [PAPER_COLUMNS[i] for i in ids]
    header += ["mean (these columns)", "mean (21)"]
    return "\n".join(markdown(header, rows)) + "\n"


def _mious(results, method, source="predicted", ratio=1.0):
    """{seed: mean IoU} of the finished runs of `method` at `ratio` with `source` labels."""
    return {
        r["seed"]: r["labels"][source]["mean_iou"]
        for r in results
        if r["method"] == method and r["ratio"] == ratio and source in r["labels"]
    }


def _verdict(higher, lower):
    """'reproduced' if every value of `higher` is above every value of `lower`, 'reversed' if
    every one is below, else 'within the spread' (None without values on both sides)."""
    if not higher or not lower:
        return None
    if min(higher) > max(lower):
        return "reproduced"
    if max(higher) < min(lower):
        return "reversed"
    return "within the spread"


def claims(results, ratios=RATIOS):
    """The paper's four claims on the finished runs: [{claim, higher, lower, verdict}] with
    the mIoUs of each side (over seeds or subsets). TransferNet-GT >= TransferNet compares the
    same runs' two label sources, so it is judged seed by seed (higher: their differences,
    lower: [0])."""
    transfernet = _mious(results, TRANSFERNET)
    gt = _mious(results, TRANSFERNET, "gt")
    paired = sorted(set(gt) & set(transfernet))
    baseline, decoupled = (_mious(results, m) for m in baselines.BASELINES)
    smallest = _mious(results, TRANSFERNET, ratio=min(ratios))
    rows = [
        ("TransferNet > BaselineNet (Sec. 6.3)", transfernet.values(), baseline.values()),
        (
            "TransferNet-GT >= TransferNet (Table 1): GT minus predicted, per seed",
            [gt[k] - transfernet[k] for k in paired],
            [0.0] if paired else [],
        ),
        ("BaselineNet > DecoupledNet-dagger (Table 1)", baseline.values(), decoupled.values()),
        (
            "100 %% of the source masks > %g %% (Figure 4)" % (100 * min(ratios)),
            transfernet.values(),
            smallest.values(),
        ),
    ]
    return [
        {
            "claim": claim,
            "higher": sorted(higher),
            "lower": sorted(lower),
            "verdict": _verdict(list(higher), list(lower)),
        }
        for claim, higher, lower in rows
    ]


def claims_markdown(rows):
    """The claims as a Markdown table (mIoU %, each side's values and their range)."""
    cells = [
        [row["claim"]]
        + [", ".join(pct(v) for v in row[side]) or "n/a" for side in ("higher", "lower")]
        + [row["verdict"] or "n/a"]
        for row in rows
    ]
    header = ["claim", "higher side", "lower side", "verdict"]
    return "\n".join(markdown(header, cells)) + "\n"


def attention_markdown(results, stage1=None):
    """The attention measures (transfernet.attention_metrics) of every TransferNet run's
    joint net, one row per run in plan order (and the shared stage-1 snapshot's first)."""
    rows = [("stage 1 (shared)", stage1)] if stage1 else []
    rows += [
        ("%s (ratio %g, seed %d)" % (r["name"], r["ratio"], r["seed"]), r["attention"])
        for r in results
        if r["method"] == TRANSFERNET and r.get("attention")
    ]
    return "\n".join(attention_table(rows)) + "\n" if rows else ""


def ratio_markdown(study):
    """Figure 4's numbers: one row per ratio, mean and spread over the subsets (IoU %)."""
    rows = []
    for key in sorted(study, key=float, reverse=True):
        st = study[key]
        spread = [pct(st[k]) for k in ("mean_iou", "std", "min", "max")]
        subsets = ", ".join("%d: %s" % (r["seed"], pct(r["mean_iou"])) for r in st["runs"])
        rows.append(["%g %%" % (100 * float(key)), "%d" % len(st["runs"])] + spread + [subsets])
    header = ["source ratio", "subsets", "mean IoU", "std", "min", "max"]
    header += ["per subset (seed: mIoU)"]
    return "\n".join(markdown(header, rows)) + "\n"


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
