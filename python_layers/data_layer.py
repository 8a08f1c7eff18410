"""SourceTargetData: the TransferNet training data layer (paper Sec. 5, Eq. 9; Sec. 6.1).

Each sample is one term of Eq. (9): an image i of T or S, ONE class l in its label set L*_i,
and the binary mask d^l_i of l (source images only: the segmentation term sums over S).
Per sample the layer draws the domain (source with probability `source_fraction`), a random
record of that domain, and one of the record's classes uniformly; then it resizes to `resize`
if the record has another size, crops `crop` x `crop` (random + random mirror in TRAIN, centre
without mirror in TEST, image and mask identically), and emits

  top[0] data       (B, 3, crop, crop) float32, BGR minus `mean`
  top[1] label      (B, num_classes) one-hot of the chosen class (index = id - 1); with
                    "multilabel": true, the multi-hot vector of all the image's classes
                    (stage 0 classifier)
  top[2] seg-label  (B, 1, crop, crop) optional: 1 where mask == l, 255 where the mask is 255
                    (ignored), 0 elsewhere; all 255 for target samples (no mask: they train
                    only the classification branch). Not allowed with multilabel.

param_str (JSON), e.g.
  {"source": "data/lmdb/coco60", "target": "data/lmdb/voc_train_aug", "source_fraction": 0.5,
   "batch_size": 8, "resize": 330, "crop": 320, "mirror": true,
   "mean": [104.008, 116.669, 122.675], "num_classes": 80, "multilabel": false,
   "seed": 0, "workers": 2}
  source / target   dataset folders (transfernet/records.py format) or null (not both null);
                    the source dataset must have masks/.
  batch_size        required.
  workers           background processes preparing batches (0 = in the layer's process).

Batch k is drawn from its own numpy RandomState seeded with (seed, k), so the stream of batches
depends on `seed` only: not on `workers`, and not on the order in which workers finish.
In data-parallel training (tools/train.py --gpus, R = caffe.solver_count() solvers) the TRAIN
layer of rank r = caffe.solver_rank() takes batches r, r+R, r+2R, ... of that stream: the ranks'
batches are disjoint and together are the single-solver stream. Worker w prepares the layer's
batches w, w+W, w+2W, ... into shared-memory slots; the layer consumes them in order.
Workers are daemon processes that also die with their parent (PR_SET_PDEATHSIG);
pycaffe never frees a Python layer, so call `layer.close()` to stop them before the process
ends if needed (they are stopped at interpreter exit anyway).
"""

import json
import multiprocessing
import os
import queue
import tempfile
import time
import traceback
import weakref

import caffe
import cv2
import lmdb
import numpy as np
from layer_params import REQUIRED, parse_params, report_errors

from transfernet import interrupt, records
from transfernet.classes import IGNORE
from transfernet.fileio import MEAN_BGR

DEFAULTS = {
    "source": None,
    "target": None,
    "source_fraction": 0.5,
    "batch_size": REQUIRED,
    "resize": 330,
    "crop": 320,
    "mirror": True,
    "mean": list(MEAN_BGR),
    "num_classes": 80,
    "multilabel": False,
    "seed": 0,
    "workers": 2,
}
SLOTS_PER_WORKER = 2  # shared-memory batches each worker may have ready ahead of the net
POLL_SECONDS = 1.0  # how often blocked workers / the layer check that the other side lives
NAME = "SourceTargetData"


def _fail(message):
    return ValueError("%s: %s" % (NAME, message))


def _check_int(params, key, low, high=None):
    value = params[key]
    if type(value) is not int or value < low or (high is not None and value > high):
        raise _fail(
            "%r must be an integer in [%s, %s], got %r"
            % (key, low, "inf" if high is None else high, value)
        )


def _check_dataset(role, path, num_classes, need_masks):
    """Dataset summary {"path", "count", "masks"}; ValueError naming the folder if unusable."""
    if not isinstance(path, str):
        raise _fail("%r must be a dataset folder or null, got %r" % (role, path))
    if not os.path.isdir(path):
        raise _fail("%s dataset %s does not exist (build it with `make data`)" % (role, path))
    try:
        meta = records.read_meta(path)
    except ValueError as exc:
        raise _fail("%s dataset: %s" % (role, exc)) from None
    if meta.get("num_classes") != num_classes:
        raise _fail(
            "%s dataset %s has num_classes %r in meta.json, the layer has num_classes %d"
            % (role, path, meta.get("num_classes"), num_classes)
        )
    masks = os.path.join(path, "masks")
    if need_masks and not os.path.isdir(masks):
        raise _fail(
            "source dataset %s has no masks/ LMDB (a target dataset was given as source?)" % path
        )
    for sub in ("images", "masks") if need_masks else ("images",):
        env = lmdb.open(os.path.join(path, sub), readonly=True, lock=False)
        entries = env.stat()["entries"]
        env.close()
        if entries != meta["count"] or entries == 0:
            raise _fail(
                "%s dataset %s: %s/ holds %d records, meta.json says count %r"
                % (role, path, sub, entries, meta["count"])
            )
    return {"path": path, "count": int(meta["count"]), "masks": need_masks}


def load_config(param_str, phase, num_tops):
    """Validated layer configuration from param_str (see the module docstring)."""
    params = parse_params(NAME, param_str, DEFAULTS)
    if num_tops not in (2, 3):
        raise _fail(
            "expected 2 tops (data, label) or 3 (data, label, seg-label), got %d" % num_tops
        )
    if params["multilabel"] and num_tops == 3:
        raise _fail("multilabel mode emits no seg-label: use 2 tops, got 3")
    for key, low in (
        ("batch_size", 1),
        ("resize", 1),
        ("crop", 1),
        ("num_classes", 1),
        ("workers", 0),
    ):
        _check_int(params, key, low)
    _check_int(params, "seed", 0, 2**32 - 1)
    if params["crop"] > params["resize"]:
        raise _fail("crop %d is larger than resize %d" % (params["crop"], params["resize"]))
    if not 0.0 <= params["source_fraction"] <= 1.0:
        raise _fail("'source_fraction' must be in [0, 1], got %r" % params["source_fraction"])
    mean = params["mean"]
    if len(mean) != 3 or not all(type(m) in (int, float) for m in mean):
        raise _fail("'mean' must be 3 numbers (B, G, R), got %r" % (mean,))
    if params["source"] is None and params["target"] is None:
        raise _fail("'source' and 'target' are both null: give at least one dataset folder")
    datasets = [
        None
        if params[role] is None
        else _check_dataset(role, params[role], params["num_classes"], role == "source")
        for role in ("source", "target")
    ]
    fraction = params["source_fraction"]
    if datasets[0] is None:
        fraction = 0.0
    elif datasets[1] is None:
        fraction = 1.0
    train = phase == caffe.TRAIN
    # Only the TRAIN net is replicated per solver; the TEST net runs on rank 0 alone.
    rank, ranks = (caffe.solver_rank(), caffe.solver_count()) if train else (0, 1)
    return dict(
        params,
        datasets=datasets,
        source_fraction=fraction,
        train=train,
        rank=rank,
        ranks=ranks,
        seg=num_tops == 3,
        mean=np.array(mean, np.float32).reshape(1, 3, 1, 1),
    )


def batch_shapes(cfg):
    """Shapes of the tops (and of one shared-memory slot)."""
    b, c = cfg["batch_size"], cfg["crop"]
    shapes = [(b, 3, c, c), (b, cfg["num_classes"])]
    return shapes + [(b, 1, c, c)] if cfg["seg"] else shapes


class Reader:
    """The LMDBs of the source and target datasets, opened in the calling process."""

    def __init__(self, cfg):
        self.envs, self.txns = [], [{}, {}]
        for txns, dataset in zip(self.txns, cfg["datasets"]):
            if dataset is None:
                continue
            for sub in ["images"] + (["masks"] if dataset["masks"] else []):
                env = lmdb.open(
                    os.path.join(dataset["path"], sub), readonly=True, lock=False, readahead=False
                )
                self.envs.append(env)
                txns[sub] = env.begin(buffers=True)

    def get(self, domain, index, sub):
        value = self.txns[domain][sub].get(records.key(index))
        if value is None:
            raise ValueError("record %d missing from %s/" % (index, sub))
        return value


def _fit(array, size, interpolation):
    if array.shape[0] == size and array.shape[1] == size:
        return array
    return cv2.resize(array, (size, size), interpolation=interpolation)


def _load(reader, cfg, domain, index, need_mask):
    """(image, class ids, mask or None) of one record; errors name the dataset and record."""
    dataset = cfg["datasets"][domain]
    try:
        image, ids = records.decode_image(reader.get(domain, index, "images"))
        if not ids or min(ids) < 1 or max(ids) > cfg["num_classes"]:
            raise ValueError("class ids %s not in 1..%d" % (ids, cfg["num_classes"]))
        mask = records.decode_mask(reader.get(domain, index, "masks")) if need_mask else None
    except ValueError as exc:
        raise ValueError(
            "%s: %s dataset %s record %d: %s"
            % (NAME, ("source", "target")[domain], dataset["path"], index, exc)
        )
    return image, ids, mask


def stream_index(cfg, n):
    """Index in the seed's batch stream of this layer's n-th batch (rank r of R: r + n R)."""
    return cfg["rank"] + n * cfg["ranks"]


def fill_batch(reader, cfg, k, out):
    """Write batch k into `out` (arrays shaped like batch_shapes(cfg)); its randomness comes
    from RandomState((seed, k)) alone."""
    rng = np.random.RandomState([cfg["seed"], k])
    b, size, crop = cfg["batch_size"], cfg["resize"], cfg["crop"]
    is_source = rng.rand(b) < cfg["source_fraction"]
    counts = np.array([d["count"] if d else 0 for d in cfg["datasets"]])
    domain = np.where(is_source, 0, 1)
    record = (rng.rand(b) * counts[domain]).astype(np.int64)
    class_u = rng.rand(b)
    if cfg["train"]:
        y, x = rng.randint(0, size - crop + 1, size=(2, b))
        flip = (rng.rand(b) < 0.5) & cfg["mirror"]
    else:
        y = x = np.full(b, (size - crop) // 2)
        flip = np.zeros(b, bool)
    data, label = out[0], out[1]
    label[...] = 0
    chosen = np.zeros(b, np.int64)
    # All void: target samples keep it (Eq. 9's segmentation term is over S only).
    masks = np.full((b, crop, crop), IGNORE, np.uint8)
    for i in range(b):  # one decode per sample
        need_mask = cfg["seg"] and is_source[i]
        image, ids, mask = _load(reader, cfg, domain[i], record[i], need_mask)
        step = -1 if flip[i] else 1
        window = (slice(y[i], y[i] + crop), slice(x[i], x[i] + crop))
        data[i] = _fit(image, size, cv2.INTER_LINEAR)[window][:, ::step].transpose(2, 0, 1)
        chosen[i] = ids[int(class_u[i] * len(ids))]
        if cfg["multilabel"]:
            label[i, np.array(ids) - 1] = 1
        if need_mask:
            masks[i] = _fit(mask, size, cv2.INTER_NEAREST)[window][:, ::step]
    data -= cfg["mean"]
    if not cfg["multilabel"]:
        label[np.arange(b), chosen - 1] = 1
    if cfg["seg"]:
        seg = out[2][:, 0]
        seg[...] = masks == chosen[:, None, None]
        seg[masks == IGNORE] = IGNORE


def _worker(cfg, w, workers, slots, free, ready, stop, parent_pid):
    """Process w: fill the layer's batches w, w+W, ... into free slots, announce them on
    `ready`."""
    interrupt.die_with_parent(parent_pid)
    interrupt.ignore_in_worker()  # Ctrl-C stops the net's process, which ends this one
    cv2.setNumThreads(1)
    try:
        reader = Reader(cfg)
        k = w
        while not stop.is_set():
            try:
                slot = free.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if os.getppid() != parent_pid:
                    return
                continue
            fill_batch(reader, cfg, stream_index(cfg, k), slots[slot])
            ready.put((slot, k))
            k += workers
    except Exception:  # reported to the layer, which raises it in forward()
        ready.put(("error", traceback.format_exc()))


def _shutdown(procs, stop):
    stop.set()
    for proc in procs:
        proc.join(timeout=2 * POLL_SECONDS)
        if proc.is_alive():
            proc.terminate()
            proc.join()


class Prefetcher:
    """Batches in order from `workers` forked processes through shared-memory slots."""

    def __init__(self, cfg):
        ctx = multiprocessing.get_context("fork")  # spawn would re-run the caffe binary
        self.workers = cfg["workers"]
        self.stop = ctx.Event()
        self.queues, self.slots, self.procs = [], [], []
        shapes = batch_shapes(cfg)
        for w in range(self.workers):
            slots = [
                [
                    np.frombuffer(ctx.RawArray("f", int(np.prod(s))), np.float32).reshape(s)
                    for s in shapes
                ]
                for _ in range(SLOTS_PER_WORKER)
            ]
            free, ready = ctx.Queue(), ctx.Queue()
            for slot in range(SLOTS_PER_WORKER):
                free.put(slot)
            proc = ctx.Process(
                target=_worker,
                name="%s-worker-%d" % (NAME, w),
                daemon=True,
                args=(cfg, w, self.workers, slots, free, ready, self.stop, os.getpid()),
            )
            self.slots.append(slots)
            self.queues.append((free, ready))
            self.procs.append(proc)
        for proc in self.procs:
            proc.start()
        self.count = 0
        self.close = weakref.finalize(self, _shutdown, self.procs, self.stop)

    def pids(self):
        return [proc.pid for proc in self.procs]

    def fill(self, out):
        """Copy the next batch into `out`."""
        w = self.count % self.workers
        free, ready = self.queues[w]
        while True:
            try:
                message = ready.get(timeout=POLL_SECONDS)
                break
            except queue.Empty:
                if not self.procs[w].is_alive():
                    raise RuntimeError(
                        "%s: worker %d died (exit code %s)" % (NAME, w, self.procs[w].exitcode)
                    ) from None
        slot, k = message
        if slot == "error":
            raise RuntimeError("%s: worker %d failed:\n%s" % (NAME, w, k))
        assert k == self.count, (k, self.count)
        for dst, src in zip(out, self.slots[w][slot]):
            dst[...] = src
        free.put(slot)
        self.count += 1


class InProcess:
    """workers 0: batches prepared in the layer's own process."""

    def __init__(self, cfg):
        self.cfg, self.reader, self.count = cfg, Reader(cfg), 0

    def pids(self):
        return []

    def fill(self, out):
        fill_batch(self.reader, self.cfg, stream_index(self.cfg, self.count), out)
        self.count += 1

    def close(self):
        pass


@report_errors
class SourceTargetData(caffe.Layer):
    """Source/target sampling data layer; see the module docstring for param_str and tops."""

    def setup(self, bottom, top):
        if len(bottom) != 0:
            raise _fail("takes no bottoms, got %d" % len(bottom))
        self.cfg = load_config(self.param_str, self.phase, len(top))
        self.loader = (Prefetcher if self.cfg["workers"] else InProcess)(self.cfg)

    def reshape(self, bottom, top):
        for i, shape in enumerate(batch_shapes(self.cfg)):
            top[i].reshape(*shape)

    def forward(self, bottom, top):
        self.loader.fill([top[i].data for i in range(len(top))])

    def backward(self, top, propagate_down, bottom):
        pass  # no bottoms

    def worker_pids(self):
        """Process ids of the prefetching workers (empty with workers 0)."""
        return self.loader.pids()

    def close(self):
        """Stop the prefetching workers (idempotent)."""
        self.loader.close()


def net_prototxt(params, seg=True):
    """Text of a one-layer net holding SourceTargetData with `params` (a dict)."""
    tops = ["data", "label"] + (["seg-label"] if seg else [])
    return (
        'name: "source_target_data"\nlayer { name: "data" type: "Python" %s\n'
        '  python_param { module: "data_layer" layer: "SourceTargetData" '
        "param_str: %s } }\n"
        % (" ".join('top: "%s"' % t for t in tops), json.dumps(json.dumps(params)))
    )


def measure_throughput(params, batches=50, warmup=3, seg=True):
    """Images/s of net.forward() on a net holding only this layer (TRAIN phase)."""
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
        f.write(net_prototxt(params, seg))
        f.flush()
        net = caffe.Net(f.name, caffe.TRAIN)
    layer = net.layers[0]
    try:
        for _ in range(warmup):
            net.forward()
        start = time.time()
        for _ in range(batches):
            net.forward()
        elapsed = time.time() - start
    finally:
        layer.close()
    return batches * params["batch_size"] / elapsed
