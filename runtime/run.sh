#!/usr/bin/env bash
# Run a command with pycaffe and the project's modules importable.
#   runtime/run.sh 'caffe --version'
#   runtime/run.sh 'python3 -m pytest tests'
# If the host's python3 can import caffe (a user's own CPU or CUDA build), the command runs
# on the host. Otherwise it runs in the Debian 11 Caffe root (built on first use by
# runtime/build-root.sh), inside a private mount namespace: the checkout is bound at its own
# path and is the working directory, /dev and /proc are mounted, and every mount vanishes
# with the command, whether it succeeds or fails. Extra host folders (datasets outside the
# checkout) are bound at their own paths from TRANSFERNET_MOUNTS (colon-separated absolute
# paths; the Makefile adds the dataset roots it is given).
# TRANSFERNET_USE_ROOT=1 forces the root even when the host has pycaffe.
# TRANSFERNET_CAFFE=cuda (the Makefile's CAFFE=cuda) runs in the CUDA Caffe root instead
# (runtime/build-cuda-root.sh; never the host's pycaffe); on a machine with an NVIDIA driver
# the host's driver libraries are bound into it (runtime/bind-nvidia.sh; /dev is bound anyway).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ne 1 ]; then
  echo "usage: runtime/run.sh 'COMMAND'" >&2
  exit 2
fi
pypath="$top:$top/python_layers"

case "${TRANSFERNET_CAFFE:=cpu}" in
  cpu) builder=build-root.sh runtime="Debian 11 root" ;;
  cuda) builder=build-cuda-root.sh runtime="Debian 12 CUDA root" TRANSFERNET_USE_ROOT=1 ;;
  *) echo "runtime/run.sh: TRANSFERNET_CAFFE (CAFFE) must be cpu or cuda, got '$TRANSFERNET_CAFFE'" >&2
     exit 2 ;;
esac
export TRANSFERNET_CAFFE   # the command sees its flavour (tests pick the matching requirements)
if [ "${TRANSFERNET_USE_ROOT:-0}" != 1 ] && python3 -c 'import caffe' >/dev/null 2>&1; then
  cd "$top"
  export TRANSFERNET_RUNTIME="host python3 ($(command -v python3))"
  PYTHONPATH="$pypath${PYTHONPATH:+:$PYTHONPATH}" exec /bin/sh -c "$1"
fi

root=$("$top/runtime/$builder")
export TRANSFERNET_RUNTIME="$runtime $root"
mounts="$top${TRANSFERNET_MOUNTS:+:$TRANSFERNET_MOUNTS}"
passed=()
for name in TERM CI COLUMNS OMP_NUM_THREADS OPENBLAS_NUM_THREADS GLOG_minloglevel \
            $(compgen -e | grep '^TRANSFERNET_' || true); do
  [ -n "${!name+x}" ] && passed+=("$name=${!name}")
done
export bind_nvidia=true   # a no-op, unless the CUDA root runs on a machine with a driver
if [ "$TRANSFERNET_CAFFE" = cuda ] && [ -e /proc/driver/nvidia/version ]; then
  bind_nvidia=$top/runtime/bind-nvidia.sh
  passed+=("LD_LIBRARY_PATH=/usr/local/nvidia/lib")
fi

exec unshare --mount --propagation private /bin/bash -c '
  set -e
  root=$1 top=$2 mounts=$3; shift 3
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  IFS=:
  for dir in $mounts; do
    case "$dir" in "$top"/*|"") continue ;; esac   # already visible through the checkout
    [ -d "$dir" ] || continue   # a missing dataset root: the command itself says what it expected
    mkdir -p "$root$dir"
    mount --rbind "$dir" "$root$dir"
  done
  "$bind_nvidia" "$root"
  exec chroot "$root" /usr/bin/env -i "$@"
' run "$root" "$top" "$mounts" \
  PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 PYTHONPATH="$pypath" \
  "${passed[@]}" /bin/sh -c 'cd "$0" && exec /bin/sh -c "$1"' "$top" "$1"
