"""Record format: encode/decode round trips, the LMDB writer's keys, map growth, atomicity."""

import json
import os
import re

import caffe
import cv2
import data_params
import lmdb
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from transfernet import records


def _image(seed, h=40, w=50):
    rng = np.random.RandomState(seed)
    # Smooth content so JPEG error stays small and the check below is meaningful.
    base = rng.randint(0, 256, (4, 5, 3)).astype(np.uint8)
    return cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)


def test_image_round_trip_and_datum_fields():
    image = _image(0)
    value = records.encode_image(image, [33, 21, 33, 80])
    datum = caffe_pb2.Datum()
    datum.ParseFromString(value)
    assert datum.encoded and datum.data[:2] == b"\xff\xd8"  # JPEG
    assert (datum.channels, datum.height, datum.width) == (3, 40, 50)
    assert list(datum.float_data) == [21.0, 33.0, 80.0] and datum.label == 3
    decoded, ids = records.decode_image(value)
    assert ids == [21, 33, 80]
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image).mean() < 2.0


def test_mask_round_trip_is_exact():
    mask = np.random.RandomState(1).choice([0, 5, 21, 80, 255], size=(33, 47)).astype(np.uint8)
    value = records.encode_mask(mask)
    datum = caffe_pb2.Datum()
    datum.ParseFromString(value)
    assert datum.data[:8] == b"\x89PNG\r\n\x1a\n" and datum.channels == 1
    np.testing.assert_array_equal(records.decode_mask(value), mask)


def test_encode_rejects_wrong_arrays():
    with pytest.raises(ValueError, match="encode_image.*uint8 HxWx3"):
        records.encode_image(np.zeros((4, 4), np.uint8), [1])
    with pytest.raises(ValueError, match="encode_mask.*uint8 HxW"):
        records.encode_mask(np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="decode_image"):
        records.decode_image(b"")


def _records(n, masks=True):
    for i in range(n):
        mask = records.encode_mask(np.full((20, 20), i % 256, np.uint8)) if masks else None
        yield records.encode_image(_image(i, 20, 20), [21 + i % 60]), mask


def test_write_dataset_keys_meta_and_map_growth(tmp_path):
    out = str(tmp_path / "ds")
    meta = {"kind": "source", "size": 20, "dropped": {}}
    report = []

    def gen():
        for rec in _records(300):
            yield rec
        meta["dropped"]["bad"] = 1
        report.append(("bad", "x.jpg", "why"))

    # 64 KiB initial map: ~300 records of ~1 KB need several doublings.
    n = records.write_dataset(out, gen(), meta, map_size=1 << 16, report=report)
    assert n == 300
    got = records.read_meta(out)
    assert got["count"] == 300 and got["kept"] == 300 and got["dropped"] == {"bad": 1}
    with open(os.path.join(out, "report.tsv")) as f:
        assert f.read().splitlines() == ["reason\titem\tdetail", "bad\tx.jpg\twhy"]
    env = lmdb.open(os.path.join(out, "masks"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()["entries"] == 300
        assert records.decode_mask(txn.get(b"00000299"))[0, 0] == 299 % 256
    # The data outgrew the 64 KiB initial map, so the writer must have grown it.
    assert os.path.getsize(os.path.join(out, "masks", "data.mdb")) > 1 << 16
    env = lmdb.open(os.path.join(out, "images"), readonly=True, lock=False)
    with env.begin() as txn:
        keys = [k for k, _ in txn.cursor()]
        assert keys == [b"%08d" % i for i in range(300)]
        assert records.decode_image(txn.get(b"00000007"))[1] == [28]
    assert not os.path.exists(out + ".partial")


def test_target_dataset_has_no_masks_folder(tmp_path):
    out = str(tmp_path / "t")
    records.write_dataset(out, _records(3, masks=False), {"kind": "target", "size": 20})
    assert sorted(os.listdir(out)) == ["images", "meta.json"]


def test_failed_build_leaves_previous_dataset(tmp_path):
    out = str(tmp_path / "ds")
    records.write_dataset(out, _records(5), {"kind": "source", "size": 20})

    def failing():
        for i, rec in enumerate(_records(50)):
            if i == 40:
                raise KeyboardInterrupt  # like Ctrl-C during `make data`
            yield rec

    with pytest.raises(KeyboardInterrupt):
        records.write_dataset(out, failing(), {"kind": "source", "size": 20})
    assert records.read_meta(out)["count"] == 5
    env = lmdb.open(os.path.join(out, "images"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()["entries"] == 5
    assert sorted(os.listdir(str(tmp_path))) == ["ds"]


def test_mixed_masks_rejected(tmp_path):
    recs = list(_records(2))
    recs[1] = (recs[1][0], None)
    with pytest.raises(ValueError, match="record 1 lacks a mask"):
        records.write_dataset(str(tmp_path / "m"), recs, {"kind": "source", "size": 20})
    assert not os.path.exists(str(tmp_path / "m"))


def test_read_meta_names_folder(tmp_path):
    with pytest.raises(ValueError, match="nowhere is not a TransferNet dataset"):
        records.read_meta(str(tmp_path / "nowhere"))
    os.makedirs(str(tmp_path / "bad" / "images"))
    with open(str(tmp_path / "bad" / "meta.json"), "w") as f:
        json.dump({"kind": "source"}, f)
    with pytest.raises(ValueError, match="lacks 'size'"):
        records.read_meta(str(tmp_path / "bad"))


def test_is_current_checks_size_age_and_params(tmp_path):
    marker = tmp_path / "marker.json"
    marker.write_text("{}")
    out = str(tmp_path / "t")
    assert not records.is_current(out, 20, str(marker))  # no dataset yet
    records.write_dataset(
        out, _records(2, masks=False), {"kind": "target", "size": 20, "params": {"ratio": 0.5}}
    )
    os.utime(str(marker), (0, 0))
    assert records.is_current(out, 20, str(marker), ratio=0.5)
    assert not records.is_current(out, 30, str(marker))  # another record size
    assert not records.is_current(out, 20, str(marker), ratio=1.0)  # other params
    os.utime(str(marker), None)
    os.utime(os.path.join(out, "meta.json"), (1, 1))
    assert not records.is_current(out, 20, str(marker))  # older than the marker


def test_empty_dataset_is_reported_as_empty(tmp_path):
    out = str(tmp_path / "empty")  # as an older writer left a build that kept nothing
    os.makedirs(os.path.join(out, "images"))
    lmdb.open(os.path.join(out, "images")).close()
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"kind": "target", "size": 20, "count": 0, "num_classes": 80}, f)
    with pytest.raises(
        ValueError,
        match=re.escape(out) + r" is an empty dataset \(0 records\): "
        "rebuild it with `make data`",
    ):
        records.read_meta(out)
    # The training data layer (real pycaffe layer code) passes the same message on.
    params = json.dumps(
        {
            "source": None,
            "target": out,
            "source_fraction": 0.0,
            "batch_size": 2,
            "resize": 20,
            "crop": 20,
            "num_classes": 80,
        }
    )
    with pytest.raises(ValueError) as err:
        data_params.load_config(params, caffe.TRAIN, 2)
    assert "is an empty dataset" in str(err.value) and "says count" not in str(err.value)
    assert not records.is_current(out, 20, os.path.join(out, "meta.json"))


def test_empty_build_raises_empty_dataset(tmp_path):
    with pytest.raises(records.EmptyDataset, match="no records to write"):
        records.write_dataset(str(tmp_path / "e"), iter(()), {"kind": "target", "size": 20})
    assert os.listdir(str(tmp_path)) == []
