"""The figures' arithmetic, from times and blob shapes: the Python layers' share and
host<->device bytes, median ratios of paired rounds with their bootstrap interval, and the
targets each headline figure is checked against.
"""

import numpy as np

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
# Python layer bottoms whose data the layer never reads (only their shape), and layers whose
# tops are constants written only when their shape changes: neither moves per iteration.
SHAPE_ONLY_BOTTOMS = {"Unpool": (2,), "UnpoolConstants": (0, 1)}
CONSTANT_TOPS = ("UnpoolConstants",)
MB = 2**20


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
