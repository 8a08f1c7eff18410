"""The authors' released caffemodels (Hong et al.'s maga33/TransferNet) on our stock-Caffe nets.

The release (its models/setup.sh) has four files, each a snapshot of a training net of the
authors' Caffe fork: transferNet.caffemodel (stage 2, Eq. 9: the model of Table 1),
attentionNet.caffemodel (stage 1, Eq. 6), classificationNet.caffemodel (the classifier that
predicts test-image labels) and pretrainedCNN.caffemodel (ImageNet VGG-16). recognise() tells
them apart by their layers; import_model() maps a file onto our nets and writes a caffemodel of
ours:

- transferNet -> joint_train's layers (so seg_deploy and the joint stage load it): the
  encoder, the attention (Eq. 4) under our names, the training-only f_cls (ip1,
  cls-score-voc-att: its 80 outputs), the decoder. Their Scale (scale_factor, no blobs) is
  our Power feature scale, their LinearSum and FilterSum are our AttentionPool (Eq. 5) and
  Densify (Eq. 7), their Unpooling our stock-layer unpooling: no blobs to map, but the
  scale and the unpooling sizes must be ours. Deconvolution weights are (C_in, C_out, k, k)
  in the fork as in stock Caffe, so they map unchanged.
- attentionNet -> attention_train's layers (no decoder).
- classificationNet: its prototxt is not in the authors' repository and their MATLAB feeds it
  the padded image at 320 px, which our 224-px classifier_deploy cannot take; so a stock
  deploy prototxt is generated from the file's own layers (Input data 1x3x320x320, its
  convolutions, poolings, inner products, ReLUs and dropouts, a Sigmoid `prob` on its last
  score), beside a caffemodel in stock format.
- pretrainedCNN is the ImageNet VGG-16 that stock Caffe reads as it is: nothing to import.

Every check runs before anything is written, and outputs are written atomically.
"""

import collections
import os

import numpy as np

from transfernet import authors_format, nets, weights
from transfernet.atomic import write_text

# The released files (models/setup.sh of maga33/TransferNet), by kind.
RELEASE = {
    "transferNet": "transferNet.caffemodel",
    "attentionNet": "attentionNet.caffemodel",
    "classificationNet": "classificationNet.caffemodel",
    "pretrainedCNN": "pretrainedCNN.caffemodel",
}
ENCODER = tuple("conv%d_%d" % (b, i) for b, _, convs in nets.ENCODER for i in range(1, convs + 1))
DECODER = tuple(
    "deconv%d_%d" % (b, i) for b, widths in nets.DECODER for i in range(1, len(widths) + 1)
)
ATTENTION = ("feat_embed", "cls_embed", "combined_embed", "att-w")  # Eq. 4
CLASSIFIER_HEAD = ("ip1", "cls-score-voc-att")  # f_cls of Eq. 6
SEG_SCORE = "seg-score"
# Their layer names that are not ours; every other layer keeps its name.
OUR_NAMES = {
    "combined_embed": "att_hidden",
    "att-w": "att_score",
    "ip1": "cls_fc1",
    "cls-score-voc-att": "cls_score",
    SEG_SCORE: "seg_score",
}
# Layers with weights of each segmentation-side file, and our net they map onto.
LAYERS = {
    "transferNet": ENCODER + ATTENTION + CLASSIFIER_HEAD + DECODER + (SEG_SCORE,),
    "attentionNet": ENCODER + ATTENTION + CLASSIFIER_HEAD,
}
OUR_NET = {"transferNet": "joint_train", "attentionNet": "attention_train"}
# Their custom layers without blobs that each file must have: (type, bottoms).
CUSTOM = {
    "transferNet": (
        ("Scale", ("conv5_3",)),
        ("LinearSum", ("conv5_3_scaled", "att")),
        ("FilterSum", ("conv5_3_scaled", "soft-att")),
    ),
    "attentionNet": (("Scale", ("conv5_3",)), ("LinearSum", ("conv5_3_scaled", "att"))),
}
EMBEDDINGS = {"cls_embed", "feat_embed"}  # multiplied elementwise (Eq. 4)
IMAGENET_CLASSES = 1000  # pretrainedCNN's fc8
# The authors' classifier input: their MATLAB's preprocess_image(padded image, 320).
CLASSIFIER_INPUT = 320
CLASSIFIER_OUTPUT = "prob"  # our classifiers' sigmoid top (transfernet.inference.classify)
# Layer types of the classifier kept in its deploy prototxt (with their parameters), and those
# dropped (data, loss, accuracy and bookkeeping layers of its training net; its own final
# Sigmoid is replaced by ours).
CLASSIFIER_PARAMS = {
    "Convolution": "convolution_param",
    "Pooling": "pooling_param",
    "InnerProduct": "inner_product_param",
    "ReLU": "relu_param",
    "Dropout": "dropout_param",
}
CLASSIFIER_KEEP = tuple(CLASSIFIER_PARAMS)
CLASSIFIER_DROP_SUFFIXES = ("Data", "Loss", "Accuracy")
CLASSIFIER_DROP = ("Silence", "ArgMax", "Sigmoid")

Imported = collections.namedtuple("Imported", "kind source outputs lines")


class AuthorsModelError(ValueError):
    """A caffemodel the importer does not recognise or cannot map (the message names the file
    and the layers)."""


def _weighted(net, path):
    """{name: LayerParameter} of the layers with blobs; AuthorsModelError naming duplicated
    names (the fork's two layers named soft-att have no blobs)."""
    found, duplicated = collections.OrderedDict(), []
    for layer in net.layer:
        if len(layer.blobs):
            if layer.name in found:
                duplicated.append(layer.name)
            found[layer.name] = layer
    if duplicated:
        raise AuthorsModelError(
            "%s: several layers with weights are named %s" % (path, ", ".join(duplicated))
        )
    return found


def _shapes(layer):
    return [weights.blob_shape(b) for b in layer.blobs]


def describe_layers(layers):
    """'name (type, shapes), ...' of LayerParameters, for messages."""
    return ", ".join("%s (%s, %s)" % (lp.name, lp.type, _shapes(lp)) for lp in layers)


def recognise(net, path):
    """Which released file a NetParameter (authors_format.read_net) is, from its layers with
    weights: a decoder makes it transferNet, an attention attentionNet, a 1000-way fc8
    pretrainedCNN, VGG-16 convolutions without them classificationNet. AuthorsModelError
    listing the file's layers otherwise."""
    found = _weighted(net, path)
    if SEG_SCORE in found or any(name in found for name in DECODER):
        return "transferNet"
    if any(name in found for name in ATTENTION):
        return "attentionNet"
    fc8 = found.get("fc8")
    if fc8 is not None and _shapes(fc8)[0][0] == IMAGENET_CLASSES:
        return "pretrainedCNN"
    if ENCODER[0] in found:
        return "classificationNet"
    raise AuthorsModelError(
        "%s is none of the authors' released caffemodels (%s): its layers with weights are "
        "%s; transferNet has VGG-16's %s..%s, the attention %s, %s and the decoder %s..%s, "
        "%s; attentionNet the same without the decoder; classificationNet VGG-16's "
        "convolutions and its own classifier layers"
        % (
            path,
            ", ".join(RELEASE.values()),
            describe_layers(found.values()) or "none",
            ENCODER[0],
            ENCODER[-1],
            ", ".join(ATTENTION),
            ", ".join(CLASSIFIER_HEAD),
            DECODER[0],
            DECODER[-1],
            SEG_SCORE,
        )
    )


def structure_problems(net, kind, cfg):
    """What in the layers without blobs differs from our net: a missing custom layer (Scale,
    LinearSum, FilterSum), a feature scale other than the config's, no product of the two
    embeddings, unpooling sizes other than the pooled sizes of the config's crop."""
    problems = []
    for layer_type, bottoms in CUSTOM[kind]:
        if not any(lp.type == layer_type and tuple(lp.bottom) == bottoms for lp in net.layer):
            problems.append("no %s layer over %s" % (layer_type, " and ".join(bottoms)))
    for layer in net.layer:
        if layer.type == "Scale" and tuple(layer.bottom) == ("conv5_3",):
            factor = layer.scale_param.scale_factor
            if not layer.scale_param.HasField("scale_factor"):
                problems.append("Scale layer %s has no scale_factor" % layer.name)
            elif np.float32(factor) != np.float32(cfg.architecture.feature_scale):
                problems.append(
                    "Scale layer %s scales conv5_3 by %g; the %s nets by %g"
                    % (layer.name, factor, cfg.name, cfg.architecture.feature_scale)
                )
    products = [lp for lp in net.layer if lp.type == "Eltwise" and set(lp.bottom) == EMBEDDINGS]
    if not products or products[0].eltwise_param.operation != authors_format.ELTWISE_PROD:
        problems.append(
            "no Eltwise PROD of %s (Eq. 4's product)" % " and ".join(sorted(EMBEDDINGS))
        )
    if kind == "transferNet":
        unpools = {lp.name: lp.unpooling_param for lp in net.layer if lp.type == "Unpooling"}
        for block, _, _ in nets.ENCODER[:-1]:
            name, side = "unpool%d" % block, cfg.architecture.crop // 2 ** (block - 1)
            param = unpools.get(name)
            if param is None:
                problems.append("no Unpooling layer %s" % name)
                continue
            size = param.unpool_size or param.unpool_h
            if size != side or param.unpool != authors_format.UNPOOL_MAX:
                problems.append(
                    "Unpooling layer %s gives %d px by method %d; the %s decoder %d px by the "
                    "pooling switches (method %d)"
                    % (name, size, param.unpool, cfg.name, side, authors_format.UNPOOL_MAX)
                )
    return problems


def check_layers(net, kind, path, cfg):
    """AuthorsModelError naming every missing and unexpected layer with weights of a
    transferNet / attentionNet file and every structure problem (before any net is built)."""
    found = _weighted(net, path)
    problems = []
    missing = [name for name in LAYERS[kind] if name not in found]
    if missing:
        problems.append("missing layers: %s" % ", ".join(missing))
    unexpected = [layer for name, layer in found.items() if name not in LAYERS[kind]]
    if unexpected:
        problems.append("unexpected layers with weights: %s" % describe_layers(unexpected))
    problems += structure_problems(net, kind, cfg)
    if problems:
        raise AuthorsModelError(
            "%s looks like the authors' %s but does not map onto our %s nets: %s"
            % (path, kind, cfg.name, "; ".join(problems))
        )


def _fits(shape, blob):
    """Whether a BlobProto can fill a blob of `shape` (Caffe's rule: the same shape, or a
    legacy 4-D shape equal to `shape` padded with leading 1s)."""
    have = weights.blob_shape(blob)
    if blob.HasField("shape"):
        return have == tuple(shape)
    return len(shape) <= 4 and have == (1,) * (4 - len(shape)) + tuple(shape)


def map_layers(found, ours, path, what, names=None, input_scale=1):
    """{our name: (type, [float32 arrays])} of the file's layers with weights ({their name:
    LayerParameter}) on the caffe.Net `ours`, their names through `names`; AuthorsModelError
    naming every layer whose blobs do not fit. Our tiny nets scale the pixels by input_scale
    before conv1_1 and the authors' nets do not, so conv1_1's weights are divided by it
    (exact for the power of two it is)."""
    names = names or {}
    expected = weights.net_shapes(ours)
    types = {name: layer.type for name, layer in zip(ours._layer_names, ours.layers)}
    problems, mapped = [], collections.OrderedDict()
    for name, layer in found.items():
        target = names.get(name, name)
        shapes = expected.get(target)
        if shapes is None:
            problems.append("layer %s (%s) is not in %s" % (name, target, what))
            continue
        if len(layer.blobs) != len(shapes) or not all(
            _fits(s, b) for s, b in zip(shapes, layer.blobs)
        ):
            problems.append(
                "layer %s has blob shapes %s; %s's %s needs %s"
                % (name, _shapes(layer), what, target, shapes)
            )
            continue
        arrays = [authors_format.blob_array(b).reshape(s) for b, s in zip(layer.blobs, shapes)]
        if name == ENCODER[0] and input_scale != 1:
            arrays[0] = arrays[0] / np.float32(input_scale)
        mapped[target] = (types[target], arrays)
    if problems:
        raise AuthorsModelError("%s does not fit %s: %s" % (path, what, "; ".join(problems)))
    return mapped


def classifier_param(net, path):
    """Stock deploy NetParameter of a classificationNet's layers: Input `data` (1, 3, 320,
    320), the layers of CLASSIFIER_KEEP in file order with their parameters, Sigmoid `prob` on
    the last top. AuthorsModelError naming the layers of other types, and the dropped ones
    (e.g. a Sigmoid in the middle) that a kept layer reads."""
    from caffe.proto import caffe_pb2

    kept, unsupported, dropped = [], [], []
    for layer in net.layer:
        if layer.type in CLASSIFIER_KEEP:
            kept.append(layer)
            # a dropped layer with bottoms (not a data layer) must not feed a kept one
            fed = [d for d in dropped if len(d.bottom) and set(d.top) & set(layer.bottom)]
            unsupported += ["%s (%s, feeds %s)" % (d.name, d.type, layer.name) for d in fed]
        elif layer.type.endswith(CLASSIFIER_DROP_SUFFIXES) or layer.type in CLASSIFIER_DROP:
            dropped.append(layer)
        else:
            unsupported.append("%s (%s)" % (layer.name, layer.type))
    if unsupported or not kept:
        raise AuthorsModelError(
            "%s: the importer cannot translate the classifier's layers %s (it keeps %s and "
            "drops the data, loss, accuracy, %s layers that no kept layer reads)"
            % (
                path,
                ", ".join(unsupported) or "(none kept)",
                ", ".join(CLASSIFIER_KEEP),
                ", ".join(CLASSIFIER_DROP),
            )
        )
    produced = {top for layer in kept for top in layer.top}
    inputs = sorted({b for layer in kept for b in layer.bottom if b not in produced})
    if len(inputs) != 1:
        raise AuthorsModelError(
            "%s: the classifier's layers read %d blobs that none of them computes (%s); "
            "expected one, the image" % (path, len(inputs), ", ".join(inputs))
        )
    rename = {inputs[0]: "data"}
    param = caffe_pb2.NetParameter(name="authors_classificationNet_deploy")
    data = param.layer.add(name="data", type="Input", top=["data"])
    data.input_param.shape.add(dim=[1, 3, CLASSIFIER_INPUT, CLASSIFIER_INPUT])
    for layer in kept:
        out = param.layer.add(
            name=layer.name,
            type=layer.type,
            bottom=[rename.get(b, b) for b in layer.bottom],
            top=[rename.get(t, t) for t in layer.top],
        )
        field = CLASSIFIER_PARAMS[layer.type]
        if layer.HasField(field):
            theirs = getattr(layer, field)
            theirs.DiscardUnknownFields()  # only the fields authors_caffe.proto declares
            # go across; the fork numbers these stock layers' parameters as stock Caffe does
            getattr(out, field).ParseFromString(theirs.SerializeToString())
    param.layer.add(
        name=CLASSIFIER_OUTPUT, type="Sigmoid", bottom=[out.top[0]], top=[CLASSIFIER_OUTPUT]
    )
    return param


def prototxt_path(out):
    """The generated classifier prototxt beside the caffemodel `out`: the same stem."""
    return os.path.splitext(out)[0] + ".prototxt"


def classifier_header(path):
    """Comment lines of a generated classifier prototxt."""
    return (
        "# Generated by tools/import_authors.py from the layers of %s (the authors'\n"
        "# classificationNet): stock Caffe layers; input the padded image at %d px, as their\n"
        "# MATLAB inference feeds it; output %s, the sigmoid of their last score.\n"
        % (os.path.basename(path), CLASSIFIER_INPUT, CLASSIFIER_OUTPUT)
    )


def import_classifier(net, path, out):
    """Write a classificationNet's generated deploy prototxt (prototxt_path(out)) and its
    weights in stock format (out); returns ([paths], [lines])."""
    import caffe

    param = classifier_param(net, path)
    ours = nets.instantiate(param, caffe.TEST)
    found = _weighted(net, path)
    missing = [name for name in weights.net_shapes(ours) if name not in found]
    if missing:  # only if a kept layer has no blobs: the net's layers are the file's
        raise AuthorsModelError("%s: classifier layers without weights: %s" % (path, missing))
    mapped = map_layers(found, ours, path, "the deploy net built from its layers")
    output = ours.blobs[CLASSIFIER_OUTPUT].data.shape
    if int(np.prod(output[2:])) != 1:
        raise AuthorsModelError(
            "%s: at %d px the classifier gives a %s map per class, not one score"
            % (path, CLASSIFIER_INPUT, "x".join(map(str, output[2:])))
        )
    model = prototxt_path(out)
    weights.write_caffemodel(out, mapped)
    write_text(model, classifier_header(path) + str(param))
    return [out, model], [
        "classificationNet: %d layers with weights, %d classes; a stock deploy prototxt from "
        "the file's layers (input 1x3x%dx%d, output %s)"
        % (len(found), output[1], CLASSIFIER_INPUT, CLASSIFIER_INPUT, CLASSIFIER_OUTPUT)
    ]


def import_segmentation(net, kind, path, out, cfg):
    """Write a transferNet / attentionNet as a caffemodel of our cfg's joint_train /
    attention_train layers (out); returns ([paths], [lines])."""
    import caffe

    check_layers(net, kind, path, cfg)
    ours = nets.instantiate(
        getattr(nets, OUR_NET[kind])(cfg, batch=1, input_layers=True), caffe.TEST
    )
    what = "our %s %s" % (cfg.name, OUR_NET[kind])
    found = _weighted(net, path)
    weights.write_caffemodel(
        out, map_layers(found, ours, path, what, OUR_NAMES, cfg.architecture.input_scale)
    )
    renamed = ["%s -> %s" % (k, v) for k, v in OUR_NAMES.items() if k in LAYERS[kind]]
    return [out], [
        "%s: %d layers with weights onto %s (%s; the others keep their names)"
        % (kind, len(LAYERS[kind]), what, ", ".join(renamed))
    ]


def import_model(path, out, cfg):
    """Import one of the authors' released caffemodels for the config `cfg` (paper; tiny for
    rehearsals): Imported(kind, path, [files written], [lines to print]). FormatError or
    AuthorsModelError naming the file, before anything is written."""
    net = authors_format.read_net(path)
    kind = recognise(net, path)
    if kind == "pretrainedCNN":
        outputs, lines = (
            [],
            [
                "the ImageNet VGG-16 (fc8 has %d outputs), which stock Caffe reads as it is: "
                "nothing to import; stage 0 starts from it (%s)"
                % (IMAGENET_CLASSES, cfg.layout.classifier_init)
            ],
        )
    elif kind == "classificationNet":
        outputs, lines = import_classifier(net, path, out)
    else:
        outputs, lines = import_segmentation(net, kind, path, out, cfg)
    return Imported(kind, path, outputs, lines)
