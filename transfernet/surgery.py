"""FCN's net surgery (Long et al., CVPR 2015) for BaselineNet (Appendix B, Fig. 7b): the
stage-0 classifier's fully connected layers as convolutions.

An InnerProduct weight (out, C*k*k) over a (C,k,k) pool5 holds the numbers of a Convolution
weight (out, C, k, k) in the same order (Caffe flattens channel-major, as it lays out
convolution kernels), so the surgery only rewrites the blobs' shapes: fc6 becomes a kxk
convolution, fc7 and fc8_transfer 1x1 ones. Every other layer (the encoder) is copied as it is.
"""

import math
import os

from transfernet import nets
from transfernet.atomic import atomic_path
from transfernet.weights import (
    WeightsError,
    blob_shape,
    blob_values,
    file_blobs,
    read_caffemodel,
)


def conv_shapes(cfg):
    """{layer: convolution weight shape} of the classifier's fully connected layers."""
    arch = cfg.architecture
    fc, kernel = nets.channels(arch, nets.FC_DIM), nets.pool5_side(arch.classifier_crop)
    return {
        "fc6": (fc, nets.channels(arch, 512), kernel, kernel),
        "fc7": (fc, fc, 1, 1),
        "fc8_transfer": (arch.num_classes, fc, 1, 1),
    }


def fcn_path(classifier_weights):
    """Where the fully convolutional form of a classifier caffemodel is written: beside it,
    <name>_fcn.caffemodel (snapshots/classifier/classifier_iter_N_fcn.caffemodel)."""
    return os.path.splitext(classifier_weights)[0] + "_fcn.caffemodel"


def convolutionalize(param, shapes, path):
    """Reshape the weights of the layers `shapes` names in the NetParameter `param` (read from
    `path`) to those shapes, in place; returns [(layer, old shape, new shape)]. WeightsError
    naming the file for a layer it lacks or a weight with another number of values (the
    caffemodel of another net or crop)."""
    blobs = file_blobs(param)
    changed = []
    for name, shape in shapes.items():
        if name not in blobs:
            raise WeightsError(
                "%s has no layer %s: not a stage-0 classifier caffemodel" % (path, name)
            )
        weight = blobs[name][0]
        old, count, values = blob_shape(weight), math.prod(shape), blob_values(weight)
        if values != count:
            raise WeightsError(
                "%s: layer %s has weight shape %s, %d values; its convolution "
                "form %s needs %d (the classifier of another config or crop?)"
                % (path, name, old, values, shape, count)
            )
        for field in ("num", "channels", "height", "width"):
            weight.ClearField(field)
        weight.shape.dim[:] = shape
        changed.append((name, old, shape))
    return changed


def write_fcn_weights(cfg, classifier_weights, out=None):
    """Write the fully convolutional form of the stage-0 caffemodel `classifier_weights` to
    `out` (default fcn_path); returns (out, [(layer, old shape, new shape)])."""
    out = out or fcn_path(classifier_weights)
    param = read_caffemodel(classifier_weights)
    changed = convolutionalize(param, conv_shapes(cfg), classifier_weights)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            f.write(param.SerializeToString())
    return out, changed
