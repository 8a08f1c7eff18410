"""Caffemodels in the format of the authors' fork (maga33/TransferNet), written for the tests:
their layer names and types (Scale with scale_factor, LinearSum, FilterSum, Unpooling, the two
layers named soft-att), their parameter messages at their field numbers (the data layer's
window_cls_data_param 142, Scale's scale_param 146, Unpooling's unpooling_param 143), random
blobs of the shapes of their nets at an architecture's widths.

deploy_layers() is their deploy.prototxt (training/2_train_segmentation), attention_layers()
their stage-1 net's computation, classifier_layers() a DecoupledNet-style classifier (VGG-16 at
320 px, fc6-fc7 as convolutions, a 20-way score averaged over its 4x4 map, a sigmoid), which is
what their classificationNet probably is. The *_file() functions write the snapshot Caffe
would save of the training net around them: the data layer, the layers with their blobs, the
losses. The files share one random encoder, so that a test computes its reference forward once.
"""

import os

import numpy as np
from google.protobuf import json_format

from transfernet import authors, authors_format, config, nets
from transfernet.authors_format import ELTWISE_PROD, PHASE_TRAIN, POOL_AVE, POOL_MAX, UNPOOL_MAX
from transfernet.nets import channels, feature_size

NEW = authors_format.new
VOC_OUTPUTS = 20  # the classifier's classes
CLASSIFIER_FC = 4096  # its fc6 / fc7 (at width 1)
CLASSIFIER_POOL = 4  # its average pooling of the 4x4 score map at 320 px
V1_NUMBERS = {name: number for number, name in authors_format.V1_TYPES.items()}


def layer(name, type_, bottom, top, **params):
    """A LayerParameter; params are its parameter messages as dicts (field names)."""
    fields = dict(name=name, type=type_, bottom=list(bottom), top=list(top), **params)
    return json_format.ParseDict(fields, NEW("LayerParameter"))


def conv(name, bottom, num_output, kernel=3, pad=1, type_="Convolution"):
    return layer(
        name,
        type_,
        [bottom],
        [name],
        convolution_param=dict(num_output=num_output, kernel_size=kernel, pad=pad),
    )


def relu(name, blob):
    return layer(name, "ReLU", [blob], [blob])


def ip(name, bottom, num_output, top=None):
    return layer(
        name,
        "InnerProduct",
        [bottom],
        [top or name],
        inner_product_param=dict(num_output=num_output),
    )


def encoder_layers(arch, masks, pool5=False):
    """VGG-16 conv1_1..conv5_3 (the architecture's kernels) with ReLUs, MAX pools 2/2 (with
    mask tops if `masks`)."""
    out, x = [], "data"
    for (block, width, convs), kernels in zip(nets.ENCODER, nets.kernel_sizes(arch)):
        for i, k in enumerate(kernels, 1):
            x = "conv%d_%d" % (block, i)
            bottom = out[-1].top[0] if out else "data"
            out += [conv(x, bottom, channels(arch, width), kernel=k, pad=k // 2)]
            out += [relu("relu%d_%d" % (block, i), x)]
        if block < 5 or pool5:
            name = "pool%d" % block
            tops = [name, name + "_mask"] if masks else [name]
            out += [
                layer(
                    name,
                    "Pooling",
                    [x],
                    tops,
                    pooling_param=dict(pool=POOL_MAX, kernel_size=2, stride=2),
                )
            ]
            x = name
    return out


def attention_part(arch):
    """soft-att (Scale) ... soft-att (LinearSum): Eq. 4-5 as the authors wrote it."""
    factors, side = channels(arch, nets.FACTORS), feature_size(arch)
    return [
        layer(
            "soft-att",
            "Scale",
            ["conv5_3"],
            ["conv5_3_scaled"],
            scale_param=dict(scale_factor=arch.feature_scale),
        ),
        ip("feat_embed", "conv5_3_scaled", factors),
        ip("cls_embed", "cls-label", factors),
        layer(
            "multiplicative",
            "Eltwise",
            ["cls_embed", "feat_embed"],
            ["multiplicative"],
            eltwise_param=dict(operation=ELTWISE_PROD),
        ),
        ip("combined_embed", "multiplicative", factors),
        relu("relu_combined", "combined_embed"),
        ip("att-w", "combined_embed", side * side),
        layer("att-normalized", "Softmax", ["att-w"], ["att-normalized"]),
        layer(
            "att-reshape",
            "Reshape",
            ["att-normalized"],
            ["att"],
            reshape_param=dict(shape=dict(dim=[0, 1, side, side])),
        ),
        layer("soft-att", "LinearSum", ["conv5_3_scaled", "att"], ["soft-att"]),
    ]


def head_layers(arch):
    """f_cls: ip1, ReLU, cls-score-voc-att (80 outputs) -> cls-score."""
    return [
        ip("ip1", "soft-att", channels(arch, nets.CLS_HIDDEN)),
        relu("relu-ip1", "ip1"),
        ip("cls-score-voc-att", "ip1", arch.num_classes, top="cls-score"),
    ]


def decoder_layers(arch):
    """filter_sum (FilterSum), deconv5_1 ... deconv1_2 with ReLUs and Unpooling, seg-score."""
    out, x = (
        [layer("filter_sum", "FilterSum", ["conv5_3_scaled", "soft-att"], ["filter_sum_map"])],
        "filter_sum_map",
    )
    for block, widths in nets.DECODER:
        if block != nets.DECODER[0][0]:
            name = "unpool%d" % block
            unpool = dict(
                unpool=UNPOOL_MAX,
                kernel_size=2,
                stride=2,
                unpool_size=arch.crop // 2 ** (block - 1),
            )
            out += [
                layer(name, "Unpooling", [x, "pool%d_mask" % block], [name], unpooling_param=unpool)
            ]
            x = name
        for i, width in enumerate(widths, 1):
            name = "deconv%d_%d" % (block, i)
            out += [conv(name, x, channels(arch, width), type_="Deconvolution")]
            out += [relu("derelu%d_%d" % (block, i), name)]
            x = name
    return out + [conv("seg-score", x, 2, kernel=1, pad=0)]


def deploy_layers(arch):
    """Their deploy net (inputs data (1, 3, S, S), cls-label (1, 80, 1, 1))."""
    return encoder_layers(arch, masks=True) + attention_part(arch) + decoder_layers(arch)


def attention_layers(arch):
    """Their stage-1 net without its data layer and loss."""
    return encoder_layers(arch, masks=False) + attention_part(arch) + head_layers(arch)


def classifier_layers(arch):
    """A DecoupledNet-style classifier at 320 px: pool5 10x10, fc6 7x7 and fc7 1x1
    convolutions (ReLU, dropout), cls-score-voc 1x1 to 20 classes, the 4x4 map averaged,
    cls-score-sigmoid."""
    fc = channels(arch, CLASSIFIER_FC)
    out = encoder_layers(arch, masks=False, pool5=True)
    for name, bottom, kernel in (("fc6", "pool5", 7), ("fc7", "fc6", 1)):
        out += [conv(name, bottom, fc, kernel=kernel, pad=0), relu("relu" + name[2:], name)]
        out += [
            layer(
                "drop" + name[2:], "Dropout", [name], [name], dropout_param=dict(dropout_ratio=0.5)
            )
        ]
    score = conv("cls-score-voc", "fc7", VOC_OUTPUTS, kernel=1, pad=0)
    score.top[0] = "cls-score"
    return out + [
        score,
        layer(
            "avg-pool",
            "Pooling",
            ["cls-score"],
            ["cls-score-pooled"],
            pooling_param=dict(pool=POOL_AVE, kernel_size=CLASSIFIER_POOL, stride=1),
        ),
        layer("cls-score-sigmoid", "Sigmoid", ["cls-score-pooled"], ["cls-score-sigmoid"]),
    ]


def blob_shapes(layers, inputs):
    """{layer name: [weight shape, bias shape]} of the layers with weights, from the blob
    channels each layer sees (inputs: {blob: shape})."""
    shapes, blob = {}, dict(inputs)
    for lp in layers:
        x = blob.get(lp.bottom[0]) if lp.bottom else None
        if lp.type in ("Convolution", "Deconvolution"):
            p, c = lp.convolution_param, x[1]
            k = p.kernel_size
            shape = (p.num_output, c, k, k) if lp.type == "Convolution" else (c, p.num_output, k, k)
            shapes[lp.name] = [shape, (p.num_output,)]
            side = x[2] + 2 * p.pad - k + 1 if lp.type == "Convolution" else x[2]
            blob[lp.top[0]] = (1, p.num_output, side, side)
        elif lp.type == "InnerProduct":
            n = lp.inner_product_param.num_output
            shapes[lp.name] = [(n, int(np.prod(x[1:]))), (n,)]
            blob[lp.top[0]] = (1, n)
        elif lp.type == "Pooling":
            p = lp.pooling_param
            side = (x[2] - p.kernel_size) // p.stride + 1
            for top in lp.top:
                blob[top] = (1, x[1], side, side)
        elif lp.type == "Unpooling":
            size = lp.unpooling_param.unpool_size
            blob[lp.top[0]] = (1, x[1], size, size)
        elif lp.type == "FilterSum":
            blob[lp.top[0]] = (1, 1) + x[2:]
        elif lp.type == "LinearSum":
            blob[lp.top[0]] = x[:2]
        elif lp.type == "Reshape":
            blob[lp.top[0]] = tuple(d or x[i] for i, d in enumerate(lp.reshape_param.shape.dim))
        else:
            blob[lp.top[0]] = x
    return shapes


# Gains on He's sqrt(2 / fan_in), so that the attention is neither uniform nor one-hot and
# the softmaxes do not saturate, with pixels of std ~60 and the paper's feature scale (A, the
# scaled conv5_3, about 0.25; (A, s = A z) are rescaled for another feature scale).
GAINS = {
    "feat_embed": 3.0,  # its embedding about N(0, 1)
    "cls_embed": 0.7,  # a one-hot input: rows about N(0, 1)
    "att-w": 2.0,  # attention scores of std ~2 over the positions
    "ip1": 3.0,
    "deconv5_1": 0.05,  # s = A z is about 20
    "seg-score": 0.5,
}
PIXEL_STD = 60.0  # of the test images' mean-subtracted pixels
BIAS_STD = 0.01


def uniform(rng, shape, std):
    """Uniform float32 values of mean 0 and standard deviation `std` (cheaper than normal
    ones: the paper-size files hold 355 million)."""
    values = rng.random(shape, dtype=np.float32)
    values -= np.float32(0.5)
    values *= np.float32(std * 12**0.5)
    return values


def random_blobs(shapes, rng, feature_scale):
    """{layer name: [float32 weights, biases]}: weights of std gain * sqrt(2 / fan_in) (fan_in
    = the values each output sums), biases of std 0.01."""
    ratio = config.PAPER.architecture.feature_scale / feature_scale
    rescale = {"feat_embed": ratio, "ip1": ratio, "deconv5_1": ratio**2}
    out = {}
    for name, (w, b) in shapes.items():
        fan_in = w[0] * w[2] * w[3] if name.startswith("deconv") else int(np.prod(w[1:]))
        std = GAINS.get(name, 1.0) * rescale.get(name, 1.0) * np.sqrt(2.0 / fan_in)
        out[name] = [uniform(rng, w, std), uniform(rng, b, BIAS_STD)]
    return out


def blob_proto(array):
    """A BlobProto of a float32 array: its shape, its values as the packed floats."""
    blob = NEW("BlobProto")
    blob.shape.dim.extend(array.shape)
    blob.data.append(np.ascontiguousarray(array, "<f4").tobytes())
    return blob


def data_layer(arch):
    """Their stage-2 data layer as a TRAIN snapshot holds it (fork-only type and params)."""
    return layer(
        "data",
        "SelectSrcTgkSegBinary",
        [],
        ["data", "seg-label", "cls-label"],
        image_data_param=dict(
            root_folder="./data",
            source="./data/imagesets/coco_train.txt",
            target="./data/imagesets/voc_train.txt",
            label_type=2,
            batch_size=4,
            shuffle=True,
            new_width=330,
            new_height=330,
            ignore_label=255,
        ),
        transform_param=dict(
            mean_value=[104.008, 116.669, 122.675], crop_size=arch.crop, mirror=True
        ),
        window_cls_data_param=dict(label_dim=arch.num_classes),
        include=[dict(phase=PHASE_TRAIN)],
    )


def losses(segmentation):
    out = [
        layer("argmax-clas-label", "ArgMax", ["cls-label"], ["cls-label-digit"]),
        layer("cls-loss", "SoftmaxWithLoss", ["cls-score", "cls-label-digit"], ["cls-loss"]),
    ]
    if segmentation:
        seg = layer(
            "seg-loss",
            "SoftmaxWithLoss",
            ["seg-score", "seg-label"],
            ["seg-loss"],
            loss_param=dict(ignore_label=255),
        )
        seg.loss_weight.append(2)
        out.append(seg)
    return out


def snapshot(name, layers, blobs):
    """The NetParameter Caffe saves of a TRAIN net: every layer with phase TRAIN, lr/decay
    ParamSpecs and the blobs of the layers that have weights."""
    net = NEW("NetParameter", name=name)
    for source in layers:
        lp = net.layer.add()
        lp.CopyFrom(source)
        lp.phase = PHASE_TRAIN
        for i, array in enumerate(blobs.get(lp.name, [])):
            lp.param.add(lr_mult=i + 1, decay_mult=1 - i)
            lp.blobs.append(blob_proto(array))
    return net


def transfernet_layers(arch):
    """transferNet's TRAIN net: data, encoder, attention, f_cls and its loss, decoder, loss."""
    enc_att = encoder_layers(arch, masks=True) + attention_part(arch)
    return (
        [data_layer(arch)]
        + enc_att
        + head_layers(arch)
        + losses(False)
        + decoder_layers(arch)
        + losses(True)[-1:]
    )


def attentionnet_layers(arch):
    return (
        [data_layer(arch), layer("seg-label-silence", "Silence", ["seg-label"], [])]
        + attention_layers(arch)
        + losses(False)
    )


def classifier_snapshot_layers(arch):
    data = layer("data", "Data", [], ["data", "label"])
    loss = layer("loss", "SigmoidCrossEntropyLoss", ["cls-score-pooled", "label"], ["loss"])
    return [data] + classifier_layers(arch)[:-1] + [loss]


def segmentation_inputs(arch):
    return {"data": (1, 3, arch.crop, arch.crop), "cls-label": (1, arch.num_classes, 1, 1)}


def make_blobs(arch, rng):
    """{layer name: [arrays]} of every layer with weights of the three files (one encoder)."""
    shapes = blob_shapes(deploy_layers(arch) + head_layers(arch), segmentation_inputs(arch))
    side = authors.CLASSIFIER_INPUT
    shapes.update(blob_shapes(classifier_layers(arch), {"data": (1, 3, side, side)}))
    return random_blobs(shapes, rng, arch.feature_scale)


def write(path, net):
    with open(path, "wb") as f:
        f.write(net.SerializeToString())
    return path


def to_v1(net):
    """The same NetParameter in the V1 format (`layers`, LayerType numbers)."""
    old = NEW("NetParameter", name=net.name)
    for lp in net.layer:
        v1 = old.layers.add(name=lp.name, type=V1_NUMBERS[lp.type], bottom=lp.bottom, top=lp.top)
        v1.blobs.extend(lp.blobs)
        for field in authors_format.V1_PARAMS:
            if lp.HasField(field):
                getattr(v1, field).CopyFrom(getattr(lp, field))
    return old


def write_release(folder, arch, blobs, v1_classifier=False):
    """Write transferNet, attentionNet and classificationNet caffemodels into `folder`;
    returns {kind: path}."""
    classifier = snapshot("classificationNet", classifier_snapshot_layers(arch), blobs)
    return {
        "transferNet": write(
            os.path.join(folder, "transferNet.caffemodel"),
            snapshot("train_seg_Full_anno", transfernet_layers(arch), blobs),
        ),
        "attentionNet": write(
            os.path.join(folder, "attentionNet.caffemodel"),
            snapshot("train_seg_Full_anno", attentionnet_layers(arch), blobs),
        ),
        "classificationNet": write(
            os.path.join(folder, "classificationNet.caffemodel"),
            to_v1(classifier) if v1_classifier else classifier,
        ),
    }
