"""Dataset builders on the built-in dataset (real COCO JSON / VOC / SBD formats, real LMDB)."""

import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import lmdb
import numpy as np
import pytest
import scipy.io
from ctrl_c import interrupt_when
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from data_prep import builtin, builtin_lmdbs, coco, voc
from transfernet import class_table, classes, fileio, records

SIZE = 104
N_SOURCE, N_TRAIN, N_VAL, N_SBD = 60, 24, 8, 4


def _read_all(dataset, name):
    env = lmdb.open(os.path.join(dataset, name), readonly=True, lock=False)
    with env.begin() as txn:
        values = [v for _, v in txn.cursor()]
    env.close()
    return values


def _report(dataset):
    with open(os.path.join(dataset, "report.tsv")) as f:
        return [line.rstrip("\n").split("\t") for line in f][1:]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("builtin"))
    builtin.generate(
        out,
        seed=3,
        source_images=N_SOURCE,
        target_train=N_TRAIN,
        target_val=N_VAL,
        sbd=N_SBD,
        workers=2,
    )
    return out


@pytest.fixture(scope="module")
def source(raw):
    out = os.path.join(raw, "lmdb", "source")
    coco.build_source(os.path.join(raw, "coco"), out, size=SIZE, workers=2)
    return out


@pytest.fixture(scope="module")
def gt(raw):
    return COCO(os.path.join(raw, "coco", "annotations", "instances_train2014.json"))


def _expected_source_ids(gt):
    """Image ids the paper's filter keeps: no PASCAL category, at least one annotation."""
    kept = []
    for img_id in sorted(gt.imgs):
        cats = {a["category_id"] for a in gt.imgToAnns[img_id]}
        if cats and not cats & classes.PASCAL_COCO_IDS:
            kept.append(img_id)
    return kept


def test_class_tables():
    assert classes.COCO60_ID[8] == 21 and classes.CLASS_NAMES[21] == "truck"
    assert classes.COCO60_ID[90] == 80 and classes.CLASS_NAMES[80] == "toothbrush"
    assert classes.COCO60_ID[13] == 24  # stop sign: 4th non-PASCAL category in id order
    assert classes.CLASS_NAMES[20] == "tvmonitor" and 72 in classes.PASCAL_COCO_IDS
    assert not set(classes.COCO60_ID) & classes.PASCAL_COCO_IDS
    with pytest.raises(ValueError, match="x.json: category id 12 .* not one of the 80"):
        classes.check_coco_categories([{"id": 12, "name": "street sign"}], "x.json")
    with pytest.raises(ValueError, match="category id 13 is named 'kite'"):
        classes.check_coco_categories([{"id": 13, "name": "kite"}], "x.json")


def test_label_map_overlap_and_crowd_rule():
    big = [[0, 0, 30, 0, 30, 30, 0, 30]]
    small = [[10, 10, 20, 10, 20, 20, 10, 20]]
    crowd = np.zeros((40, 40), np.uint8)
    crowd[25:35, 5:15] = 1  # overlaps the big square on rows 25..29
    flat = crowd.flatten(order="F")
    counts = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]]))
    anns = [
        {"id": 1, "category_id": 13, "segmentation": small, "iscrowd": 0},  # small first
        {"id": 2, "category_id": 84, "segmentation": big, "iscrowd": 0},
        {
            "id": 3,
            "category_id": 52,
            "iscrowd": 1,
            "segmentation": {"counts": counts.tolist(), "size": [40, 40]},
        },
    ]
    labels = coco.label_map(anns, 40, 40, "test", classes.COCO60_ID)
    assert labels[15, 15] == 24  # smaller instance on top whatever the annotation order
    assert labels[5, 5] == 74 and labels[27, 10] == 74  # instance pixels win over crowd
    assert labels[32, 10] == 255 and labels[38, 38] == 0
    assert set(np.unique(labels)) == {0, 24, 74, 255}


def test_builtin_is_deterministic(raw, tmp_path):
    builtin.generate(str(tmp_path), seed=3, source_images=6, target_train=3, target_val=1)
    with open(os.path.join(str(tmp_path), "coco", "annotations", "instances_train2014.json")) as f:
        small = json.load(f)
    with open(os.path.join(raw, "coco", "annotations", "instances_train2014.json")) as f:
        full = json.load(f)
    assert small["images"] == full["images"][:6]
    assert small["annotations"] == full["annotations"][: len(small["annotations"])]
    for name in ("JPEGImages/2012_000001.jpg", "SegmentationClass/2012_000002.png"):
        paths = [os.path.join(r, "VOCdevkit", "VOC2012", name) for r in (str(tmp_path), raw)]
        with open(paths[0], "rb") as a, open(paths[1], "rb") as b:
            assert a.read() == b.read()


def _hues(colors):
    """Hue in degrees of BGR float colours (OpenCV's 2-degree steps)."""
    bgr = np.clip(np.round(colors), 0, 255).astype(np.uint8)[None]
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[0, :, 0].astype(float) * 2


def _hue_distance(a, b):
    d = np.abs(np.asarray(a) - b) % 360
    return np.minimum(d, 360 - d)


def test_builtin_source_colours_span_target_hues():
    rng = np.random.RandomState(0)
    source = _hues(
        [builtin._class_color(rng, cid) for cid in builtin.SOURCE_IDS for _ in range(300)]
    )
    for cid, _ in builtin.TARGET_SHAPES:
        centre = builtin.CLASS_HUE[cid]
        target = _hues([builtin._class_color(rng, cid) for _ in range(300)])
        # target categories keep their own narrow bands (learnable, mutually exclusive) ...
        assert _hue_distance(target, centre).max() <= builtin.HUE_SPREAD + 2
        # ... and source objects come in every target colour, centre and band edges alike
        for offset in (-builtin.HUE_SPREAD, 0, builtin.HUE_SPREAD):
            assert (_hue_distance(source, centre + offset) <= 3).sum() >= 5, (cid, offset)


def test_builtin_formats(raw, gt):
    cats = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    # all 80 COCO categories, as the real instances_train2014.json lists them
    assert cats == dict(classes.COCO_CATEGORIES)
    assert any(
        a["iscrowd"] and isinstance(a["segmentation"]["counts"], list)
        for a in gt.dataset["annotations"]
    )
    png = Image.open(
        os.path.join(raw, "VOCdevkit", "VOC2012", "SegmentationClass", "2012_000000.png")
    )
    assert png.mode == "P" and png.getpalette()[3 * 255 : 3 * 256] == [224, 224, 192]
    values = set(np.unique(np.array(png)))
    assert 255 in values and values - {0, 255} <= {1, 3, 4, 16}


def test_source_counts_and_no_pascal(source, gt):
    meta = records.read_meta(source)
    kept = _expected_source_ids(gt)
    n_pascal = sum(
        1 for i in gt.imgs if {a["category_id"] for a in gt.imgToAnns[i]} & classes.PASCAL_COCO_IDS
    )
    assert 0 < n_pascal and meta["dropped"]["target_category"] == n_pascal
    assert meta["dropped"]["no_annotation"] == N_SOURCE // builtin.EMPTY_EVERY
    assert meta["count"] == meta["kept"] == len(kept) == len(_read_all(source, "masks"))
    assert meta["kind"] == "source" and meta["size"] == SIZE
    # the table's 60 source categories; the images hold six of them
    assert meta["classes"] == {str(k): classes.CLASS_NAMES[k] for k in range(21, 81)}
    assert sorted(meta["class_counts"], key=int) == ["22", "24", "32", "40", "52", "74"]
    assert meta["class_table"] == class_table.PAPER.tag
    for value in _read_all(source, "images"):
        assert all(21 <= c <= 80 for c in records.decode_image(value)[1])


def test_source_labels_and_crowd_round_trip(source, gt):
    kept = _expected_source_ids(gt)
    masks = _read_all(source, "masks")
    n_crowd = 0
    for img_id, image_value, mask_value in zip(kept, _read_all(source, "images"), masks):
        anns = gt.imgToAnns[img_id]
        image, ids = records.decode_image(image_value)
        mask = records.decode_mask(mask_value)
        assert image.shape == (SIZE, SIZE, 3) and mask.shape == (SIZE, SIZE)
        expected = sorted({classes.COCO60_ID[a["category_id"]] for a in anns if not a["iscrowd"]})
        assert ids == expected
        assert sorted(set(np.unique(mask)) - {0, 255}) == expected
        objects = np.zeros(gt.annToMask(anns[0]).shape, bool)
        crowd = np.zeros_like(objects)
        for a in anns:
            (crowd if a["iscrowd"] else objects)[gt.annToMask(a) > 0] = True
        ignore = (
            cv2.resize(
                (crowd & ~objects).astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST
            )
            > 0
        )
        np.testing.assert_array_equal(mask == 255, ignore)
        n_crowd += int(crowd.any())
    assert n_crowd > 0


def test_target_train_aug_with_sbd(raw, tmp_path):
    out = str(tmp_path / "target")
    root = os.path.join(raw, "VOCdevkit", "VOC2012")
    sbd_root = os.path.join(raw, "benchmark_RELEASE", "dataset")
    meta = voc.build_target(root, out, sbd_root=sbd_root, size=SIZE)
    assert sorted(os.listdir(out)) == ["images", "meta.json"]  # no masks/ at all
    assert meta["split"] == "train_aug" and meta["params"]["removed_voc_val"] == 3
    names = sorted(
        ["2012_%06d" % i for i in range(N_TRAIN)] + ["2011_%06d" % i for i in range(N_SBD)]
    )
    values = _read_all(out, "images")
    assert meta["count"] == len(values) == N_TRAIN + N_SBD
    for name, value in zip(names, values):
        if name.startswith("2011"):
            seg = scipy.io.loadmat(os.path.join(sbd_root, "cls", name + ".mat"))["GTcls"]
            seg = seg["Segmentation"][0, 0]
        else:
            seg = np.array(Image.open(os.path.join(root, "SegmentationClass", name + ".png")))
        expected = sorted(int(c) for c in np.unique(seg) if c not in (0, 255))
        image, ids = records.decode_image(value)
        assert ids == expected and expected and image.shape == (SIZE, SIZE, 3)


def test_target_lists_with_byte_order_marks_keep_val_out_of_train_aug(raw, tmp_path):
    root = str(tmp_path / "VOC2012")
    shutil.copytree(os.path.join(raw, "VOCdevkit", "VOC2012"), root)
    sbd_root = str(tmp_path / "sbd")
    shutil.copytree(os.path.join(raw, "benchmark_RELEASE", "dataset"), sbd_root)
    lists = [os.path.join(root, "ImageSets", "Segmentation", n) for n in ("train.txt", "val.txt")]
    for path in lists + [os.path.join(sbd_root, n) for n in ("train.txt", "val.txt")]:
        with open(path) as f:
            text = f.read()
        with open(path, "wb") as f:  # as a Windows editor saves them
            f.write(("\ufeff" + text.replace("\n", "\r\n")).encode())
    # The first val id is one of the three VOC val images SBD's train.txt holds.
    assert fileio.read_list(lists[1])[0] in fileio.read_list(os.path.join(sbd_root, "train.txt"))
    meta = voc.build_target(root, str(tmp_path / "target"), sbd_root=sbd_root, size=SIZE)
    assert meta["params"]["removed_voc_val"] == 3 and meta["count"] == N_TRAIN + N_SBD


@pytest.mark.parametrize(
    "content, message",
    [
        ("2012_000000\n".encode("utf-16"), "is UTF-16 text"),
        ("2012_000000\n2012_00000\xe9\n".encode("latin-1"), "byte 0xe9 at line 2 is not UTF-8"),
    ],
)
def test_target_list_that_is_not_utf8_is_one_error_naming_it(raw, tmp_path, content, message):
    root = str(tmp_path / "VOC2012")
    shutil.copytree(os.path.join(raw, "VOCdevkit", "VOC2012"), root)
    path = os.path.join(root, "ImageSets", "Segmentation", "val.txt")
    with open(path, "wb") as f:
        f.write(content)
    out = str(tmp_path / "target")
    cli = subprocess.run(
        [sys.executable, "-m", "data_prep.voc", "--voc-root", root, "--out", out],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert cli.stderr.startswith("data_prep.voc: %s" % path) and message in cli.stderr
    assert not os.path.exists(out)


def test_target_without_sbd_says_so(raw, tmp_path, capsys):
    meta = voc.build_target(
        os.path.join(raw, "VOCdevkit", "VOC2012"), str(tmp_path / "t"), size=SIZE
    )
    assert meta["count"] == N_TRAIN and meta["split"] == "voc_train"
    assert "VOC 2012 train only" in capsys.readouterr().out


def test_missing_roots_explain_layout_and_download(raw, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)instances_train2014\.json.*cocodataset"):
        coco.build_source(str(tmp_path / "nococo"), str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match=r"(?s)SegmentationClass.*host\.robots\.ox"):
        voc.build_target(str(tmp_path / "novoc"), str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match=r"(?s)cls/.*Hariharan"):
        voc.build_target(
            os.path.join(raw, "VOCdevkit", "VOC2012"),
            str(tmp_path / "o"),
            sbd_root=str(tmp_path / "nosbd"),
        )
    assert not os.path.exists(str(tmp_path / "o"))


def test_cli_ratio_subset_is_seeded(raw, gt, tmp_path):
    def run(seed, out):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "data_prep.coco",
                "--root",
                os.path.join(raw, "coco"),
                "--out",
                out,
                "--size",
                "32",
                "--ratio",
                "0.5",
                "--seed",
                str(seed),
                "--workers",
                "1",
            ],
            check=True,
            capture_output=True,
        )
        return records.read_meta(out), _read_all(out, "images")

    n = len(_expected_source_ids(gt))
    meta, a = run(1, str(tmp_path / "a"))
    assert meta["count"] == round(0.5 * n) and meta["dropped"]["not_sampled_ratio"] == n - len(a)
    assert meta["params"]["ratio"] == 0.5 and meta["params"]["seed"] == 1
    assert run(1, str(tmp_path / "b"))[1] == a
    assert run(2, str(tmp_path / "c"))[1] != a


def test_coco_bad_inputs_skipped_counted_reported(raw, gt, tmp_path):
    root = str(tmp_path / "coco")
    shutil.copytree(os.path.join(raw, "coco"), root)
    with open(os.path.join(root, "annotations", "instances_train2014.json")) as f:
        data = json.load(f)
    kept = _expected_source_ids(gt)
    info = {im["id"]: im for im in data["images"]}
    path = lambda i: os.path.join(root, "train2014", info[i]["file_name"])  # noqa: E731
    bad = {}
    with open(path(kept[0]), "wb") as f:  # unreadable
        f.write(b"not an image at all")
    bad[kept[0]] = "unreadable_image"
    with open(path(kept[1]), "rb") as f:
        jpeg = f.read()
    with open(path(kept[1]), "wb") as f:  # truncated
        f.write(jpeg[: len(jpeg) // 2])
    bad[kept[1]] = "truncated_image"
    info[kept[2]]["height"] += 7  # annotations drawn on another size than the image
    bad[kept[2]] = "mask_size_differs_from_image"
    ann_of = {a["image_id"]: a for a in data["annotations"] if not a["iscrowd"]}
    ann_of[kept[3]]["category_id"] = 12  # not a COCO category id
    bad[kept[3]] = "unknown_category_id"
    ann_of[kept[4]]["segmentation"] = [[1.0, 1.0, 5.0, 5.0]]  # two points
    bad[kept[4]] = "degenerate_polygon"
    ann_of[kept[5]]["segmentation"] = [[1.0, 1.0, 5.0, 5.0, 9.0, 9.0]]  # collinear
    bad[kept[5]] = "degenerate_polygon"
    # Converted, not dropped: grayscale, RGBA PNG, CMYK JPEG.
    originals = {}
    for i, mode in zip(kept[6:9], ("L", "RGBA", "CMYK")):
        originals[i] = cv2.imread(path(i))
        rgb = Image.fromarray(originals[i][:, :, ::-1])
        name = info[i]["file_name"].replace(".jpg", ".png" if mode == "RGBA" else ".jpg")
        info[i]["file_name"] = name
        rgb.convert(mode).save(path(i), quality=95)
    with open(os.path.join(root, "annotations", "instances_train2014.json"), "w") as f:
        json.dump(data, f)

    out = str(tmp_path / "source")
    meta = coco.build_source(root, out, size=SIZE, workers=2)
    assert meta["count"] == len(kept) - len(bad)
    for reason in set(bad.values()):
        assert meta["dropped"][reason] == list(bad.values()).count(reason)
    assert sorted((r, name) for r, name, _ in _report(out)) == sorted(
        (bad[i], info[i]["file_name"]) for i in bad
    )
    images = _read_all(out, "images")
    survivors = [i for i in kept if i not in bad]
    for i in kept[6:9]:
        image, _ = records.decode_image(images[survivors.index(i)])
        ref = cv2.resize(originals[i], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        if i == kept[6]:  # grayscale: three equal channels
            assert np.abs(image[..., 0].astype(int) - image[..., 2]).max() <= 2
        else:
            assert np.abs(image.astype(int) - ref).mean() < 6


def test_voc_bad_inputs_skipped_counted_reported(raw, tmp_path):
    root = str(tmp_path / "VOC2012")
    shutil.copytree(os.path.join(raw, "VOCdevkit", "VOC2012"), root)
    seg = lambda n: os.path.join(root, "SegmentationClass", n + ".png")  # noqa: E731
    with open(os.path.join(root, "JPEGImages", "2012_000000.jpg"), "wb") as f:
        f.write(b"\xff\xd8garbage")
    png = Image.open(seg("2012_000001"))
    png.resize((png.width + 3, png.height)).save(seg("2012_000001"))
    labels = np.array(Image.open(seg("2012_000002")))
    labels[labels == labels[labels % 255 > 0][0]] = 33  # not a VOC class
    fileio.write_label_png(seg("2012_000002"), labels)
    out = str(tmp_path / "target")
    meta = voc.build_target(root, out, size=SIZE)
    bad = {
        "2012_000000": "truncated_image",
        "2012_000001": "mask_size_differs_from_image",
        "2012_000002": "unknown_category_id",
    }
    assert meta["count"] == N_TRAIN - 3
    assert meta["dropped"] == {r: 1 for r in bad.values()}
    assert sorted((n, r) for r, n, _ in _report(out)) == sorted(bad.items())


def test_failed_build_keeps_previous_dataset(raw, tmp_path):
    out = str(tmp_path / "source")
    coco.build_source(os.path.join(raw, "coco"), out, size=32, ratio=0.2)
    before = _read_all(out, "images")
    os.makedirs(str(tmp_path / "coco" / "empty"))
    shutil.copytree(
        os.path.join(raw, "coco", "annotations"), str(tmp_path / "coco" / "annotations")
    )
    # Every image missing: nothing to write, the build fails ...
    with pytest.raises(ValueError, match="no records"):
        coco.build_source(str(tmp_path / "coco"), out, images="empty", size=32)
    # ... and the previous dataset is untouched, with no leftovers beside it.
    assert _read_all(out, "images") == before and records.read_meta(out)["params"]["ratio"] == 0.2
    assert sorted(os.listdir(str(tmp_path))) == ["coco", "source"]


def test_ensure_regenerates_only_for_other_settings(tmp_path):
    out = str(tmp_path / "b")
    small = dict(seed=3, source_images=4, target_train=2, target_val=1)
    assert builtin.ensure(out, **small)
    marker = os.path.join(out, "builtin.json")
    stamp = os.path.getmtime(marker)
    assert not builtin.ensure(out, **small)  # same settings and version: kept
    assert os.path.getmtime(marker) == stamp
    assert builtin.ensure(out, **dict(small, target_val=2))  # other counts: regenerated
    with open(marker) as f:
        assert json.load(f)["target_val"] == 2
    val = os.path.join(out, "VOCdevkit", "VOC2012", "ImageSets", "Segmentation", "val.txt")
    assert len(open(val).read().split()) == 2


def test_ensure_lmdbs_makes_only_what_is_not_current_and_says_so(tmp_path):
    out, lines = str(tmp_path / "b"), []
    small = dict(seed=2, source_images=12, target_train=6, target_val=2)
    whole, half = builtin_lmdbs.ALL_SOURCE, (0.5, 1)

    def ensure(size):
        return builtin_lmdbs.ensure_lmdbs(out, size, lines.append, [whole, half, half], **small)

    data = ensure(20)
    target, sources = data.target, data.sources
    lmdb_dir = os.path.join(out, "lmdb")
    assert lines == [
        "generated the built-in dataset in %s (seed 2, source_images 12, target_train 6, "
        "target_val 2)" % out,
        "building %s/target (records 20x20)" % lmdb_dir,
        "building %s/source (records 20x20)" % lmdb_dir,
        "building %s/source_r050_s1 (records 20x20, ratio 0.5, subset seed 1)" % lmdb_dir,
    ]
    assert target == lmdb_dir + "/target" and data.table == class_table.PAPER
    assert data.spec.val.list == os.path.join(
        out, "VOCdevkit", "VOC2012", "ImageSets", "Segmentation", "val.txt"
    )
    assert sources == {whole: lmdb_dir + "/source", half: lmdb_dir + "/source_r050_s1"}
    assert [records.read_meta(sources[s])["params"]["ratio"] for s in (whole, half)] == [1.0, 0.5]
    del lines[:]
    assert ensure(20) == data and lines == []  # all current
    ensure(24)  # another record size: the LMDBs again, not the dataset
    assert [line.split()[1] for line in lines] == [target, sources[whole], sources[half]]


def _kept_annotation(data, image_id):
    return next(a for a in data["annotations"] if a["image_id"] == image_id and not a["iscrowd"])


def test_coco_malformed_entries_and_empty_image_skipped_counted_reported(raw, gt, tmp_path):
    root = str(tmp_path / "coco")
    shutil.copytree(os.path.join(raw, "coco"), root)
    json_path = os.path.join(root, "annotations", "instances_train2014.json")
    with open(json_path) as f:
        data = json.load(f)
    kept = _expected_source_ids(gt)
    name = {im["id"]: im["file_name"] for im in data["images"]}
    del _kept_annotation(data, kept[0])["segmentation"]  # bbox only
    del _kept_annotation(data, kept[1])["id"]
    orphan = dict(_kept_annotation(data, kept[2]), id=10**6)
    del orphan["image_id"]
    data["annotations"].append(orphan)  # belongs to no image: reported on its own
    entry = next(im for im in data["images"] if im["id"] == kept[3])
    del entry["height"]
    with open(json_path, "w") as f:
        json.dump(data, f)
    open(os.path.join(root, "train2014", name[kept[4]]), "wb").close()  # 0 bytes

    out = str(tmp_path / "source")
    meta = coco.build_source(root, out, size=SIZE, workers=2)
    assert meta["count"] == len(kept) - 4
    assert meta["dropped"]["malformed_annotation"] == 3
    assert meta["dropped"]["malformed_image_entry"] == 1
    assert meta["dropped"]["unreadable_image"] == 1
    rows = {(r, item): detail for r, item, detail in _report(out)}
    orphan_item = "annotations[%d]" % (len(data["annotations"]) - 1)
    image_item = "images[%d]" % data["images"].index(entry)
    assert sorted(rows) == sorted(
        [
            ("malformed_annotation", name[kept[0]]),
            ("malformed_annotation", name[kept[1]]),
            ("malformed_annotation", orphan_item),
            ("malformed_image_entry", image_item),
            ("unreadable_image", name[kept[4]]),
        ]
    )
    assert "has no 'segmentation'" in rows[("malformed_annotation", name[kept[0]])]
    assert "has no 'id'" in rows[("malformed_annotation", name[kept[1]])]
    assert "has no 'image_id'" in rows[("malformed_annotation", orphan_item)]
    assert "has no 'height'" in rows[("malformed_image_entry", image_item)]
    assert "empty file" in rows[("unreadable_image", name[kept[4]])]


def _copy_coco(raw, tmp_path):
    root = str(tmp_path / "coco")
    shutil.copytree(os.path.join(raw, "coco"), root)
    json_path = os.path.join(root, "annotations", "instances_train2014.json")
    with open(json_path) as f:
        return root, json_path, json.load(f)


def test_coco_ids_that_do_not_fit_together_are_counted_skips(raw, gt, tmp_path):
    root, json_path, data = _copy_coco(raw, tmp_path)
    kept = _expected_source_ids(gt)
    info = {im["id"]: im for im in data["images"]}
    name = {i: info[i]["file_name"] for i in kept}
    # A second entry with kept[0]'s id, one naming kept[1]'s file, an annotation of no
    # image, an annotation of a COCO category (truck) the JSON's categories do not list.
    data["images"].append(dict(info[kept[0]], file_name="COCO_other.jpg"))
    data["images"].append(dict(info[kept[1]], id=10**6))
    data["annotations"].append(dict(_kept_annotation(data, kept[2]), id=10**7, image_id=10**8))
    _kept_annotation(data, kept[3])["category_id"] = 8
    data["categories"] = [c for c in data["categories"] if c["id"] != 8]
    with open(json_path, "w") as f:
        json.dump(data, f)
    out = str(tmp_path / "source")
    meta = coco.build_source(root, out, size=SIZE, workers=2)
    assert meta["count"] == len(kept) - 3
    rows = _report(out)
    assert sorted((r, item) for r, item, _ in rows) == sorted(
        [
            ("duplicate_image_id", name[kept[0]]),
            ("duplicate_image_id", "COCO_other.jpg"),
            ("duplicate_file_name", name[kept[1]]),
            ("duplicate_file_name", name[kept[1]]),
            ("annotation_without_image", "annotations[%d]" % (len(data["annotations"]) - 1)),
            ("unknown_category_id", name[kept[3]]),
        ]
    )
    details = {r: d for r, _, d in rows}
    n = len(data["images"])
    assert details["duplicate_image_id"] == "images[%d, %d] have the same id %d" % (
        data["images"].index(info[kept[0]]),
        n - 2,
        kept[0],
    )
    assert "(ids %d, %d) name the same file" % (kept[1], 10**6) in details["duplicate_file_name"]
    assert details["annotation_without_image"] == (
        "annotation %d: no image entry has its image_id %d" % (10**7, 10**8)
    )
    assert (
        "has category id 8, which the JSON's categories do not list"
        in (details["unknown_category_id"])
    )
    assert (
        meta["dropped"]["duplicate_image_id"] == 2 and meta["dropped"]["duplicate_file_name"] == 2
    )
    assert set(meta["class_counts"]) <= set(meta["classes"])  # every class kept is in the table
    assert multiprocessing.active_children() == []  # the build's pool is closed


def _bad_segmentations(h, w, polygon):
    """(segmentation, message) pairs of an h x w image with a valid `polygon`."""
    return [
        (polygon, "a flat polygon [x, y, ...]; COCO polygons are a list of lists"),
        ([[float("nan")] + polygon[1:]], "polygon 0 has coordinate nan, not a finite number"),
        ([[1e30] + polygon[1:]], "polygon 0 has point (1e+30, "),
        ([polygon, "x"], "polygon 1 is 'x', not a list of coordinates"),
        (
            {"counts": [h * w + 5], "size": [h, w]},  # pycocotools raises
            "RLE run lengths sum to %d, not the %dx%d = %d" % (h * w + 5, h, w, h * w),
        ),
        (  # pycocotools decodes uninitialised memory
            {"counts": [h * w - 5], "size": [h, w]},
            "RLE run lengths sum to %d, not" % (h * w - 5),
        ),
        ({"counts": [3, -3, h * w], "size": [h, w]}, "RLE with a negative run length"),
        ({"counts": "garbage!!", "size": [h, w]}, "RLE counts 'garbage!!' is not a compressed"),
        ({"counts": "12", "size": [h, w]}, "RLE run lengths sum to 3, not"),
        ({"counts": "0" + chr(48 + 0x20), "size": [h, w]}, "RLE counts '0P' is not a compressed"),
        (
            {"counts": "12", "size": "%dx%d" % (h, w)},
            "RLE size '%dx%d' is not [height, width]" % (h, w),
        ),
        ({"size": [h, w]}, "RLE without 'counts'"),
    ]


def test_rle_string_counts_are_pycocotools_run_lengths():
    rng = np.random.RandomState(0)
    for shape in [(1, 1), (7, 5), (40, 33), (300, 200)]:
        mask = np.asfortranarray((rng.rand(*shape) < rng.rand()).astype(np.uint8))
        mask[: rng.randint(shape[0] + 1)] = 1  # long runs: values of several 5-bit groups
        flat = mask.ravel(order="F")
        edges = np.flatnonzero(np.diff(flat)) + 1
        runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
        runs = ([0] if flat[0] else []) + runs  # COCO runs start with a background run
        counts = mask_utils.encode(mask)["counts"]
        assert coco.rle_string_counts(counts) == runs
        assert coco.rle_string_counts(counts.decode()) == runs


def test_coco_malformed_segmentations_are_counted_skips_naming_the_annotation(raw, gt, tmp_path):
    root, json_path, data = _copy_coco(raw, tmp_path)
    kept = _expected_source_ids(gt)
    info = {im["id"]: im for im in data["images"]}
    cases = len(_bad_segmentations(1, 1, []))
    expected = {}
    for k, i in enumerate(kept[1 : 1 + cases]):
        ann = _kept_annotation(data, i)
        h, w = info[i]["height"], info[i]["width"]
        ann["segmentation"], message = _bad_segmentations(h, w, ann["segmentation"][0])[k]
        expected[info[i]["file_name"]] = "annotation %d: %s" % (ann["id"], message)
    # An outline as a compressed RLE (what iscrowd annotations hold) is kept.
    ann = _kept_annotation(data, kept[0])
    h, w = info[kept[0]]["height"], info[kept[0]]["width"]
    mask = coco.instance_mask(ann["segmentation"], h, w, "test").astype(np.uint8)
    rle = mask_utils.encode(np.asfortranarray(mask))
    ann["segmentation"] = dict(rle, counts=rle["counts"].decode())
    with open(json_path, "w") as f:
        json.dump(data, f)  # NaN as JSON's NaN, which json.loads (and the COCO API) read
    out = str(tmp_path / "source")
    meta = coco.build_source(root, out, size=SIZE, workers=2)
    assert meta["count"] == len(kept) - cases
    assert meta["dropped"]["malformed_segmentation"] == cases
    rows = {item: detail for r, item, detail in _report(out) if r == "malformed_segmentation"}
    assert sorted(rows) == sorted(expected)
    for item, message in expected.items():
        assert message in rows[item], (rows[item], message)


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"images": [', r"is not valid JSON: Expecting value: line 1 column 13"),
        (b"", r"is not valid JSON"),
        (b"[]", r"is a list, not an object"),
        (b'{"images": [], "annotations": []}', r"has no 'categories': a COCO instances JSON has"),
        (b'{"images": {}, "annotations": [], "categories": []}', r"has 'images' = \{\}"),
        (
            b'{"images": [], "annotations": [], "categories": [{"id": 13}]}',
            r": categories\[0\] has no 'name'",
        ),
    ],
)
def test_coco_unusable_json_is_one_error_naming_file(tmp_path, content, message):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train2014").mkdir()
    path = root / "annotations" / "instances_train2014.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + message):
        coco.build_source(str(root), str(tmp_path / "out"))
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_prep.coco",
            "--root",
            str(root),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert re.search("^data_prep.coco: " + re.escape(str(path)) + ".*" + message, cli.stderr)
    assert not os.path.exists(str(tmp_path / "out"))


def test_voc_sbd_empty_and_broken_files_skipped_counted(raw, tmp_path):
    root = str(tmp_path / "VOC2012")
    shutil.copytree(os.path.join(raw, "VOCdevkit", "VOC2012"), root)
    sbd_root = str(tmp_path / "sbd")
    shutil.copytree(os.path.join(raw, "benchmark_RELEASE", "dataset"), sbd_root)
    open(os.path.join(root, "JPEGImages", "2012_000000.jpg"), "wb").close()
    open(os.path.join(root, "SegmentationClass", "2012_000001.png"), "wb").close()
    open(os.path.join(sbd_root, "cls", "2011_000000.mat"), "wb").close()
    mat = os.path.join(sbd_root, "cls", "2011_000001.mat")
    with open(mat, "rb") as f:
        head = f.read(100)  # header only: scipy raises IndexError on it
    with open(mat, "wb") as f:
        f.write(head)
    out = str(tmp_path / "target")
    meta = voc.build_target(root, out, sbd_root=sbd_root, size=SIZE)
    assert meta["count"] == N_TRAIN + N_SBD - 4
    assert meta["dropped"] == {"unreadable_image": 1, "unreadable_mask": 3}
    rows = {item: detail for _, item, detail in _report(out)}
    assert "empty file" in rows["2012_000000"]
    assert "Mat file appears to be empty" in rows["2011_000000"]
    assert "not a readable .mat file" in rows["2011_000001"]
    assert sorted(rows) == ["2011_000000", "2011_000001", "2012_000000", "2012_000001"]


def test_build_with_no_records_prints_counts_and_parameters(raw, gt, tmp_path):
    out = str(tmp_path / "source")
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_prep.coco",
            "--root",
            os.path.join(raw, "coco"),
            "--out",
            out,
            "--size",
            "32",
            "--ratio",
            "0.001",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    n = len(_expected_source_ids(gt))
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    assert "%s: kept 0 images" % out in cli.stdout
    assert "dropped %d: not_sampled_ratio" % n in cli.stdout
    assert "dropped %d: no_annotation" % (N_SOURCE // builtin.EMPTY_EVERY) in cli.stdout
    assert re.search(
        r"no records to write: every input was dropped \(counts above\); "
        r"parameters: .*ratio=0\.001, .*seed=0, size=32",
        cli.stderr,
    )
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")


def _wait_for(path, proc):
    while not os.path.exists(path):
        assert proc.poll() is None, "finished before %s appeared" % path
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_interrupted_builtin_generation_is_cleaned_and_redone(tmp_path, sig):
    out = str(tmp_path / "b")
    small = dict(seed=3, source_images=4, target_train=2, target_val=1)
    assert builtin.ensure(out, **small)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "data_prep.builtin",
            "--out",
            out,
            "--seed",
            "4",
            "--source-images",
            "400",
            "--workers",
            "1",
        ]
    )
    # Once the workers run (a SIGTERM while the pool forks them can be lost: Python ignores
    # exceptions raised in its at-fork callbacks, and the generation then simply completes).
    _wait_for(
        os.path.join(out, ".building", "coco", "train2014", "COCO_train2014_%012d.jpg" % 1), proc
    )
    proc.send_signal(sig)
    assert proc.wait() == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    # SIGTERM: cleaned up at once; SIGKILL: left, then cleaned up by the next run. Either way
    # the settings marker went first, so the next ensure regenerates.
    assert os.path.exists(os.path.join(out, ".building")) == (sig == signal.SIGKILL)
    assert not os.path.exists(os.path.join(out, "builtin.json"))
    assert builtin.ensure(out, **small)
    assert sorted(os.listdir(out)) == ["VOCdevkit", "builtin.json", "coco", "spec.json"]


def test_leftover_building_folder_removed_when_dataset_current(tmp_path):
    out = str(tmp_path / "b")
    small = dict(seed=3, source_images=4, target_train=2, target_val=1)
    builtin.ensure(out, **small)
    os.makedirs(os.path.join(out, ".building", "coco"))
    assert not builtin.ensure(out, **small)
    assert sorted(os.listdir(out)) == ["VOCdevkit", "builtin.json", "coco", "spec.json"]


def test_builtin_cli_regenerates_a_stale_tree(tmp_path):
    out = str(tmp_path / "b")
    args = [
        sys.executable,
        "-m",
        "data_prep.builtin",
        "--out",
        out,
        "--source-images",
        "4",
        "--target-train",
        "2",
        "--target-val",
        "1",
        "--workers",
        "1",
    ]
    assert (
        "data_prep.builtin: wrote"
        in subprocess.run(args, capture_output=True, text=True, check=True).stderr
    )
    assert "up to date" in subprocess.run(args, capture_output=True, text=True, check=True).stderr
    marker = os.path.join(out, "builtin.json")
    with open(marker) as f:
        params = json.load(f)
    with open(marker, "w") as f:
        json.dump(dict(params, version=builtin.VERSION - 1), f)  # an older generator's tree
    assert (
        "data_prep.builtin: wrote"
        in subprocess.run(args, capture_output=True, text=True, check=True).stderr
    )
    with open(marker) as f:
        assert json.load(f) == params
    shutil.rmtree(os.path.join(out, "coco"))  # a tree deleted by hand
    assert (
        "data_prep.builtin: wrote"
        in subprocess.run(args, capture_output=True, text=True, check=True).stderr
    )


def test_leftover_partial_lmdb_removed_by_next_build(raw, tmp_path):
    out = str(tmp_path / "target")
    os.makedirs(out + ".partial")  # as a SIGKILLed build leaves it
    with pytest.raises(FileNotFoundError):  # even a build that fails early removes it
        voc.build_target(
            os.path.join(raw, "VOCdevkit", "VOC2012"),
            out,
            size=SIZE,
            sbd_root=str(tmp_path / "nosbd"),
        )
    assert os.listdir(str(tmp_path)) == []
    os.makedirs(os.path.join(out + ".partial", "images"))
    voc.build_target(os.path.join(raw, "VOCdevkit", "VOC2012"), out, size=SIZE)
    assert os.listdir(str(tmp_path)) == ["target"]


def test_sigterm_during_lmdb_build_removes_partial(raw, tmp_path):
    out = str(tmp_path / "source")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "data_prep.coco",
            "--root",
            os.path.join(raw, "coco"),
            "--out",
            out,
            "--size",
            "330",
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(os.path.join(out + ".partial", "images"), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert os.listdir(str(tmp_path)) == []


def test_ctrl_c_during_lmdb_build_keeps_the_previous_dataset(raw, tmp_path):
    out = str(tmp_path / "source")
    coco.build_source(os.path.join(raw, "coco"), out, size=32, ratio=0.2, workers=1)
    before = _read_all(out, "images")
    cmd = [sys.executable, "-m", "data_prep.coco", "--root", os.path.join(raw, "coco")]
    status, stdout, stderr = interrupt_when(
        cmd + ["--out", out, "--size", "330", "--workers", "2"],
        lambda: os.path.exists(os.path.join(out + ".partial", "images")),
    )
    assert status == 130 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.splitlines()[-1] == (
        "data_prep.coco: interrupted: %s not built (nothing of this build is kept); run the "
        "same command again to build it" % out
    )
    assert sorted(os.listdir(str(tmp_path))) == ["source"] and _read_all(out, "images") == before


def test_ctrl_c_during_builtin_generation_leaves_no_tree_half_made(tmp_path):
    out = str(tmp_path / "b")
    cmd = [sys.executable, "-m", "data_prep.builtin", "--out", out, "--source-images", "400"]
    first = os.path.join(out, ".building", "coco", "train2014", "COCO_train2014_%012d.jpg" % 1)
    status, _, stderr = interrupt_when(cmd + ["--workers", "2"], lambda: os.path.exists(first))
    assert status == 130 and "Traceback" not in stderr
    assert stderr.splitlines()[-1].startswith("data_prep.builtin: interrupted: %s not built" % out)
    assert os.listdir(out) == []
