#!/usr/bin/env bash
# Run a command with pycaffe and the project's modules importable.
#   runtime/run.sh 'caffe --version'
#   runtime/run.sh 'python3 -m pytest tests'
# If the host's python3 can import caffe (a user's own CPU or CUDA build), the command runs
# on the host. Otherwise it runs in the Debian 11 Caffe root (built on first use by
# runtime/build-root.sh), inside a private mount namespace: the checkout is bound at its own
# path and is the working directory, /dev and /proc are mounted, and every mount vanishes
# with the command, whether it succeeds or fails. Extra host folders (datasets and outputs
# outside the checkout) are bound at their own paths from TRANSFERNET_MOUNTS (colon-separated
# absolute paths; the Makefile adds the folders each target reads and writes). A folder that
# does not exist yet is bound through its nearest existing parent, so what the command writes
# there lands on the host; when that parent is the root's own system (/, /usr, /etc, ...) the
# command is refused instead. A folder reached through a symlink out of the checkout is bound
# at the symlink's target.
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
. "$top/runtime/root-lib.sh"   # $rootless, user_namespaces_or_exit

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

user_namespaces_or_exit runtime/run.sh
root=$("$top/runtime/$builder")
export TRANSFERNET_RUNTIME="$runtime $root"
top_real=$(readlink -f -- "$top")
system_folders='^/(bin|boot|dev|etc|lib|lib32|lib64|libx32|proc|run|sbin|sys|usr|var)?(/|$)'
binds=$top
IFS=: read -ra wanted <<<"${TRANSFERNET_MOUNTS:-}"
for dir in "${wanted[@]}"; do
  [ -n "$dir" ] || continue
  if [[ $dir != /* ]]; then
    echo "runtime/run.sh: TRANSFERNET_MOUNTS holds $dir, not an absolute path" >&2
    exit 2
  fi
  real=$(readlink -m -- "$dir")
  case "$real" in "$top_real"|"$top_real"/*) continue ;; esac  # visible through the checkout
  case "$dir" in "$top"/*) dir=$real ;; esac                   # a symlink out of the checkout
  existing=$dir
  while [ ! -d "$existing" ]; do existing=$(dirname -- "$existing"); done
  if [ "$existing" != "$dir" ] && [[ $existing =~ $system_folders ]]; then
    echo "runtime/run.sh: $dir does not exist, and its nearest existing folder $existing is" \
         "part of the Caffe root's own system, so what the command writes there would stay" \
         "inside the root: create it first (mkdir -p $dir) or correct the path" >&2
    exit 2
  fi
  binds+=":$existing"
done
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

# As a user other than root, a user namespace maps the user to root (the root's files are the
# user's, runtime/root-lib.sh); there /proc can be bound but not mounted anew, and the host's
# /dev (with any /dev/nvidia*) and driver libraries are bound as for root.
exec unshare ${rootless:+--user --map-root-user} --mount --propagation private /bin/bash -c '
  set -e
  root=$1 binds=$2 rootless=$3; shift 3
  if [ -n "$rootless" ]; then
    mount --rbind /proc "$root/proc"
  else
    mount -t proc proc "$root/proc"
  fi
  mount --rbind /dev "$root/dev"
  IFS=:
  for dir in $binds; do
    mkdir -p "$root$dir"
    mount --rbind "$dir" "$root$dir"
  done
  "$bind_nvidia" "$root"
  exec chroot "$root" /usr/bin/env -i "$@"
' run "$root" "$binds" "$rootless" \
  PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 PYTHONPATH="$pypath" \
  "${passed[@]}" /bin/sh -c 'cd "$0" && exec /bin/sh -c "$1"' "$top" "$1"
