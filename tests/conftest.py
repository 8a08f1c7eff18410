"""Test set-up shared by every test: quiet glog, CPU Caffe; the built-in dataset fixture."""

import os

import pytest

# One BLAS thread in the tests and every process they start: the summation order of a GEMM
# depends on the thread count, and a last-bit change of a near-zero ReLU input moves a max
# pooling switch, which the unpooling turns into an O(1) change of the output. Comparisons
# between a tool's subprocess and the test's own forward need the same order.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

from transfernet.verbosity import QUIET  # noqa: E402

os.environ.setdefault("GLOG_minloglevel", QUIET)

import caffe  # noqa: E402  (the real pycaffe: tests never run without it)

from data_prep.builtin_lmdbs import ALL_SOURCE, ensure_lmdbs  # noqa: E402
from transfernet import config  # noqa: E402

caffe.set_mode_cpu()


@pytest.fixture(scope="session")
def builtin_lmdbs(tmp_path_factory):
    """A small built-in dataset in the real formats, built into LMDBs by the real builders:
    (source, target) dataset folders for config.TINY."""
    root = str(tmp_path_factory.mktemp("builtin"))
    data = ensure_lmdbs(
        root,
        config.TINY.data.resize,
        lambda line: None,
        seed=1,
        source_images=80,
        target_train=40,
        target_val=4,
    )
    return data.sources[ALL_SOURCE], data.target


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """{'seg', 'cls'}: caffemodels of the tiny deploy nets with seeded random weights."""
    import tiny_weights

    return tiny_weights.make_weights(tmp_path_factory.mktemp("weights"))
