"""Table 1 from the authors' released models (`make authors-table`): the files, the runs, the rows.

The released transferNet and classificationNet, imported into <out>/imported, segment a VOC
tree's val list with the authors' inference protocol (CRF included) twice: with the
classifier's labels (TransferNet) and with the ground-truth labels (TransferNet-GT). Each run's
label PNGs go to <out>/<run>/, its comp6 scores to <out>/<run>/eval.json; the table puts each
row beside the paper's (Table 1, VOC 2012 val).
"""

import json
import os

from transfernet import authors, fileio, score
from transfernet.atomic import write_text
from transfernet.repro import PAPER_COLUMNS, PAPER_TABLE1
from transfernet.tables import markdown, pct

# (run folder, Table 1 row, label source): the classifier's labels or the ground truth's.
RUNS = (("transfernet", "TransferNet", "predicted"), ("transfernet_gt", "TransferNet-GT", "gt"))
NEEDED = ("transferNet", "classificationNet")  # the released files the table needs
# Where the authors' models/setup.sh downloads them from.
RELEASE_URL = "http://cvlab.postech.ac.kr/research/transfernet/models/"


def voc_paths(voc_root):
    """(val list, image folder, ground-truth folder) of a VOC 2012 tree."""
    return (
        os.path.join(voc_root, "ImageSets", "Segmentation", "val.txt"),
        os.path.join(voc_root, "JPEGImages"),
        os.path.join(voc_root, "SegmentationClass"),
    )


def released_files(authors_dir):
    """{kind: path} of the files NEEDED in authors_dir; FileNotFoundError naming the missing
    ones and where they come from."""
    paths = {kind: os.path.join(authors_dir, authors.RELEASE[kind]) for kind in NEEDED}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            "%s not found: the authors' release, downloaded by models/setup.sh of "
            "github.com/maga33/TransferNet from %s" % (", ".join(missing), RELEASE_URL)
        )
    return paths


def imported_files(out):
    """{kind: our caffemodel} in <out>/imported (tools/import_authors.py --out-dir names)."""
    return {kind: os.path.join(out, "imported", authors.RELEASE[kind]) for kind in NEEDED}


def table(results, classes):
    """Markdown lines: per run our row and the paper's on the columns of `classes` ({id:
    name}, Table 1's order, PAPER_COLUMNS), then the mean IoU (ours over the classes with an
    IoU: those in the ground truth or the predictions; the paper's over its 21)."""
    ids = sorted(classes)
    rows = []
    for folder, title, _ in RUNS:
        result = results[folder]
        cells = [pct(result["per_class"].get(classes[i])) for i in ids]
        rows.append(["%s, released model here" % title] + cells + [pct(result["mean_iou"])])
        paper = PAPER_TABLE1[title]
        rows.append(["%s, paper" % title] + ["%.1f" % paper[i] for i in (*ids, -1)])
    return markdown(["method"] + [PAPER_COLUMNS[i] for i in ids] + ["mean"], rows)


def evaluate(out, voc_root):
    """{run folder: comp6 result} of both runs over the val list (21 VOC classes), each
    written to <out>/<run>/eval.json; the table in <out>/table.md; returns (results, lines)."""
    listing, _, gt = voc_paths(voc_root)
    ids, classes = fileio.read_list(listing), score.voc_class_table()
    results = {}
    for folder, _, _ in RUNS:
        results[folder] = score.evaluate(os.path.join(out, folder), gt, ids, classes)
        score.write_json(os.path.join(out, folder, "eval.json"), results[folder])
    lines = table(results, classes)
    write_text(os.path.join(out, "table.md"), "\n".join(lines) + "\n")
    summary = {
        f: {"mean_iou": r["mean_iou"], "per_class": r["per_class"]} for f, r in results.items()
    }
    write_text(os.path.join(out, "results.json"), json.dumps(summary, indent=1) + "\n")
    return results, lines
