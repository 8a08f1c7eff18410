"""Test set-up shared by every test: quiet glog, CPU Caffe."""
import os

os.environ.setdefault("GLOG_minloglevel", "2")

import caffe  # noqa: E402  (the real pycaffe: tests never run without it)

caffe.set_mode_cpu()
