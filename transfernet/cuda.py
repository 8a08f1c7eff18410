"""How many CUDA GPUs this process can use, asked of the CUDA runtime before Caffe is.

Caffe aborts with a stack trace when `set_device` names a GPU that is not there (or when it
has no CUDA at all), so tools ask first and say why in one line.
"""
import ctypes
import ctypes.util

CUDA_SUCCESS = 0


def device_count():
    """(number of CUDA devices, reason when 0): the CUDA runtime's cudaGetDeviceCount."""
    name = ctypes.util.find_library("cudart")
    if name is None:
        return 0, ("no CUDA runtime (libcudart) in this Caffe runtime: it is the CPU build "
                   "(the CUDA one is `make env CAFFE=cuda`)")
    cudart = ctypes.CDLL(name)
    cudart.cudaGetErrorString.restype = ctypes.c_char_p
    count = ctypes.c_int(0)
    status = cudart.cudaGetDeviceCount(ctypes.byref(count))
    if status != CUDA_SUCCESS:
        return 0, "%s: cudaGetDeviceCount: %s (error %d)" % (
            name, cudart.cudaGetErrorString(status).decode(), status)
    if count.value == 0:
        return 0, "%s: cudaGetDeviceCount found no CUDA device" % name
    return count.value, None


def check_devices(ids):
    """None if every GPU id in `ids` exists, else a one-line reason."""
    count, reason = device_count()
    if reason is not None:
        return "no GPU: %s" % reason
    missing = [i for i in ids if not 0 <= i < count]
    if missing:
        return "GPU %s not present: this machine has %d (ids 0-%d)" % (
            ",".join(map(str, missing)), count, count - 1)
    return None
