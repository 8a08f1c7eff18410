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
An image whose longer side exceeds MAX_SIDE is segmented at its working size (working_image:
shrunk to MAX_SIDE) and its label map enlarged back (full_size_labels): the padded square,
the per-label maps and the dense CRF then have at most MAX_SIDE x MAX_SIDE pixels, which
bounds the memory of any image (docs/inference.md).
Also the choice of the labels (stage-0 classifier, ground truth, given ids). The figures of a
segmentation are drawn by transfernet/attention_figures.py, its files read by transfernet/fileio.py.

protocol="authors" follows the authors' MATLAB inference instead (TransferNet_inference.m,
preprocess_image.m), for their released models: the image zero-padded (black) at the
bottom/right, resized with MATLAB's antialiased bilinear imresize (transfernet/imresize.py),
minus their mean; the classifier fed the same padded input; per label the background
probability halved and renormalised at the net's size, then resized with MATLAB's bicubic
imresize and cropped; the CRF on -log of those probabilities; the score p_fg where the CRF says
fg. Steps 2 and 5 are the same as ours.
"""

import collections
import os

import cv2
import numpy as np
from caffe.proto import caffe_pb2

from transfernet import crf, imresize, score, weights
from transfernet.atomic import atomic_path
from transfernet.classes import BACKGROUND, CLASS_NAMES, IGNORE, VOC_CLASSES
from transfernet.fileio import MEAN_BGR, read_label_png

# Reference inference: every class whose stage-0 sigmoid is >= 0.6 is a label of the image;
# the arg-max class when none is (the authors' released inference, docs/authors-models.md).
CLASSIFIER_THRESHOLD = 0.6
# Candidate labels by default: the 20 PASCAL VOC classes (the target domain).
VOC_IDS = tuple(range(1, len(VOC_CLASSES) + 1))
PROTOCOLS = ("ours", "authors")
# The mean their MATLAB subtracts (preprocess_image.m; their training used MEAN_BGR).
AUTHORS_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
# Longest image side segmented at full resolution: twice VOC's and COCO's largest images, and
# a dense CRF of this size stays under 1 GB (docs/decisions.md).
MAX_SIDE = 1024

# A segmentation at the working size H x W of the image (working_image).
Segmentation = collections.namedtuple(
    "Segmentation",
    [
        "class_ids",  # (K,) int64 labels of the image
        "fg",  # (K, H, W) float32 network fg probability per label
        "scores",  # (K, H, W) float32 score per label (fg where fg wins, CRF-refined with crf)
        "labels",  # (H, W) uint8 final label map (0 background)
        "alpha",  # (K, h, w) float32 attention (Eq. 4) on the padded square, or None
        "s",  # (K, h, w) float32 densified attention (Eq. 7) on the padded square, or None
    ],
)


def load_net(model, weights_path, until=None):
    """A caffe.Net of prototxt `model` in TEST phase with every parameter from the caffemodel
    `weights_path`, checked before anything is copied (weights.check_complete);
    FileNotFoundError naming a missing prototxt, weights.WeightsError for weights that do
    not fit.

    until: a layer name; only the layers before it must be in the file (a stage-1 snapshot
    in seg_deploy with until='z': what alpha depends on; the rest keep their fillers)."""
    import caffe

    if not os.path.isfile(model):
        raise FileNotFoundError("model file not found: %s" % model)
    net_param = weights.read_prototxt(model, caffe_pb2.NetParameter())  # Caffe aborts on one
    param = weights.read_caffemodel(weights_path)  # it cannot parse: the cheapest errors first
    weights.check_class_table(weights_path, param, net_param, model)
    net = caffe.Net(model, caffe.TEST)
    weights.check_complete(weights_path, param, weights.net_shapes(net, until), model)
    del param  # a paper-size file is 0.5 GB; copy_from reads it again
    net.copy_from(weights_path)
    return net


def working_image(image):
    """The image, or if its longer side exceeds MAX_SIDE, the image shrunk to that (area
    interpolation, aspect kept): what inference segments."""
    height, width = image.shape[:2]
    scale = MAX_SIDE / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def full_size_labels(labels, height, width):
    """A label map of the working size enlarged to the image's height x width (nearest)."""
    if labels.shape == (height, width):
        return labels
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


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


def check_protocol(protocol):
    if protocol not in PROTOCOLS:
        raise ValueError("protocol %r; expected one of %s" % (protocol, ", ".join(PROTOCOLS)))


def preprocess(image, size, protocol="ours"):
    """Padded seg input: BGR uint8 (H, W, 3) -> (1, 3, size, size) float32.

    Ours: the image is mean-subtracted and zero-padded at the bottom/right to a square of side
    max(H, W) (i.e. padded with the mean colour), then resized to size x size (OpenCV
    bilinear). The authors': zero-padded (black) first, resized with MATLAB's antialiased
    bilinear imresize, then their mean subtracted.
    """
    check_protocol(protocol)
    height, width = image.shape[:2]
    side = max(height, width)
    padded = np.zeros((side, side, 3), np.float32)
    if protocol == "authors":
        padded[:height, :width] = image
        resized = imresize.imresize(padded, (size, size), "bilinear") - AUTHORS_MEAN_BGR
        return resized.transpose(2, 0, 1)[np.newaxis].astype(np.float32)
    padded[:height, :width] = image.astype(np.float32) - np.float32(MEAN_BGR)
    return _blob(padded, size)


def preprocess_classifier(image, size, protocol="ours"):
    """Classifier input. Ours: the whole image warped to size x size, mean-subtracted
    (warping, not padding, matches stage-0 training, whose records store warped images).
    The authors': their padded seg input at the classifier's size (preprocess)."""
    if protocol == "authors":
        return preprocess(image, size, protocol)
    check_protocol(protocol)
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


def pixel_cell(pixel, height, width, cells):
    """Feature-map cell (row, col) of image pixel (y, x) under preprocess's geometry: the
    image sits at the top-left of a square of side max(H, W), which is resized to the net
    input and maps onto a cells x cells feature map, so the pixel centre (y + 0.5, x + 0.5)
    falls into cell floor((y + 0.5) * cells / side). ValueError for a pixel outside the
    image."""
    y, x = pixel
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(
            "pixel (%d, %d) is outside the %d x %d (rows x columns) image" % (y, x, height, width)
        )
    side = max(height, width)
    return tuple(min(int((c + 0.5) * cells / side), cells - 1) for c in (y, x))


def select_labels(probs, candidates, threshold=CLASSIFIER_THRESHOLD):
    """Classes among `candidates` whose probability (index = id - 1) is >= threshold, or the
    candidate with the largest probability when none is. Returns sorted ids."""
    probs = np.asarray(probs, np.float64).reshape(-1)
    candidates = np.asarray(sorted(set(int(c) for c in candidates)), np.int64)
    if not len(candidates):
        raise ValueError("select_labels: no candidate classes")
    if candidates[0] < 1 or candidates[-1] > len(probs):
        raise ValueError(
            "select_labels: candidate ids must be in [1, %d], got %s"
            % (len(probs), candidates.tolist())
        )
    cand_probs = probs[candidates - 1]
    chosen = candidates[cand_probs >= threshold]
    if not len(chosen):
        chosen = candidates[[int(cand_probs.argmax())]]
    return chosen.tolist()


def classify(classifier, image, protocol="ours"):
    """Classifier sigmoid probabilities (num_classes,) of a BGR uint8 image."""
    blob = preprocess_classifier(image, input_size(classifier), protocol)
    classifier.blobs["data"].data[...] = blob
    return classifier.forward()["prob"][0].reshape(-1).copy()


def predict_labels(
    classifier, image, candidates=VOC_IDS, threshold=CLASSIFIER_THRESHOLD, protocol="ours"
):
    """Labels of an image by the classifier (see select_labels)."""
    return select_labels(classify(classifier, image, protocol), candidates, threshold)


def forward_labels(net, blob, class_ids):
    """One seg_deploy forward for K labels: fg (K, S, S), alpha (K, h, w), s (K, h, w).

    alpha and s are None when the net has no such blob (the baselines have no alpha).
    """
    class_ids = np.asarray(class_ids, np.int64).reshape(-1)
    count = num_classes(net)
    if not len(class_ids) or class_ids.min() < 1 or class_ids.max() > count:
        raise ValueError(
            "forward_labels: need at least one class id in [1, %d], got %s"
            % (count, class_ids.tolist())
        )
    net.blobs["label"].reshape(len(class_ids), count)
    net.reshape()
    net.blobs["data"].data[...] = blob
    net.blobs["label"].data[...] = np.eye(count, dtype=np.float32)[class_ids - 1]
    prob = net.forward()["seg_prob"]
    maps = [
        net.blobs[name].data[:, 0].copy() if name in net.blobs else None for name in ("alpha", "s")
    ]
    return (prob[:, 1].copy(),) + tuple(maps)


def fg_scores(fg):
    """Score maps without CRF: the fg probability where fg wins the {bkg, fg} softmax
    (fg > bkg, the decision dense_crf makes on its output), 0 elsewhere."""
    return np.where(fg > 1.0 - fg, fg, 0).astype(np.float32)


def forward(net, image, class_ids, protocol="ours", queries=None):
    """Steps 1-2 of Sec. 5 for a BGR uint8 image: (class_ids, fg, alpha, s), the sorted
    distinct ids and forward_labels' maps on the padded square. No labels: no forward pass,
    empty maps. One forward for the K labels: per label what the authors' K one-label
    forwards give. queries: a function giving, for the sorted ids, the labels the maps are
    queried with (an ablation's; default the ids themselves)."""
    class_ids = np.asarray(sorted(set(int(c) for c in class_ids)), np.int64)
    if not len(class_ids):
        size = input_size(net)
        empty = np.zeros((0, size // 16, size // 16), np.float32)
        return class_ids, np.zeros((0, size, size), np.float32), empty, empty.copy()
    blob = preprocess(image, input_size(net), protocol)
    asked = class_ids if queries is None else queries(class_ids)
    return (class_ids,) + forward_labels(net, blob, asked)


def authors_fg(fg_square, height, width):
    """Steps 3-4 of the authors' inference for (K, S, S) fg maps: background halved and
    renormalised at S x S (crf.reweight_fg), resized to the padded side max(H, W) with
    MATLAB's bicubic imresize, cropped to (K, height, width) and clipped to [0, 1] (bicubic
    overshoots, and their -log of a value outside (0, 1] is not a probability's)."""
    side = max(height, width)
    out = np.empty((len(fg_square), height, width), np.float32)
    for k, fg in enumerate(crf.reweight_fg(fg_square)):
        out[k] = imresize.imresize(fg, (side, side), "bicubic")[:height, :width]
    return np.clip(out, 0, 1)


def finish(image, class_ids, fg_square, alpha, s, use_crf=False, protocol="ours"):
    """Steps 3-5 of Sec. 5 from forward()'s outputs on `image` (a working image): the
    Segmentation. Needs no network, so another process can run it (tools/infer.py
    --workers). The authors' protocol always
    has the CRF (use_crf must be True): it runs on authors_fg's maps, and a label's score is
    that p_fg where the CRF says fg; fg is then their p_fg."""
    check_protocol(protocol)
    height, width = image.shape[:2]
    if protocol == "authors":
        if not use_crf:
            raise ValueError("the authors' protocol includes the CRF: use_crf must be True")
        fg = authors_fg(fg_square, height, width)
        scores = [crf.dense_crf(image, f, bkg_weight=1) for f in fg]  # re-weighted already
    else:
        fg = np.clip(unpad(fg_square, height, width), 0, 1)
        scores = [crf.dense_crf(image, f) for f in fg] if use_crf else fg_scores(fg)
    scores = np.array(scores, np.float32).reshape(fg.shape)
    labels = crf.combine_labels(scores, class_ids)
    return Segmentation(class_ids, fg, scores, labels, alpha, s)


def segment(net, image, class_ids, use_crf=False, protocol="ours", queries=None):
    """Segment a BGR uint8 image for its labels (Sec. 5); returns the Segmentation of its
    working image (full_size_labels enlarges the label map to the image).

    No labels: an all-background map, no forward pass. queries: as forward's.
    """
    image = working_image(image)
    forwarded = forward(net, image, class_ids, protocol, queries)
    return finish(image, *forwarded, use_crf=use_crf, protocol=protocol)


def gt_labels(label_png):
    """Class ids present in a ground-truth label PNG, without background and void (the
    paper's TransferNet-GT)."""
    ids = np.unique(read_label_png(label_png))
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


def parse_labels(text, table):
    """'3,8' or 'cat,dog' (names of the {id: name} `table`, e.g. a classes.json's) -> ids;
    ValueError naming an unknown name and the table's names."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if all(n.isdigit() for n in names):
        return parse_ids(text)
    ids = {name: cid for cid, name in table.items()}
    unknown = [n for n in names if n not in ids and not n.isdigit()]
    if unknown:
        raise ValueError(
            "--labels %s: %s not a class id or a name of the classes (%s)"
            % (text, ", ".join(map(repr, unknown)), ", ".join(table.values()))
        )
    return [int(n) if n.isdigit() else ids[n] for n in names]


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


def save_prob(path, seg):
    """Per-label fg probabilities as compressed .npz (class_ids, fg, scores), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                class_ids=seg.class_ids,
                fg=seg.fg.astype(np.float32),
                scores=seg.scores.astype(np.float32),
            )


def load_prob(path):
    """The arrays written by save_prob, as a dict (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
