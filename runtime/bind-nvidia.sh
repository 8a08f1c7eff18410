#!/bin/sh
# Bind the host's NVIDIA driver libraries (libcuda.so.1 and the libnvidia-* it loads, as
# `ldconfig -p` lists them) into ROOT/usr/local/nvidia/lib, as container runtimes do: the
# driver's user-space half must match the host's kernel module, so it comes from the host.
# Called by runtime/run.sh inside its private mount namespace (the mounts vanish with it); the
# folder is a fresh tmpfs there, so the cached root itself is never written.
#   runtime/bind-nvidia.sh ROOT
set -eu
dir=$1/usr/local/nvidia/lib
mount -t tmpfs -o size=1m,mode=0755 nvidia-driver "$dir"
ldconfig -p | sed -n 's/^[[:space:]]*\(lib\(cuda\|nvidia-[^ ]*\)\.so[^ ]*\) (libc6,x86-64[^)]*) => \(.*\)$/\1 \3/p' |
  while read -r name path; do
    [ -e "$dir/$name" ] && continue   # the first (ld.so's) entry of a name wins
    : >"$dir/$name"
    mount --bind "$(readlink -f "$path")" "$dir/$name"
  done
