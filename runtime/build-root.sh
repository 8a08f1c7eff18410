#!/usr/bin/env bash
# Build the Caffe runtime: a Debian 11 (bullseye) root with Debian's BVLC Caffe 1.0 (CPU,
# Python layers enabled) and every Python package the project uses, pinned as in
# requirements.txt. Prints the root's path on stdout.
#
# The root lives outside the checkout, in $TRANSFERNET_ROOT (default: a folder under
# ~/.cache/transfernet named after a hash of this recipe, so a changed recipe builds a new
# root). It is built under a temporary name and renamed when complete: an interrupted
# build is never used, and re-running starts it again.
# As root: debootstrap, then apt-get in a chroot. As any other user: mmdebstrap, run as root
# of a user namespace that maps the user to root and the user's subordinate uid/gid range to
# the packages' own users (unshare --map-auto; mmdebstrap's own --mode=unshare maps root to a
# subordinate uid instead, which cannot enter a home folder of mode 700 or 750); then every
# file is given to the user, so the root is entered with only the user's own uid mapped to
# root (runtime/run.sh; no range needed to run it).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PATH=$PATH:/usr/sbin:/sbin  # chroot, for users whose PATH lacks them

# Debian 11 packages: Caffe, OpenBLAS (Caffe otherwise runs on the ~17x slower reference
# BLAS), the Python libraries, and a compiler for the dense CRF's sdist.
debs="caffe libcaffe1 python3-caffe libopenblas0-pthread
python3-numpy python3-protobuf python3-lmdb python3-opencv python3-scipy python3-matplotlib
python3-tqdm python3-pil python3-pip python3-setuptools python3-wheel python3-dev g++ cython3"
# What Debian 11 lacks, fetched by the host's pip (the root cannot reach PyPI).
wheels="pycocotools==2.0.11 pytest==8.3.5 iniconfig==2.1.0 pluggy==1.5.0 packaging==25.0
exceptiongroup==1.3.0 tomli==2.2.1 typing_extensions==4.13.2"
sdists="pydensecrf2==1.1"

recipe=$(cat "$0" | sha256sum | cut -c1-12)
cache=${TRANSFERNET_CACHE:-$HOME/.cache/transfernet}
root=${TRANSFERNET_ROOT:-$cache/caffe-bullseye-$recipe}

if [ -f "$root/.transfernet-complete" ]; then
  echo "$root"
  exit 0
fi
ways_out="or let a root user build the root once and point TRANSFERNET_ROOT at it,"\
" or bring your own pycaffe (README.md, The Caffe runtime)"
if [ "$(id -u)" = 0 ]; then
  rootless=
  if ! command -v debootstrap >/dev/null; then
    echo "build-root: installing debootstrap" >&2
    apt-get update -qq >&2 && apt-get install -y -qq debootstrap >&2
  fi
else
  rootless=1
  user=$(id -un)
  if ! unshare --user --map-root-user true 2>/dev/null; then
    echo "build-root: this machine does not let $user create user namespaces" \
         "(unshare --user failed; e.g. kernel.unprivileged_userns_clone=0), which building" \
         "and entering the Caffe root without root needs: $ways_out" >&2
    exit 1
  fi
  if ! command -v mmdebstrap >/dev/null || ! command -v newuidmap >/dev/null \
     || ! unshare --map-auto --map-root-user true 2>/dev/null; then
    echo "build-root: building the Caffe root as $user needs mmdebstrap and newuidmap" \
         "(apt-get install mmdebstrap uidmap) and a subordinate uid and gid range for $user" \
         "in /etc/subuid and /etc/subgid (an administrator, e.g.: usermod --add-subuids" \
         "100000-165535 --add-subgids 100000-165535 $user); $ways_out" >&2
    exit 1
  fi
fi
# Removes a partial root: as a user, inside a user namespace with the user's uid range, since
# mmdebstrap's files belong to it until they are handed over.
remove() {
  ${rootless:+unshare --map-auto --map-root-user} rm -rf --one-file-system "$@"
}

mkdir -p "$(dirname "$root")"
tmp="$root.partial.$$"
trap 'remove "$tmp"' EXIT
log="$tmp.log"
start=$(date +%s)
step() { echo "build-root: [$(( $(date +%s) - start ))s] $*" >&2; }

# Runs a command in the root being built, in a private mount namespace (mounts vanish with it;
# as a user, in a user namespace too, where /proc can be bound but not mounted anew).
in_root() {
  unshare ${rootless:+--user --map-root-user} --mount --propagation private /bin/sh -c '
    if [ -n "$2" ]; then mount --rbind /proc "$1/proc"; else mount -t proc proc "$1/proc"; fi &&
    mount --rbind /dev "$1/dev" && shift 2 &&
    exec chroot "$0" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
      HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' "$tmp" "$tmp" "$rootless" "$@"
}

if [ -z "$rootless" ]; then
  step "debootstrap bullseye into $tmp (log: $log)"
  debootstrap --variant=minbase bullseye "$tmp" "$mirror" >"$log" 2>&1 \
    || { tail -20 "$log" >&2; echo "build-root: debootstrap failed" >&2; exit 1; }
  step "apt-get install Caffe and the Python packages"
  in_root apt-get update -qq >>"$log" 2>&1
  in_root apt-get install -y -qq --no-install-recommends $debs >>"$log" 2>&1 \
    || { tail -20 "$log" >&2; echo "build-root: apt-get install failed" >&2; exit 1; }
  in_root apt-get clean >>"$log" 2>&1
else
  step "mmdebstrap bullseye with Caffe and the Python packages into $tmp, in a user" \
       "namespace (log: $log)"
  # A PID namespace of its own lets it mount /proc in the root (sysfs stays unmounted: a
  # warning in the log, not needed by apt or dpkg).
  unshare --map-auto --map-root-user --mount --pid --fork \
    mmdebstrap --mode=root --variant=minbase --include="$(echo $debs | tr ' ' ,)" \
    bullseye "$tmp" "$mirror" >"$log" 2>&1 \
    || { tail -20 "$log" >&2; echo "build-root: mmdebstrap failed" >&2; exit 1; }
  unshare --map-auto --map-root-user chown -hR 0:0 "$tmp"  # every file to the user
fi

step "pip: fetch the cp39 wheels and sdists on the host"
dl="$tmp/tmp/transfernet-wheels"
mkdir -p "$dl"
pip_host() { env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL python3 -m pip "$@"; }
pip_host download -q --no-deps --only-binary=:all: --python-version 3.9 \
  --platform manylinux2014_x86_64 --platform any -d "$dl" $wheels >>"$log" 2>&1 \
  && pip_host download -q --no-deps --no-binary=:all: -d "$dl" $sdists >>"$log" 2>&1 \
  || { tail -20 "$log" >&2; echo "build-root: pip download failed" >&2; exit 1; }

step "pip: install them in the root, offline (builds pydensecrf with g++)"
in_root /bin/sh -c 'cd /tmp/transfernet-wheels && python3 -m pip install -q --no-index \
  --no-deps --no-build-isolation --no-warn-script-location *.whl *.tar.gz' >>"$log" 2>&1 \
  || { tail -20 "$log" >&2; echo "build-root: pip install failed" >&2; exit 1; }
rm -rf "$dl"

step "check: caffe, pycaffe and the Python packages import"
in_root python3 -c 'import caffe, cv2, lmdb, google.protobuf, scipy, matplotlib, tqdm, PIL
import pycocotools.mask, pydensecrf.densecrf, pytest' >>"$log" 2>&1 \
  || { tail -20 "$log" >&2; echo "build-root: import check failed" >&2; exit 1; }
in_root readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 | grep -q openblas \
  || { echo "build-root: Caffe's BLAS is not OpenBLAS" >&2; exit 1; }

echo "$recipe" >"$tmp/.transfernet-complete"
rm -f "$log"
mv -T "$tmp" "$root"
trap - EXIT
step "done: $root"
echo "$root"
