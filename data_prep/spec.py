"""A dataset spec: which categories transfer to which (one JSON file), validated, and the LMDBs
and class table it builds.

    {
     "name": "shapes3",
     "source": {"coco": "coco/annotations/instances.json", "images": "coco/images",
                "categories": "all_except_target"},
     "target": {"csv": "target/tags.csv", "images": "target/images",
                "classes": ["cross", "chevron", "triangle"]},
     "val": {"images": "val/JPEGImages", "masks": "val/SegmentationClass", "list": "val/val.txt"},
     "overlaps": {"airplane": "aeroplane"},
     "out": "lmdb"
    }

Paths are relative to the spec's folder. The source is a COCO-format instances JSON and its
image folder; "categories" is "all", "all_except_target" or a list of category names. The target
is exactly one of "voc" (a VOC-format tree: ids 1..T in the PNGs of its train list, "sbd"
optional), "csv" (rows `image,label;label`, data_prep.tags) or "coco" (a COCO-format JSON whose
masks are ignored), with "images" for the last two, and its class names. The val set, with masks
(PNG ids 1..T), is "images", "masks" and "list", or {"voc": tree, "split": "val"}.

Source images must be free of target categories, as the paper removes every COCO image with a
PASCAL category (Sec. 5.1): a source category whose name is a target class's, or that
"overlaps" maps to one, is a target category, and its images are dropped. Listing one as a
source category is an error. The class table (transfernet.class_table) has the target classes
as ids 1..T in the spec's order and the source categories as T+1..T+S in category-id order;
other categories of the JSON are painted void. The paper's split (specs/paper.json) gives the
paper's table; the built-in datasets write theirs beside their trees (data_prep.builtin).

data_prep.build builds a spec's LMDBs. This module needs nothing but Python (the Makefile asks
it on the host which folders the runtime must bind):

  python3 -m data_prep.spec folders SPEC     # the folders it reads and writes, one per line
"""

import argparse
import collections
import json
import os
import sys

from transfernet import class_table

SOURCE_CATEGORIES = ("all", "all_except_target")
TARGET_KINDS = ("voc", "csv", "coco")
# The fields of a spec and of its parts: any other is an error (a misspelt "categories" would
# otherwise silently be the default).
KEYS = {
    None: {"name", "source", "target", "val", "overlaps", "out"},
    "source": {"coco", "images", "categories"},
    "target": {"voc", "sbd", "csv", "coco", "images", "classes"},
    "val": {"voc", "split", "images", "masks", "list"},
}

Spec = collections.namedtuple("Spec", "path name source target val overlaps out")
Source = collections.namedtuple("Source", "coco images categories")
Target = collections.namedtuple("Target", "kind path images sbd classes")
Val = collections.namedtuple("Val", "images masks list")


class SpecError(ValueError):
    """A spec that is not valid (the message names the file and the field)."""


def load(path):
    """The Spec of a JSON file (`path` as given, the paths it names absolute); SpecError naming
    the file and the field. Read without transfernet.fileio, which needs numpy: the Makefile
    asks this module on the host."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8-sig"))
    except OSError as e:
        raise SpecError("cannot read the dataset spec %s: %s" % (path, e.strerror or e)) from None
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError
        raise SpecError("dataset spec %s is not valid UTF-8 JSON: %s" % (path, e)) from None
    return parse(data, path)


def parse(data, path):
    """The Spec of a spec's JSON data read from `path` (see load)."""
    if not isinstance(data, dict):
        raise SpecError("%s: a dataset spec is a JSON object" % path)
    _check_keys(path, data, None)
    base = os.path.dirname(os.path.abspath(path))
    field = _fields(path, base)
    name = field(data, "name", str)
    if not name.strip() or any(c.isspace() for c in name):
        raise SpecError("%s: name %r must be a word without spaces" % (path, name))
    source = field(data, "source", dict)
    target = field(data, "target", dict)
    val = field(data, "val", dict)
    for part, obj in (("source", source), ("target", target), ("val", val)):
        _check_keys(path, obj, part)
    spec = Spec(
        path,
        name,
        Source(
            field(source, "coco", "path", "source"),
            field(source, "images", "folder", "source"),
            _categories(path, source.get("categories", "all_except_target")),
        ),
        _target(path, target, field),
        _val(path, val, field),
        _overlaps(path, data.get("overlaps", {})),
        field(data, "out", "folder") if "out" in data else os.path.join(base, "lmdb"),
    )
    classes = spec.target.classes
    bad = sorted(v for v in spec.overlaps.values() if v not in classes)
    if bad:
        raise SpecError(
            "%s: overlaps map to %s, which are not target classes (%s)"
            % (path, ", ".join(map(repr, bad)), ", ".join(classes))
        )
    return spec


def _check_keys(path, obj, part):
    unknown = sorted(set(obj) - KEYS[part])
    if unknown:
        raise SpecError(
            "%s: unknown field %s; %s has %s"
            % (
                path,
                ", ".join("%s.%s" % (part, k) if part else repr(k) for k in unknown),
                part or "a spec",
                ", ".join(sorted(KEYS[part])),
            )
        )


def _fields(path, base):
    def field(obj, key, kind, parent=None):
        where = "%s.%s" % (parent, key) if parent else key
        if key not in obj:
            raise SpecError("%s: %s is missing" % (path, where))
        value = obj[key]
        if kind in ("path", "folder"):
            if not isinstance(value, str) or not value:
                raise SpecError(
                    "%s: %s must be a %s (a string), got %r" % (path, where, kind, value)
                )
            return os.path.normpath(os.path.join(base, value))
        if not isinstance(value, kind):
            raise SpecError(
                "%s: %s must be a JSON %s, got %r"
                % (path, where, {str: "string", dict: "object", list: "list"}[kind], value)
            )
        return value

    return field


def _names(path, where, value):
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        raise SpecError("%s: %s must be a non-empty list of names, got %r" % (path, where, value))
    twice = sorted(n for n, c in collections.Counter(value).items() if c > 1)
    if twice:
        raise SpecError("%s: %s names %s twice" % (path, where, ", ".join(map(repr, twice))))
    return tuple(value)


def _categories(path, value):
    if isinstance(value, str):
        if value not in SOURCE_CATEGORIES:
            raise SpecError(
                "%s: source.categories %r; expected %s or a list of names"
                % (path, value, " or ".join(map(repr, SOURCE_CATEGORIES)))
            )
        return value
    return _names(path, "source.categories", value)


def _target(path, target, field):
    kinds = [k for k in TARGET_KINDS if k in target]
    if len(kinds) != 1:
        raise SpecError(
            "%s: target needs exactly one of %s, got %s"
            % (path, ", ".join(map(repr, TARGET_KINDS)), ", ".join(map(repr, kinds)) or "none")
        )
    kind = kinds[0]
    classes = _names(path, "target.classes", target.get("classes"))
    return Target(
        kind,
        field(target, kind, "path", "target"),
        field(target, "images", "folder", "target") if kind != "voc" else None,
        field(target, "sbd", "folder", "target") if "sbd" in target else None,
        classes,
    )


def _val(path, val, field):
    if "voc" in val:
        root = field(val, "voc", "folder", "val")
        split = val.get("split", "val")
        return Val(
            os.path.join(root, "JPEGImages"),
            os.path.join(root, "SegmentationClass"),
            os.path.join(root, "ImageSets", "Segmentation", "%s.txt" % split),
        )
    return Val(*(field(val, k, "path", "val") for k in Val._fields))


def _overlaps(path, value):
    if not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
        raise SpecError("%s: overlaps must map source category names to target classes" % path)
    return dict(value)


def source_classes(spec, categories):
    """class_table.SourceClasses of the spec for a COCO JSON's `categories` ([{"id", "name"}]), with
    the class table (rule in the module docstring); SpecError naming the spec and the
    category on an unknown or duplicate name or a target class among the source categories."""
    where = "%s (source %s)" % (spec.path, spec.source.coco)
    by_name = {}
    for cat in sorted(categories, key=lambda c: c["id"]):
        if cat["name"] in by_name:
            raise SpecError(
                "%s: categories %d and %d are both named %r"
                % (where, by_name[cat["name"]], cat["id"], cat["name"])
            )
        by_name[cat["name"]] = cat["id"]
    targets = set(spec.target.classes)
    missing = sorted(set(spec.overlaps) - set(by_name))
    if missing:
        raise SpecError(
            "%s: overlaps name %s, which the source JSON's categories do not have"
            % (where, ", ".join(map(repr, missing)))
        )
    is_target = {n for n in by_name if n in targets or n in spec.overlaps}
    chosen = spec.source.categories
    if chosen == "all_except_target":
        names = [n for n in by_name if n not in is_target]
    elif chosen == "all":
        if is_target:
            raise SpecError(
                "%s: source.categories 'all' includes the target categories %s; use "
                "'all_except_target' (their images are then dropped)"
                % (where, ", ".join(map(repr, sorted(is_target))))
            )
        names = list(by_name)
    else:
        unknown = [n for n in chosen if n not in by_name]
        if unknown:
            raise SpecError(
                "%s: source.categories %s are not categories of the source JSON (it has: %s)"
                % (where, ", ".join(map(repr, unknown)), ", ".join(by_name))
            )
        clash = [n for n in chosen if n in is_target]
        if clash:
            raise SpecError(
                "%s: source.categories %s are target categories (target.classes or overlaps): "
                "source images must be free of them" % (where, ", ".join(map(repr, clash)))
            )
        names = [n for n in by_name if n in chosen]  # category-id order
    if not names:
        raise SpecError("%s: no source category is left" % where)
    try:
        table = class_table.make(spec.name, spec.target.classes, names)
    except ValueError as e:  # a source category named like a target class is caught above
        raise SpecError("%s: %s" % (spec.path, e)) from None
    ids = table.ids()
    return class_table.SourceClasses(
        {by_name[n]: ids[n] for n in names}, frozenset(by_name[n] for n in is_target), table
    )


def folders(spec):
    """The folders the spec reads and writes (what the runtime must bind)."""
    paths = [os.path.dirname(os.path.abspath(spec.path))]
    paths += [os.path.dirname(spec.source.coco), spec.source.images]
    paths += [spec.target.path if spec.target.kind == "voc" else os.path.dirname(spec.target.path)]
    paths += [p for p in (spec.target.images, spec.target.sbd) if p]
    paths += [os.path.dirname(p) for p in spec.val] + [spec.out]
    return sorted(set(paths))


def missing_inputs(spec):
    """[(field, path)] of the files and folders the spec names that do not exist (SBD is
    optional: a VOC target without it is VOC train)."""
    named = [
        ("source.coco", spec.source.coco),
        ("source.images", spec.source.images),
        ("target.%s" % spec.target.kind, spec.target.path),
        ("target.images", spec.target.images),
        ("val.images", spec.val.images),
        ("val.masks", spec.val.masks),
        ("val.list", spec.val.list),
    ]
    return [(field, path) for field, path in named if path and not os.path.exists(path)]


def source_folder(spec, ratio=1.0, seed=0):
    """The source LMDB folder of a ratio and subset seed: OUT/source, OUT/source_r050_s1."""
    name = "source" if ratio == 1 else "source_r%03d_s%d" % (round(100 * ratio), seed)
    return os.path.join(spec.out, name)


def target_folder(spec):
    return os.path.join(spec.out, "target")


def table_path(spec):
    return os.path.join(spec.out, class_table.FILE_NAME)


def describe(table):
    """Lines of a class table: ids and names of each side."""
    t = len(table.target)
    return [
        "class table %s (%s)" % (table.name, table.tag),
        "  target 1..%d: %s" % (t, ", ".join(table.target)),
        "  source %d..%d: %s" % (t + 1, table.num_classes, ", ".join(table.source)),
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description="the folders a dataset spec reads and writes")
    p.add_argument("command", choices=("folders",))
    p.add_argument("spec", help="dataset spec JSON")
    a = p.parse_args(argv)
    try:
        print("\n".join(folders(load(a.spec))))
    except SpecError as e:
        print("data_prep.spec: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
