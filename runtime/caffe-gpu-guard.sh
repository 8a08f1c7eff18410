#!/bin/sh
# /usr/local/bin/caffe in the CUDA root: BVLC's caffe aborts with a stack trace when `-gpu` is
# given and no NVIDIA driver is present; say so in one line instead. Otherwise run caffe.
for arg in "$@"; do
  case "$arg" in
    -gpu|--gpu|-gpu=*|--gpu=*)
      if [ ! -e /proc/driver/nvidia/version ]; then
        echo "caffe: $arg asks for a GPU, but no NVIDIA driver is loaded on this machine" \
             "(no /proc/driver/nvidia); without -gpu this Caffe runs on the CPU" >&2
        exit 1
      fi ;;
  esac
done
exec /usr/bin/caffe "$@"
