"""Parse Caffe training logs (glog text of `caffe train` or pycaffe solvers) into tables.

Recognised lines (BVLC Caffe 1.0 solver.cpp / sgd_solver.cpp):
  Iteration 100 (2.5 iter/s, 40s/100 iters), loss = 0.52      train display (smoothed loss)
  Iteration 15000, loss = 0.41                                  final loss after training
      Train net output #0: seg_loss = 0.2 (* 2 = 0.4 loss)      raw value, weight, weighted
  Iteration 100, lr = 0.001
  Iteration 1000, Testing net (#0)
      Test net output #1: accuracy = 0.75
Rows: one per train display and one per test pass, in log order. An output followed by
"(* W = L loss)" is a loss; any other output (accuracy) is a metric.
"""

import csv
import io
import re

from transfernet import figures
from transfernet.atomic import write_text

TOTAL = "smoothed_loss"  # the solver's total loss, averaged over `average_loss` iterations
_TRAIN = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)")
_LR = re.compile(r"Iteration (\d+), lr = (\S+)")
_TEST = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_OUTPUT = re.compile(r"(Train|Test) net output #\d+: (\S+) = (\S+)( \(\* \S+ = \S+ loss\))?")


def parse_log(lines):
    """Parse log lines into {"rows": [...], "losses": set, "metrics": set}.

    Each row is a dict with "phase" ("train", or "test" / "test1" ... for test net #0, #1),
    "iteration", and for train rows TOTAL (the solver's smoothed total loss) and "lr" when
    logged, plus one key per net output (its raw value, before the loss weight).
    """
    rows, losses, metrics = [], set(), set()
    current = None
    for line in lines:
        m = _TEST.search(line)
        if m:
            net = int(m.group(2))
            current = {
                "phase": "test" if net == 0 else "test%d" % net,
                "iteration": int(m.group(1)),
            }
            rows.append(current)
            continue
        m = _TRAIN.search(line)
        if m:
            current = {"phase": "train", "iteration": int(m.group(1)), TOTAL: float(m.group(2))}
            rows.append(current)
            continue
        m = _LR.search(line)
        if m:
            if current and current["phase"] == "train" and current["iteration"] == int(m.group(1)):
                current["lr"] = float(m.group(2))
            continue
        m = _OUTPUT.search(line)
        if m and current is not None:
            expected = "train" if m.group(1) == "Train" else "test"
            if not current["phase"].startswith(expected):
                continue  # an output line without its header (truncated log)
            name = m.group(2)
            current[name] = float(m.group(3))
            (losses if m.group(4) else metrics).add(name)
    return {"rows": rows, "losses": losses, "metrics": metrics}


def read_log(path):
    """parse_log of a log file."""
    with open(path, errors="replace") as f:
        return parse_log(f)


def columns(parsed):
    """CSV column order: phase, iteration, lr, TOTAL, then the outputs sorted by name."""
    return ["phase", "iteration", "lr", TOTAL] + sorted(parsed["losses"] | parsed["metrics"])


def write_csv(path, parsed):
    """One CSV row per parsed row (empty cell where a value was not logged), atomically."""
    buf = io.StringIO()
    out = csv.DictWriter(buf, columns(parsed), restval="", lineterminator="\n")
    out.writeheader()
    for row in parsed["rows"]:
        out.writerow(row)
    write_text(path, buf.getvalue())


def _series(rows, phase, key):
    pts = [(r["iteration"], r[key]) for r in rows if r["phase"] == phase and key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot(path, parsed, title=""):
    """Loss curves (train total, each loss output, test losses) and, when the log has any,
    metric curves (accuracy) in a second panel; PNG written atomically (matplotlib Agg)."""
    plt = figures.pyplot()
    rows = parsed["rows"]
    phases = sorted({r["phase"] for r in rows})
    panels = [("loss", [TOTAL] + sorted(parsed["losses"]))]
    if parsed["metrics"]:
        panels.append(("metric", sorted(parsed["metrics"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    for ax, (ylabel, keys) in zip(axes[0], panels):
        for phase in phases:
            for key in keys:
                x, y = _series(rows, phase, key)
                if x:
                    label = "%s %s" % (phase, key)
                    ax.plot(x, y, "-" if phase == "train" else "o--", label=label)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    figures.save(fig, path, dpi=100)
