"""Caffe's log level for the tools: fatal messages only unless --verbose.

glog reads GLOG_minloglevel once, when pycaffe is first imported, so a tool calls
quiet_caffe(sys.argv) before any import that loads caffe. Without it every net set-up prints
its whole description, layer by layer (about 1,800 lines for the tiny deploy nets).
Quiet keeps glog's FATAL level: Caffe's failed checks, which end the process, still print.
Its ERROR level is left out: what Caffe logs there does not stop it (a CUDA build on a
machine without a GPU logs "Cannot create Cublas handle" at start-up), and the tools' own
errors are Python's, printed either way.
"""

import os

QUIET, VERBOSE = "3", "0"  # glog levels: 3 = fatal only, 0 = everything


def quiet_caffe(argv):
    """Set GLOG_minloglevel: 0 if `argv` holds --verbose, else 3 unless the user set it."""
    if "--verbose" in argv:
        os.environ["GLOG_minloglevel"] = VERBOSE
    else:
        os.environ.setdefault("GLOG_minloglevel", QUIET)


def logging_env():
    """The environment of a child process whose Caffe log is read: every level, on stderr."""
    return dict(os.environ, GLOG_minloglevel=VERBOSE, GLOG_logtostderr="1")
