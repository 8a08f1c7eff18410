"""A run's trained networks on an evaluation set: image labels, label maps, comp6 scores.

An EvalSet is the one value a demo or study passes around: the image ids, where their images
and ground-truth PNGs are, the classes the classifier may predict, and the classes scored.
For each label source (the stage-0 classifier's prediction, Sec. 5, or the ground truth:
TransferNet-GT) and each method (the decoder with and without dense CRF, and the no-transfer
rule on the same forward), infer() writes the run's pred/<label source>_<method>/<id>.png.
"""

import collections
import functools
import json
import os

from transfernet import ablation as ablations
from transfernet import attention_metrics, fileio, inference, no_transfer, score
from transfernet.atomic import write_text
from transfernet.classes import BACKGROUND
from transfernet.experiment import deploy_net, final_snapshot, model_file, pred_dir, print_progress
from transfernet.fileio import read_image

LABEL_SOURCES = ("predicted", "gt")
# Segmentation methods of one image: the decoder's maps with and without dense CRF
# (TransferNet, Sec. 5) and the thresholded s of the same forward (no transfer).
METHODS = ("decoder", "decoder_crf", "no_transfer")

EvalSet = collections.namedtuple("EvalSet", "ids image_dir gt_dir candidates classes")


def voc_eval_set(voc_root, target, split="val"):
    """The eval_set of a VOC-style tree's `split` list (JPEGImages, SegmentationClass)."""
    return eval_set(
        os.path.join(voc_root, "JPEGImages"),
        os.path.join(voc_root, "SegmentationClass"),
        os.path.join(voc_root, "ImageSets", "Segmentation", split + ".txt"),
        target,
    )


def eval_set(image_dir, gt_dir, list_path, target):
    """The EvalSet of a list of ids: <image_dir>/<id>.jpg scored against <gt_dir>/<id>.png on
    background and the classes present; candidates are the target dataset's classes (its
    LMDB's meta.json), which also name the classes scored."""
    ids = fileio.read_list(list_path)
    candidates = inference.class_table(os.path.join(target, "meta.json"))
    return EvalSet(ids, image_dir, gt_dir, candidates, present_classes(gt_dir, ids, candidates))


def label_maps(net, image, class_ids, methods=METHODS, queries=None):
    """{method: (H, W) uint8 label map} of one image for `methods` (of METHODS; one
    seg_deploy forward per CRF setting; no_transfer uses the s of the forward without CRF),
    made at the working size (inference.working_image) and enlarged to the image's; queries
    as inference.forward's."""
    height, width = image.shape[:2]
    image = inference.working_image(image)
    seg = inference.segment(net, image, class_ids, queries=queries)
    maps = {"decoder": seg.labels}
    if "decoder_crf" in methods:
        maps["decoder_crf"] = inference.segment(
            net, image, class_ids, use_crf=True, queries=queries
        ).labels
    if "no_transfer" in methods:
        maps["no_transfer"] = (
            no_transfer.labels(seg.s, seg.class_ids, *image.shape[:2])
            if len(seg.class_ids)
            else seg.labels
        )
    return {m: inference.full_size_labels(maps[m], height, width) for m in methods}


def image_labels(run, val, label_source):
    """{id: sorted class ids} of the EvalSet's images: the stage-0 classifier's prediction
    among its candidates (Sec. 5) or the ground truth (TransferNet-GT); cached in
    pred/labels_<label_source>.json."""
    path = os.path.join(run.dir, "pred", "labels_%s.json" % label_source)
    if os.path.exists(path):
        cached = fileio.read_json(path)
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
    run,
    val,
    label_sources=LABEL_SOURCES,
    weights=None,
    progress=print_progress,
    methods=METHODS,
    ablation=None,
):
    """Segment the EvalSet's images with the run's deploy_net and the final joint snapshot
    (or `weights`) by each of `methods` (METHODS), for each label source; writes
    pred/<label source>_<method>[_<ablation>]/<id>.png. Images whose PNGs all exist are
    skipped (resume). ablation: one of transfernet.ablation.ABLATIONS, applied to the net and
    its queries. Returns {(label source, method): folder}."""
    net = inference.load_net(
        model_file(run, deploy_net(run)), weights or final_snapshot(run, "joint")
    )
    queries = None
    if ablation:
        ablations.apply(net, ablation)
        queries = functools.partial(ablations.queries, ablation=ablation)
    folders = {}
    for label_source in label_sources:
        labels = image_labels(run, val, label_source)
        suffix = "_" + ablation if ablation else ""
        out = {m: pred_dir(run, label_source, m + suffix) for m in methods}
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
            maps = label_maps(net, image, labels[image_id], methods, queries)
            for method, folder in out.items():
                fileio.write_label_png(os.path.join(folder, image_id + ".png"), maps[method])
    return folders


def ablate(run, val, progress=print_progress):
    """{ablation: {"images", "intact", "ablated"}}: the scores ({"mean_iou", "per_class"}) of
    the run's joint net with ground-truth labels, intact and with each ablation that applies
    to it (transfernet.ablation); swapped_labels is scored on the images with two or more
    labels, the only ones it changes."""
    net = inference.load_net(model_file(run, deploy_net(run)), final_snapshot(run, "joint"))
    names = ablations.applicable(net)
    del net
    labels = image_labels(run, val, "gt")
    multi = val._replace(ids=[i for i in val.ids if len(labels[i]) > 1])
    out = {}
    for name in names:
        subset = multi if name == "swapped_labels" else val
        scores = []
        for ablation in (None, name):
            folders = infer(run, subset, ("gt",), None, progress, ("decoder",), ablation)
            folder = folders["gt", "decoder"]
            result = score.evaluate(folder, val.gt_dir, subset.ids, val.classes, subset=True)
            scores.append({k: result[k] for k in ("mean_iou", "per_class")})
        out[name] = {"images": len(subset.ids), "intact": scores[0], "ablated": scores[1]}
        progress(
            "%s: mIoU %.1f intact, %.1f ablated (%d images, ground-truth labels)"
            % (name, 100 * scores[0]["mean_iou"], 100 * scores[1]["mean_iou"], len(subset.ids))
        )
    return out


def stage_attention(run, val, labels, stage="joint"):
    """attention() of the run's seg_deploy with the final snapshot of `stage` (stage 1, the
    attention stage, has no decoder: only what alpha depends on is loaded)."""
    net = inference.load_net(
        model_file(run, "seg_deploy"),
        final_snapshot(run, stage),
        until="z" if stage == "attention" else None,
    )
    return attention(net, val, labels)


def attention(net, val, labels):
    """attention_metrics.summarise of the seg_deploy `net`'s alpha on the EvalSet's images for
    their ground-truth `labels` ({id: class ids}); images without a label are left out."""
    pairs = []
    for image_id in val.ids:
        class_ids = sorted(labels[image_id])
        if not class_ids:
            continue
        image = read_image(os.path.join(val.image_dir, image_id + ".jpg"))
        gt_path = os.path.join(val.gt_dir, image_id + ".png")
        gt = fileio.read_label_png(gt_path)
        if gt.shape != image.shape[:2]:
            raise ValueError(
                "%s is %dx%d, its image %dx%d (WxH)"
                % (gt_path, gt.shape[1], gt.shape[0], image.shape[1], image.shape[0])
            )
        alpha = inference.forward(net, image, class_ids)[2]
        pairs += attention_metrics.image_measures(alpha, gt, class_ids)
    return attention_metrics.summarise(pairs)


def evaluate(folder, val):
    """comp6 scores of the PNGs in `folder` on the EvalSet (score.evaluate), written to
    folder/eval.json."""
    result = score.evaluate(folder, val.gt_dir, val.ids, val.classes)
    score.write_json(os.path.join(folder, "eval.json"), result)
    return result


def present_classes(gt_dir, ids, names):
    """{id: name} of background and the classes present in the ground truth of `ids`, named
    by `names` ({id: name}; an id it lacks by its number)."""
    present = sorted(
        {c for i in ids for c in inference.gt_labels(os.path.join(gt_dir, i + ".png"))}
    )
    table = {BACKGROUND: score.BACKGROUND_NAME}
    table.update((c, names.get(c, str(c))) for c in present)
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
