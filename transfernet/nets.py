"""NetSpec source of every TransferNet network (Hong et al., CVPR 2016, Sec. 4-6).

One function per network, parameterised by a transfernet.config.Config: the shapes come from
its architecture, the data layer from its data and the stage's batch from its schedule. The
helpers that only shape layers take the Architecture alone. models/<config>/*.prototxt are the
committed output of tools/generate_models.py and tests/test_models.py checks they match.

Networks (NETS): classifier_train / classifier_deploy (stage 0, multi-label VGG-16),
attention_train (stage 1, Eq. 6), joint_train (stage 2, Eq. 9), seg_deploy (inference:
one image, K labels, encoder run once).
"""

import json
import tempfile

from caffe import NetSpec
from caffe import layers as L
from caffe import params as P

from transfernet import class_table

# VGG-16 encoder (block, channels, convolutions); pool{block} follows each block.
ENCODER = ((1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3))
# DeconvNet-style decoder (block, output channels of deconv{block}_1, _2, ...); unpool{block}
# (pool{block}'s switches) precedes every block but the first.
DECODER = ((5, (512,)), (4, (512, 512, 256)), (3, (256, 256, 128)), (2, (128, 64)), (1, (64, 64)))
FACTORS = 1024  # d in Eq. 4
CLS_HIDDEN = 512  # f_cls hidden layer
FC_DIM = 4096  # VGG-16 fc6 / fc7
SEG_LOSS_WEIGHT = 2  # lambda in Eq. 9
IGNORE_LABEL = 255
UNPOOL_KINDS = ("stock", "python")  # see decoder()

NETS = ("classifier_train", "classifier_deploy", "attention_train", "joint_train", "seg_deploy")

FROZEN = [dict(lr_mult=0, decay_mult=0)] * 2
LEARN = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
LEARN_FAST = [dict(lr_mult=10, decay_mult=1), dict(lr_mult=20, decay_mult=0)]
ENCODER_FILLER = dict(type="msra")  # only used when the encoder starts from scratch (tiny)
GAUSSIAN = dict(type="gaussian", std=0.01)  # Sec. 6.1: decoder and attention init (width 1)
ZERO = dict(type="constant", value=0)


def decoder_filler(arch):
    """Gaussian init of the decoder at the architecture's width: std 0.01 / sqrt(width), so every
    deconvolution keeps the paper's gain std * sqrt(fan_in) (fan_in = 9 * width * VGG
    channels); exactly the paper's 0.01 at width 1. With 0.01 at width 1/8 the gain per layer
    is ~0.24 and the 11 layers shrink their input ~1e-7 times."""
    return dict(GAUSSIAN, std=GAUSSIAN["std"] / arch.width**0.5)


def channels(arch, count):
    """Channel count of the paper's `count` at the architecture's width (at least 1)."""
    return max(1, int(round(arch.width * count)))


def feature_size(arch):
    """Side of conv5_3 (H = W) for the architecture's crop: four 2x2 poolings."""
    if arch.crop % 16:
        raise ValueError(
            "crop %d is not a multiple of 16 (four exact 2x2 poolings are needed "
            "for unpooling)" % arch.crop
        )
    return arch.crop // 16


def pool5_side(crop):
    """Side of pool5 for a crop: five 2x2/2 poolings, rounding up as Caffe does (5 -> 3)."""
    for _ in range(5):
        crop = (crop + 1) // 2
    return crop


def inputs(n, cfg, tops, batch, crop, resize, input_layers, multilabel, seed):
    """data (B,3,crop,crop), label (B,num_classes)[, seg_label (B,1,crop,crop)]: Input layers,
    or the SourceTargetData layer on cfg's data, drawing with `seed`."""
    shapes = {
        "data": [batch, 3, crop, crop],
        "label": [batch, cfg.architecture.num_classes],
        "seg_label": [batch, 1, crop, crop],
    }
    if input_layers:
        for top in tops:
            n[top] = L.Input(shape=dict(dim=shapes[top]))
        return
    data = cfg.data
    param = dict(
        source=data.source,
        target=data.target,
        source_fraction=data.source_fraction,
        batch_size=batch,
        resize=resize,
        crop=crop,
        mirror=True,
        num_classes=cfg.architecture.num_classes,
        classes=cfg.architecture.classes,
        multilabel=multilabel,
        seed=seed,
    )
    outs = L.Python(
        ntop=len(tops),
        python_param=dict(
            module="data_layer",
            layer="SourceTargetData",
            param_str=json.dumps(param, sort_keys=True),
        ),
    )
    for top, out in zip(tops, outs):
        n[top] = out


def segmentation_inputs(n, cfg, tops, stage, batch, input_layers, seed):
    """inputs() of a stage-1/2 training net: the segmentation crop and resize, one label per
    sample, and the batch of `stage` unless `batch` is given."""
    inputs(
        n,
        cfg,
        tops,
        batch or cfg.schedule.stages[stage].batch,
        cfg.architecture.crop,
        cfg.data.resize,
        input_layers,
        multilabel=False,
        seed=seed,
    )


def kernel_sizes(arch):
    """Kernel size of every encoder convolution, per block: the architecture's kernels (odd
    sizes, one per convolution of ENCODER) or VGG-16's 3x3. ValueError otherwise."""
    if arch.kernels is None:
        return tuple((3,) * convs for _, _, convs in ENCODER)
    kernels = tuple(tuple(block) for block in arch.kernels)
    shape = tuple(convs for _, _, convs in ENCODER)
    if tuple(len(block) for block in kernels) != shape or any(
        k < 1 or k % 2 == 0 for block in kernels for k in block
    ):
        raise ValueError(
            "kernels %s: expected odd sizes for blocks of %s convolutions" % (kernels, shape)
        )
    return kernels


def receptive_field(arch):
    """Side (pixels) of the input region one conv5_3 cell sees: each convolution of kernel k
    adds (k - 1) times the stride reached before it, each 2x2/2 pooling the stride."""
    side, stride = 1, 1
    for block, sizes in enumerate(kernel_sizes(arch), 1):
        side += sum((k - 1) * stride for k in sizes)
        if block < len(ENCODER):
            side += stride
            stride *= 2
    return side


def encoder(n, arch, x, frozen, masks=False, pool5=False):
    """VGG-16 conv1_1..conv5_3 (+ pool1..pool4[, pool5]) on x (after data_scaled = input_scale
    * x unless input_scale is 1); returns the last top. Kernels: kernel_sizes(arch), each
    padded to keep the size."""
    if arch.input_scale != 1:
        x = n.data_scaled = L.Power(x, scale=arch.input_scale)
    for (block, width, convs), sizes in zip(ENCODER, kernel_sizes(arch)):
        for i in range(1, convs + 1):
            conv = "conv%d_%d" % (block, i)
            kernel = sizes[i - 1]
            n[conv] = L.Convolution(
                x,
                num_output=channels(arch, width),
                kernel_size=kernel,
                pad=kernel // 2,
                param=FROZEN if frozen else LEARN,
                weight_filler=ENCODER_FILLER,
                bias_filler=ZERO,
            )
            x = n["relu%d_%d" % (block, i)] = L.ReLU(n[conv], in_place=True)
        if block == 5 and not pool5:
            return x
        pool = "pool%d" % block
        if masks:
            n[pool], n[pool + "_mask"] = L.Pooling(
                x, pool=P.Pooling.MAX, kernel_size=2, stride=2, ntop=2
            )
        else:
            n[pool] = L.Pooling(x, pool=P.Pooling.MAX, kernel_size=2, stride=2)
        x = n[pool]
    return x


def scaled_features(n, arch):
    """conv5_3_scaled = feature_scale * conv5_3: the features A the attention model and the
    decoder input are computed from."""
    n.conv5_3_scaled = L.Power(n.conv5_3, scale=arch.feature_scale)


def inner_product(x, num_output, param=LEARN):
    return L.InnerProduct(
        x, num_output=num_output, param=param, weight_filler=GAUSSIAN, bias_filler=ZERO
    )


def _attention(n, arch, broadcast):
    """Eq. 4-5: alpha = softmax(W_att relu(W_h (W_feat A * W_label y))), z = A^T alpha.

    broadcast: the encoder ran on one image for K labels (seg_deploy); feat_embed (1,d) is
    reshaped to (d,) and scales every row of cls_embed (K,d) instead of an Eltwise PROD.
    """
    factors, side = channels(arch, FACTORS), feature_size(arch)
    scaled_features(n, arch)
    n.feat_embed = inner_product(n.conv5_3_scaled, factors)
    n.cls_embed = inner_product(n.label, factors)
    if broadcast:
        n.feat_embed_flat = L.Reshape(n.feat_embed, shape=dict(dim=[-1]))
        n.att_factors = L.Scale(n.cls_embed, n.feat_embed_flat, axis=1)
    else:
        n.att_factors = L.Eltwise(n.feat_embed, n.cls_embed, operation=P.Eltwise.PROD)
    n.att_hidden = inner_product(n.att_factors, factors)
    n.att_relu = L.ReLU(n.att_hidden, in_place=True)
    n.att_score = inner_product(n.att_relu, side * side)
    n.alpha_flat = L.Softmax(n.att_score)
    n.alpha = L.Reshape(n.alpha_flat, shape=dict(dim=[0, 1, side, side]))
    n.z = L.Python(
        n.conv5_3_scaled, n.alpha, python_param=dict(module="attention_ops", layer="AttentionPool")
    )


def _classifier_head(n, arch):
    """f_cls and the loss of Eq. 6: softmax over classes against the one-hot label."""
    n.cls_fc1 = inner_product(n.z, channels(arch, CLS_HIDDEN))
    n.cls_relu1 = L.ReLU(n.cls_fc1, in_place=True)
    n.cls_score = inner_product(n.cls_relu1, arch.num_classes, param=LEARN_FAST)
    classification_loss(n)


def classification_loss(n):
    """Softmax over classes of n.cls_score against the one-hot label (Eq. 6)."""
    n.label_index = L.ArgMax(n.label, axis=1)
    n.cls_loss = L.SoftmaxWithLoss(n.cls_score, n.label_index)


def segmentation_loss(n):
    """lambda times the pixel softmax loss of n.seg_score (Eq. 9)."""
    n.seg_loss = L.SoftmaxWithLoss(
        n.seg_score,
        n.seg_label,
        loss_weight=SEG_LOSS_WEIGHT,
        loss_param=dict(ignore_label=IGNORE_LABEL),
    )


def decoder(n, arch, densify=True, broadcast=False, unpool_kind="stock"):
    """Eq. 7 s = A z, then the DeconvNet decoder f_dec up to seg_score (N,2,crop,crop).

    densify=False: the caller has built another decoder input n.s (N,1,h,w) (baselines).
    broadcast: the encoder ran on one image for K labels (deploy), so the pooling switches
    have batch 1. unpool_kind 'python': the reference Python Unpool layer instead of the
    stock-layer unpooling (the bench's before-variant; no committed net uses it).
    """
    if unpool_kind not in UNPOOL_KINDS:
        raise ValueError(
            "unknown unpool_kind %r; expected one of %s" % (unpool_kind, ", ".join(UNPOOL_KINDS))
        )
    if densify:
        n.s = L.Python(
            n.conv5_3_scaled, n.z, python_param=dict(module="attention_ops", layer="Densify")
        )
    x = n.s
    last_conv = {block: "conv%d_%d" % (block, convs) for block, _, convs in ENCODER}
    for block, widths in DECODER:
        if block != DECODER[0][0]:
            name, mask, ref = ("unpool%d" % block, n["pool%d_mask" % block], n[last_conv[block]])
            if unpool_kind == "python":
                x = n[name] = L.Python(
                    x, mask, ref, python_param=dict(module="unpool", layer="Unpool")
                )
            else:
                side = arch.crop // 2 ** (block - 1)
                x = unpool(n, name, x, mask, ref, (side, side), broadcast)
        for i, width in enumerate(widths, 1):
            deconv = "deconv%d_%d" % (block, i)
            n[deconv] = L.Deconvolution(
                x,
                param=LEARN,
                convolution_param=dict(
                    num_output=channels(arch, width),
                    kernel_size=3,
                    pad=1,
                    weight_filler=decoder_filler(arch),
                    bias_filler=ZERO,
                ),
            )
            x = n["deconv_relu%d_%d" % (block, i)] = L.ReLU(n[deconv], in_place=True)
    n.seg_score = L.Convolution(
        x,
        num_output=2,
        kernel_size=1,
        param=LEARN,
        weight_filler=decoder_filler(arch),
        bias_filler=ZERO,
    )


def unpool(n, name, x, mask, ref, size, broadcast=False):
    """n[name] (N,C,H,W): DeconvNet unpooling of x (N,C,h,w) with the switches `mask` of a
    2x2/2 MAX pooling of ref (size: ref's H, W), from stock Caffe layers (CPU and GPU).

    Each x[n,c,i,j] goes to the flat position mask[n,c,i,j] in its window, zeros elsewhere;
    the gradient is gathered back from there. For column 2j + b of the window (b = 0, 1),
    offset = mask - (2i W + 2j + b) (a constant of the UnpoolConstants layer, plus the
    switch broadcast over b by a Bias) is 0 iff the switch is in the top row, W iff in the
    bottom row. Offsets are integers, so [|offset| < 0.5] (ReLU with slope -1 is |.|, then
    Power -1 and Threshold -0.5) and [|offset - W| < 0.5] are exact; Concat interleaves them
    into the switch indicator (N,C,2h,2w). x repeated over b (a Bias onto zeros) and over the
    two rows (Tile) times the indicator is the output; Crop drops the extra row/column of
    odd sizes. Ties need no care: the switches decide, and only the switch's own position
    compares equal. Backward (Eltwise PROD, Tile's and the Bias's sums over the window)
    adds dtop at the switch to three exact zeros, so it equals the gather. The switch
    branch needs no gradient (Threshold has no backward).

    broadcast: mask has batch 1 and x batch K (deploy); the offset Bias adds the switches to
    every sample, so the comparisons are made for each of the K labels.
    """
    height, width = size

    def blob(part):
        return "%s_%s" % (name, part)

    n[blob("positions")], n[blob("zeros")] = L.Python(
        x,
        ref,
        ntop=2,
        propagate_down=[False, False],
        python_param=dict(module="unpool", layer="UnpoolConstants"),
    )
    if broadcast:  # (1,C,h,w) viewed as (C,h,w), added to every sample
        mask = n[blob("switches")] = L.Reshape(mask, shape=dict(dim=[-1]), axis=0, num_axes=2)
    offset = n[blob("offset")] = L.Bias(
        n[blob("positions")], mask, axis=1 if broadcast else 0, propagate_down=[False, False]
    )
    rows = []
    for row, shift in (("top", 0), ("bottom", -width)):
        if shift:
            n[blob(row)] = L.Power(offset, shift=shift)
            n[blob(row + "_abs")] = L.ReLU(n[blob(row)], negative_slope=-1, in_place=True)
        else:
            n[blob(row)] = L.ReLU(offset, negative_slope=-1)
        n[blob(row + "_neg")] = L.Power(n[blob(row)], scale=-1, in_place=True)
        n[blob(row + "_is")] = L.Threshold(n[blob(row)], threshold=-0.5, in_place=True)
        rows.append(one_row(n, blob(row)))
    n[blob("switched")] = L.Concat(*rows, axis=3)
    n[blob("values")] = L.Bias(n[blob("zeros")], x, axis=0, propagate_down=[False, True])
    n[blob("upsampled")] = L.Tile(one_row(n, blob("values")), axis=3, tiles=2)
    n[blob("product")] = L.Eltwise(
        n[blob("upsampled")],
        n[blob("switched")],
        operation=P.Eltwise.PROD,
        propagate_down=[True, False],
    )
    out = L.Reshape(n[blob("product")], shape=dict(dim=[-1]), axis=2, num_axes=2)
    if height % 2 or width % 2:
        n[blob("uncropped")] = out
        out = L.Crop(out, ref, axis=2, propagate_down=[True, False])
    n[name] = out
    return n[name]


def one_row(n, name):
    """n[name + '_row'] = n[name] (N,C,h,w,2) viewed as one row (N,C,h,1,2w) of each window."""
    n[name + "_row"] = L.Reshape(n[name], shape=dict(dim=[0, 0, 0, 1, -1]))
    return n[name + "_row"]


def classifier_train(cfg, batch=None, input_layers=False, seed=0):
    """Stage 0: VGG-16 + fc8_transfer, sigmoid cross-entropy against multi-hot labels."""
    n = _classifier(
        cfg, batch or cfg.schedule.stages["classifier"].batch, input_layers, train=True, seed=seed
    )
    n.cls_loss = L.SigmoidCrossEntropyLoss(n.fc8_transfer, n.label)
    return named_proto(cfg, "classifier_train", n)


def classifier_deploy(cfg):
    """Stage 0 at test time: Input data (1,3,S,S) -> prob (1,num_classes) sigmoid."""
    n = _classifier(cfg, 1, True, train=False, seed=None)
    n.prob = L.Sigmoid(n.fc8_transfer)
    return named_proto(cfg, "classifier_deploy", n)


def _classifier(cfg, batch, input_layers, train, seed):
    n, arch = NetSpec(), cfg.architecture
    inputs(
        n,
        cfg,
        ("data", "label") if train else ("data",),
        batch,
        arch.classifier_crop,
        cfg.data.classifier_resize,
        input_layers,
        multilabel=True,
        seed=seed,
    )
    classifier_fc(n, arch, encoder(n, arch, n.data, frozen=False, pool5=True))
    return n


def classifier_fc(n, arch, x, convolutional=False):
    """The stage-0 classifier's fc6, fc7 (ReLU, dropout) and fc8_transfer on pool5 x.

    convolutional: FCN's form (Long et al., CVPR 2015) for BaselineNet (Appendix B): fc6 a
    convolution with the classifier's pool5 as its kernel, fc7 and fc8_transfer 1x1
    convolutions. Their weights are the classifier's reshaped (transfernet.surgery), and over a
    larger pool5 they give class score maps instead of scores.
    """

    def layer(x, num_output, kernel, param, filler):
        if convolutional:
            return L.Convolution(
                x,
                num_output=num_output,
                kernel_size=kernel,
                param=param,
                weight_filler=filler,
                bias_filler=ZERO,
            )
        return L.InnerProduct(
            x, num_output=num_output, param=param, weight_filler=filler, bias_filler=ZERO
        )

    kernel = pool5_side(arch.classifier_crop)
    for fc in (6, 7):
        n["fc%d" % fc] = layer(
            x, channels(arch, FC_DIM), kernel if fc == 6 else 1, LEARN, ENCODER_FILLER
        )
        n["relu%d" % fc] = L.ReLU(n["fc%d" % fc], in_place=True)
        x = n["drop%d" % fc] = L.Dropout(n["relu%d" % fc], dropout_ratio=0.5, in_place=True)
    n.fc8_transfer = layer(x, arch.num_classes, 1, LEARN_FAST, GAUSSIAN)
    return n.fc8_transfer


def attention_train(cfg, batch=None, input_layers=False, seed=0):
    """Stage 1, Eq. 6: frozen encoder, attention and f_cls under the classification loss."""
    n, arch = NetSpec(), cfg.architecture
    segmentation_inputs(n, cfg, ("data", "label"), "attention", batch, input_layers, seed)
    encoder(n, arch, n.data, frozen=True)
    _attention(n, arch, broadcast=False)
    _classifier_head(n, arch)
    return named_proto(cfg, "attention_train", n)


def joint_train(cfg, batch=None, input_layers=False, unpool_kind="stock", seed=0):
    """Stage 2, Eq. 9: Eq. 6 plus lambda times the decoder's segmentation loss."""
    n, arch = NetSpec(), cfg.architecture
    segmentation_inputs(n, cfg, ("data", "label", "seg_label"), "joint", batch, input_layers, seed)
    encoder(n, arch, n.data, frozen=True, masks=True)
    _attention(n, arch, broadcast=False)
    _classifier_head(n, arch)
    decoder(n, arch, unpool_kind=unpool_kind)
    segmentation_loss(n)
    return named_proto(cfg, "joint_train", n)


def seg_deploy(cfg, num_labels=1):
    """Inference (Sec. 5): one image, K one-hot labels; encoder once, decoder for each label.

    Inputs data (1,3,S,S), label (K,num_classes); outputs seg_prob (K,2,S,S); alpha (K,1,h,w)
    and s (K,1,h,w) stay in net.blobs. Reshape `label` to change K.
    """
    arch = cfg.architecture
    n = deploy_inputs(arch, num_labels)
    encoder(n, arch, n.data, frozen=True, masks=True)
    _attention(n, arch, broadcast=True)
    decoder(n, arch, broadcast=True)
    n.seg_prob = L.Softmax(n.seg_score)
    return named_proto(cfg, "seg_deploy", n)


def deploy_inputs(arch, num_labels):
    """NetSpec of a segmentation deploy net: Input data (1,3,S,S) and label (K,num_classes)."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, arch.crop, arch.crop]))
    n.label = L.Input(shape=dict(dim=[num_labels, arch.num_classes]))
    return n


def named_proto(cfg, net, n):
    """The NetParameter, named after the config and net and ending in the class table's tag
    (transfernet.class_table: Caffe writes the train net's name into its snapshots)."""
    proto = n.to_proto()
    proto.name = "transfernet_%s_%s%s%s" % (
        cfg.name,
        net,
        class_table.TAG_PREFIX,
        cfg.architecture.classes,
    )
    return proto


BUILDERS = {
    "classifier_train": classifier_train,
    "classifier_deploy": classifier_deploy,
    "attention_train": attention_train,
    "joint_train": joint_train,
    "seg_deploy": seg_deploy,
}


def build(cfg, net, seed=0, **kwargs):
    """NetParameter of `net` (one of NETS); `seed` is a training net's data-layer seed, kwargs
    go to its builder (batch, input_layers)."""
    if net not in BUILDERS:
        raise ValueError("unknown net %r; expected one of %s" % (net, ", ".join(NETS)))
    if net.endswith("_train"):
        kwargs["seed"] = seed
    return BUILDERS[net](cfg, **kwargs)


def instantiate(param, phase):
    """A caffe.Net of a NetParameter (written to a temporary prototxt, which Caffe needs)."""
    import caffe

    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
        f.write(str(param))
        f.flush()
        return caffe.Net(f.name, phase)


def describe(cfg, net):
    """What the generated prototxt of `net` is, for this config: its header's lines after the
    generator's (transfernet.generated)."""
    arch, data = cfg.architecture, cfg.data
    side, factors = feature_size(arch), channels(arch, FACTORS)
    c5 = channels(arch, 512)
    attention = (
        "conv5_3 %dx%dx%d (M = %d, D = %d, receptive field %d px) scaled by %g; %d factors; "
        "%d classes."
        % (
            c5,
            side,
            side,
            side * side,
            c5,
            receptive_field(arch),
            arch.feature_scale,
            factors,
            arch.num_classes,
        )
    )
    cc = arch.classifier_crop
    classifier = "Input %dx%d (resize %d); pool5 %dx%d; fc6/fc7 %d; fc8_transfer %d." % (
        cc,
        cc,
        data.classifier_resize,
        pool5_side(cc),
        pool5_side(cc),
        channels(arch, FC_DIM),
        arch.num_classes,
    )
    crop, resize = arch.crop, data.resize
    text = {
        "classifier_train": "Stage 0: VGG-16 fine-tuned for multi-label classification "
        "(sigmoid cross-entropy).\n" + classifier,
        "classifier_deploy": "Stage 0 label prediction: data (1,3,%d,%d) -> prob (sigmoid).\n"
        % (cc, cc)
        + classifier,
        "attention_train": "Stage 1, Eq. 6: frozen encoder, attention (Eq. 4-5) and f_cls; "
        "input %dx%d (resize %d).\n" % (crop, crop, resize) + attention,
        "joint_train": "Stage 2, Eq. 9: Eq. 6 + %g x segmentation loss (ignore %d) of the "
        "decoder on s = A z (Eq. 7);\ninput %dx%d (resize %d), seg_score 2x%dx%d.\n"
        % (SEG_LOSS_WEIGHT, IGNORE_LABEL, crop, crop, resize, crop, crop)
        + attention,
        "seg_deploy": "Segmentation (Sec. 5): data (1,3,%d,%d) and label (K,%d), K = 1 here "
        "(reshape label for K);\nencoder once, attention and decoder for the K "
        "labels; seg_prob (K,2,%d,%d), alpha and s (K,1,%d,%d).\n"
        % (crop, crop, arch.num_classes, crop, crop, side, side)
        + attention,
    }[net]
    return text.split("\n")
