"""Caffe's log level for the tools: errors only unless --verbose (issue 11).

glog reads GLOG_minloglevel once, when pycaffe is first imported, so a tool calls
quiet_caffe(sys.argv) before any import that loads caffe. Without it every net set-up prints
its whole description, layer by layer (about 1,800 lines for the tiny deploy nets).
"""
import os

QUIET, VERBOSE = "2", "0"  # glog levels: 2 = errors and fatal only, 0 = everything


def quiet_caffe(argv):
    """Set GLOG_minloglevel: 0 if `argv` holds --verbose, else 2 unless the user set it."""
    if "--verbose" in argv:
        os.environ["GLOG_minloglevel"] = VERBOSE
    else:
        os.environ.setdefault("GLOG_minloglevel", QUIET)
