"""How many CUDA GPUs this process can use, asked of the CUDA runtime before Caffe is, and
what the CUDA Caffe root was built with (`python3 -m transfernet.cuda`, run by
`make env CAFFE=cuda`).

Caffe aborts with a stack trace when `set_device` names a GPU that is not there (or when it
has no CUDA at all), so tools ask first and say why in one line.
"""

import ctypes
import ctypes.util

CUDA_SUCCESS = 0
# Written by runtime/build-cuda-root.sh: the CUDA release and CMake's SASS / PTX targets.
BUILD_INFO = "/usr/share/caffe-cuda/build-info"


def device_count():
    """(number of CUDA devices, reason when 0): the CUDA runtime's cudaGetDeviceCount."""
    name = ctypes.util.find_library("cudart")
    if name is None:
        return 0, (
            "no CUDA runtime (libcudart) in this Caffe runtime: it is the CPU build "
            "(the CUDA one is `make env CAFFE=cuda`)"
        )
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0, "no NVIDIA driver on this machine (libcuda.so.1 not found)"
    cudart = ctypes.CDLL(name)
    cudart.cudaGetErrorString.restype = ctypes.c_char_p
    count = ctypes.c_int(0)
    status = cudart.cudaGetDeviceCount(ctypes.byref(count))
    if status != CUDA_SUCCESS:
        return 0, "%s: cudaGetDeviceCount: %s (error %d)" % (
            name,
            cudart.cudaGetErrorString(status).decode(),
            status,
        )
    if count.value == 0:
        return 0, "%s: cudaGetDeviceCount found no CUDA device" % name
    return count.value, None


def synchronize():
    """Wait for every kernel Caffe queued on the current GPU (cudaDeviceSynchronize); the
    process shares Caffe's libcudart, hence its device and context."""
    status = ctypes.CDLL(ctypes.util.find_library("cudart")).cudaDeviceSynchronize()
    if status != CUDA_SUCCESS:
        raise RuntimeError("cudaDeviceSynchronize failed (error %d)" % status)


def nccl_version():
    """NCCL's version string (ncclGetVersion), or None without libnccl."""
    name = ctypes.util.find_library("nccl")
    value = ctypes.c_int(0)
    if name is None or ctypes.CDLL(name).ncclGetVersion(ctypes.byref(value)) != CUDA_SUCCESS:
        return None
    code = value.value  # major * 10000 + minor * 100 + patch since NCCL 2.9
    return "%d.%d.%d" % (code // 10000, code % 10000 // 100, code % 100)


def describe():
    """Lines: the CUDA release and architectures Caffe was built with, NCCL's version, and
    the GPUs visible now."""
    try:
        with open(BUILD_INFO) as f:
            lines = f.read().splitlines()
    except OSError:
        lines = ["CUDA: unknown (no %s)" % BUILD_INFO]
    count, reason = device_count()
    return lines + [
        "NCCL: %s" % (nccl_version() or "none"),
        "GPUs: %s" % (count if reason is None else "none, %s" % reason),
    ]


def check_devices(ids):
    """None if every GPU id in `ids` exists, else a one-line reason."""
    count, reason = device_count()
    if reason is not None:
        return "no GPU: %s" % reason
    missing = [i for i in ids if not 0 <= i < count]
    if missing:
        return "GPU %s not present: this machine has %d (ids 0-%d)" % (
            ",".join(map(str, missing)),
            count,
            count - 1,
        )
    return None


if __name__ == "__main__":
    print("\n".join(describe()))
