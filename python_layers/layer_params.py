"""JSON `param_str` parsing shared by the project's Python layers.

Every custom layer takes its options as a JSON object in `python_param { param_str: ... }`
and declares them once as a dict of defaults:

    DEFAULTS = {"source": REQUIRED, "batch_size": REQUIRED, "mirror": True,
                "mean": [104.008, 116.669, 122.675], "target": None}

    @report_errors
    class SourceTargetData(caffe.Layer):
        def setup(self, bottom, top):
            self.params = parse_params(self, self.param_str, DEFAULTS)

    parse_params(layer, '{"source": "data/lmdb/source", "batch_size": 8}', DEFAULTS)
    -> {"source": "data/lmdb/source", "batch_size": 8, "mirror": True,
        "mean": [104.008, 116.669, 122.675], "target": None}

Rules: '' (or whitespace) means {}; the JSON must be an object; every key must be declared;
every REQUIRED key must be given; a value must have its default's JSON type (an int is accepted,
and converted, where the default is a float; a bool is never an int; a default of None or
REQUIRED accepts any value). Any violation raises ValueError("<LayerClass> param_str: ...").

Every layer class is decorated with `report_errors`, so that its errors are seen under the
`caffe` CLI too.
"""

import copy
import functools
import json
import os
import sys

REQUIRED = object()
"""Default marking a key that param_str must provide."""

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
}


def _error(name, message):
    return ValueError("%s param_str: %s" % (name, message))


def _check_type(name, key, value, default):
    """Return `value` if it has the type of `default` (int -> float converted), else raise."""
    if default is None or default is REQUIRED:
        return value
    expected = type(default)
    if expected is float and type(value) is int:
        return float(value)
    if type(value) is not expected:
        raise _error(
            name,
            "%r must be %s like the default %r, got %s"
            % (key, _TYPE_NAMES.get(expected, expected.__name__), default, json.dumps(value)),
        )
    return value


def parse_params(layer, param_str, defaults):
    """Parse `param_str` (JSON object) against `defaults` (key -> default or REQUIRED).

    `layer` is the layer instance (its class name prefixes errors) or that name as a string.
    Returns a new dict holding every key of `defaults` (defaults deep-copied).
    """
    name = layer if isinstance(layer, str) else type(layer).__name__
    text = param_str or ""
    try:
        given = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise _error(name, "expected a JSON object, got %r (%s)" % (text, exc)) from None
    if not isinstance(given, dict):
        raise _error(name, "expected a JSON object, got %s" % json.dumps(given))
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise _error(
            name,
            "unknown key(s) %s; expected keys: %s"
            % (", ".join(map(repr, unknown)), sorted(defaults) or "none"),
        )
    missing = sorted(
        key for key, default in defaults.items() if default is REQUIRED and key not in given
    )
    if missing:
        raise _error(name, "missing required key(s) %s" % ", ".join(map(repr, missing)))
    return {
        key: _check_type(name, key, given[key], default) if key in given else copy.deepcopy(default)
        for key, default in defaults.items()
    }


LAYER_METHODS = ("setup", "reshape", "forward", "backward")


def _embedded():
    """Whether Python runs inside another program (the `caffe` CLI), not as the interpreter."""
    return not os.path.basename(os.path.realpath("/proc/self/exe")).startswith("python")


def report_errors(cls):
    """Class decorator of a Python layer: an exception leaving setup, reshape, forward or
    backward is printed to stderr, flushed, as "Error in Python layer <Layer>.<method>:
    <Type>: <message>" before it propagates, when Python is embedded in the `caffe` CLI.
    There the exception ends the process with only `terminate called after throwing an
    instance of 'boost::python::error_already_set'`; under pycaffe it reaches the caller as
    any Python exception and is not printed twice."""

    def wrap(name, method):
        @functools.wraps(method)
        def reported(self, *args):
            try:
                return method(self, *args)
            except Exception as exc:
                if _embedded():
                    print(
                        "Error in Python layer %s.%s: %s: %s"
                        % (cls.__name__, name, type(exc).__name__, exc),
                        file=sys.stderr,
                        flush=True,
                    )
                raise

        return reported

    for name in LAYER_METHODS:
        setattr(cls, name, wrap(name, getattr(cls, name)))
    cls.reports_errors = True
    return cls
