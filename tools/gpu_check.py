#!/usr/bin/env python3
"""GPU self-check of the CUDA Caffe runtime (`make gpu-check`): right answers, and how fast.

    python3 tools/gpu_check.py [--builtin data/builtin] [--out runs/gpu-check/gpu-check.json]
                               [--gpu 0]

1. `caffe device_query` of every GPU;
2. the paper-size joint net (Eq. 9) with random weights (Caffe's seeded fillers), one forward
   + backward of the same batch of 4 from the built-in dataset (the real data layer on 330-px
   LMDBs) on the CPU and on the GPU, from the same weights: the relative difference of each
   loss and of each parameter gradient must be at most 1e-3;
3. the GPU time of one joint forward + backward at batch 4, layer by layer (synchronised),
   and the Python layers' share;
4. seg_deploy's time per image with K = 1, 2, 3 labels in one forward (and as K one-label
   forwards).
Prints a table and writes the JSON. Exit status 1 if the comparison fails or there is no GPU
(it says why in one line), 0 otherwise. Needs the built-in dataset (`make builtin`) and about
6 GB of host memory (the CPU pass).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("GLOG_minloglevel", "2")

import caffe  # noqa: E402
import numpy as np  # noqa: E402
from data_layer import net_prototxt  # noqa: E402

from tools.bench import bench_build  # noqa: E402
from transfernet import config, cuda, nets, performance  # noqa: E402

BATCH = 4
TOLERANCE = 1e-3  # relative difference, CPU vs GPU, of every loss and parameter gradient
KS = (1, 2, 3)
TOPS = ("data", "label", "seg_label")


def device_query(gpus):
    """The lines `caffe device_query` prints for each GPU (glog prefixes removed)."""
    lines = []
    for gpu in gpus:
        run = subprocess.run(
            ["caffe", "device_query", "-gpu", str(gpu)],
            text=True,
            capture_output=True,
            env=dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1"),
        )
        if run.returncode != 0:
            raise RuntimeError("caffe device_query -gpu %d failed:\n%s" % (gpu, run.stderr[-2000:]))
        lines += [line.split("] ", 1)[-1] for line in run.stderr.splitlines() if "] " in line]
    return lines


def one_batch(cfg, batch):
    """{top: array} of the joint net's first training batch (its SourceTargetData layer)."""
    data = nets.joint_train(cfg, batch=batch).layer[0]
    params = dict(json.loads(data.python_param.param_str), workers=0)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
        f.write(net_prototxt(params))
        f.flush()
        net = caffe.Net(f.name, caffe.TRAIN)
    net.forward()
    out = {top: net.blobs[name].data.copy() for top, name in zip(TOPS, net.outputs)}
    net.layers[0].close()
    return out


def forward_backward(net, inputs):
    """Losses {name: value} and parameter gradients {"layer/i": array} of one forward +
    backward of `net` (Input layers) on `inputs`."""
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    net.clear_param_diffs()
    outputs = net.forward()
    net.backward()
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
    "ok": bool} of two forward_backward results."""
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
    if mode == "gpu":
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()


def write_joint_inputs(cfg, batch, folder):
    """The joint net with Input layers instead of the data layer, as a prototxt in folder."""
    proto = os.path.join(folder, "joint_inputs.prototxt")
    with open(proto, "w") as f:
        f.write(str(nets.joint_train(cfg, batch=batch, input_layers=True)))
    return proto


def check_cpu_gpu(proto, inputs, weights, gpu=0, modes=("cpu", "gpu")):
    """One forward + backward of `proto` in each of `modes` from the same random weights
    (Caffe's fillers, seed 0, in the first mode; saved to `weights` and loaded in the
    others), compared with the first; returns (comparison, results, seconds per mode)."""
    results, seconds = [], []
    for i, mode in enumerate(modes):
        set_mode(mode, gpu)
        if i == 0:
            caffe.set_random_seed(0)
            net = caffe.Net(proto, caffe.TRAIN)
            net.save(weights)
        else:
            net = caffe.Net(proto, caffe.TRAIN, weights=weights)
        start = time.perf_counter()
        results.append(forward_backward(net, inputs))
        seconds.append(time.perf_counter() - start)
        del net
    return compare(*results), results, seconds


def time_joint_gpu(proto, weights, inputs, gpu, iterations):
    """Per-layer GPU seconds of a forward + backward of `proto` on `inputs`; the total and
    the Python layers' share."""
    set_mode("gpu", gpu)
    net = caffe.Net(proto, caffe.TRAIN, weights=weights)
    for name, value in inputs.items():
        net.blobs[name].data[...] = value
    rows = performance.time_layers(net, iterations, sync=cuda.synchronize)
    total = sum(r["forward_s"] + r["backward_s"] for r in rows)
    return {
        "layers": rows,
        "seconds": total,
        "python_layer_share": performance.python_layer_share(rows),
    }


def format_report(result):
    """The table `make gpu-check` prints."""
    c = result["comparison"]
    kind, name, rel = c["worst"]
    lines = [
        "gpu-check: GPU %d; CUDA Caffe: %s" % (result["gpu"], "; ".join(result["cuda"])),
        "",
        "device_query:",
    ] + ["  " + line for line in result["device_query"]]
    lines += [
        "",
        "CPU vs GPU, joint net (paper size), batch %d, same random weights and batch:"
        % result["batch"],
        "  %-44s %12s %10s" % ("", "max rel diff", "bound"),
    ]
    for k in ("losses", "gradients"):
        lines.append(
            "  %-44s %12.3g %10.0e" % ("%s (%d)" % (k, len(c[k])), max(c[k].values()), TOLERANCE)
        )
    lines += [
        "  worst: %s %s %.3g -> %s" % (kind, name, rel, "ok" if c["ok"] else "FAILED"),
        "  losses CPU / GPU: "
        + ", ".join(
            "%s %.6g / %.6g" % (n, result["losses"]["cpu"][n], result["losses"]["gpu"][n])
            for n in sorted(result["losses"]["cpu"])
        ),
        "",
        "%-52s %10s" % ("timing", "seconds"),
    ]
    t = result["timing"]
    lines.append(
        "%-52s %10.4f"
        % (
            "joint forward + backward, batch %d, CPU (one pass)" % result["batch"],
            result["cpu_seconds"],
        )
    )
    lines.append(
        "%-52s %10.4f"
        % ("joint forward + backward, batch %d, GPU (mean)" % result["batch"], t["seconds"])
    )
    lines.append("%-52s %9.1f%%" % ("  of which Python layers", 100 * t["python_layer_share"]))
    d = result["deploy"]
    for k in KS:
        lines.append(
            "%-52s %10.4f" % ("deploy per image, K=%d labels in one forward" % k, d["ours_s"][k])
        )
        lines.append(
            "%-52s %10.4f" % ("deploy per image, K=%d one-label forwards" % k, d["theirs_s"][k])
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--builtin", default="data/builtin", help="built-in dataset (make builtin)")
    p.add_argument("--out", default="runs/gpu-check/gpu-check.json", help="JSON result file")
    p.add_argument("--gpu", type=int, default=0, help="GPU to check against the CPU")
    p.add_argument(
        "--timing-iterations",
        type=int,
        default=5,
        help="timed GPU forward+backward passes (after one warm-up)",
    )
    p.add_argument("--deploy-repeats", type=int, default=6, help="timed deploy rounds")
    a = p.parse_args(argv)
    count, reason = cuda.device_count()
    problem = cuda.check_devices([a.gpu])
    if problem:
        print("gpu-check: %s; nothing checked" % problem, file=sys.stderr)
        return 1
    if not os.path.isdir(os.path.join(a.builtin, "coco")):
        print(
            "gpu-check: built-in dataset %s missing: run `make builtin`" % a.builtin,
            file=sys.stderr,
        )
        return 1
    result = {
        "gpu": a.gpu,
        "gpus": count,
        "batch": BATCH,
        "tolerance": TOLERANCE,
        "cuda": cuda.describe()[:-1],
        "device_query": device_query(range(count)),
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        build = bench_build(a.builtin, os.path.join(tmp, "lmdb"))
        cfg = config.PAPER.with_data(source=build["source"]["path"], target=build["target"]["path"])
        caffe.set_mode_cpu()
        inputs = one_batch(cfg, BATCH)
        proto = write_joint_inputs(cfg, BATCH, tmp)
        weights = os.path.join(tmp, "random.caffemodel")
        comparison, results, seconds = check_cpu_gpu(proto, inputs, weights, a.gpu)
        result.update(
            comparison=comparison,
            cpu_seconds=seconds[0],
            losses={"cpu": results[0][0], "gpu": results[1][0]},
            timing=time_joint_gpu(proto, weights, inputs, a.gpu, a.timing_iterations),
        )
    set_mode("gpu", a.gpu)
    result["deploy"] = performance.bench_deploy(config.PAPER, ks=KS, repeats=a.deploy_repeats)
    print(format_report(result))
    performance.write_json(a.out, result)
    print("wrote %s" % a.out)
    return 0 if comparison["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
