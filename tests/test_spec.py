"""Dataset specs (data_prep.spec, data_prep.build), class tables (transfernet.class_table) and
the tags target (data_prep.tags): the paper's split as a spec, the rule that keeps target
categories out of the source, and every bad spec as one error naming the file and the field."""

import json
import os

import cv2
import lmdb
import numpy as np
import pytest

from data_prep import build, spec, tags
from transfernet import class_table, classes, records


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


def record_labels(dataset):
    """The class ids of every record of a dataset folder, in record order."""
    env = lmdb.open(os.path.join(dataset, "images"), readonly=True, lock=False)
    with env.begin() as txn:
        labels = [records.decode_image(v)[1] for _, v in txn.cursor()]
    env.close()
    return labels


def coco_categories(*names):
    return [{"id": k + 1, "name": n} for k, n in enumerate(names)]


def minimal_spec(tmp_path, **changes):
    """A spec with a CSV target whose files need not exist (parse only)."""
    data = {
        "name": "shapes",
        "source": {"coco": "src.json", "images": "src", "categories": "all_except_target"},
        "target": {"csv": "tags.csv", "images": "img", "classes": ["cross", "star"]},
        "val": {"images": "val/img", "masks": "val/gt", "list": "val/val.txt"},
    }
    data.update(changes)
    return write_json(tmp_path / "spec.json", data)


def test_the_paper_spec_gives_the_paper_table_and_coco_ids():
    dataset_spec = spec.load(os.path.join(os.path.dirname(__file__), "..", "specs", "paper.json"))
    categories = [{"id": i, "name": n} for i, n in classes.COCO_CATEGORIES]
    sources = spec.source_classes(dataset_spec, categories)
    assert sources.table == class_table.PAPER and sources.table.num_classes == 80
    assert sources.ids == classes.COCO60_ID  # 21..80 in COCO category-id order
    assert sources.dropped == classes.PASCAL_COCO_IDS  # by name or through "overlaps"
    assert dataset_spec.target.kind == "voc" and dataset_spec.target.sbd.endswith("dataset")
    assert dataset_spec.val.list.endswith(os.path.join("Segmentation", "val.txt"))


def test_class_table_ids_tag_and_file_round_trip(tmp_path):
    table = class_table.make("shapes", ["cross", "star"], ["blob", "gear", "leaf"])
    assert table.names == {1: "cross", 2: "star", 3: "blob", 4: "gear", 5: "leaf"}
    assert table.target_ids == [1, 2] and table.num_classes == 5
    assert table.tag.startswith("shapes:2+3:")
    other = class_table.make("shapes", ["cross", "star"], ["blob", "leaf", "gear"])
    assert other.tag != table.tag  # same sizes, another order: another table
    path = str(tmp_path / "classes.json")
    class_table.write(path, table)
    assert class_table.read(path) == table
    alone = class_table.make("alone", ["cross"], [])  # no source category: an empty "source"
    class_table.write(str(tmp_path / "alone.json"), alone)
    assert class_table.read(str(tmp_path / "alone.json")) == alone
    assert json.load(open(path))["classes"] == {"1": "cross", "2": "star"}  # eval's --classes
    net_name = "transfernet_tiny_seg_deploy" + class_table.TAG_PREFIX + table.tag
    assert class_table.tag_of_net(net_name) == table.tag
    assert class_table.tag_of_net("VGG_ILSVRC_16_layers") is None
    data = json.load(open(path))
    data["source"]["5"] = "bolt"
    write_json(path, data)
    with pytest.raises(ValueError, match="classes.json: its tag .* is not its classes'"):
        class_table.read(path)


@pytest.mark.parametrize(
    "changes, categories, message",
    [
        (
            {"source": {"coco": "s.json", "images": "s", "categories": ["blob", "bolt"]}},
            ("blob", "gear"),
            r"source.categories 'bolt' are not categories of the source JSON \(it has: blob, gear",
        ),
        (
            {"source": {"coco": "s.json", "images": "s", "categories": ["blob", "cross"]}},
            ("blob", "cross"),
            r"source.categories 'cross' are target categories .*free of them",
        ),
        (
            {"source": {"coco": "s.json", "images": "s", "categories": "all"}},
            ("blob", "cross"),
            r"'all' includes the target categories 'cross'; use 'all_except_target'",
        ),
        ({"overlaps": {"x-shape": "cross"}}, ("blob",), r"overlaps name 'x-shape', which"),
        ({}, ("blob", "gear", "blob"), r"categories 1 and 3 are both named 'blob'"),
        ({}, ("cross", "star"), r"no source category is left"),
    ],
)
def test_bad_categories_are_errors_naming_the_spec(tmp_path, changes, categories, message):
    dataset_spec = spec.load(minimal_spec(tmp_path, **changes))
    with pytest.raises(spec.SpecError, match=message) as error:
        spec.source_classes(dataset_spec, coco_categories(*categories))
    assert str(tmp_path / "spec.json") in str(error.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"target": {"csv": "t.csv", "images": "i", "classes": ["cross", "star", "cross"]}},
            r"target.classes names 'cross' twice",
        ),
        ({"target": {"csv": "t.csv", "classes": ["cross"]}}, r"target.images is missing"),
        (
            {"target": {"csv": "t.csv", "voc": "v", "classes": ["cross"]}},
            r"target needs exactly one of 'voc', 'csv', 'coco', got 'voc', 'csv'",
        ),
        ({"overlaps": {"blob": "circle"}}, r"overlaps map to 'circle', which are not target"),
        ({"extra": 1}, r"unknown field 'extra'; a spec has name, out, overlaps, source"),
        (
            {"source": {"coco": "s.json", "images": "s", "catgories": "all"}},
            r"unknown field source.catgories; source has categories, coco, images",
        ),
        ({"name": "my shapes"}, r"name 'my shapes' must be a word without spaces"),
        ({"val": []}, r"val must be a JSON object"),
    ],
)
def test_bad_specs_are_errors_naming_the_file_and_field(tmp_path, changes, message):
    with pytest.raises(spec.SpecError, match=message) as error:
        spec.load(minimal_spec(tmp_path, **changes))
    assert str(tmp_path / "spec.json") in str(error.value)


def test_unreadable_specs_are_errors(tmp_path):
    with pytest.raises(spec.SpecError, match="cannot read the dataset spec .*nope.json"):
        spec.load(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text('{"name": ')
    with pytest.raises(spec.SpecError, match="bad.json is not valid UTF-8 JSON"):
        spec.load(str(tmp_path / "bad.json"))


def test_csv_rows_missing_images_unknown_labels_and_duplicates_are_counted_skips(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    rng = np.random.RandomState(0)
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        cv2.imwrite(str(images / name), rng.randint(0, 255, (20, 24, 3)).astype(np.uint8))
    csv_path = tmp_path / "tags.csv"
    csv_path.write_bytes(
        b"\xef\xbb\xbfimage,labels\r\n"  # a BOM and CRLF, as spreadsheets write it
        b"a.jpg,cross;star\r\nb.jpg,star\r\nmissing.jpg,cross\r\nc.jpg,circle\r\n"
        b"d.jpg,cross\r\nd.jpg,star\r\nb.jpg\r\n"
    )
    table = class_table.make("t", ["cross", "star"], ["blob"])
    out = str(tmp_path / "lmdb")
    meta = tags.build_target("csv", str(csv_path), str(images), out, table, size=16, workers=0)
    assert meta["count"] == 2 and meta["class_table"] == table.tag
    assert meta["class_counts"] == {"1": 1, "2": 2}
    assert meta["dropped"] == {
        "missing_image": 1,
        "unknown_category_id": 1,
        "duplicate_image": 1,
        "malformed_row": 1,
    }
    report = open(os.path.join(out, "report.tsv")).read()
    assert "tags.csv line 4: image %s does not exist" % (images / "missing.jpg") in report
    assert "tags.csv line 5: 'circle' not among the target classes (cross, star)" in report
    assert "d.jpg is listed on lines 6, 7 of" in report
    assert "tags.csv line 8: expected image,label;label" in report
    assert record_labels(out) == [[1, 2], [2]]  # a.jpg, b.jpg in name order


def test_spec_build_drops_source_images_with_a_target_category(tmp_path):
    """The rule of Sec. 5.1 on a COCO-format source with other names: an image holding the
    target class 'cross' leaves the source; the other categories get ids T+1.. in id order."""
    src = tmp_path / "src"
    src.mkdir()
    images, anns = [], []
    square = [[2.0, 2.0, 14.0, 2.0, 14.0, 14.0, 2.0, 14.0]]
    for k, cats in enumerate([[3], [1, 3], [2], [1]]):  # 1 cross, 2 gear, 3 blob
        name = "%d.jpg" % k
        cv2.imwrite(str(src / name), np.full((16, 16, 3), 60 + 40 * k, np.uint8))
        images.append({"id": k + 1, "file_name": name, "height": 16, "width": 16})
        for c in cats:
            anns.append(
                {"id": len(anns) + 1, "image_id": k + 1, "category_id": c, "segmentation": square}
            )
    write_json(
        tmp_path / "src.json",
        {
            "images": images,
            "annotations": anns,
            "categories": coco_categories("cross", "gear", "blob"),
        },
    )
    target = tmp_path / "img"
    target.mkdir()
    cv2.imwrite(str(target / "t.jpg"), np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "tags.csv").write_text("t.jpg,star\n")
    dataset_spec = spec.load(minimal_spec(tmp_path))
    table, target_dir, sources = build.build(dataset_spec, 16, workers=0, log=lambda line: None)
    source = sources[1.0, 0]
    assert table.names == {1: "cross", 2: "star", 3: "gear", 4: "blob"}
    meta = records.read_meta(source)
    assert meta["count"] == 2 and meta["dropped"]["target_category"] == 2
    assert meta["coco_category_ids"] == {"3": 2, "4": 3} and meta["class_table"] == table.tag
    assert sorted(record_labels(source)) == [[3], [4]]
    assert class_table.read(spec.table_path(dataset_spec)) == table
    assert records.read_meta(target_dir)["classes"] == {"1": "cross", "2": "star"}


def test_coco_json_target_uses_only_which_target_classes_an_image_holds(tmp_path):
    """A COCO-format target (Label Studio writes file names "images\\x.jpg" on Windows):
    the labels are the target classes annotated, masks ignored; other categories are no
    label, and an image with none is a counted skip."""
    (tmp_path / "images").mkdir()
    images, anns = [], []
    for k, cats in enumerate([[1, 3], [2], [3]]):  # 1 cross, 2 star, 3 other
        name = "%d.jpg" % k
        cv2.imwrite(str(tmp_path / "images" / name), np.full((16, 16, 3), 50 * k, np.uint8))
        images.append({"id": k + 1, "file_name": "images\\" + name, "height": 16, "width": 16})
        for c in cats:
            anns.append(
                {"id": len(anns) + 1, "image_id": k + 1, "category_id": c, "segmentation": []}
            )
    path = write_json(
        tmp_path / "target.json",
        {
            "images": images,
            "annotations": anns,
            "categories": coco_categories("cross", "star", "other"),
        },
    )
    table = class_table.make("t", ["cross", "star"], ["blob"])
    out = str(tmp_path / "lmdb")
    meta = tags.build_target("coco", path, str(tmp_path), out, table, size=16, workers=0)
    assert meta["count"] == 2 and meta["dropped"] == {"no_label": 1}
    assert record_labels(out) == [[1], [2]]
    assert "target.json image 3: no target class" in open(os.path.join(out, "report.tsv")).read()


def test_build_names_the_inputs_that_do_not_exist(tmp_path):
    dataset_spec = spec.load(minimal_spec(tmp_path))
    assert [field for field, _ in spec.missing_inputs(dataset_spec)] == [
        "source.coco",
        "source.images",
        "target.csv",
        "target.images",
        "val.images",
        "val.masks",
        "val.list",
    ]
    with pytest.raises(FileNotFoundError) as error:
        build.build(dataset_spec, 16, workers=0, log=lambda line: None)
    message = str(error.value)
    assert (
        "spec.json names inputs that do not exist: source.coco %s" % (tmp_path / "src.json")
        in message
    )
    assert "target.images %s" % (tmp_path / "img") in message and "val." not in message
    assert not os.path.exists(dataset_spec.out)  # nothing written
