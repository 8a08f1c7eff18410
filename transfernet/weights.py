"""Caffemodels (binary NetParameter files) and prototxts: read them, check them against a net,
write them.

Caffe copies the layers of a caffemodel that it finds by name and silently keeps the fillers of
every other layer, so another network's caffemodel (or one holding nothing) gives a net of
untrained layers; a file it cannot parse aborts the process with a glog check failure. Here a
file is parsed first and compared with the net, layer by layer and blob by blob (Caffe's own
rule: same blob count, same shapes, legacy 4-D num/channels/height/width shapes padded with
leading 1s), and every problem is a WeightsError naming the file.

Inference (transfernet.inference.load_net) needs every layer of the net with parameters in the
file. A solver's `weights` may leave layers to their fillers (the joint stage's decoder, when it
starts from the attention snapshot): check_solver says which layers come from the file and which
from fillers. Caffe's HDF5 weights (.h5) are not read: every snapshot here is a caffemodel.
A prototxt Caffe cannot parse also aborts it: read_prototxt parses it first (the same protobuf
text format), so it is a ValueError naming the file.
"""

import collections
import math
import os
import re
import warnings

import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from transfernet import config, fileio
from transfernet.atomic import atomic_path
from transfernet.class_table import describe_tag, tag_of_net

# Layers of a net compared with a caffemodel: names that get weights from the file (in the
# net's order), names that keep their fillers, names of the file the net does not have.
Fit = collections.namedtuple("Fit", "path loaded fillers ignored")
# Field numbers of the caffe.proto fields write_caffemodel writes, and the wire type of them all.
NET_LAYER, LAYER_BLOBS, BLOB_SHAPE, BLOB_DATA = 100, 7, 7, 5  # BlobProto.data: packed floats
LENGTH_DELIMITED = 2


class WeightsError(ValueError):
    """A caffemodel that cannot be read or does not fit a net (the message names the file)."""


def read_caffemodel(path):
    """The NetParameter of a caffemodel; WeightsError if it is missing, empty, does not parse
    (garbage, truncated) or holds no weights."""
    if not os.path.isfile(path):
        raise WeightsError("weights file %s not found%s" % (path, missing_hint(path)))
    if os.path.getsize(path) == 0:
        raise WeightsError("weights file %s is empty (0 bytes), not a caffemodel" % path)
    param = caffe_pb2.NetParameter()
    with open(path, "rb") as f:
        data = f.read()
    try:
        parse_strictly(param, data)
    except DecodeError as e:
        raise WeightsError(
            "weights file %s (%d bytes) is not a caffemodel: it does not parse "
            "as a Caffe NetParameter (%s); truncated or corrupt?" % (path, len(data), e)
        ) from None
    if not file_blobs(param):
        raise WeightsError(
            "weights file %s parses as a NetParameter but holds no layer "
            "weights; not a caffemodel" % path
        )
    return param


def parse_strictly(message, data):
    """message.ParseFromString(data); DecodeError also when protobuf only warns (a stray
    end-group tag stops the parse early with a warning)."""
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        message.ParseFromString(data)
    if warned:
        raise DecodeError(str(warned[0].message))


def missing_hint(path):
    """What to do about a missing initial weights file, as '; ...' (or '')."""
    if os.path.basename(path) == os.path.basename(config.PAPER.layout.classifier_init):
        return (
            "; stage 0 starts from the ImageNet VGG-16 caffemodel: download %s (VGG model "
            "zoo, 16-layer ILSVRC-2014 model) to %s" % (os.path.basename(path), path)
        )
    if re.search(r"_iter_\d+\.caffemodel$", path):
        return "; it is the final snapshot of the previous stage: train that stage first"
    return ""


def file_blobs(param):
    """{layer name: [BlobProto, ...]} of the layers with weights (new and V1 format)."""
    return collections.OrderedDict(
        (layer.name, list(layer.blobs))
        for layer in list(param.layer) + list(param.layers)
        if len(layer.blobs)
    )


def net_shapes(net, until=None):
    """{layer name: [blob shape, ...]} of the layers of a caffe.Net that have parameters (of
    those before the layer named `until`, if given; ValueError if the net has no such layer)."""
    names = list(net._layer_names)
    end = len(names)
    if until is not None:
        if until not in names:
            raise ValueError("the net has no layer %r" % until)
        end = names.index(until)
    return collections.OrderedDict(
        (name, [tuple(b.shape) for b in layer.blobs])
        for name, layer in list(zip(names, net.layers))[:end]
        if len(layer.blobs)
    )


def blob_shape(blob):
    """Shape of a BlobProto (its legacy num, channels, height, width if it has no shape)."""
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def _blob_fits(expected, blob):
    """Whether a BlobProto can be copied into a blob of shape `expected` (Blob::ShapeEquals,
    Blob::FromProto): same shape and as many values."""
    if blob.HasField("shape"):
        same = tuple(blob.shape.dim) == tuple(expected)
    else:
        same = len(expected) <= 4 and (1,) * (4 - len(expected)) + tuple(expected) == (
            blob.num,
            blob.channels,
            blob.height,
            blob.width,
        )
    return same and math.prod(expected) == blob_values(blob)


def blob_values(blob):
    """How many values a BlobProto holds (float or double)."""
    return len(blob.double_data) or len(blob.data)


def compare(path, param, expected, what):
    """Fit of the caffemodel `param` (read from `path`) to a net's {layer: [shapes]}
    (`what` names the net in messages). WeightsError on the first layer present in both
    whose blobs do not fit (Caffe would abort copying it)."""
    found = file_blobs(param)
    for name, shapes in expected.items():
        blobs = found.get(name)
        if blobs is not None and (
            len(blobs) != len(shapes) or not all(_blob_fits(s, b) for s, b in zip(shapes, blobs))
        ):
            raise WeightsError(
                "weights file %s does not fit %s: layer %s has blob shapes %s in the file, "
                "the net expects %s" % (path, what, name, [blob_shape(b) for b in blobs], shapes)
            )
    return Fit(
        path,
        [n for n in expected if n in found],
        [n for n in expected if n not in found],
        [n for n in found if n not in expected],
    )


def check_complete(path, param, expected, what):
    """compare(), and every layer of the net must be initialised by the file; WeightsError
    naming the first layer not in the file otherwise."""
    fit = compare(path, param, expected, what)
    if fit.fillers:
        name = fit.fillers[0]
        raise WeightsError(
            "weights file %s does not fit %s: layer %s (blob shapes %s) is not in the file "
            "(%d of the net's %d layers with weights are missing; the file's layers: %s). "
            "Another network's caffemodel?"
            % (
                path,
                what,
                name,
                expected[name],
                len(fit.fillers),
                len(expected),
                ", ".join(fit.ignored + fit.loaded),
            )
        )
    return fit


def check_class_table(path, param, net_param, what):
    """WeightsError if the caffemodel `param` (read from `path`) was trained for another class
    table than the net `net_param` (`what` names it) is for: both name theirs at the end of
    their names (transfernet.class_table). A file or net without a tag (ImageNet VGG-16, the
    authors' models, a hand-written net) is not checked."""
    found, wanted = tag_of_net(param.name), tag_of_net(net_param.name)
    if found and wanted and found != wanted:
        raise WeightsError(
            "weights file %s was trained for the class table %s; %s is for the class table %s"
            % (path, describe_tag(found), what, describe_tag(wanted))
        )


def _varint(value):
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _record(field, size):
    """The tag and length that start a length-delimited field of `size` bytes."""
    return _varint(field << 3 | LENGTH_DELIMITED) + _varint(size)


def write_caffemodel(path, layers):
    """Write a caffemodel of `layers` ({name: (type, [float32 arrays])}) to `path`
    atomically: what Caffe reads from a weights file (Net::CopyTrainedLayersFrom matches the
    layers by name and copies their blobs). Written one field at a time, the values straight
    from the arrays: protobuf's Python API takes one call per value of a repeated field, and
    a paper-size feat_embed has 210 million."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            for name, (layer_type, arrays) in layers.items():
                header = caffe_pb2.LayerParameter(name=name, type=layer_type).SerializeToString()
                blobs = []
                for array in arrays:
                    shape = caffe_pb2.BlobShape(dim=array.shape).SerializeToString()
                    values = np.ascontiguousarray(array, "<f4")
                    head = (
                        _record(BLOB_SHAPE, len(shape)) + shape + _record(BLOB_DATA, values.nbytes)
                    )
                    blobs.append((head, values))
                blob_sizes = [len(head) + values.nbytes for head, values in blobs]
                size = len(header) + sum(len(_record(LAYER_BLOBS, n)) + n for n in blob_sizes)
                f.write(_record(NET_LAYER, size) + header)
                for (head, values), n in zip(blobs, blob_sizes):
                    f.write(_record(LAYER_BLOBS, n) + head)
                    f.write(memoryview(values).cast("B"))


def read_prototxt(path, message):
    """`message` (a caffe_pb2 message) filled from the text prototxt `path`; ValueError naming
    the file if it is not UTF-8 text or does not parse, OSError if it cannot be read."""
    try:
        return text_format.Merge(fileio.read_text(path), message)
    except text_format.ParseError as e:
        raise ValueError("%s does not parse as a %s: %s" % (path, message.DESCRIPTOR.name, e))


def solver_weights(solver_path):
    """(SolverParameter, [caffemodel paths of its `weights`]) of a solver prototxt (Caffe
    also splits each entry at commas); ValueError naming a solver or net prototxt that does
    not parse, or a net prototxt that is missing."""
    param = read_prototxt(solver_path, caffe_pb2.SolverParameter())
    if not os.path.isfile(param.net):
        raise ValueError("solver %s: its net %r is not a file" % (solver_path, param.net))
    read_prototxt(param.net, caffe_pb2.NetParameter())
    return param, [w for entry in param.weights for w in entry.split(",") if w]


def check_solver(solver_path):
    """[Fit] of each caffemodel in a solver's `weights` to its train net, which is built here
    (TRAIN phase, so the data layer checks its datasets). WeightsError for a file that is
    missing, does not parse, has a layer whose shapes differ, or initialises no layer."""
    import caffe

    param, paths = solver_weights(solver_path)
    files = [(path, read_caffemodel(path)) for path in paths]
    if not files:
        return []
    net_param = read_prototxt(param.net, caffe_pb2.NetParameter())
    for path, weights in files:
        check_class_table(path, weights, net_param, param.net)
    net = caffe.Net(param.net, caffe.TRAIN)
    try:
        expected = net_shapes(net)
    finally:
        for layer in net.layers:
            if callable(getattr(layer, "close", None)):  # stop data-layer workers now
                layer.close()
    fits = [compare(path, weights, expected, param.net) for path, weights in files]
    for fit in fits:
        if not fit.loaded:
            raise WeightsError(
                "weights file %s initialises no layer of %s (its layers: %s; "
                "the net's: %s)"
                % (fit.path, param.net, ", ".join(fit.ignored), ", ".join(expected))
            )
    return fits


def describe_fits(fits):
    """Lines saying which layers each file initialises, which of its layers the net lacks,
    and which layers keep their fillers (those no file initialises)."""
    if not fits:
        return ["no initial weights: every layer from its filler"]
    lines, loaded = [], set()
    for fit in fits:
        loaded.update(fit.loaded)
        lines.append(
            "weights %s: %d layers from the file (%s)"
            % (fit.path, len(fit.loaded), ", ".join(fit.loaded))
        )
        if fit.ignored:
            lines.append("  in the file, not in the net (ignored): %s" % ", ".join(fit.ignored))
    fillers = [n for n in fits[0].loaded + fits[0].fillers if n not in loaded]
    lines.append("from fillers: %d layers (%s)" % (len(fillers), ", ".join(fillers) or "none"))
    return lines
