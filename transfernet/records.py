"""Dataset record format and its atomic LMDB writer.

A dataset is a folder:
  images/    LMDB, key b"%08d" % i (i = 0..count-1), value = serialized caffe_pb2.Datum:
             encoded=True, data = JPEG (quality 95) of the BGR image warped to size x size,
             channels=3, height=width=size, float_data = sorted class ids present,
             label = number of classes present.
  masks/     LMDB (source datasets only; a target dataset has no masks/ folder). Same keys;
             Datum encoded=True, data = PNG of the uint8 size x size label map
             (0 background, class ids, 255 ignore), channels=1.
  meta.json  {"kind", "size", "count", "kept", "dropped": {reason: n}, "num_classes",
             "classes": {"21": "truck", ...}, "params": {...}}
  report.tsv one line per skipped input: reason <TAB> item <TAB> detail (when any were skipped).
Images are warped with cv2.INTER_LINEAR, label maps with cv2.INTER_NEAREST; the paper resizes
to 330 x 330 and crops 320 x 320 (Sec. 5.1).
"""

import json
import os
import shutil

import cv2
import lmdb
import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf.message import DecodeError

from transfernet import fileio

JPEG_QUALITY = 95
COMMIT_EVERY = 256
DEFAULT_MAP_SIZE = 1 << 28


def key(i):
    """LMDB key of record i."""
    return b"%08d" % i


def warp_image(image_bgr, size):
    """Warp an image to size x size (bilinear)."""
    return cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_LINEAR)


def warp_mask(label_map, size):
    """Warp a label map to size x size (nearest, so no new label values appear)."""
    return cv2.resize(label_map, (size, size), interpolation=cv2.INTER_NEAREST)


def _datum(data, channels, height, width):
    datum = caffe_pb2.Datum()
    datum.encoded = True
    datum.data = data
    datum.channels, datum.height, datum.width = channels, height, width
    return datum


def encode_image(image_bgr, class_ids):
    """Serialized Datum: JPEG of a uint8 HxWx3 BGR image, float_data = sorted class ids."""
    image_bgr = np.asarray(image_bgr)
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(
            "encode_image: expected a uint8 HxWx3 BGR image, got %s %s"
            % (image_bgr.dtype, image_bgr.shape)
        )
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("encode_image: JPEG encoding failed for shape %s" % (image_bgr.shape,))
    ids = sorted(set(int(c) for c in class_ids))
    datum = _datum(buf.tobytes(), 3, image_bgr.shape[0], image_bgr.shape[1])
    datum.float_data.extend(ids)
    datum.label = len(ids)
    return datum.SerializeToString()


def encode_mask(label_map):
    """Serialized Datum: PNG of a uint8 HxW label map."""
    label_map = np.asarray(label_map)
    if label_map.dtype != np.uint8 or label_map.ndim != 2:
        raise ValueError(
            "encode_mask: expected a uint8 HxW label map, got %s %s"
            % (label_map.dtype, label_map.shape)
        )
    ok, buf = cv2.imencode(".png", label_map)
    if not ok:
        raise ValueError("encode_mask: PNG encoding failed for shape %s" % (label_map.shape,))
    return _datum(buf.tobytes(), 1, label_map.shape[0], label_map.shape[1]).SerializeToString()


def _parse(value, what):
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(bytes(value))
    except DecodeError as e:
        raise ValueError("%s: not a Datum (%s)" % (what, e)) from None
    if not datum.encoded or not datum.data:
        raise ValueError("%s: expected an encoded Datum (JPEG/PNG bytes in data)" % what)
    return datum


def decode_image(value):
    """(uint8 HxWx3 BGR image, list of int class ids) from an images/ record."""
    datum = _parse(value, "decode_image")
    image = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("decode_image: Datum data is not a decodable image")
    return image, [int(c) for c in datum.float_data]


def decode_mask(value):
    """uint8 HxW label map from a masks/ record."""
    datum = _parse(value, "decode_mask")
    mask = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError("decode_mask: Datum data is not a single-channel 8-bit PNG")
    return mask


class _Writer:
    """One LMDB opened for writing, committing in batches and growing its map when full."""

    def __init__(self, path, map_size):
        self.env = lmdb.open(path, map_size=map_size, subdir=True, meminit=False, map_async=True)
        self.pending = []

    def put(self, k, value):
        self.pending.append((k, value))
        if len(self.pending) >= COMMIT_EVERY:
            self.flush()

    def flush(self):
        while self.pending:
            try:
                with self.env.begin(write=True) as txn:
                    for k, value in self.pending:
                        txn.put(k, value)
                self.pending = []
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def close(self):
        self.flush()
        self.env.sync(True)
        self.env.close()


class EmptyDataset(ValueError):
    """write_dataset was given no records (every input was dropped)."""


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def swap_in(built, out_dir):
    """Replace folder out_dir by the complete folder `built` (two renames; old one removed)."""
    old = out_dir + ".old"
    if os.path.exists(old):
        shutil.rmtree(old)
    if os.path.exists(out_dir):
        os.rename(out_dir, old)
    os.rename(built, out_dir)
    if os.path.exists(old):
        shutil.rmtree(old)


def remove_partial(out_dir):
    """Remove <out_dir>.partial, the leftover of a build that was killed before it could."""
    partial = os.path.abspath(out_dir).rstrip(os.sep) + ".partial"
    if os.path.exists(partial):
        shutil.rmtree(partial)
    return partial


def write_dataset(out_dir, records, meta, map_size=DEFAULT_MAP_SIZE, report=None):
    """Write records [(image_value, mask_value or None), ...] as a dataset folder.

    Keys are b"%08d" % i in order. masks/ is written iff the records carry masks (all or
    none must). meta is written to meta.json after `records` is exhausted, with "count" and
    "kept" set, so a generator may fill meta (e.g. "dropped") while it yields; likewise
    `report`, a list of (reason, item, detail) rows, goes to report.tsv if non-empty.
    The dataset is built in the sibling folder <out_dir>.partial and renamed to out_dir only
    when complete: an interrupted or failed build leaves a previous out_dir intact.
    Returns the number of records; EmptyDataset if there are none.
    """
    out_dir = os.path.abspath(out_dir).rstrip(os.sep)
    partial = remove_partial(out_dir)
    os.makedirs(partial)
    writers = {}
    try:
        count = 0
        for image_value, mask_value in records:
            if count == 0:
                writers["images"] = _Writer(os.path.join(partial, "images"), map_size)
                if mask_value is not None:
                    writers["masks"] = _Writer(os.path.join(partial, "masks"), map_size)
            if (mask_value is not None) != ("masks" in writers):
                raise ValueError(
                    "write_dataset %s: record %d %s a mask, record 0 %s"
                    % (
                        out_dir,
                        count,
                        "has" if mask_value is not None else "lacks",
                        "has" if "masks" in writers else "lacks",
                    )
                )
            writers["images"].put(key(count), image_value)
            if mask_value is not None:
                writers["masks"].put(key(count), mask_value)
            count += 1
        if count == 0:
            raise EmptyDataset("write_dataset %s: no records to write" % out_dir)
        for name in list(writers):
            writers.pop(name).close()
        meta = dict(meta, count=count, kept=count)
        _write_json(os.path.join(partial, "meta.json"), meta)
        if report:
            with open(os.path.join(partial, "report.tsv"), "w") as f:
                f.write("reason\titem\tdetail\n")
                for row in report:
                    f.write(
                        "\t".join(str(x).replace("\t", " ").replace("\n", " ") for x in row) + "\n"
                    )
        swap_in(partial, out_dir)
        return count
    except BaseException:
        for writer in writers.values():
            writer.env.close()
        shutil.rmtree(partial, ignore_errors=True)
        raise


def read_meta(dataset_dir):
    """meta.json of a dataset folder; ValueError naming the folder if it is not a dataset."""
    path = os.path.join(dataset_dir, "meta.json")
    if not os.path.isdir(os.path.join(dataset_dir, "images")) or not os.path.isfile(path):
        raise ValueError(
            "%s is not a TransferNet dataset (expected images/ and meta.json; "
            "build it with `make data`)" % dataset_dir
        )
    meta = fileio.read_json(path)
    for field in ("kind", "size", "count"):
        if field not in meta:
            raise ValueError("%s: meta.json lacks %r" % (path, field))
    if meta["count"] == 0:
        raise ValueError(
            "%s is an empty dataset (0 records): rebuild it with `make data`, "
            "whose summary lists why inputs were dropped" % dataset_dir
        )
    return meta


def is_current(dataset_dir, size, newer_than, **params):
    """True if dataset_dir is a dataset of record size `size`, built after the file
    `newer_than` (e.g. the source tree's marker), whose meta.json "params" include `params`."""
    try:
        meta = read_meta(dataset_dir)
    except ValueError:
        return False
    return (
        meta["size"] == size
        and os.path.getmtime(os.path.join(dataset_dir, "meta.json")) >= os.path.getmtime(newer_than)
        and all(meta["params"].get(k) == v for k, v in params.items())
    )
