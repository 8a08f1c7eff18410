"""data_prep.builtin's splits: the paper's (COCO / VOC trees) and shapes3 (COCO-format source,
tags CSV target, masked val set), each with its dataset spec beside its trees."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_prep import builtin
from transfernet import class_table, classes

COUNTS = dict(source_images=30, target_train=12, target_val=6)
SHAPES3_SOURCE = ("blob", "gear", "leaf", "drop", "bolt", "ring", "wave")


def _json(path):
    with open(path) as f:
        return json.load(f)


def _files(root):
    """{relative path: bytes} of every file under root."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def _spec_paths(spec):
    """The paths a spec names, by field."""
    paths = {"source." + k: spec["source"][k] for k in ("coco", "images")}
    for side in ("target", "val"):
        paths.update(
            ("%s.%s" % (side, k), v)
            for k, v in spec[side].items()
            if k in ("voc", "sbd", "csv", "images", "masks", "list")
        )
    return paths


@pytest.fixture(scope="module")
def shapes3(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shapes3"))
    # 50 source images: the 50th is the empty one
    builtin.generate(out, seed=2, split="shapes3", **dict(COUNTS, source_images=50))
    return out


def test_paper_split_lists_the_80_coco_categories_and_specs_the_voc_classes(tmp_path):
    out = str(tmp_path)
    builtin.generate(out, seed=1, sbd=2, workers=1, **COUNTS)
    dataset = _json(os.path.join(out, "coco", "annotations", "instances_train2014.json"))
    assert [(c["id"], c["name"]) for c in dataset["categories"]] == list(classes.COCO_CATEGORIES)
    assert {a["category_id"] for a in dataset["annotations"]} <= {5, 10, 13, 28, 38, 52, 84}
    spec = _json(os.path.join(out, "spec.json"))
    assert spec["name"] == class_table.PAPER.name and spec["out"] == "lmdb"
    assert spec["target"]["classes"] == list(classes.VOC_CLASSES)
    assert (
        spec["overlaps"] == classes.PAPER_OVERLAPS and spec["overlaps"]["airplane"] == "aeroplane"
    )
    assert spec["source"]["categories"] == "all_except_target"
    assert spec["val"] == {"voc": "VOCdevkit/VOC2012", "split": "val"}
    assert spec["target"]["sbd"] == "benchmark_RELEASE/dataset"
    for field, path in _spec_paths(spec).items():
        assert os.path.exists(os.path.join(out, path)), field
    assert _json(os.path.join(out, builtin.MARKER))["split"] == "paper"
    builtin.generate(out, seed=1, workers=1, **COUNTS)  # no SBD: neither its tree nor its entry
    assert "sbd" not in _json(os.path.join(out, "spec.json"))["target"]
    assert sorted(os.listdir(out)) == ["VOCdevkit", "builtin.json", "coco", "spec.json"]


def test_shapes3_source_has_its_own_categories_crowds_empties_and_crosses(shapes3):
    dataset = _json(os.path.join(shapes3, "coco", "annotations", "instances.json"))
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    assert names == dict(enumerate(SHAPES3_SOURCE + ("cross",), 1))
    images = dataset["images"]
    assert [i["id"] for i in images] == list(range(1, 51))
    assert [i["file_name"] for i in images[:2]] == ["src_000001.jpg", "src_000002.jpg"]
    for info in images:
        with Image.open(os.path.join(shapes3, "coco", "images", info["file_name"])) as im:
            assert im.size == (info["width"], info["height"])
    cats = {i["id"]: set() for i in images}
    for a in dataset["annotations"]:
        cats[a["image_id"]].add(a["category_id"])
    crosses = [i for i, c in cats.items() if 8 in c]
    assert 0 < len(crosses) < 50 // 3  # about 10 % of the images: the spec's rule drops them
    assert all(c - {8} for i, c in cats.items() if i in crosses)  # crosses join source objects
    assert [i for i, c in cats.items() if not c] == [50]  # every 50th image is empty
    crowds = [a for a in dataset["annotations"] if a["iscrowd"]]
    assert crowds and all(isinstance(a["segmentation"]["counts"], list) for a in crowds)
    assert {a["category_id"] for a in crowds} <= set(range(1, 8))


def test_shapes3_tags_name_the_classes_each_train_image_shows(shapes3, tmp_path):
    with open(os.path.join(shapes3, "target", "tags.csv"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "labels"]
    rows = rows[1:]
    assert [r[0] for r in rows] == ["t_%06d.jpg" % (i + 1) for i in range(COUNTS["target_train"])]
    assert sorted(os.listdir(os.path.join(shapes3, "target", "images"))) == [r[0] for r in rows]
    ids = {n: k + 1 for k, n in enumerate(builtin.SHAPES3_CLASSES)}
    seen = set()
    for index, (name, labels) in enumerate(rows):
        labels = labels.split(";")
        assert labels and set(labels) <= set(ids), (name, labels)
        assert [ids[n] for n in labels] == sorted({ids[n] for n in labels})  # by class id
        seen.update(labels)
        # The same image rendered again with a mask: the classes the mask shows are the tags.
        os.makedirs(str(tmp_path / "JPEGImages"), exist_ok=True)
        os.makedirs(str(tmp_path / "SegmentationClass"), exist_ok=True)
        job = (str(tmp_path), "shapes3", 2, builtin.TARGET_DOMAIN, index, "x", builtin.VOC)
        builtin.target_image(job)
        with open(str(tmp_path / "JPEGImages" / "x.jpg"), "rb") as a:
            with open(os.path.join(shapes3, "target", "images", name), "rb") as b:
                assert a.read() == b.read()
        mask = np.array(Image.open(str(tmp_path / "SegmentationClass" / "x.png")))
        assert sorted(set(np.unique(mask)) - {0, 255}) == [ids[n] for n in labels], name
    assert seen == set(ids)


def test_shapes3_val_masks_are_palette_pngs_of_the_three_classes(shapes3):
    with open(os.path.join(shapes3, "val", "val.txt")) as f:
        names = f.read().split()
    assert names == ["v_%06d" % (i + 1) for i in range(COUNTS["target_val"])]
    shown = set()
    for name in names:
        assert os.path.isfile(os.path.join(shapes3, "val", "JPEGImages", name + ".jpg"))
        png = Image.open(os.path.join(shapes3, "val", "SegmentationClass", name + ".png"))
        values = set(np.unique(np.array(png)))
        assert png.mode == "P" and 255 in values and values <= {0, 1, 2, 3, 255}, name
        shown |= values - {0, 255}
    assert shown == {1, 2, 3}


def test_shapes3_spec_names_its_trees_and_classes(shapes3):
    spec = _json(os.path.join(shapes3, "spec.json"))
    assert spec == {
        "name": "shapes3",
        "source": {
            "coco": "coco/annotations/instances.json",
            "images": "coco/images",
            "categories": "all_except_target",
        },
        "target": {
            "csv": "target/tags.csv",
            "images": "target/images",
            "classes": ["cross", "chevron", "triangle"],
        },
        "val": {
            "images": "val/JPEGImages",
            "masks": "val/SegmentationClass",
            "list": "val/val.txt",
        },
        "out": "lmdb",
    }
    for field, path in _spec_paths(spec).items():
        assert os.path.exists(os.path.join(shapes3, path)), field
    assert sorted(os.listdir(shapes3)) == ["builtin.json", "coco", "spec.json", "target", "val"]
    # "all_except_target": the source categories are the JSON's but the target classes
    dataset = _json(os.path.join(shapes3, spec["source"]["coco"]))
    source = [
        c["name"] for c in dataset["categories"] if c["name"] not in spec["target"]["classes"]
    ]
    assert tuple(source) == SHAPES3_SOURCE


def test_shapes3_hues_give_the_cross_distractor_the_cross_class_hue():
    palettes = builtin.PALETTES["shapes3"]
    assert palettes.source.hue[8] == palettes.target.hue[1]  # the same class, cross
    hues = list(palettes.source.hue.values()) + list(palettes.target.hue.values())
    assert len(set(hues)) == 10  # 7 source + 3 target classes, each its own
    assert palettes.source.wide == frozenset(range(1, 8))  # not the distractor: a target class
    paper = builtin.PALETTES["paper"]
    assert paper.source.hue[5] != paper.target.hue[1]  # COCO airplane is not VOC's aeroplane


@pytest.mark.parametrize("split", builtin.SPLITS)
def test_generation_is_deterministic_by_seed(split, tmp_path):
    runs = {}
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        builtin.generate(str(tmp_path / name), seed=seed, split=split, workers=2, **COUNTS)
        runs[name] = _files(str(tmp_path / name))
    assert runs["a"] == runs["b"]
    assert set(runs["c"]) == set(runs["a"]) and runs["c"] != runs["a"]


def test_ensure_regenerates_when_the_split_changes(tmp_path):
    out = str(tmp_path / "b")
    small = dict(seed=3, source_images=4, target_train=2, target_val=1)
    assert builtin.ensure(out, **small)
    assert not builtin.ensure(out, split="paper", **small)  # the default split: kept
    assert builtin.ensure(out, split="shapes3", **small)
    assert sorted(os.listdir(out)) == ["builtin.json", "coco", "spec.json", "target", "val"]
    assert _json(os.path.join(out, builtin.MARKER))["split"] == "shapes3"
    assert _json(os.path.join(out, "spec.json"))["name"] == "shapes3"
    assert os.listdir(os.path.join(out, "coco", "annotations")) == ["instances.json"]
    assert not builtin.ensure(out, split="shapes3", **small)
    os.remove(os.path.join(out, "spec.json"))  # a spec deleted by hand
    assert builtin.ensure(out, split="shapes3", **small)
    assert os.path.isfile(os.path.join(out, "spec.json"))
    assert builtin.ensure(out, **small)
    assert sorted(os.listdir(out)) == ["VOCdevkit", "builtin.json", "coco", "spec.json"]


def test_cli_split_option(tmp_path):
    out = str(tmp_path / "b")
    args = [sys.executable, "-m", "data_prep.builtin", "--out", out, "--split", "shapes3"]
    args += ["--source-images", "3", "--target-train", "2", "--target-val", "1", "--workers", "1"]
    subprocess.run(args, capture_output=True, text=True, check=True)
    assert _json(os.path.join(out, builtin.MARKER)) == dict(
        version=builtin.VERSION,
        split="shapes3",
        seed=0,
        source_images=3,
        target_train=2,
        target_val=1,
        sbd=0,
    )
    bad = subprocess.run(args[:-2] + ["--split", "voc"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'voc'" in bad.stderr


def test_bad_split_settings_are_refused_before_anything_is_removed(tmp_path):
    out = str(tmp_path)
    small = dict(seed=3, source_images=2, target_train=1, target_val=1)
    builtin.generate(out, split="shapes3", **small)
    before = _files(out)
    with pytest.raises(ValueError, match="unknown split 'coco'"):
        builtin.generate(out, split="coco", **small)
    with pytest.raises(ValueError, match="shapes3 split has no SBD tree"):
        builtin.ensure(out, split="shapes3", sbd=2, **small)
    assert _files(out) == before


def test_failure_before_the_spec_is_written_leaves_no_marker(tmp_path, monkeypatch):
    out = str(tmp_path)
    small = dict(seed=3, source_images=2, target_train=1, target_val=1, split="shapes3")
    builtin.generate(out, **small)
    write_text = builtin.write_text

    def fail_on_spec(path, text):
        if path.endswith("spec.json"):
            raise OSError("disk full")
        write_text(path, text)

    monkeypatch.setattr(builtin, "write_text", fail_on_spec)
    with pytest.raises(OSError, match="disk full"):
        builtin.generate(out, **dict(small, seed=4))
    assert not os.path.exists(os.path.join(out, builtin.MARKER))
    assert not os.path.exists(os.path.join(out, builtin.BUILDING))
    monkeypatch.undo()
    assert builtin.ensure(out, **small)  # no marker: generated again
    assert _json(os.path.join(out, builtin.MARKER))["seed"] == 3
