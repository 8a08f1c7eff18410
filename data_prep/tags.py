"""Image-level tags -> TransferNet target dataset: a CSV of `image,label;label` rows, or a
COCO-format instances JSON whose masks are ignored (only which categories an image holds).

As for VOC (data_prep.voc), the records hold the image and its class ids and no mask: the
target domain trains on image-level labels only (Sec. 5.1). The names are the class table's
target classes (data_prep.spec); a row or image naming a class the table does not have, an
image that is missing, or an image listed twice is a counted skip naming the row.

CSV: one row per image, the file name relative to the image folder, then its labels joined
by ';' (a header row `image,labels` is allowed):
    image,labels
    0001.jpg,cross;triangle
"""

import csv
import io
import os

from data_prep import coco, common
from transfernet import fileio, records

MALFORMED_ROW = "malformed_row"
DUPLICATE_IMAGE = "duplicate_image"
MISSING_IMAGE = "missing_image"
NO_LABEL = "no_label"
HEADER = ("image", "labels")


def encode_one(task):
    """Worker: (image path, class ids, size) -> (image record, None, class ids)."""
    path, ids, size = task
    image = fileio.read_image(path)
    return records.encode_image(records.warp_image(image, size), ids), None, ids


def csv_rows(path):
    """[(line number, [cells])] of a UTF-8 CSV (fileio.read_text: a BOM and CRLF are fine)."""
    text = fileio.read_text(path)
    rows = [(k + 1, row) for k, row in enumerate(csv.reader(io.StringIO(text))) if row]
    if rows and tuple(c.strip().lower() for c in rows[0][1]) == HEADER:
        rows = rows[1:]
    return rows


def csv_tasks(path, image_dir, ids, size):
    """([(image name, task)], skipped rows) of a tags CSV; `ids` {target name: class id}."""
    found, skipped = {}, []
    for line, row in csv_rows(path):
        where = "%s line %d" % (path, line)
        if len(row) != 2 or not row[0].strip():
            skipped.append((MALFORMED_ROW, where, "%s: expected image,label;label" % where))
            continue
        name, labels = row[0].strip(), [t.strip() for t in row[1].split(";") if t.strip()]
        found.setdefault(name, []).append((line, labels))
    tasks = []
    for name, entries in sorted(found.items()):
        if len(entries) > 1:
            lines = ", ".join(str(line) for line, _ in entries)
            detail = "%s is listed on lines %s of %s" % (name, lines, path)
            skipped.append((DUPLICATE_IMAGE, name, detail))
            continue
        line, labels = entries[0]
        where, image = "%s line %d" % (path, line), os.path.join(image_dir, name)
        try:
            if not os.path.isfile(image):
                raise fileio.Skip(MISSING_IMAGE, "%s: image %s does not exist" % (where, image))
            tasks.append((name, (image, label_ids(where, labels, ids), size)))
        except fileio.Skip as s:
            skipped.append((s.reason, name, s.detail))
    return tasks, skipped


def label_ids(where, labels, ids):
    """Sorted class ids of label names; Skip if one is not a target class or there is none."""
    unknown = [n for n in labels if n not in ids]
    if unknown:
        raise fileio.Skip(
            common.UNKNOWN_CATEGORY,
            "%s: %s not among the target classes (%s)"
            % (where, ", ".join(map(repr, unknown)), ", ".join(ids)),
        )
    if not labels:
        raise fileio.Skip(NO_LABEL, "%s: no target class" % where)
    return sorted({ids[n] for n in labels})


def coco_tasks(path, image_dir, ids, size):
    """([(file name, task)], skipped rows) of a COCO-format JSON's images, each labelled with
    the target classes its annotations name (masks ignored; other categories are no labels)."""
    dataset = coco.load_instances(path)
    infos, anns, skipped = coco.index_instances(dataset)
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    tasks = []
    for img_id, info in sorted(infos.items()):
        labels = sorted({names[a["category_id"]] for a in anns[img_id]} & set(ids))
        where = "%s image %d" % (path, img_id)
        try:
            image = coco.image_path(image_dir, info["file_name"])
            task = (image, label_ids(where, labels, ids), size)
        except fileio.Skip as s:
            skipped.append((s.reason, info["file_name"], s.detail))
            continue
        tasks.append((info["file_name"], task))
    return tasks, skipped


def build_target(kind, path, image_dir, out_dir, table, size, workers=2):
    """Build the target dataset of a tags CSV (kind 'csv') or COCO JSON ('coco') for the
    ClassTable's target classes; returns its meta."""
    records.remove_partial(out_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError("target %s file %s not found" % (kind, path))
    if not os.path.isdir(image_dir):
        raise FileNotFoundError("target image folder %s not found" % image_dir)
    ids = {n: k for k, n in table.target_names.items()}
    tasks, skipped = (csv_tasks if kind == "csv" else coco_tasks)(path, image_dir, ids, size)
    params = {kind: os.path.abspath(path), "images": os.path.abspath(image_dir), "size": size}
    meta = common.dataset_meta("target", size, table, table.target_names, split=kind, params=params)
    return common.build(
        out_dir, tasks, encode_one, meta, workers=workers, desc=kind, skipped=skipped
    )
