"""The nets measured in this process, each comparison interleaved so that its ratio holds
under the background load of a shared machine; absolute times are only as good as that load
(machine() records /proc/loadavg).

  bench_joint_layers  the paper-size joint net layer by layer: the Python layers' share of the
                      time (target <= 3 %) and their host<->device bytes
  bench_unpool        the joint net with the stock unpooling against the reference Python
                      Unpool layer: time ratio (target <= 1.05) and the bytes before
  bench_deploy        seg_deploy with K labels in one forward against K one-label forwards
                      (the authors' per-label inference; target >= 1.40 at K = 3, no slower
                      at K = 1)
  bench_authors       seconds per VOC-sized image of the authors' protocol: the ETA of
                      `make authors-table`
"""

import gc
import os

import caffe
import numpy as np

from benchmarks import stats
from benchmarks.caffe_nets import (
    clocks,
    fill_joint_inputs,
    forward_backward,
    net_from_param,
    python_layer_shapes,
    time_layers,
)
from benchmarks.inputs import VOC_IMAGE, voc_like_image
from transfernet import inference, nets


def cpu_model(cpuinfo_text):
    """The first 'model name' of /proc/cpuinfo text, or 'unknown'."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "unknown"


def loadavg():
    """The three load averages of /proc/loadavg."""
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def machine():
    """Cores, CPU model and the load average at the time of the call."""
    with open("/proc/cpuinfo") as f:
        model = cpu_model(f.read())
    return {"cores": os.cpu_count(), "cpu_model": model, "loadavg_start": loadavg()}


def joint_net(cfg, **kwargs):
    """The joint net of `cfg` with Input layers at batch 1 (kwargs: unpool_kind), filled."""
    net = net_from_param(nets.joint_train(cfg, batch=1, input_layers=True, **kwargs), caffe.TRAIN)
    fill_joint_inputs(net)
    return net


def bench_joint_layers(cfg, iterations, batches=(4, 1)):
    """Layer times of the joint net (Input layers, batch 1) and the Python layers' share and
    bytes at each of `batches`."""
    net = joint_net(cfg)
    rows = time_layers(net, iterations)
    shapes = python_layer_shapes(net)
    del net
    gc.collect()
    return {
        "layers": rows,
        "python_layer_share": stats.python_layer_share(rows),
        "python_layer_share_cpu": stats.python_layer_share(rows, "_cpu"),
        "forward_s": sum(r["forward_s"] for r in rows),
        "backward_s": sum(r["backward_s"] for r in rows),
        "python_layers": shapes,
        "python_layer_bytes": {
            "batch_%d" % b: stats.python_layer_bytes(shapes, b) for b in batches
        },
    }


def bench_unpool(cfg, rounds=6, batch=4):
    """The joint net (Input layers, batch 1) with the stock unpooling against the same net
    generated with the reference Python Unpool layer, sharing weights.

    Each round times a forward+backward of each net twice, in the order stock, Python,
    Python, stock (so a drifting load hits both alike); the ratio of a round is the stock
    time over the Python time, by CPU time ("time_ratio") and wall time, and its median over
    rounds is the figure (a first round warms up). Also: the unpooling layers' own seconds in
    each net (one layer-by-layer pass) and the Python Unpool net's Python layer bytes at
    `batch` (the "before" of the bytes figure).
    """
    stock = joint_net(cfg)
    python = joint_net(cfg, unpool_kind="python")
    python.share_with(stock)
    spent = []  # per round: (stock wall, stock cpu, python wall, python cpu)
    for rep in range(rounds + 1):
        spent_now = {"stock": np.zeros(2), "python": np.zeros(2)}
        for name in ("stock", "python", "python", "stock"):
            start = clocks()
            forward_backward(stock if name == "stock" else python)
            spent_now[name] += clocks() - start
        if rep:
            spent.append(np.concatenate([spent_now["stock"], spent_now["python"]]))
    t = np.array(spent)
    unpool_layers = {}
    for name, net in (("stock", stock), ("python", python)):
        rows = time_layers(net, 1, warmup=0)
        unpool_layers[name] = sum(
            r["forward_cpu_s"] + r["backward_cpu_s"] for r in rows if r["name"].startswith("unpool")
        )
    shapes = python_layer_shapes(python)
    del stock, python
    gc.collect()
    return {
        "rounds": t.tolist(),
        "time_ratio": stats.median_ratio(t[:, 3], t[:, 1]),
        "time_ratio_wall": stats.median_ratio(t[:, 2], t[:, 0]),
        "time_ratio_ci95": stats.median_ratio_interval(t[:, 3], t[:, 1]),
        "stock_cpu_s": float(np.median(t[:, 1])) / 2,
        "python_cpu_s": float(np.median(t[:, 3])) / 2,
        "unpool_layers_cpu_s": unpool_layers,
        "python_unpool_layer_bytes": stats.python_layer_bytes(shapes, batch),
    }


def bench_deploy(cfg, ks=(1, 2, 3), repeats=6, seed=0, k1_factor=3):
    """Seconds of segmenting one image for K labels, both ways, and the speedups.

    ours: one seg_deploy forward with K labels (transfernet.inference.forward_labels).
    theirs: a seg_deploy net with one label, run K times (the authors' per-label method).
    Each round times ours(K) and theirs(K) back to back for every K (alternating which goes
    first), so the two see the same load; the speedup is the median over rounds of
    theirs / ours, by CPU time ("speedup") and by wall time ("speedup_wall"), with its 95 %
    bootstrap interval ("speedup_ci95", CPU time). K = 1, where both ways are the same forward
    and only noise separates them, gets k1_factor times the rounds (it is the cheapest).
    Seconds reported are medians too. A first round warms up. Also the Python layers'
    bytes per image (one forward, "python_layer_bytes_k3") at the largest K.
    """
    ours_net = net_from_param(nets.seg_deploy(cfg, 1), caffe.TEST)
    theirs_net = net_from_param(nets.seg_deploy(cfg, 1), caffe.TEST)
    theirs_net.share_with(ours_net)
    crop = cfg.architecture.crop
    blob = np.random.RandomState(seed).normal(0, 50, (1, 3, crop, crop))
    ids = [21, 35, 60]
    ways = {
        "ours": lambda k: inference.forward_labels(ours_net, blob, ids[:k]),
        "theirs": lambda k: [inference.forward_labels(theirs_net, blob, [c]) for c in ids[:k]],
    }
    rounds = {k: [] for k in ks}  # (ours wall, ours cpu, theirs wall, theirs cpu)
    for rep in range(k1_factor * repeats + 1):
        for k in [k for k in ks if rep <= repeats or k == 1]:
            spent = {}
            for way in sorted(ways, reverse=rep % 2 == 1):  # alternate who goes first
                start = clocks()
                ways[way](k)
                spent[way] = clocks() - start
            if rep:
                rounds[k].append(np.concatenate([spent["ours"], spent["theirs"]]))
    ways["ours"](max(ks))
    layer_bytes = stats.python_layer_bytes(python_layer_shapes(ours_net))
    ours_net = theirs_net = None  # the lambdas hold them: free both nets before the rest
    gc.collect()
    t = {k: np.array(v) for k, v in rounds.items()}
    out = {
        "rounds": {k: v.tolist() for k, v in t.items()},
        "python_layer_bytes_k%d" % max(ks): layer_bytes,
    }
    for col, key in enumerate(("ours_s", "ours_cpu_s", "theirs_s", "theirs_cpu_s")):
        out[key] = {k: float(np.median(t[k][:, col])) for k in ks}
    out["speedup"] = {k: stats.median_ratio(t[k][:, 1], t[k][:, 3]) for k in ks}
    out["speedup_wall"] = {k: stats.median_ratio(t[k][:, 0], t[k][:, 2]) for k in ks}
    out["speedup_ci95"] = {k: stats.median_ratio_interval(t[k][:, 1], t[k][:, 3]) for k in ks}
    return out


def bench_authors(cfg, ks=(1, 2), rounds=3, seed=0):
    """Seconds per VOC-sized image of the authors' inference protocol (tools/infer.py
    --protocol authors --workers 0) for K labels: the forward (their preprocessing, one
    seg_deploy forward for the K labels) and the post-processing (background halved, bicubic
    resizing, the CRF per label, the label map); medians over rounds after a warm-up round,
    wall and CPU time. Seeded filler weights: an imported model computes the same."""
    caffe.set_random_seed(seed)
    net = net_from_param(nets.seg_deploy(cfg, 1), caffe.TEST)
    image, labels = voc_like_image(np.random.RandomState(seed))
    ids = sorted(set(np.unique(labels)) - {0})
    spent = {k: [] for k in ks}  # (forward wall, forward CPU, finish wall, finish CPU)
    for rep in range(rounds + 1):
        for k in ks:
            start = clocks()
            forwarded = inference.forward(net, image, ids[:k], "authors")
            middle = clocks()
            inference.finish(image, *forwarded, use_crf=True, protocol="authors")
            if rep:
                spent[k].append(np.concatenate([middle - start, clocks() - middle]))
    out = {"image": list(VOC_IMAGE), "rounds": rounds}
    for col, key in enumerate(("forward_s", "forward_cpu_s", "finish_s", "finish_cpu_s")):
        out[key] = {k: float(np.median(np.array(spent[k])[:, col])) for k in ks}
    out["seconds"] = {k: float(np.median([r[0] + r[2] for r in spent[k]])) for k in ks}
    return out
