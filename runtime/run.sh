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
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -ne 1 ]; then
  echo "usage: runtime/run.sh 'COMMAND'" >&2
  exit 2
fi
pypath="$top:$top/python_layers"

if [ "${TRANSFERNET_USE_ROOT:-0}" != 1 ] && python3 -c 'import caffe' >/dev/null 2>&1; then
  cd "$top"
  export TRANSFERNET_RUNTIME="host python3 ($(command -v python3))"
  PYTHONPATH="$pypath${PYTHONPATH:+:$PYTHONPATH}" exec /bin/sh -c "$1"
fi

root=$("$top/runtime/build-root.sh")
export TRANSFERNET_RUNTIME="Debian 11 root $root"
mounts="$top${TRANSFERNET_MOUNTS:+:$TRANSFERNET_MOUNTS}"
passed=()
for name in TERM CI COLUMNS OMP_NUM_THREADS OPENBLAS_NUM_THREADS GLOG_minloglevel \
            $(compgen -e | grep '^TRANSFERNET_' || true); do
  [ -n "${!name+x}" ] && passed+=("$name=${!name}")
done

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
  exec chroot "$root" /usr/bin/env -i "$@"
' run "$root" "$top" "$mounts" \
  PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 PYTHONPATH="$pypath" \
  "${passed[@]}" /bin/sh -c 'cd "$0" && exec /bin/sh -c "$1"' "$top" "$1"
