"""Numerical gradient checks inside a real caffe.Net: of a Python layer, or of any net.

The net is Input layers for the bottoms + the layer under test, with force_backward. The
objective is f = sum(top * w) for fixed random weights w, so net.backward() with top.diff = w
gives the analytic df/dbottom, compared with central differences of net.forward():

    check_gradients("attention_ops", "AttentionPool",
                    {"A": A, "alpha": alpha}, differentiable=["A", "alpha"])

Inputs should be O(1) (the default step 1e-2 in float32 then leaves rounding noise near 1e-4
per element). The error of an element is |analytic - numeric| / max(|analytic|, |numeric|,
floor), floor avoiding noise blow-up on near-zero gradients. check_net_gradients does the same on
a given net (e.g. the stock-layer unpooling, whose Threshold layers forbid force_backward).
"""

import os
import tempfile

import caffe
import numpy as np


def net_from_prototxt(text, phase=caffe.TEST):
    """Build a caffe.Net from prototxt text via a temporary file."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "net.prototxt")
        with open(path, "w") as f:
            f.write(text)
        return caffe.Net(path, phase)


def python_layer_prototxt(module, layer, bottom_shapes, tops=("top",), param_str=""):
    """Prototxt text: one Input layer per bottom (name -> shape) and the Python layer."""
    lines = ["force_backward: true"]
    for name, shape in bottom_shapes.items():
        dims = " ".join("dim: %d" % d for d in shape)
        lines.append(
            'layer { name: "%s" type: "Input" top: "%s" '
            "input_param { shape { %s } } }" % (name, name, dims)
        )
    body = ['name: "under_test" type: "Python"']
    body += ['bottom: "%s"' % name for name in bottom_shapes]
    body += ['top: "%s"' % name for name in tops]
    body.append(
        'python_param { module: "%s" layer: "%s" param_str: %s }'
        % (module, layer, _proto_string(param_str))
    )
    lines.append("layer { %s }" % " ".join(body))
    return "\n".join(lines) + "\n"


def _proto_string(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def python_layer_net(module, layer, bottoms, tops=("top",), param_str=""):
    """Real net around one Python layer, bottoms (name -> array) loaded and forwarded."""
    shapes = {name: np.shape(value) for name, value in bottoms.items()}
    net = net_from_prototxt(python_layer_prototxt(module, layer, shapes, tops, param_str))
    for name, value in bottoms.items():
        net.blobs[name].data[...] = value
    net.forward()
    return net


def _objective(net, top, weights):
    net.forward()
    return float(np.sum(net.blobs[top].data.astype(np.float64) * weights))


def check_gradients(
    module,
    layer,
    bottoms,
    differentiable,
    param_str="",
    step=1e-2,
    tolerance=1e-2,
    floor=1e-1,
    seed=0,
):
    """Assert that the layer's bottom diffs match central differences; one top.

    bottoms: name -> array (non-differentiable ones, e.g. mask, ref, stay fixed).
    Returns {bottom name: worst relative error}.
    """
    net = python_layer_net(module, layer, bottoms, param_str=param_str)
    return check_net_gradients(
        net,
        net.outputs[0],
        {name: name for name in differentiable},
        layer,
        step,
        tolerance,
        floor,
        seed,
    )


def check_net_gradients(
    net, top, differentiable, what, step=1e-2, tolerance=1e-2, floor=1e-1, seed=0
):
    """Assert that net.backward() from top.diff = w gives the central differences of
    sum(top * w) with respect to each blob of `differentiable` ({perturbed blob: blob whose
    diff holds its gradient}: the same name for a Python layer's Input bottoms, or an Input
    and the zero Bias above it in a net without force_backward). Returns {blob: worst error}.
    """
    net.forward()
    weights = np.random.RandomState(seed).uniform(-1, 1, net.blobs[top].data.shape)
    net.blobs[top].diff[...] = weights
    net.backward()
    worst = {}
    for name, gradient in differentiable.items():
        blob = net.blobs[name]
        analytic = net.blobs[gradient].diff.astype(np.float64).copy()
        numeric = np.zeros_like(analytic)
        for index in np.ndindex(*blob.data.shape):
            original = blob.data[index]
            blob.data[index] = original + step
            plus = _objective(net, top, weights)
            blob.data[index] = original - step
            minus = _objective(net, top, weights)
            blob.data[index] = original
            numeric[index] = (plus - minus) / (2 * step)
        error = np.abs(analytic - numeric) / np.maximum(
            np.maximum(np.abs(analytic), np.abs(numeric)), floor
        )
        at = np.unravel_index(np.argmax(error), error.shape)
        assert error[at] < tolerance, (
            "%s: gradient of %r wrong at %s: analytic %g, numeric %g, "
            "relative error %.3g >= %g"
            % (what, name, at, analytic[at], numeric[at], error[at], tolerance)
        )
        worst[name] = float(error[at])
    return worst


def deploy_batched_and_per_label(net, image, labels, blobs):
    """Run a seg_deploy-style net (inputs data (1,3,S,S), label (K,C)) once with all K labels
    and then once per label; return ({blob: (K,...) batched}, {blob: [K arrays per label]})."""
    net.blobs["label"].reshape(*labels.shape)
    net.reshape()
    net.blobs["data"].data[...] = image
    net.blobs["label"].data[...] = labels
    net.forward()
    batched = {b: net.blobs[b].data.copy() for b in blobs}
    net.blobs["label"].reshape(1, labels.shape[1])
    net.reshape()
    single = {b: [] for b in blobs}
    for row in labels:
        net.blobs["data"].data[...] = image
        net.blobs["label"].data[...] = row
        net.forward()
        for b in blobs:
            single[b].append(net.blobs[b].data[0].copy())
    return batched, single


def assert_per_label_equal(batched, single):
    """Each label's slice of the batched forward equals its own one-label forward."""
    for blob, values in single.items():
        for k, value in enumerate(values):
            np.testing.assert_allclose(value, batched[blob][k], rtol=1e-4, atol=1e-6, err_msg=blob)
