"""A run's trained networks on an evaluation set: image labels, label maps, comp6 scores.

An EvalSet is the one value a demo or study passes around: the image ids, where their images
and ground-truth PNGs are, the classes the classifier may predict, and the classes scored.
For each label source (the stage-0 classifier's prediction, Sec. 5, or the ground truth:
TransferNet-GT) and each method (the decoder with and without dense CRF, and the no-transfer
rule on the same forward), infer() writes the run's pred/<label source>_<method>/<id>.png.
"""

import collections
import json
import os

from transfernet import fileio, inference, no_transfer, score
from transfernet.atomic import write_text
from transfernet.classes import BACKGROUND, CLASS_NAMES
from transfernet.experiment import deploy_net, final_snapshot, model_file, pred_dir, print_progress
from transfernet.fileio import read_image

LABEL_SOURCES = ("predicted", "gt")
# Segmentation methods of one image: the decoder's maps with and without dense CRF
# (TransferNet, Sec. 5) and the thresholded s of the same forward (no transfer).
METHODS = ("decoder", "decoder_crf", "no_transfer")

EvalSet = collections.namedtuple("EvalSet", "ids image_dir gt_dir candidates classes")


def voc_eval_set(voc_root, target, split="val"):
    """The EvalSet of a VOC-style tree's `split` list: JPEGImages/<id>.jpg scored against
    SegmentationClass/<id>.png on background and the classes present; candidates are the
    target dataset's classes (its LMDB's meta.json)."""
    ids = fileio.read_list(os.path.join(voc_root, "ImageSets", "Segmentation", split + ".txt"))
    gt_dir = os.path.join(voc_root, "SegmentationClass")
    return EvalSet(
        ids,
        os.path.join(voc_root, "JPEGImages"),
        gt_dir,
        inference.class_table(os.path.join(target, "meta.json")),
        present_classes(gt_dir, ids),
    )


def label_maps(net, image, class_ids, methods=METHODS):
    """{method: (H, W) uint8 label map} of one image for `methods` (of METHODS; one
    seg_deploy forward per CRF setting; no_transfer uses the s of the forward without CRF)."""
    height, width = image.shape[:2]
    seg = inference.segment(net, image, class_ids)
    maps = {"decoder": seg.labels}
    if "decoder_crf" in methods:
        maps["decoder_crf"] = inference.segment(net, image, class_ids, use_crf=True).labels
    if "no_transfer" in methods:
        maps["no_transfer"] = (
            no_transfer.labels(seg.s, seg.class_ids, height, width)
            if len(seg.class_ids)
            else seg.labels
        )
    return {m: maps[m] for m in methods}


def image_labels(run, val, label_source):
    """{id: sorted class ids} of the EvalSet's images: the stage-0 classifier's prediction
    among its candidates (Sec. 5) or the ground truth (TransferNet-GT); cached in
    pred/labels_<label_source>.json."""
    path = os.path.join(run.dir, "pred", "labels_%s.json" % label_source)
    if os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
        if set(cached) == set(val.ids):
            return cached
    if label_source == "gt":
        labels = {i: inference.gt_labels(os.path.join(val.gt_dir, i + ".png")) for i in val.ids}
    elif label_source == "predicted":
        classifier = inference.load_net(
            model_file(run, "classifier_deploy"), final_snapshot(run, "classifier")
        )
        labels = {
            i: inference.predict_labels(
                classifier, read_image(os.path.join(val.image_dir, i + ".jpg")), val.candidates
            )
            for i in val.ids
        }
    else:
        raise ValueError("label source %r; expected one of %s" % (label_source, LABEL_SOURCES))
    write_text(path, json.dumps(labels, indent=1, sort_keys=True) + "\n")
    return labels


def infer(
    run, val, label_sources=LABEL_SOURCES, weights=None, progress=print_progress, methods=METHODS
):
    """Segment the EvalSet's images with the run's deploy_net and the final joint snapshot
    (or `weights`) by each of `methods` (METHODS), for each label source; writes
    pred/<label source>_<method>/<id>.png. Images whose PNGs all exist are skipped (resume).
    Returns {(label source, method): folder}."""
    net = inference.load_net(
        model_file(run, deploy_net(run)), weights or final_snapshot(run, "joint")
    )
    folders = {}
    for label_source in label_sources:
        labels = image_labels(run, val, label_source)
        out = {m: pred_dir(run, label_source, m) for m in methods}
        folders.update(((label_source, m), d) for m, d in out.items())
        todo = [
            i
            for i in val.ids
            if not all(os.path.exists(os.path.join(d, i + ".png")) for d in out.values())
        ]
        progress(
            "infer %s labels: %d images (%d done before)"
            % (label_source, len(todo), len(val.ids) - len(todo))
        )
        for image_id in todo:
            image = read_image(os.path.join(val.image_dir, image_id + ".jpg"))
            maps = label_maps(net, image, labels[image_id], methods)
            for method, folder in out.items():
                fileio.write_label_png(os.path.join(folder, image_id + ".png"), maps[method])
    return folders


def evaluate(folder, val):
    """comp6 scores of the PNGs in `folder` on the EvalSet (score.evaluate), written to
    folder/eval.json."""
    result = score.evaluate(folder, val.gt_dir, val.ids, val.classes)
    score.write_json(os.path.join(folder, "eval.json"), result)
    return result


def present_classes(gt_dir, ids):
    """{id: name} of background and the classes present in the ground truth of `ids`."""
    present = sorted(
        {c for i in ids for c in inference.gt_labels(os.path.join(gt_dir, i + ".png"))}
    )
    table = {BACKGROUND: score.BACKGROUND_NAME}
    table.update((c, CLASS_NAMES.get(c, str(c))) for c in present)
    return table


def label_accuracy(predicted, truth):
    """Image-label prediction quality: exact-set accuracy, precision and recall over all
    (image, label) pairs of the predicted vs ground-truth label sets."""
    tp = sum(len(set(predicted[i]) & set(truth[i])) for i in truth)
    npred = sum(len(predicted[i]) for i in truth)
    ntrue = sum(len(truth[i]) for i in truth)
    return {
        "exact": sum(set(predicted[i]) == set(truth[i]) for i in truth) / len(truth),
        "precision": tp / npred if npred else None,
        "recall": tp / ntrue if ntrue else None,
        "images": len(truth),
    }
