#!/usr/bin/env bash
# Build the Caffe runtime: a Debian 11 (bullseye) root with Debian's BVLC Caffe 1.0 (CPU,
# Python layers enabled) and every Python package the project uses, pinned as in
# requirements.txt. Prints the root's path on stdout.
#
# The root lives outside the checkout, in $TRANSFERNET_ROOT (default: a folder under
# ~/.cache/transfernet named after a hash of this recipe and runtime/root-lib.sh, so a changed
# recipe builds a new root). Built as root or as any other user, atomically, as
# runtime/root-lib.sh describes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
name=build-root root_var=TRANSFERNET_ROOT make_env="make env"
. "$here/root-lib.sh"

# Debian 11 packages: Caffe, OpenBLAS (Caffe otherwise runs on the ~17x slower reference
# BLAS), the Python libraries, and a compiler for the dense CRF's sdist.
debs="caffe libcaffe1 python3-caffe libopenblas0-pthread
python3-numpy python3-protobuf python3-lmdb python3-opencv python3-scipy python3-matplotlib
python3-tqdm python3-pil python3-pip python3-setuptools python3-wheel python3-dev g++ cython3"
# What Debian 11 lacks (fetch_wheels).
wheels="pycocotools==2.0.11 pytest==8.3.5 iniconfig==2.1.0 pluggy==1.5.0 packaging==25.0
exceptiongroup==1.3.0 tomli==2.2.1 typing_extensions==4.13.2"
sdists="pydensecrf2==1.1"

recipe=$(cat "$0" "$here/root-lib.sh" | sha256sum | cut -c1-12)
cache=${TRANSFERNET_CACHE:-$HOME/.cache/transfernet}
root=${TRANSFERNET_ROOT:-$cache/caffe-bullseye-$recipe}

if [ -f "$root/.transfernet-complete" ]; then
  echo "$root"
  exit 0
fi
check_builder
start_build
bootstrap bullseye main
step "apt-get install Caffe and the Python packages"
in_root apt-get update -qq >>"$log" 2>&1 || fail "apt-get update"
in_root apt-get install -y -qq --no-install-recommends $debs >>"$log" 2>&1 \
  || fail "apt-get install"
in_root apt-get clean >>"$log" 2>&1

fetch_wheels 3.9
install_wheels

step "check: caffe, pycaffe and the Python packages import"
in_root python3 -c 'import caffe, cv2, lmdb, google.protobuf, scipy, matplotlib, tqdm, PIL
import pycocotools.mask, pydensecrf.densecrf, pytest' >>"$log" 2>&1 \
  || fail "import check"
in_root readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 | grep -q openblas \
  || fail "OpenBLAS check"

finish_build "$recipe"
