"""CPU against GPU for `make gpu-check`: the devices, one batch of the real data layer, the
joint net's losses and gradients in each mode from the same weights, and its GPU time."""

import json
import subprocess
import time

import caffe
import numpy as np

from benchmarks import stats
from benchmarks.caffe_nets import (
    data_layer_net,
    fill_inputs,
    forward_backward,
    net_from_param,
    time_layers,
)
from transfernet import cuda, nets, verbosity

TOLERANCE = 1e-3  # relative difference, CPU vs GPU, of every loss and parameter gradient
TOPS = ("data", "label", "seg_label")


def device_query(gpus):
    """The lines `caffe device_query` prints for each GPU (glog prefixes removed)."""
    lines = []
    for gpu in gpus:
        run = subprocess.run(
            ["caffe", "device_query", "-gpu", str(gpu)],
            text=True,
            capture_output=True,
            env=verbosity.logging_env(),
        )
        if run.returncode != 0:
            raise RuntimeError("caffe device_query -gpu %d failed:\n%s" % (gpu, run.stderr[-2000:]))
        lines += [line.split("] ", 1)[-1] for line in run.stderr.splitlines() if "] " in line]
    return lines


def one_batch(cfg, batch):
    """{top: array} of the joint net's first training batch (its SourceTargetData layer)."""
    data = nets.joint_train(cfg, batch=batch).layer[0]
    net = data_layer_net(dict(json.loads(data.python_param.param_str), workers=0))
    net.forward()
    out = {top: net.blobs[name].data.copy() for top, name in zip(TOPS, net.outputs)}
    net.layers[0].close()
    return out


def losses_and_gradients(net, inputs):
    """Losses {name: value} and parameter gradients {"layer/i": array} of one forward +
    backward of `net` (Input layers) on `inputs`."""
    fill_inputs(net, inputs)
    net.clear_param_diffs()
    outputs = forward_backward(net)
    return (
        {name: float(value) for name, value in outputs.items()},
        {
            "%s/%d" % (layer, i): blob.diff.copy()
            for layer, blobs in net.params.items()
            for i, blob in enumerate(blobs)
        },
    )


def relative_difference(reference, other):
    """||other - reference|| / ||reference|| (0 if both are 0, inf if only reference is)."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    scale, diff = np.linalg.norm(reference), np.linalg.norm(other - reference)
    if scale == 0:
        return 0.0 if diff == 0 else float("inf")
    return float(diff / scale)


def compare(cpu, gpu):
    """{"losses": {name: rel}, "gradients": {name: rel}, "worst": (kind, name, rel),
    "ok": bool} of two losses_and_gradients results."""
    out = {
        kind: {name: relative_difference(ref[name], other[name]) for name in ref}
        for kind, ref, other in (("losses", cpu[0], gpu[0]), ("gradients", cpu[1], gpu[1]))
    }
    out["worst"] = max(
        ((kind, name, rel) for kind in ("losses", "gradients") for name, rel in out[kind].items()),
        key=lambda t: t[2],
    )
    out["ok"] = out["worst"][2] <= TOLERANCE
    return out


def set_mode(mode, gpu):
    """Caffe's mode: "gpu" (on device `gpu`) or "cpu"."""
    if mode == "gpu":
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()


def check_cpu_gpu(param, inputs, weights, gpu=0, modes=("cpu", "gpu")):
    """One forward + backward of the TRAIN net `param` (a NetParameter with Input layers) in
    each of `modes` from the same random weights (Caffe's fillers, seed 0, in the first mode;
    saved to `weights` and loaded in the others), compared with the first; returns
    (comparison, results, seconds per mode)."""
    results, seconds = [], []
    for i, mode in enumerate(modes):
        set_mode(mode, gpu)
        if i == 0:
            caffe.set_random_seed(0)
            net = net_from_param(param, caffe.TRAIN)
            net.save(weights)
        else:
            net = net_from_param(param, caffe.TRAIN, weights)
        start = time.perf_counter()
        results.append(losses_and_gradients(net, inputs))
        seconds.append(time.perf_counter() - start)
        del net
    return compare(*results), results, seconds


def time_joint_gpu(param, weights, inputs, gpu, iterations):
    """Per-layer GPU seconds of a forward + backward of the TRAIN net `param` on `inputs`; the
    total and the Python layers' share."""
    set_mode("gpu", gpu)
    net = net_from_param(param, caffe.TRAIN, weights)
    fill_inputs(net, inputs)
    rows = time_layers(net, iterations, sync=cuda.synchronize)
    total = sum(r["forward_s"] + r["backward_s"] for r in rows)
    return {
        "layers": rows,
        "seconds": total,
        "python_layer_share": stats.python_layer_share(rows),
    }
