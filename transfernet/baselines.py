"""The two baselines of Sec. 6.3 / Appendix B (Fig. 7b, 7c), from nets.py's pieces.

Both share TransferNet's frozen VGG-16 encoder (up to conv5_3, (N,D,h,w)), its
DeconvNet decoder (deconv5_1 .. seg_score, unpooling with pool1..pool4's switches), data layer,
losses (softmax over classes against the one-hot label + lambda x pixel softmax, Eq. 9) and
joint-stage solver (Adam, same learning rate, batch, iter_size and iterations), starting from
the same stage-0 classifier snapshot. Only the decoder input s (N,1,h,w) is built differently
(Appendix B: "different approaches to construct the input to the decoder s_l"):

BaselineNet (Fig. 7b, FCN-style; f_att = f_cls). The stage-0 classifier made fully convolutional
(FCN's net surgery, transfernet.surgery): pool5 of the (unscaled) conv5_3, fc6 as a convolution
whose kernel is the classifier's pool5 (7x7), fc7 and fc8_transfer as 1x1 convolutions, their
weights the classifier's reshaped. The segmentation input is larger than the classifier's
(320 against 224), so they give class score maps (N,C,4,4) over pool5 (10x10) instead of
scores; their global average is cls_score, trained with the classification loss. The chosen
class's map is selected with the one-hot label, class_map[n] = sum_c label[n, c]
fc8_transfer[n, c] (the Densify layer: the contraction of Eq. 7, with the class maps as A and
the label as z), and a fully connected layer (s_fc, 16 -> 400 values) turns it into s (20x20)
(Appendix B: "a two-dimensional (4 x 4) score map of the selected class ... converts it to the
input to the decoder through a fully-connected layer"). Sec. 6.3 blames this map's sparsity and
low resolution for BaselineNet's results. The tiny and mini configs keep that geometry (their
classifiers see 64 and 80 px, their segmentation nets 96 and 112: 2x2 maps against conv5_3's
6x6 and 7x7).

DecoupledNet-dagger (Fig. 7c, Hong et al. 2015). A VGG-style classifier on the flattened A,
cls_score = W2 relu(W1 vec(A) + b1) + b2 (cls_fc1, cls_score), trained with the same loss.
Hong et al. back-propagate the chosen class score to the features; Caffe cannot back-propagate
inside a forward pass, so the gradient is computed in closed form by stock layers sharing the
classifier's weights:

    d cls_score[c] / d vec(A) = W1^T (relu'(W1 vec(A) + b1) * W2[c])

relu_mask = [hidden ReLU output > 0] (Threshold; no gradient flows through it, relu' being
piecewise constant), score_weight = W2^T label (InnerProduct, transpose, shares cls_score's
weight), their product hidden_grad, feat_grad = W1^T hidden_grad (InnerProduct, transpose,
shares cls_fc1's weight) reshaped to (N,D,h,w). Bridging layers combine features and gradient:
grad_x_feat = A * feat_grad (elementwise, "gradient x input"), standardised per sample
(grad_x_feat_norm: MVN over channels and positions), bridge1 (3x3 conv, D channels) + ReLU, and
a 1x1 conv to one channel, s. The segmentation loss reaches W1 and W2 through the gradient too,
as TransferNet's reaches its attention through s.

Simplifications against Hong et al. (all ours): the gradient is that of the pre-softmax class
score w.r.t. conv5_3 (there is no pool5 here) of a one-hidden-layer classifier (f_cls's width)
instead of VGG's fc6-fc8 w.r.t. pool5; the bridge is a product + MVN + two convolutions instead
of their fully connected bridging layers; the MVN is needed because the product of 0.004-scaled
features and a gradient through 0.01-Gaussian weights is ~1e-6 at the start (the bridge would
start dead) and its scale drifts as the classifier trains. As for BaselineNet, the paper trains
the decoder on the source domain and fine-tunes the classifier on the target one; here both
train jointly on the mixed source/target stream, exactly as TransferNet's stage 2 does.

Why the comparison stays fair: encoder, decoder, data, losses, loss weight, solver and number
of iterations are TransferNet's; the baselines' heads are trained jointly with the decoder from
the same stage-0 encoder, as TransferNet's stage 2 is. TransferNet additionally has its stage-1
(classification-only) training of the attention; the paper does not say whether its baselines
had such a stage, ours have none.

Deploy nets have seg_deploy's interface: inputs data (1,3,S,S) and label (K,num_classes), output
seg_prob (K,2,S,S); the encoder and the class-independent part of each head run once (batch 1),
the rest for the K labels (Densify and Scale broadcast the batch-1 blobs). s (K,1,h,w) is kept;
there is no alpha.
"""

from caffe import NetSpec
from caffe import layers as L
from caffe import params as P

from transfernet import nets, solvers, surgery
from transfernet.nets import CLS_HIDDEN, GAUSSIAN, LEARN, LEARN_FAST, ZERO, channels, feature_size

BASELINES = ("baselinenet", "decouplednet")
NETS = tuple("%s_%s" % (b, kind) for b in BASELINES for kind in ("train", "deploy"))
STAGE = "joint"  # the baselines train with the joint stage's solver numbers (Eq. 9)
# relu' is piecewise constant: no gradient through relu_mask (and Caffe's Threshold layer has
# no backward; a consumer that does not propagate to a blob lets Caffe skip its producer).
CONSTANT_SECOND = [True, False]
DESCRIPTION = {
    "baselinenet": "BaselineNet (Fig. 7b)",
    "decouplednet": "DecoupledNet-dagger (Fig. 7c)",
}


def _conv(x, num_output, kernel_size, param=LEARN):
    return L.Convolution(
        x,
        num_output=num_output,
        kernel_size=kernel_size,
        pad=kernel_size // 2,
        param=param,
        weight_filler=GAUSSIAN,
        bias_filler=ZERO,
    )


def _shared(name, spec):
    """ParamSpec `spec` (lr/decay multipliers) of a weight shared by name between layers."""
    return dict(spec, name=name)


def _baselinenet(n, arch, train):
    """Fig. 7b: the classifier's class score maps, the chosen class's map, a fully connected
    layer -> s."""
    side = feature_size(arch)
    n.pool5 = L.Pooling(n.conv5_3, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    nets.classifier_fc(n, arch, n.pool5, convolutional=True)
    if train:
        n.cls_score = L.Pooling(n.fc8_transfer, pool=P.Pooling.AVE, global_pooling=True)
        nets.classification_loss(n)
    n.class_map = L.Python(
        n.fc8_transfer, n.label, python_param=dict(module="attention_ops", layer="Densify")
    )
    n.s_fc = nets.inner_product(n.class_map, side * side)
    n.s = L.Reshape(n.s_fc, shape=dict(dim=[0, 1, side, side]))


def _decouplednet(n, arch, train):
    """Fig. 7c: classifier on A, closed-form class-score gradient, bridge(A * grad) -> s."""
    side, depth = feature_size(arch), channels(arch, 512)
    nets.scaled_features(n, arch)
    n.cls_fc1 = nets.inner_product(
        n.conv5_3_scaled,
        channels(arch, CLS_HIDDEN),
        param=[_shared("cls_fc1_w", LEARN[0]), LEARN[1]],
    )
    n.cls_relu1 = L.ReLU(n.cls_fc1, in_place=True)
    if train:
        n.cls_score = nets.inner_product(
            n.cls_relu1,
            arch.num_classes,
            param=[_shared("cls_score_w", LEARN_FAST[0]), LEARN_FAST[1]],
        )
        nets.classification_loss(n)
    n.relu_mask = L.Threshold(n.cls_relu1, threshold=0)
    n.score_weight = L.InnerProduct(
        n.label,
        num_output=channels(arch, CLS_HIDDEN),
        transpose=True,
        bias_term=False,
        param=[_shared("cls_score_w", LEARN_FAST[0])],
    )
    if train:
        n.hidden_grad = L.Eltwise(
            n.score_weight, n.relu_mask, operation=P.Eltwise.PROD, propagate_down=CONSTANT_SECOND
        )
    else:  # relu_mask (1,d) scales every row of score_weight (K,d)
        n.relu_mask_flat = L.Reshape(n.relu_mask, shape=dict(dim=[-1]))
        n.hidden_grad = L.Scale(
            n.score_weight, n.relu_mask_flat, axis=1, propagate_down=CONSTANT_SECOND
        )
    n.feat_grad_flat = L.InnerProduct(
        n.hidden_grad,
        num_output=depth * side * side,
        transpose=True,
        bias_term=False,
        param=[_shared("cls_fc1_w", LEARN[0])],
    )
    n.feat_grad = L.Reshape(n.feat_grad_flat, shape=dict(dim=[0, depth, side, side]))
    if train:
        n.grad_x_feat = L.Eltwise(n.feat_grad, n.conv5_3_scaled, operation=P.Eltwise.PROD)
    else:  # A (1,D,h,w) viewed as (D,h,w) scales every sample of feat_grad (K,D,h,w)
        n.features = L.Reshape(n.conv5_3_scaled, shape=dict(dim=[-1]), axis=0, num_axes=2)
        n.grad_x_feat = L.Scale(n.feat_grad, n.features, axis=1)
    n.grad_x_feat_norm = L.MVN(n.grad_x_feat, across_channels=True)
    n.bridge1 = _conv(n.grad_x_feat_norm, depth, 3)
    n.bridge_relu1 = L.ReLU(n.bridge1, in_place=True)
    n.s = _conv(n.bridge_relu1, 1, 1)


HEADS = {"baselinenet": _baselinenet, "decouplednet": _decouplednet}


def score_map_side(arch):
    """Side of BaselineNet's class score maps: the classifier's fc6 kernel (its pool5) slid
    over the segmentation input's pool5 (4 = 10 - 7 + 1 in the paper)."""
    side = nets.pool5_side(arch.crop) - nets.pool5_side(arch.classifier_crop) + 1
    if side < 1:
        raise ValueError(
            "the classifier crop %d is larger than the segmentation crop %d"
            % (arch.classifier_crop, arch.crop)
        )
    return side


def _split(net):
    if net not in NETS:
        raise ValueError("unknown baseline net %r; expected one of %s" % (net, ", ".join(NETS)))
    return net.rsplit("_", 1)


def train(cfg, baseline, batch=None, input_layers=False, seed=0):
    """Training net: Eq. 9 with the baseline's decoder input; the joint stage's data layer
    (drawing with `seed`)."""
    n, arch = NetSpec(), cfg.architecture
    nets.segmentation_inputs(
        n, cfg, ("data", "label", "seg_label"), STAGE, batch, input_layers, seed
    )
    nets.encoder(n, arch, n.data, frozen=True, masks=True)
    HEADS[baseline](n, arch, train=True)
    nets.decoder(n, arch, densify=False)
    nets.segmentation_loss(n)
    return nets.named_proto(cfg, baseline + "_train", n)


def deploy(cfg, baseline, num_labels=1):
    """seg_deploy's interface: data (1,3,S,S), label (K,C) -> seg_prob (K,2,S,S)."""
    arch = cfg.architecture
    n = nets.deploy_inputs(arch, num_labels)
    nets.encoder(n, arch, n.data, frozen=True, masks=True)
    HEADS[baseline](n, arch, train=False)
    nets.decoder(n, arch, densify=False, broadcast=True)
    n.seg_prob = L.Softmax(n.seg_score)
    return nets.named_proto(cfg, baseline + "_deploy", n)


def build(cfg, net, seed=0, **kwargs):
    """NetParameter of a baseline net (one of NETS); `seed` is the training net's data-layer
    seed, kwargs go to train() or deploy()."""
    baseline, kind = _split(net)
    if kind == "train":
        return train(cfg, baseline, seed=seed, **kwargs)
    return deploy(cfg, baseline, **kwargs)


def describe(cfg, net):
    """What the generated prototxt of a baseline net is, for this config: its header's lines
    after the generator's (transfernet.generated)."""
    baseline, kind = _split(net)
    arch = cfg.architecture
    side, depth, crop = feature_size(arch), channels(arch, 512), arch.crop
    pool5, kernel = nets.pool5_side(crop), nets.pool5_side(arch.classifier_crop)
    maps = score_map_side(arch)
    heads = {
        "baselinenet": "the classifier as convolutions over pool5 (%dx%dx%d; fc6 %dx%d) -> class "
        "score maps %dx%dx%d, chosen class map (%d values) -> fully connected -> "
        "s (%dx%d)"
        % (
            depth,
            pool5,
            pool5,
            kernel,
            kernel,
            arch.num_classes,
            maps,
            maps,
            maps * maps,
            side,
            side,
        ),
        "decouplednet": "classifier on conv5_3 (%dx%dx%d), its class-score gradient in closed "
        "form, bridge(A * grad) -> s" % (depth, side, side),
    }[baseline]
    what = (
        "Training (Eq. 9): cls loss + %g x seg loss (ignore %d); input %dx%d (resize %d)."
        % (nets.SEG_LOSS_WEIGHT, nets.IGNORE_LABEL, crop, crop, cfg.data.resize)
        if kind == "train"
        else "Deploy: data (1,3,%d,%d) and label (K,%d), K = 1 here (reshape label for K); "
        "seg_prob (K,2,%d,%d), s (K,1,%d,%d)."
        % (crop, crop, arch.num_classes, crop, crop, side, side)
    )
    return [
        "%s: %s;" % (DESCRIPTION[baseline], heads),
        "frozen encoder and decoder as TransferNet's. " + what,
    ]


def initial_weights(baseline, classifier_weights):
    """What the baseline's training starts from, given the stage-0 snapshot: that snapshot,
    for BaselineNet in its fully convolutional form (transfernet.surgery writes it)."""
    if baseline == "baselinenet":
        return surgery.fcn_path(classifier_weights)
    return classifier_weights


def write_initial_weights(cfg, baseline, classifier_weights):
    """Write what the baseline's training starts from where it is made from the stage-0
    snapshot (BaselineNet's fully convolutional form, at initial_weights); returns the
    reshaped layers [(layer, old shape, new shape)], [] for a baseline that starts from the
    snapshot itself. WeightsError naming a snapshot that is missing or does not fit."""
    if baseline != "baselinenet":
        return []
    return surgery.write_fcn_weights(cfg, classifier_weights)[1]


def solver(cfg, baseline, layout=None, seed=solvers.RANDOM_SEED, name=None):
    """The joint stage's Adam solver on the baseline's training net in `layout` (default
    cfg.layout), from stage 0's encoder, with `seed`. Its snapshots are filed under `name`:
    the baseline's own in the committed tree, the joint stage's in a run folder, where the
    baseline replaces that stage."""
    if baseline not in BASELINES:
        raise ValueError(
            "unknown baseline %r; expected one of %s" % (baseline, ", ".join(BASELINES))
        )
    layout = layout or cfg.layout
    weights = initial_weights(baseline, solvers.final_snapshot(cfg, "classifier", layout))
    return solvers.adam(
        cfg.schedule,
        STAGE,
        layout.model(baseline + "_train"),
        layout.snapshot_prefix(name or baseline),
        weights,
        seed,
    )


def describe_solver(cfg, baseline):
    """What the baseline's generated solver is, for this config (as describe)."""
    st = cfg.schedule.stages[STAGE]
    return [
        "%s: the joint stage's solver (Adam lr %g, batch %d x iter_size %d per update, "
        "%d iterations)."
        % (DESCRIPTION[baseline], st.base_lr, st.batch, st.iter_size, st.max_iter),
        "Starts from %s%s."
        % (
            solver(cfg, baseline).weights[0],
            {
                "baselinenet": " (the stage-0 snapshot made fully convolutional: python3 "
                "tools/surgery.py --config %s)" % cfg.name,
                "decouplednet": " (the encoder)",
            }[baseline],
        ),
        "Run from the checkout root (%s/ is committed, empty). No solver_mode: the -gpu "
        "flag decides." % cfg.layout.snapshot_prefix(baseline).rsplit("/", 1)[0],
    ]
