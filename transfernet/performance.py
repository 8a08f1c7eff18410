"""Performance measurements of `make bench`, one function per figure.

Every comparison is measured in the same process, interleaved, so that the ratios hold under
the background load of a shared machine; absolute times are only as good as that load
(machine() records /proc/loadavg). Pure helpers (python_layer_share, python_layer_bytes,
median_ratio, format_report) are separated from the timed code so they can be tested.

Figures:
  a. per-layer forward/backward time of the paper-size joint net (Input layers, batch 1) and
     the share spent in Python layers;             target: share <= 3 %
  b. seg_deploy with K labels in one forward (encoder once) against K forwards with one label
     each (the authors' per-label inference);      target: >= 1.40 at K = 3, >= 1.0 at K = 1
  c. SourceTargetData images/s at 320x320 from 330x330 records, 1 and 2 workers
     (measured by tools/bench.py, which runs the data layer);
                                                   target: >= 500 images/s with 2 workers
  d. comp6 evaluation of 1,449 500x375 PNG pairs, reading included; target: <= 3 s
  e. LMDB build rate of the built-in dataset at 330x330 (tools/bench.py, which runs the
     builders); peak RSS of a paper-size joint training step at batch 8 (one solver step in
     a child process).
Section 3: bytes each Python layer moves between host and device per iteration.
Issue 12 (unpooling from stock layers): the Python layers' bytes of the paper-size joint
net at batch 4 with the stock unpooling and with the reference Python Unpool layer (both
nets measured in the same run), and of the deploy net per image at K = 3;
target: <= 13 MB at batch 4; the joint forward+backward time with the stock unpooling over
the time with the Python Unpool;   target: <= 1.05.
Issue 12, section 3: f. tools/infer.py --crf images/s with 0 and 2 worker processes;
                                                   target: >= 1.6x with 2 workers
Issue 23: g. seconds per VOC-sized image of the authors' protocol at paper size, K = 1 and 2
labels (forward and post-processing): the ETA of `make authors-table`.
"""

import gc
import json
import os
import re
import resource
import subprocess
import sys
import time

import numpy as np

from transfernet import verbosity
from transfernet.atomic import write_text
from transfernet.classes import IGNORE
from transfernet.fileio import write_label_png

TARGETS = {  # (comparison, bound)
    "python_layer_share": ("<=", 0.03),
    # K = 1: ours and the per-label method are the same forward, so the ratio is 1 up to
    # timing noise; "no slower" = the 95 % interval of the median ratio reaches 1.
    "deploy_speedup_k1_ci95_high": (">=", 1.0),
    "deploy_speedup_k3": (">=", 1.40),
    "data_layer_images_per_s_2workers": (">=", 500.0),
    "eval_seconds_1449": ("<=", 3.0),
    "python_layer_mb_joint_batch4": ("<=", 13.0),
    "stock_unpool_time_ratio": ("<=", 1.05),
    "infer_crf_speedup_2workers": (">=", 1.6),
}
FLOAT_BYTES = 4  # every Caffe blob is float32
EVAL_SIZE = (375, 500)  # (H, W) of the generated VOC-like label maps
# Python layer bottoms whose data the layer never reads (only their shape), and layers whose
# tops are constants written only when their shape changes: neither moves per iteration.
SHAPE_ONLY_BOTTOMS = {"Unpool": (2,), "UnpoolConstants": (0, 1)}
CONSTANT_TOPS = ("UnpoolConstants",)
MB = 2**20


# -- machine -------------------------------------------------------------------------------


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


# -- pure helpers --------------------------------------------------------------------------


def python_layer_share(rows, clock=""):
    """Fraction of the forward+backward time spent in layers of type "Python".

    rows: [{"type", "forward_s", "backward_s"}, ...] (one per layer); clock "_cpu" uses
    "forward_cpu_s" and "backward_cpu_s" instead.
    """
    keys = ("forward%s_s" % clock, "backward%s_s" % clock)
    total = sum(r[keys[0]] + r[keys[1]] for r in rows)
    python = sum(r[keys[0]] + r[keys[1]] for r in rows if r["type"] == "Python")
    if total <= 0:
        raise ValueError("python_layer_share: total time must be positive, got %r" % total)
    return python / total


def with_batch(shape, batch):
    """`shape` with its first (batch) dimension replaced by `batch`."""
    return (batch,) + tuple(shape[1:])


def python_layer_bytes(layers, batch=None):
    """Host<->device bytes of each Python layer per iteration in a GPU net.

    layers: [{"name", "type", "bottoms": [{"shape", "needs_diff"}], "tops": [shape]}].
    Forward moves the data of every bottom the layer reads (device -> host; bottoms listed
    in SHAPE_ONLY_BOTTOMS for the type are only reshaped against) and every top (host ->
    device; none for a type in CONSTANT_TOPS). Backward, run only if some bottom needs a
    gradient, moves the top diffs and the diffs of the bottoms that need one; bottom data is
    still valid on the host from forward.
    batch: replace every blob's first dimension (the joint net's blobs all lead with it).
    Returns {name: {"forward", "backward", "total"}} in bytes.
    """
    out = {}
    for layer in layers:

        def size(shape):
            shape = with_batch(shape, batch) if batch else tuple(shape)
            return FLOAT_BYTES * int(np.prod(shape))

        skip = SHAPE_ONLY_BOTTOMS.get(layer["type"], ())
        bottoms, tops = layer["bottoms"], layer["tops"]
        if layer["type"] in CONSTANT_TOPS:
            tops = []
        forward = sum(size(b["shape"]) for i, b in enumerate(bottoms) if i not in skip) + sum(
            size(t) for t in tops
        )
        needed = [size(b["shape"]) for b in bottoms if b["needs_diff"]]
        backward = sum(needed) + sum(size(t) for t in tops) if needed else 0
        out[layer["name"]] = {"forward": forward, "backward": backward, "total": forward + backward}
    return out


def total_mb(layer_bytes):
    """Sum of python_layer_bytes' totals, in MB (2^20 bytes)."""
    return sum(v["total"] for v in layer_bytes.values()) / MB


def median_ratio(ours, theirs):
    """Median over rounds of theirs[i] / ours[i] (seconds measured side by side)."""
    return float(np.median(np.asarray(theirs, float) / np.asarray(ours, float)))


def median_ratio_interval(ours, theirs, confidence=0.95, resamples=4000, seed=0):
    """Percentile-bootstrap interval (low, high) of median_ratio over the paired rounds."""
    ratios = np.asarray(theirs, float) / np.asarray(ours, float)
    rng = np.random.RandomState(seed)
    medians = np.median(ratios[rng.randint(0, len(ratios), (resamples, len(ratios)))], axis=1)
    tail = 100 * (1 - confidence) / 2
    return float(np.percentile(medians, tail)), float(np.percentile(medians, 100 - tail))


def check_target(key, value):
    """True/False against TARGETS[key], None for a figure without a target."""
    if key not in TARGETS:
        return None
    op, bound = TARGETS[key]
    return value <= bound if op == "<=" else value >= bound


# -- a. per-layer timing of the joint net -------------------------------------------------


def _fill_joint_inputs(net, seed=0):
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


def _clocks():
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
            start = _clocks()
            net._forward(i, i)
            sync()
            fwd[i] += keep * (_clocks() - start)
        for i in reversed(range(n)):
            start = _clocks()
            net._backward(i, i)
            sync()
            bwd[i] += keep * (_clocks() - start)
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


def bench_joint_layers(cfg, iterations, batches=(4, 1)):
    """Figure a and the bytes of section 3 on the joint net with Input layers, batch 1."""
    import caffe

    from transfernet import nets

    net = nets.instantiate(nets.joint_train(cfg, batch=1, input_layers=True), caffe.TRAIN)
    _fill_joint_inputs(net)
    rows = time_layers(net, iterations)
    shapes = python_layer_shapes(net)
    del net
    gc.collect()
    return {
        "layers": rows,
        "python_layer_share": python_layer_share(rows),
        "python_layer_share_cpu": python_layer_share(rows, "_cpu"),
        "forward_s": sum(r["forward_s"] for r in rows),
        "backward_s": sum(r["backward_s"] for r in rows),
        "python_layers": shapes,
        "python_layer_bytes": {"batch_%d" % b: python_layer_bytes(shapes, b) for b in batches},
    }


def forward_backward(net):
    net.forward()
    net.backward()


def bench_unpool(cfg, rounds=6, batch=4):
    """Issue 12: the paper-size joint net (Input layers, batch 1) with the stock unpooling
    against the same net generated with the reference Python Unpool layer, sharing weights.

    Each round times a forward+backward of each net twice, in the order stock, Python,
    Python, stock (so a drifting load hits both alike); the ratio of a round is the stock
    time over the Python time, by CPU time ("time_ratio") and wall time, and its median over
    rounds is the figure (a first round warms up). Also: the unpooling layers' own seconds in
    each net (one layer-by-layer pass) and the Python Unpool net's Python layer bytes at
    `batch` (the "before" of the bytes figure).
    """
    import caffe

    from transfernet import nets

    stock = nets.instantiate(nets.joint_train(cfg, batch=1, input_layers=True), caffe.TRAIN)
    python = nets.instantiate(
        nets.joint_train(cfg, batch=1, input_layers=True, unpool_kind="python"), caffe.TRAIN
    )
    python.share_with(stock)
    for net in (stock, python):
        _fill_joint_inputs(net)
    spent = []  # per round: (stock wall, stock cpu, python wall, python cpu)
    for rep in range(rounds + 1):
        clocks = {"stock": np.zeros(2), "python": np.zeros(2)}
        for name in ("stock", "python", "python", "stock"):
            start = _clocks()
            forward_backward(stock if name == "stock" else python)
            clocks[name] += _clocks() - start
        if rep:
            spent.append(np.concatenate([clocks["stock"], clocks["python"]]))
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
        "time_ratio": median_ratio(t[:, 3], t[:, 1]),
        "time_ratio_wall": median_ratio(t[:, 2], t[:, 0]),
        "time_ratio_ci95": median_ratio_interval(t[:, 3], t[:, 1]),
        "stock_cpu_s": float(np.median(t[:, 1])) / 2,
        "python_cpu_s": float(np.median(t[:, 3])) / 2,
        "unpool_layers_cpu_s": unpool_layers,
        "python_unpool_layer_bytes": python_layer_bytes(shapes, batch),
    }


# -- b. deploy: K labels at once against K separate forwards ------------------------------


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
    import caffe

    from transfernet import inference, nets

    ours_net = nets.instantiate(nets.seg_deploy(cfg, 1), caffe.TEST)
    theirs_net = nets.instantiate(nets.seg_deploy(cfg, 1), caffe.TEST)
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
                start = _clocks()
                ways[way](k)
                spent[way] = _clocks() - start
            if rep:
                rounds[k].append(np.concatenate([spent["ours"], spent["theirs"]]))
    ways["ours"](max(ks))
    layer_bytes = python_layer_bytes(python_layer_shapes(ours_net))
    ours_net = theirs_net = None  # the lambdas hold them: free both nets before the rest
    gc.collect()
    t = {k: np.array(v) for k, v in rounds.items()}
    out = {
        "rounds": {k: v.tolist() for k, v in t.items()},
        "python_layer_bytes_k%d" % max(ks): layer_bytes,
    }
    for col, key in enumerate(("ours_s", "ours_cpu_s", "theirs_s", "theirs_cpu_s")):
        out[key] = {k: float(np.median(t[k][:, col])) for k in ks}
    out["speedup"] = {k: median_ratio(t[k][:, 1], t[k][:, 3]) for k in ks}
    out["speedup_wall"] = {k: median_ratio(t[k][:, 0], t[k][:, 2]) for k in ks}
    out["speedup_ci95"] = {k: median_ratio_interval(t[k][:, 1], t[k][:, 3]) for k in ks}
    return out


# -- d. evaluation ------------------------------------------------------------------------


def label_map_pair(rng, shape=EVAL_SIZE):
    """A VOC-like ground truth (objects of ids 1..20 with a 255 border) and a prediction
    (the objects shifted by a few pixels, one of them mislabelled)."""
    import cv2

    gt = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for _ in range(rng.randint(1, 4)):
        cls = int(rng.randint(1, 21))
        center = (int(rng.randint(0, shape[1])), int(rng.randint(0, shape[0])))
        axes = (int(rng.randint(20, 150)), int(rng.randint(20, 120)))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(gt, center, axes, angle, 0, 360, cls, -1)
        cv2.ellipse(gt, center, axes, angle, 0, 360, IGNORE, 4)
        shifted = (center[0] + int(rng.randint(-8, 9)), center[1] + int(rng.randint(-8, 9)))
        cv2.ellipse(
            pred,
            shifted,
            axes,
            angle,
            0,
            360,
            cls if rng.rand() < 0.8 else int(rng.randint(1, 21)),
            -1,
        )
    return gt, pred


def write_eval_pairs(folder, count, seed=0):
    """Write <folder>/gt/<id>.png and <folder>/pred/<id>.png (VOC palette PNGs); ids."""
    rng = np.random.RandomState(seed)
    ids = ["%06d" % i for i in range(count)]
    for image_id in ids:
        for sub, label_map in zip(("gt", "pred"), label_map_pair(rng)):
            write_label_png(os.path.join(folder, sub, image_id + ".png"), label_map)
    return ids


def bench_eval(folder, count, workers=2):
    """Seconds of transfernet.score.evaluate over `count` generated 500x375 pairs."""
    from transfernet import score

    ids = write_eval_pairs(folder, count)
    start = _clocks()
    result = score.evaluate(
        os.path.join(folder, "pred"), os.path.join(folder, "gt"), ids, workers=workers
    )
    seconds, cpu = _clocks() - start
    return {"images": count, "seconds": seconds, "cpu_seconds": cpu, "mean_iou": result["mean_iou"]}


# -- e. peak memory of a joint training step ----------------------------------------------


def joint_step(source, target, batch, folder):
    """One Adam step of the paper-size joint net (data layer on the given datasets) in this
    process; prints {"seconds", "vmhwm_mb"} as JSON. Run it in a child (peak_rss_joint)."""
    import caffe
    from caffe.proto import caffe_pb2

    from transfernet import config, nets

    cfg = config.PAPER.with_data(source=source, target=target)
    net_path = os.path.join(folder, "joint_train.prototxt")
    solver_path = os.path.join(folder, "solver.prototxt")
    write_text(net_path, str(nets.joint_train(cfg, batch=batch)))
    stage = cfg.schedule.stages["joint"]
    solver = caffe_pb2.SolverParameter(
        net=net_path,
        type="Adam",
        base_lr=stage.base_lr,
        momentum=0.9,
        momentum2=0.999,
        lr_policy="fixed",
        max_iter=1,
        display=0,
        snapshot_after_train=False,
        random_seed=0,
    )
    write_text(solver_path, str(solver))
    caffe.set_mode_cpu()
    sgd = caffe.get_solver(solver_path)
    start = time.perf_counter()
    sgd.step(1)
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as f:
        hwm = [line.split()[1] for line in f if line.startswith("VmHWM:")][0]
    sgd.net.layers[0].close()
    print(json.dumps({"seconds": seconds, "vmhwm_mb": int(hwm) / 1024.0}))


def peak_rss_joint(source, target, batch, folder):
    """Run joint_step in a child process; {"seconds", "vmhwm_mb"} (main process only: the
    data layer's worker processes are not included)."""
    code = "from transfernet import performance; performance.joint_step(%r, %r, %d, %r)" % (
        source,
        target,
        batch,
        folder,
    )
    env = dict(os.environ, GLOG_minloglevel=verbosity.QUIET)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        env=env,
    )
    if proc.returncode:
        raise RuntimeError(
            "joint training step failed (exit %d):\n%s" % (proc.returncode, proc.stderr[-3000:])
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- report -------------------------------------------------------------------------------

# -- f. inference workers -----------------------------------------------------------------

INFER_IMAGE_SIZE = (375, 500)  # (H, W): a VOC image
INFER_SPEED = re.compile(r"\(([\d.]+) s, ([\d.]+) images/s\)")


def voc_like_image(rng):
    """A 500x375 BGR image (blurred noise) with 2 or 3 filled ellipses of VOC classes, and its
    label map."""
    import cv2

    image = rng.randint(0, 256, INFER_IMAGE_SIZE + (3,)).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 4)
    labels = np.zeros(INFER_IMAGE_SIZE, np.uint8)
    for cls in rng.choice(np.arange(1, 21), rng.randint(2, 4), replace=False):
        centre = (int(rng.randint(50, 450)), int(rng.randint(50, 325)))
        axes = (int(rng.randint(30, 120)), int(rng.randint(30, 100)))
        colour = tuple(int(c) for c in rng.randint(0, 256, 3))
        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1)
        cv2.ellipse(labels, centre, axes, 0, 0, 360, int(cls), -1)
    return image, labels


def write_infer_inputs(folder, count, seed=0):
    """`count` 500x375 JPEG images, each with a ground-truth PNG of 2 or 3 VOC classes, and
    their list; returns (list, image folder, ground-truth folder)."""
    import cv2

    rng = np.random.RandomState(seed)
    images, gt = os.path.join(folder, "images"), os.path.join(folder, "gt")
    os.makedirs(images)
    os.makedirs(gt)
    ids = ["%06d" % i for i in range(count)]
    for image_id in ids:
        image, labels = voc_like_image(rng)
        cv2.imwrite(os.path.join(images, image_id + ".jpg"), image)
        write_label_png(os.path.join(gt, image_id + ".png"), labels)
    write_text(os.path.join(folder, "list.txt"), "".join(i + "\n" for i in ids))
    return os.path.join(folder, "list.txt"), images, gt


def bench_infer_workers(folder, count=12, rounds=2, workers=(0, 2), seed=0):
    """images/s of tools/infer.py --crf with ground-truth labels (2-3 per image) on
    `count` VOC-sized images, the tiny seg_deploy net with seeded filler weights, for each
    worker count, the runs of a round side by side; speedup: median over rounds of
    images/s with workers[-1] over images/s with workers[0]. infer.py times its image
    loop (not its start-up). cores_used: CPU seconds of each run (its workers included) per
    second of its wall time, which shows how much of the machine other work left it."""
    import caffe

    from transfernet import config

    listing, images, gt = write_infer_inputs(folder, count, seed)
    caffe.set_random_seed(seed)
    model = config.TINY.layout.model("seg_deploy")
    weights = os.path.join(folder, "seg_deploy.caffemodel")
    caffe.Net(model, caffe.TEST).save(weights)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rates, cores = {w: [] for w in workers}, {w: [] for w in workers}
    for r in range(rounds):
        for w in workers:
            out = os.path.join(folder, "pred_round%d_workers%d" % (r, w))
            start, cpu = time.perf_counter(), _children_cpu()
            proc = subprocess.run(
                [
                    sys.executable,
                    "tools/infer.py",
                    "--config",
                    "tiny",
                    "--weights",
                    weights,
                    "--list",
                    listing,
                    "--root",
                    images,
                    "--gt-labels",
                    gt,
                    "--crf",
                    "--workers",
                    str(w),
                    "--out",
                    out,
                ],
                cwd=root,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                universal_newlines=True,
            )
            if proc.returncode:
                raise RuntimeError(
                    "tools/infer.py --workers %d failed (exit %d):\n%s"
                    % (w, proc.returncode, proc.stderr[-3000:])
                )
            cores[w].append((_children_cpu() - cpu) / (time.perf_counter() - start))
            rates[w].append(float(INFER_SPEED.search(proc.stdout).group(2)))
    return {
        "images": count,
        "images_per_s": rates,
        "cores_used": cores,
        "speedup": median_ratio(rates[workers[0]], rates[workers[-1]]),
    }


# -- g. the authors' protocol at paper size ----------------------------------------------


def bench_authors(cfg, ks=(1, 2), rounds=3, seed=0):
    """Seconds per VOC-sized image of the authors' inference protocol (tools/infer.py
    --protocol authors --workers 0) for K labels: the forward (their preprocessing, one
    seg_deploy forward for the K labels) and the post-processing (background halved, bicubic
    resizing, the CRF per label, the label map); medians over rounds after a warm-up round,
    wall and CPU time. Seeded filler weights: an imported model computes the same."""
    import caffe

    from transfernet import inference, nets

    caffe.set_random_seed(seed)
    net = nets.instantiate(nets.seg_deploy(cfg, 1), caffe.TEST)
    image, labels = voc_like_image(np.random.RandomState(seed))
    ids = sorted(set(np.unique(labels)) - {0})
    spent = {k: [] for k in ks}  # (forward wall, forward CPU, finish wall, finish CPU)
    for rep in range(rounds + 1):
        for k in ks:
            start = _clocks()
            forwarded = inference.forward(net, image, ids[:k], "authors")
            middle = _clocks()
            inference.finish(image, *forwarded, use_crf=True, protocol="authors")
            if rep:
                spent[k].append(np.concatenate([middle - start, _clocks() - middle]))
    out = {"image": list(INFER_IMAGE_SIZE), "rounds": rounds}
    for col, key in enumerate(("forward_s", "forward_cpu_s", "finish_s", "finish_cpu_s")):
        out[key] = {k: float(np.median(np.array(spent[k])[:, col])) for k in ks}
    out["seconds"] = {k: float(np.median([r[0] + r[2] for r in spent[k]])) for k in ks}
    return out


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summary(results):
    """The headline figures (flat keys of bench.json) from the measurement results."""
    deploy, data = results["deploy"], results["data_layer"]
    out = {
        "python_layer_share": results["joint"]["python_layer_share"],
        "python_layer_share_cpu": results["joint"]["python_layer_share_cpu"],
        "joint_forward_backward_s_batch1": (
            results["joint"]["forward_s"] + results["joint"]["backward_s"]
        ),
        "deploy_speedup_k1": deploy["speedup"][1],
        "deploy_speedup_k1_ci95_low": deploy["speedup_ci95"][1][0],
        "deploy_speedup_k1_ci95_high": deploy["speedup_ci95"][1][1],
        "deploy_speedup_k2": deploy["speedup"][2],
        "deploy_speedup_k3": deploy["speedup"][3],
        "deploy_speedup_wall_k1": deploy["speedup_wall"][1],
        "deploy_speedup_wall_k3": deploy["speedup_wall"][3],
        "data_layer_images_per_s_1worker": data["images_per_s"][1],
        "data_layer_images_per_s_2workers": data["images_per_s"][2],
        "data_layer_images_per_cpu_s_inprocess": data["per_cpu_s_inprocess"],
        "eval_seconds_1449": results["eval"]["seconds"],
        "eval_cpu_seconds_1449": results["eval"]["cpu_seconds"],
        "lmdb_build_records_per_s_source": results["build"]["source"]["records_per_s"],
        "lmdb_build_records_per_s_target": results["build"]["target"]["records_per_s"],
        "peak_rss_mb_joint_train": results["rss"]["vmhwm_mb"],
        "joint_train_step_s_batch8": results["rss"]["seconds"],
        # the GPU-readiness figures: Python layers' host<->device traffic, unpooling time
        "python_layer_mb_joint_batch4": total_mb(results["joint"]["python_layer_bytes"]["batch_4"]),
        "python_layer_mb_joint_batch4_python_unpool": total_mb(
            results["unpool"]["python_unpool_layer_bytes"]
        ),
        "python_layer_mb_deploy_k3": total_mb(deploy["python_layer_bytes_k3"]),
        "stock_unpool_time_ratio": results["unpool"]["time_ratio"],
        "stock_unpool_time_ratio_wall": results["unpool"]["time_ratio_wall"],
    }
    if "infer_workers" in results:
        out["infer_crf_speedup_2workers"] = results["infer_workers"]["speedup"]
    if "authors" in results:
        for k, seconds in sorted(results["authors"]["seconds"].items()):
            out["authors_deploy_seconds_per_image_k%d" % k] = seconds
    return out


def format_report(bench):
    """Plain-text tables: headline figures with targets, Python layers, slowest layers."""
    lines = [
        "machine: %d cores, %s; loadavg start %s, end %s"
        % (
            bench["machine"]["cores"],
            bench["machine"]["cpu_model"],
            bench["machine"]["loadavg_start"],
            bench["machine"]["loadavg_end"],
        ),
        "",
        "%-40s %12s  %-10s %s" % ("figure", "value", "target", "met"),
    ]
    for key, value in bench["summary"].items():
        met = check_target(key, value)
        target = "%s %g" % TARGETS[key] if key in TARGETS else ""
        lines.append(
            "%-40s %12.4g  %-10s %s"
            % (key, value, target, {None: "", True: "yes", False: "NO"}[met])
        )
    joint = bench["joint"]
    lines += [
        "",
        "joint net (paper size, batch 1), per-layer ms: Python layers and the 12 slowest",
        "%-28s %-14s %10s %10s %7s" % ("layer", "type", "forward", "backward", "share"),
    ]
    total = joint["forward_s"] + joint["backward_s"]
    rows = joint["layers"]
    slow = sorted(rows, key=lambda r: -(r["forward_s"] + r["backward_s"]))[:12]
    shown = [r for r in rows if r["type"] == "Python" or r in slow]
    for r in shown:
        lines.append(
            "%-28s %-14s %10.2f %10.2f %6.2f%%"
            % (
                r["name"],
                r["type"],
                1e3 * r["forward_s"],
                1e3 * r["backward_s"],
                100 * (r["forward_s"] + r["backward_s"]) / total,
            )
        )
    lines.append(
        "%-28s %-14s %10.2f %10.2f"
        % ("total", "", 1e3 * joint["forward_s"], 1e3 * joint["backward_s"])
    )
    unpool = bench["unpool"]
    lines += [
        "",
        "unpooling, paper-size joint forward+backward (batch 1, CPU s, medians): "
        "stock %.3f, Python Unpool %.3f, ratio %.4f [%.4f, %.4f] (wall %.4f); the "
        "unpooling layers alone %.1f / %.1f ms"
        % (
            (unpool["stock_cpu_s"], unpool["python_cpu_s"], unpool["time_ratio"])
            + tuple(unpool["time_ratio_ci95"])
            + (
                unpool["time_ratio_wall"],
                1e3 * unpool["unpool_layers_cpu_s"]["stock"],
                1e3 * unpool["unpool_layers_cpu_s"]["python"],
            )
        ),
    ]
    batches = sorted(joint["python_layer_bytes"], key=lambda b: int(b.split("_")[1]))
    lines += bytes_table(
        "Python layer host<->device MB per iteration (forward + backward), joint net",
        {b: joint["python_layer_bytes"][b] for b in batches},
    )
    lines += bytes_table(
        "... at batch 4 with the Python Unpool layer (before)",
        {"batch_4": unpool["python_unpool_layer_bytes"]},
    )
    lines += bytes_table(
        "... deploy net, one image with K = 3 labels (forward)",
        {"k_3": bench["deploy"]["python_layer_bytes_k3"]},
    )
    deploy = bench["deploy"]
    lines += [
        "",
        "deploy, medians over rounds: K, rounds, ours and theirs (K one-label "
        "forwards) wall s | CPU s, speedup by CPU [95 % interval] | wall",
    ]
    for k in sorted(deploy["ours_s"]):
        lines.append(
            "  K=%d %3d  %7.3f  %7.3f | %7.3f  %7.3f   %5.3f [%5.3f, %5.3f] | %5.3f"
            % (
                (
                    k,
                    len(deploy["rounds"][k]),
                    deploy["ours_s"][k],
                    deploy["theirs_s"][k],
                    deploy["ours_cpu_s"][k],
                    deploy["theirs_cpu_s"][k],
                    deploy["speedup"][k],
                )
                + tuple(deploy["speedup_ci95"][k])
                + (deploy["speedup_wall"][k],)
            )
        )
    if "authors" in bench:
        authors = bench["authors"]
        lines += [
            "",
            "the authors' protocol per %dx%d image, medians (s): K, forward + post-processing "
            "= total wall | CPU" % tuple(authors["image"][::-1]),
        ]
        for k in sorted(authors["seconds"]):
            lines.append(
                "  K=%d  %7.3f + %7.3f = %7.3f | %7.3f + %7.3f"
                % (
                    k,
                    authors["forward_s"][k],
                    authors["finish_s"][k],
                    authors["seconds"][k],
                    authors["forward_cpu_s"][k],
                    authors["finish_cpu_s"][k],
                )
            )
    return "\n".join(lines)


def bytes_table(title, columns):
    """Lines: the title, then per Python layer one "forward + backward = total" MB cell per
    column ({column name: python_layer_bytes result}), then the totals."""
    lines = ["", title, "%-20s" % "layer" + "".join("%24s" % c for c in columns)]
    names = []
    for table in columns.values():
        names += [name for name in table if name not in names]
    for name in names:
        lines.append(
            "%-20s" % name
            + "".join(
                "%24s"
                % (
                    "%7.2f + %6.2f = %6.2f"
                    % tuple(table[name][k] / MB for k in ("forward", "backward", "total"))
                    if name in table
                    else ""
                )
                for table in columns.values()
            )
        )
    lines.append(
        "%-20s" % "total" + "".join("%24.2f" % total_mb(table) for table in columns.values())
    )
    return lines


def write_json(path, bench):
    """bench.json, atomically; dict keys become strings (K = 1 -> "1")."""
    write_text(path, json.dumps(bench, indent=1, sort_keys=True) + "\n")
