"""TransferNet inference (paper Sec. 5): labels, per-label segmentation, final label map.

For an image with labels L (predicted by the stage-0 classifier, or given):
1. pad the image to a square at the bottom/right with the mean colour (as the authors'
   MATLAB inference does), resize it to the deploy input size S, subtract the mean;
2. one forward of seg_deploy with the K one-hot labels (the encoder runs once): the
   foreground probability map of each label at S x S;
3. resize each map to the padded size and crop it to the original image;
4. per label a score map: the CRF's re-weighted fg probability where the CRF says fg
   (transfernet.crf.dense_crf), or without CRF the fg probability where the network says fg;
5. per pixel the label with the largest score, background where no score is positive
   (transfernet.crf.combine_labels).
"""
import collections
import os

import cv2
import numpy as np

from transfernet import config, crf, score, solvers, weights
from transfernet.atomic import atomic_path
from transfernet.classes import BACKGROUND, CLASS_NAMES, IGNORE, VOC_CLASSES

# Reference inference: every class whose stage-0 sigmoid is >= 0.6 is a label of the image;
# the arg-max class when none is (reference-facts.md, Inference).
CLASSIFIER_THRESHOLD = 0.6
# BGR mean subtracted from every input (the VGG-16 mean, as in training).
MEAN_BGR = (104.008, 116.669, 122.675)
# Candidate labels by default: the 20 PASCAL VOC classes (the target domain).
VOC_IDS = tuple(range(1, len(VOC_CLASSES) + 1))
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff")

Segmentation = collections.namedtuple("Segmentation", [
    "class_ids",  # (K,) int64 labels of the image
    "fg",         # (K, H, W) float32 network fg probability per label, original image size
    "scores",     # (K, H, W) float32 score per label (fg where fg wins, CRF-refined with crf)
    "labels",     # (H, W) uint8 final label map (0 background)
    "alpha",      # (K, h, w) float32 attention (Eq. 4) on the padded square, or None
    "s",          # (K, h, w) float32 densified attention (Eq. 7) on the padded square, or None
])


def load_net(model, weights_path):
    """A caffe.Net of prototxt `model` in TEST phase with every parameter from the caffemodel
    `weights_path`, checked before anything is copied (weights.check_complete);
    FileNotFoundError naming a missing prototxt, weights.WeightsError for weights that do
    not fit."""
    import caffe
    if not os.path.isfile(model):
        raise FileNotFoundError("model file not found: %s" % model)
    param = weights.read_caffemodel(weights_path)  # the cheapest errors before the net
    net = caffe.Net(model, caffe.TEST)
    weights.check_complete(weights_path, param, weights.net_shapes(net), model)
    del param  # a paper-size file is 0.5 GB; copy_from reads it again
    net.copy_from(weights_path)
    return net


def input_size(net):
    """Side S of the square (1, 3, S, S) `data` input of a deploy net."""
    shape = tuple(net.blobs["data"].shape)
    if len(shape) != 4 or shape[:2] != (1, 3) or shape[2] != shape[3]:
        raise ValueError("deploy net input 'data' must be (1, 3, S, S), got %s" % (shape,))
    return shape[2]


def num_classes(net):
    """Length of the seg net's one-hot `label` input."""
    return net.blobs["label"].shape[1]


def _blob(image_float, size):
    """(H, W, 3) mean-subtracted float image -> (1, 3, size, size) float32 blob."""
    resized = cv2.resize(image_float, (size, size), interpolation=cv2.INTER_LINEAR)
    return resized.transpose(2, 0, 1)[np.newaxis].astype(np.float32)


def preprocess(image, size):
    """Padded seg input: BGR uint8 (H, W, 3) -> (1, 3, size, size) float32.

    The image is mean-subtracted and zero-padded at the bottom/right to a square of side
    max(H, W) (i.e. padded with the mean colour), then resized to size x size (bilinear).
    """
    height, width = image.shape[:2]
    side = max(height, width)
    padded = np.zeros((side, side, 3), np.float32)
    padded[:height, :width] = image.astype(np.float32) - np.float32(MEAN_BGR)
    return _blob(padded, size)


def preprocess_classifier(image, size):
    """Classifier input: the whole image warped to size x size, mean-subtracted.

    Warping (not padding) matches stage-0 training, whose records store warped images.
    """
    return _blob(image.astype(np.float32) - np.float32(MEAN_BGR), size)


def unpad(maps, height, width):
    """Map (K, S, S) maps on the padded square back to the image: (K, height, width).

    Inverse geometry of `preprocess`: resize to the padded side max(H, W) (bilinear), keep
    the top-left height x width.
    """
    maps = np.asarray(maps, np.float32)
    side = max(height, width)
    out = np.empty((maps.shape[0], height, width), np.float32)
    for k, m in enumerate(maps):  # cv2.resize takes at most 512 channels: one map at a time
        out[k] = cv2.resize(m, (side, side), interpolation=cv2.INTER_LINEAR)[:height, :width]
    return out


def select_labels(probs, candidates, threshold=CLASSIFIER_THRESHOLD):
    """Classes among `candidates` whose probability (index = id - 1) is >= threshold, or the
    candidate with the largest probability when none is. Returns sorted ids."""
    probs = np.asarray(probs, np.float64).reshape(-1)
    candidates = np.asarray(sorted(set(int(c) for c in candidates)), np.int64)
    if not len(candidates):
        raise ValueError("select_labels: no candidate classes")
    if candidates[0] < 1 or candidates[-1] > len(probs):
        raise ValueError("select_labels: candidate ids must be in [1, %d], got %s"
                         % (len(probs), candidates.tolist()))
    cand_probs = probs[candidates - 1]
    chosen = candidates[cand_probs >= threshold]
    if not len(chosen):
        chosen = candidates[[int(cand_probs.argmax())]]
    return chosen.tolist()


def classify(classifier, image):
    """Stage-0 sigmoid probabilities (num_classes,) of a BGR uint8 image."""
    classifier.blobs["data"].data[...] = preprocess_classifier(image, input_size(classifier))
    return classifier.forward()["prob"][0].copy()


def predict_labels(classifier, image, candidates=VOC_IDS, threshold=CLASSIFIER_THRESHOLD):
    """Labels of an image by the stage-0 classifier (see select_labels)."""
    return select_labels(classify(classifier, image), candidates, threshold)


def forward_labels(net, blob, class_ids):
    """One seg_deploy forward for K labels: fg (K, S, S), alpha (K, h, w), s (K, h, w).

    alpha and s are None when the net has no such blob (the baselines have no alpha).
    """
    class_ids = np.asarray(class_ids, np.int64).reshape(-1)
    count = num_classes(net)
    if not len(class_ids) or class_ids.min() < 1 or class_ids.max() > count:
        raise ValueError("forward_labels: need at least one class id in [1, %d], got %s"
                         % (count, class_ids.tolist()))
    net.blobs["label"].reshape(len(class_ids), count)
    net.reshape()
    net.blobs["data"].data[...] = blob
    net.blobs["label"].data[...] = np.eye(count, dtype=np.float32)[class_ids - 1]
    prob = net.forward()["seg_prob"]
    maps = [net.blobs[name].data[:, 0].copy() if name in net.blobs else None
            for name in ("alpha", "s")]
    return (prob[:, 1].copy(),) + tuple(maps)


def fg_scores(fg):
    """Score maps without CRF: the fg probability where fg wins the {bkg, fg} softmax
    (fg > bkg, the decision dense_crf makes on its output), 0 elsewhere."""
    return np.where(fg > 1.0 - fg, fg, 0).astype(np.float32)


def forward(net, image, class_ids):
    """Steps 1-2 of Sec. 5 for a BGR uint8 image: (class_ids, fg, alpha, s), the sorted
    distinct ids and forward_labels' maps on the padded square. No labels: no forward pass,
    empty maps."""
    class_ids = np.asarray(sorted(set(int(c) for c in class_ids)), np.int64)
    if not len(class_ids):
        size = input_size(net)
        empty = np.zeros((0, size // 16, size // 16), np.float32)
        return class_ids, np.zeros((0, size, size), np.float32), empty, empty.copy()
    return (class_ids,) + forward_labels(net, preprocess(image, input_size(net)), class_ids)


def finish(image, class_ids, fg_square, alpha, s, use_crf=False):
    """Steps 3-5 of Sec. 5 from forward()'s outputs: the Segmentation. Needs no network,
    so another process can run it (tools/infer.py --workers)."""
    height, width = image.shape[:2]
    fg = np.clip(unpad(fg_square, height, width), 0, 1)
    if use_crf:
        scores = np.array([crf.dense_crf(image, f) for f in fg], np.float32).reshape(fg.shape)
    else:
        scores = fg_scores(fg)
    labels = crf.combine_labels(scores, class_ids)
    return Segmentation(class_ids, fg, scores, labels, alpha, s)


def segment(net, image, class_ids, use_crf=False):
    """Segment a BGR uint8 image for its labels (Sec. 5); returns a Segmentation.

    No labels: an all-background map, no forward pass.
    """
    return finish(image, *forward(net, image, class_ids), use_crf=use_crf)


def gt_labels(label_png):
    """Class ids present in a ground-truth label PNG, without background and void (the
    paper's TransferNet-GT)."""
    ids = np.unique(score.read_label_png(label_png))
    return [int(i) for i in ids if i not in (BACKGROUND, IGNORE)]


def parse_ids(text):
    """'3,8' -> [3, 8]; ValueError on anything else."""
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError("expected comma-separated class ids like '3,8', got %r" % text)
    if not ids or min(ids) <= BACKGROUND or max(ids) >= IGNORE:
        raise ValueError("expected class ids in [1, %d), got %r" % (IGNORE, text))
    return ids


def check_ids(class_ids, count, what):
    """The ids if all are in [1, count]; ValueError naming `what` otherwise."""
    bad = [int(i) for i in class_ids if not 1 <= int(i) <= count]
    if bad:
        raise ValueError("%s: class ids %s outside the network's [1, %d]" % (what, bad, count))
    return list(class_ids)


def class_table(spec):
    """Candidate classes {id: name}: 'voc' (ids 1..20), comma-separated ids, or a JSON file
    (a dataset's meta.json or {id: name}); background is left out."""
    if spec == "voc":
        table = score.voc_class_table()
    elif os.path.isfile(spec):
        table = score.load_class_table(spec)
    else:
        table = {i: CLASS_NAMES.get(i, str(i)) for i in parse_ids(spec)}
    table.pop(BACKGROUND, None)
    if not table:
        raise ValueError("class table %r has no class besides background" % spec)
    return table


def list_dir(folder):
    """Image files of a folder (by extension), sorted by name."""
    names = sorted(n for n in os.listdir(folder)
                   if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
    return [os.path.join(folder, n) for n in names]


def list_file(list_path, root, ext=".jpg"):
    """Image paths of a VOC ImageSets-style list: root/<id><ext>."""
    return [os.path.join(root, i + ext) for i in score.read_list(list_path)]


def stem(path):
    """Output name of an input: its file name without extension."""
    return os.path.splitext(os.path.basename(path))[0]


def check_unique_stems(paths):
    """The paths if their stems (output names) are distinct; ValueError listing clashes."""
    seen, clashes = {}, []
    for path in paths:
        if stem(path) in seen:
            clashes.append("%s and %s" % (seen[stem(path)], path))
        seen.setdefault(stem(path), path)
    if clashes:
        raise ValueError("inputs with the same output name <stem>.png: %s"
                         % "; ".join(clashes))
    return paths


def save_prob(path, seg):
    """Per-label fg probabilities as compressed .npz (class_ids, fg, scores), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, class_ids=seg.class_ids, fg=seg.fg.astype(np.float32),
                                scores=seg.scores.astype(np.float32))


def load_prob(path):
    """The arrays written by save_prob, as a dict (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def overlay(image, labels, opacity=0.5):
    """RGB uint8 image blended with the VOC colours of a label map (background untouched)."""
    rgb = image[:, :, ::-1].astype(np.float32)
    colours = score.voc_colormap()[labels].astype(np.float32)
    mask = (labels != BACKGROUND)[:, :, np.newaxis]
    return np.where(mask, (1 - opacity) * rgb + opacity * colours, rgb).astype(np.uint8)


# A figure panel: a title, an RGB background (or None), a heat map drawn over it with the
# jet colour map (or None), and a (row, column) point to mark on it (or None).
Panel = collections.namedtuple("Panel", "title background heat marker")
Panel.__new__.__defaults__ = (None, None, None)


def label_panels(image, seg, names=None):
    """One row of panels per label: the image, attention alpha (Eq. 3), densified attention
    s (Eq. 7), both mapped onto the image, and the pixels the final label map gives this
    label (VOC colour overlay)."""
    names = names or {}
    height, width = image.shape[:2]
    rgb = image[:, :, ::-1]
    if not len(seg.class_ids):
        return [[Panel("no label", rgb)]]

    def heat(maps, title):  # a panel per label; blank when the net has no such map
        if maps is None:
            return [Panel("no " + title)] * len(seg.class_ids)
        return [Panel(title, rgb, m) for m in unpad(maps, height, width)]

    rows = []
    for cid, alpha, s in zip(seg.class_ids, heat(seg.alpha, "alpha"),
                             heat(seg.s, "s (densified)")):
        name = names.get(int(cid)) or CLASS_NAMES.get(int(cid), str(cid))
        mine = np.where(seg.labels == cid, seg.labels, BACKGROUND)
        rows.append([Panel(name, rgb), alpha, s,
                     Panel("%s pixels" % name, overlay(image, mine))])
    return rows


def draw_figure(path, rows):
    """Write a grid of panels (one list of Panel per row) as a PNG, atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(3 * columns, 3 * len(rows)),
                             squeeze=False)
    for ax_row, row in zip(axes, rows):
        for ax in ax_row:
            ax.axis("off")
        for ax, panel in zip(ax_row, row):
            ax.set_title(panel.title)
            if panel.background is not None:
                ax.imshow(panel.background)
            if panel.heat is not None:
                ax.imshow(panel.heat, cmap="jet", interpolation="nearest",
                          alpha=0.6 if panel.background is not None else 1.0)
            if panel.marker is not None:
                ax.plot(panel.marker[1], panel.marker[0], "w+", markersize=14, mew=3)
                ax.plot(panel.marker[1], panel.marker[0], "k+", markersize=10, mew=1.5)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def write_figure(path, image, seg, names=None):
    """Figure (PNG) of an image's segmentation: the label_panels rows."""
    draw_figure(path, label_panels(image, seg, names))


def output_paths(out_dir, image_path, save_probs=False, vis=False):
    """{kind: path} of an image's outputs: label PNG in out_dir (the folder tools/eval.py
    scores), probabilities in out_dir/prob, figures in out_dir/vis."""
    name = stem(image_path)
    paths = {"png": os.path.join(out_dir, name + ".png")}
    if save_probs:
        paths["prob"] = os.path.join(out_dir, "prob", name + ".npz")
    if vis:
        paths["vis"] = os.path.join(out_dir, "vis", name + ".png")
    return paths


def write_outputs(paths, image, seg, names=None):
    """Write the outputs of one image; the label PNG last, so it marks a finished image."""
    if "prob" in paths:
        save_prob(paths["prob"], seg)
    if "vis" in paths:
        write_figure(paths["vis"], image, seg, names)
    score.write_palette_png(paths["png"], seg.labels)


def add_model_arguments(parser):
    """The networks and label-selection options shared by tools/infer.py and visualize.py."""
    parser.add_argument("--config", choices=sorted(config.CONFIGS), default="paper",
                        help="network config whose models and final snapshots are the "
                             "defaults of --model/--weights/--classifier-* (default paper)")
    parser.add_argument("--model", help="seg_deploy prototxt (default models/<config>/...)")
    parser.add_argument("--weights", help="joint-stage caffemodel (default: final snapshot)")
    parser.add_argument("--classifier-model", help="classifier_deploy prototxt")
    parser.add_argument("--classifier-weights", help="stage-0 caffemodel (default: final "
                                                     "classifier snapshot)")
    parser.add_argument("--classes", default="voc",
                        help="candidate classes of the classifier: 'voc' (1..20), ids "
                             "'21,22', or a dataset meta.json / {id: name} JSON")
    parser.add_argument("--threshold", type=float, default=CLASSIFIER_THRESHOLD,
                        help="classifier sigmoid threshold (default %(default)s)")


def resolve_model_arguments(args):
    """Fill the unset --model/--weights/--classifier-* from --config's committed models and
    final snapshots (transfernet.solvers.final_snapshot)."""
    cfg = config.CONFIGS[args.config]
    args.model = args.model or cfg.layout.model("seg_deploy")
    args.weights = args.weights or solvers.final_snapshot(cfg, "joint")
    args.classifier_model = args.classifier_model or cfg.layout.model("classifier_deploy")
    args.classifier_weights = (args.classifier_weights
                               or solvers.final_snapshot(cfg, "classifier"))
    return args
