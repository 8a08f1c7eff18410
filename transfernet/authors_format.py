"""The file format of the authors' Caffe fork (Hong et al.'s maga33/TransferNet): its
caffemodels read with its own field numbers, not stock Caffe's.

The fork's caffe.proto gives some LayerParameter fields numbers that stock BVLC Caffe uses for
other messages (the Scale layer's scale_param is 146, stock recurrent_param; Unpooling's 143,
stock input_param; ...): read with stock caffe_pb2, those bytes become the wrong parameters
or unknown fields. transfernet/authors_caffe.proto declares the messages we read with the
fork's numbers under our own package; this module builds their classes at run time with the
protobuf library pycaffe uses (no protoc, no generated code to keep in step with the protobuf
version), from the subset of proto2 that file is written in.
"""

import functools
import os
import re

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from transfernet import weights

PROTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "authors_caffe.proto")

# Enum values of the fork, declared int32 in PROTO (the same varint on the wire).
PHASE_TRAIN = 0
POOL_MAX, POOL_AVE = 0, 1
ELTWISE_PROD = 0
UNPOOL_MAX = 0
# The fork's V1LayerParameter.LayerType (the same numbers as stock Caffe's) and the layer type
# strings they became (stock Caffe's UpgradeV1LayerType).
V1_TYPES = {
    0: "",
    1: "Accuracy",
    2: "BNLL",
    3: "Concat",
    4: "Convolution",
    5: "Data",
    6: "Dropout",
    7: "EuclideanLoss",
    8: "Flatten",
    9: "HDF5Data",
    10: "HDF5Output",
    11: "Im2col",
    12: "ImageData",
    13: "InfogainLoss",
    14: "InnerProduct",
    15: "LRN",
    16: "MultinomialLogisticLoss",
    17: "Pooling",
    18: "ReLU",
    19: "Sigmoid",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    22: "Split",
    23: "TanH",
    24: "WindowData",
    25: "Eltwise",
    26: "Power",
    27: "SigmoidCrossEntropyLoss",
    28: "HingeLoss",
    29: "MemoryData",
    30: "ArgMax",
    31: "Threshold",
    32: "DummyData",
    33: "Slice",
    34: "MVN",
    35: "AbsVal",
    36: "Silence",
    37: "ContrastiveLoss",
    38: "Exp",
    39: "Deconvolution",
}
# V1 fields copied onto a LayerParameter by upgrade_v1 (the same messages in both).
V1_PARAMS = (
    "convolution_param",
    "dropout_param",
    "eltwise_param",
    "inner_product_param",
    "pooling_param",
    "relu_param",
    "softmax_param",
)

_SCALARS = {
    name: getattr(descriptor_pb2.FieldDescriptorProto, "TYPE_" + name.upper())
    for name in ("double", "float", "int32", "int64", "uint32", "uint64", "bool", "string", "bytes")
}
_LABELS = {
    "optional": descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    "repeated": descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
}
_FIELD = re.compile(
    r"(optional|repeated)\s+(\w+)\s+(\w+)\s*=\s*(\d+)\s*(?:\[\s*(\w+)\s*=\s*([^\]]+?)\s*\])?\s*;"
)
_STATEMENT = re.compile(r"\s*(?:syntax\s*=\s*\"proto2\"\s*;|package\s+(\w+)\s*;)")
_MESSAGE = re.compile(r"\s*message\s+(\w+)\s*\{([^{}]*)\}")


class FormatError(ValueError):
    """A file that is not a caffemodel of the authors' fork (the message names the file)."""


def parse_proto(text):
    """FileDescriptorProto of a .proto written in PROTO's subset of proto2; ValueError naming
    the first statement outside it."""
    text = re.sub(r"//[^\n]*", "", text)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="transfernet/authors_caffe.proto", syntax="proto2"
    )
    pos, fields = 0, []
    while text[pos:].strip():
        statement, message = _STATEMENT.match(text, pos), _MESSAGE.match(text, pos)
        if statement:
            fdp.package = statement.group(1) or fdp.package
            pos = statement.end()
        elif message:
            proto = fdp.message_type.add(name=message.group(1))
            body = message.group(2)
            for field in _FIELD.finditer(body):
                fields.append((proto, field))
            leftover = _FIELD.sub("", body).strip()
            if leftover:
                raise ValueError("message %s: cannot read %r" % (proto.name, leftover[:60]))
            pos = message.end()
        else:
            raise ValueError("cannot read %r" % text[pos:].strip()[:60])
    names = {m.name for m in fdp.message_type}
    for proto, field in fields:
        label, kind, name, number, option, value = field.groups()
        f = proto.field.add(name=name, number=int(number), label=_LABELS[label])
        if kind in _SCALARS:
            f.type = _SCALARS[kind]
        elif kind in names:
            f.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
            f.type_name = ".%s.%s" % (fdp.package, kind)
        else:
            raise ValueError("field %s.%s: unknown type %s" % (proto.name, name, kind))
        if option == "packed" and value == "true":
            f.options.packed = True
        elif option == "default":
            f.default_value = value.strip('"')
        elif option:
            raise ValueError("field %s.%s: unknown option %s" % (proto.name, name, option))
    return fdp


@functools.lru_cache(maxsize=None)
def _pool():
    """PROTO's FileDescriptorProto, added to a descriptor pool of its own (kept alive here:
    the classes' descriptors belong to it)."""
    with open(PROTO) as f:
        fdp = parse_proto(f.read())
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(fdp.SerializeToString())
    return pool, fdp


@functools.lru_cache(maxsize=None)
def messages():
    """{message name: class} of PROTO."""
    pool, fdp = _pool()
    get_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.21
    if get_class is None:
        get_class = message_factory.MessageFactory(pool).GetPrototype
    return {
        m.name: get_class(pool.FindMessageTypeByName("%s.%s" % (fdp.package, m.name)))
        for m in fdp.message_type
    }


def new(message, **fields):
    """A message of PROTO, e.g. new('LayerParameter', name='conv1_1')."""
    return messages()[message](**fields)


def read_net(path):
    """The NetParameter of a caffemodel, read with the fork's numbers; V1 layers (`layers`)
    are upgraded into `layer` (upgrade_v1). FormatError if the file is missing, empty, does
    not parse or has no layers."""
    if not os.path.isfile(path):
        raise FormatError("caffemodel %s not found" % path)
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise FormatError("caffemodel %s is empty (0 bytes)" % path)
    net = new("NetParameter")
    try:
        weights.parse_strictly(net, data)
    except DecodeError as e:
        raise FormatError(
            "%s (%d bytes) does not parse as a Caffe NetParameter (%s); truncated or corrupt?"
            % (path, len(data), e)
        ) from None
    del data
    if len(net.layers):
        upgrade_v1(net, path)
    if not len(net.layer):
        raise FormatError("%s parses as a NetParameter but has no layers" % path)
    return net


def upgrade_v1(net, path):
    """Move V1 layers into `layer` as stock Caffe's upgrade does (type names, the parameters
    of V1_PARAMS); FormatError naming a layer whose type number is unknown."""
    for old in net.layers:
        if old.type not in V1_TYPES:
            raise FormatError(
                "%s: V1 layer %s has layer type number %d, which the fork does not define"
                % (path, old.name, old.type)
            )
        layer = net.layer.add(name=old.name, type=V1_TYPES[old.type])
        layer.bottom.extend(old.bottom)
        layer.top.extend(old.top)
        layer.blobs.extend(old.blobs)
        for param in V1_PARAMS:
            if old.HasField(param):
                getattr(layer, param).CopyFrom(getattr(old, param))
    del net.layers[:]


def blob_array(blob):
    """The values of a BlobProto as a float32 array of its shape (weights.blob_shape); ValueError if
    the count does not match."""
    if len(blob.double_data):
        values = np.frombuffer(b"".join(blob.double_data), "<f8").astype(np.float32)
    else:
        values = np.frombuffer(b"".join(blob.data), "<f4")
    shape = weights.blob_shape(blob)
    if values.size != int(np.prod(shape)):
        raise ValueError("blob of shape %s holds %d values" % (shape, values.size))
    return values.reshape(shape)
