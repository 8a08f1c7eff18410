"""The runtime matches its requirements file (requirements.txt; requirements-cuda.txt in the
CUDA root), and pycaffe is the real, Python-layer-enabled Caffe."""

import importlib.metadata
import os
import subprocess

import caffe
import cv2
import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = (
    "requirements-cuda.txt" if os.environ.get("TRANSFERNET_CAFFE") == "cuda" else "requirements.txt"
)  # runtime/run.sh sets the flavour


def pinned_requirements():
    """(name, version) for every `name==version` line of the runtime's requirements file."""
    pins = []
    with open(os.path.join(TOP, REQUIREMENTS)) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, version = line.split("==")
                pins.append((name, version))
    return pins


@pytest.mark.parametrize("name,version", pinned_requirements())
def test_installed_version_matches_requirements(name, version):
    if name == "opencv-python":  # Debian's python3-opencv has no opencv-python metadata
        assert cv2.__version__ == ".".join(version.split(".")[:3])
    else:
        assert importlib.metadata.version(name) == version


def test_requirements_cover_the_project_dependencies():
    names = {name for name, _ in pinned_requirements()}
    assert {
        "numpy",
        "protobuf",
        "lmdb",
        "opencv-python",
        "pycocotools",
        "pydensecrf2",
        "pytest",
    } <= names


def test_pycaffe_runs_python_layers():
    assert hasattr(caffe, "Layer") and hasattr(caffe, "get_solver")
    assert "Python" in caffe.layer_type_list()


def test_caffe_cli_is_bvlc_caffe_1():
    out = subprocess.run(["caffe", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip().startswith("caffe version 1.0")


def test_cuda_runtime_has_nccl_and_a_one_line_gpu_guard():
    cuda = os.environ.get("TRANSFERNET_CAFFE") == "cuda"
    assert caffe.has_nccl() == cuda  # Debian 11's CPU Caffe has no NCCL; the CUDA build does
    if cuda and not os.path.exists("/proc/driver/nvidia/version"):
        run = subprocess.run(["caffe", "device_query", "-gpu", "0"], capture_output=True, text=True)
        assert run.returncode == 1 and run.stderr.count("\n") == 1
        assert run.stderr.startswith("caffe: -gpu asks for a GPU, but no NVIDIA driver")
