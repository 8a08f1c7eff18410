"""SourceTargetData's sampling: which record of which domain, its class, crop and mirror.

Per sample: the domain (source with probability `source_fraction`), a random record of that
domain, and one of the record's classes uniformly; the record is resized to `resize` if it has
another size and cropped `crop` x `crop` (random + random mirror in TRAIN, centre without mirror
in TEST, image and mask identically).

Batch k is drawn from its own numpy RandomState seeded with (seed, k), so the stream of batches
depends on `seed` only: not on who prepares a batch, nor in which order.
In data-parallel training (tools/train.py --gpus, R = caffe.solver_count() solvers) the TRAIN
layer of rank r = caffe.solver_rank() takes batches r, r+R, r+2R, ... of that stream: the ranks'
batches are disjoint and together are the single-solver stream.
"""

import os

import cv2
import lmdb
import numpy as np
from data_params import NAME

from transfernet import records
from transfernet.classes import IGNORE


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
    """Write batch k into `out` (arrays shaped like data_params.batch_shapes(cfg)); its
    randomness comes from RandomState((seed, k)) alone."""
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
