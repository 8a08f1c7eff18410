"""caffe.Nets for the bench: built from NetParameters, filled, run and timed layer by layer."""

import time

import caffe
import numpy as np
from caffe.proto import caffe_pb2
from data_layer import net_prototxt
from google.protobuf import text_format

from transfernet import nets
from transfernet.classes import IGNORE


def net_from_param(param, phase, weights=None):
    """A caffe.Net of a NetParameter (nets.instantiate), with the caffemodel `weights` copied
    in if given."""
    net = nets.instantiate(param, phase)
    if weights:
        net.copy_from(weights)
    return net


def data_layer_net(params):
    """The TRAIN net holding only SourceTargetData with `params` (a dict), 3 tops."""
    param = text_format.Merge(net_prototxt(params), caffe_pb2.NetParameter())
    return net_from_param(param, caffe.TRAIN)


def fill_inputs(net, inputs):
    """Copy {blob name: array} into the net's input blobs."""
    for name, value in inputs.items():
        net.blobs[name].data[...] = value


def fill_joint_inputs(net, seed=0):
    """Random image, one-hot label (class 21), seg-label: a foreground disc, 255 border."""
    rng = np.random.RandomState(seed)
    data = net.blobs["data"]
    data.data[...] = rng.normal(0, 50, data.shape)
    net.blobs["label"].data[...] = 0
    net.blobs["label"].data[:, 20] = 1
    side = data.shape[2]
    yy, xx = np.mgrid[:side, :side]
    radius = np.hypot(yy - side / 2, xx - side / 2)
    seg = np.where(radius < side / 4, 1, 0)
    seg[np.abs(radius - side / 4) < 2] = IGNORE
    net.blobs["seg_label"].data[...] = seg


def forward_backward(net):
    """One forward and one backward pass; the forward's outputs {name: array}."""
    outputs = net.forward()
    net.backward()
    return outputs


def clocks():
    """(wall, process CPU) seconds: CPU time counts only this process's threads, so it is
    far less disturbed than wall time by other jobs sharing the cores."""
    return np.array([time.perf_counter(), time.process_time()])


def time_layers(net, iterations, warmup=1, sync=lambda: None):
    """Mean wall and CPU seconds of net._forward(i, i) and net._backward(i, i) per layer.
    sync() runs before the clock stops: a GPU net's kernels run asynchronously, so pass
    transfernet.cuda.synchronize to charge each layer its own kernels."""
    n = len(net.layers)
    fwd, bwd = np.zeros((n, 2)), np.zeros((n, 2))
    for it in range(warmup + iterations):
        keep = it >= warmup
        for i in range(n):
            start = clocks()
            net._forward(i, i)
            sync()
            fwd[i] += keep * (clocks() - start)
        for i in reversed(range(n)):
            start = clocks()
            net._backward(i, i)
            sync()
            bwd[i] += keep * (clocks() - start)
    fwd, bwd = fwd / iterations, bwd / iterations
    return [
        {
            "name": name,
            "type": layer.type,
            "forward_s": f[0],
            "backward_s": b[0],
            "forward_cpu_s": f[1],
            "backward_cpu_s": b[1],
        }
        for name, layer, f, b in zip(net._layer_names, net.layers, fwd, bwd)
    ]


def python_layer_shapes(net):
    """Python layers of a net after a backward pass: bottoms (shape, needs_diff), tops.

    A bottom needs a gradient iff backward left a nonzero diff in it (Caffe zero-fills
    diffs and skips bottoms that need none).
    """
    layers = []
    for i, (name, layer) in enumerate(zip(net._layer_names, net.layers)):
        if layer.type != "Python":
            continue
        blobs = [net._blobs[b] for b in net._bottom_ids(i)]
        layers.append(
            {
                "name": name,
                "type": type(layer).__name__,
                "bottoms": [
                    {"shape": tuple(b.shape), "needs_diff": bool(b.diff.any())} for b in blobs
                ],
                "tops": [tuple(net._blobs[t].shape) for t in net._top_ids(i)],
            }
        )
    return layers
