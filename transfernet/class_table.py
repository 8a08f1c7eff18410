"""A class table: the target classes (image-level labels only) get ids 1..T, the source
categories (with masks) ids T+1..T+S; label vectors have T+S entries, index = id - 1.

The paper's table (Sec. 5.1) is the 20 VOC classes and the 60 non-PASCAL COCO categories in
COCO category-id order (transfernet.classes). A dataset spec (data_prep.spec) makes another.
The table's tag (name, sizes and a hash of the names) goes into every generated net's name,
so that Caffe writes it into each caffemodel it snapshots and a caffemodel of another table is
refused by name (tag_of_net here, weights.check_class_table), not only when its sizes differ.

classes.json, written beside a spec's LMDBs, holds the table; its "classes" are the target
classes (what tools/eval.py --classes and tools/infer.py --classes read).
"""

import collections
import hashlib
import json
import re

from transfernet import classes
from transfernet.atomic import write_text

TAG_PREFIX = " classes="  # in a net's name: "transfernet_tiny_seg_deploy classes=<tag>"
_TAG = re.compile(re.escape(TAG_PREFIX) + r"(\S+)$")
FILE_NAME = "classes.json"

# A source dataset's classes: {category id of its COCO JSON: class id} of the table's source
# categories, the category ids whose images are dropped (the target's), and the ClassTable.
SourceClasses = collections.namedtuple("SourceClasses", "ids dropped table")


class ClassTable(collections.namedtuple("ClassTable", "name target source")):
    """`name` and the tuples of the target and source class names."""

    __slots__ = ()

    @property
    def num_classes(self):
        return len(self.target) + len(self.source)

    @property
    def target_ids(self):
        return list(range(1, len(self.target) + 1))

    @property
    def names(self):
        """{id: name} of every class."""
        return {k + 1: n for k, n in enumerate(self.target + self.source)}

    @property
    def target_names(self):
        """{id: name} of the target classes."""
        return {k + 1: n for k, n in enumerate(self.target)}

    def ids(self):
        """{name: id} of every class."""
        return {n: k for k, n in self.names.items()}

    @property
    def tag(self):
        """'<name>:<T>+<S>:<8 hex digits of the names' SHA-1>' (no spaces: a net name's end)."""
        digest = hashlib.sha1(json.dumps([self.target, self.source]).encode()).hexdigest()
        return "%s:%d+%d:%s" % (
            self.name.replace(" ", "_"),
            len(self.target),
            len(self.source),
            digest[:8],
        )


def make(name, target, source):
    """The ClassTable, ValueError on an empty side or a name that is given twice."""
    target, source = tuple(target), tuple(source)
    if not target:
        raise ValueError("class table %r has no target class" % name)
    seen = collections.Counter(target + source)
    twice = sorted(n for n, c in seen.items() if c > 1)
    if twice:
        raise ValueError(
            "class table %r names %s more than once" % (name, ", ".join(map(repr, twice)))
        )
    if len(target) + len(source) >= classes.IGNORE:
        raise ValueError(
            "class table %r has %d classes; label maps hold at most %d"
            % (name, len(target) + len(source), classes.IGNORE - 1)
        )
    return ClassTable(name, target, source)


PAPER = make(
    "coco60-voc20",
    classes.VOC_CLASSES,
    [classes.CLASS_NAMES[i] for i in sorted(classes.COCO60_ID.values())],
)


def write(path, table, **extra):
    """classes.json of the table (and `extra` fields, e.g. the COCO category ids), atomically."""
    data = dict(
        extra,
        name=table.name,
        tag=table.tag,
        num_classes=table.num_classes,
        classes={str(k): n for k, n in table.target_names.items()},
        source={str(k): n for k, n in table.names.items() if k > len(table.target)},
    )
    write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read(path):
    """The ClassTable of a classes.json; ValueError naming the file if it is not one."""
    from transfernet import fileio  # not at the top: the Makefile's host python3 reads config

    data = fileio.read_json(path)
    try:
        target = _names(data["classes"])
        source = _names(data["source"])
        table = make(data["name"], target, source)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(
            "%s is not a class table (classes.json of data_prep.spec): %s" % (path, e)
        ) from None
    if data.get("tag") != table.tag:
        raise ValueError(
            "%s: its tag %r is not its classes' (%s): edited by hand?"
            % (path, data.get("tag"), table.tag)
        )
    return table


def _names(ids):
    """Names of an {"id": name} object in id order; ValueError unless the ids are consecutive."""
    order = sorted((int(k), n) for k, n in ids.items())
    if order and [k for k, _ in order] != list(range(order[0][0], order[0][0] + len(order))):
        raise ValueError("class ids %s are not consecutive" % [k for k, _ in order])
    return [n for _, n in order]


def tag_of_net(name):
    """The class table tag at the end of a net's (or caffemodel's) name, or None."""
    found = _TAG.search(name or "")
    return found.group(1) if found else None


def describe_tag(tag):
    """'shapes3 (3 target + 7 source classes, a1b2c3d4)' of a tag."""
    name, sizes, digest = tag.rsplit(":", 2)
    t, s = sizes.split("+")
    return "%s (%s target + %s source classes, %s)" % (name, t, s, digest)
