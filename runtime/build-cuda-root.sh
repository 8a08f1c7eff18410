#!/usr/bin/env bash
# Build the CUDA Caffe runtime (`make env CAFFE=cuda`): a Debian 12 (bookworm) root with BVLC
# Caffe 1.0 compiled from Debian 11's caffe source package (Debian's patches, plus the one-line
# fix protobuf 3.21 needs) against CUDA 11.8 (Debian 12 non-free's nvidia-cuda-toolkit, the
# first CUDA with sm_90) with g++-11: CUDA on, cuDNN off (BVLC's cuDNN layers predate cuDNN 8;
# Caffe's im2col + cuBLAS convolutions are used), NCCL on (from PyPI's nvidia-nccl-cu11 wheel,
# as no distribution ships NCCL), Python layers and pycaffe on. Then the project's Python
# packages, pinned as in requirements-cuda.txt. Prints the root's path on stdout.
#
# CUDA_ARCH: the GPU architectures to build SASS for (space-separated compute capabilities
# without the dot); PTX is added for the newest, so later GPUs JIT-compile it. Default: Pascal
# (60) to Hopper (90). One architecture builds about 3x faster (`CUDA_ARCH=90`).
#
# Cached like runtime/build-root.sh: the root is named after a hash of this recipe,
# runtime/root-lib.sh and the architecture list ($TRANSFERNET_CUDA_ROOT overrides it). Built as
# root or as any other user, atomically, as runtime/root-lib.sh describes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
name=build-cuda-root root_var=TRANSFERNET_CUDA_ROOT make_env="make env CAFFE=cuda"
. "$here/root-lib.sh"
arch_bin=$(echo ${CUDA_ARCH:-60 70 75 80 86 90} | tr ' ' '\n' | sort -n | tr '\n' ' ' | sed 's/ $//')
arch_ptx=${arch_bin##* }
case "$arch_bin" in
  ""|*[!0-9\ ]*) echo "build-cuda-root: CUDA_ARCH must be compute capabilities like '70 90'," \
                      "got '${CUDA_ARCH:-}'" >&2; exit 2 ;;
esac
caffe_version=1.0.0+git20180821.99bd997-8   # Debian 11's caffe source package

# Caffe's build dependencies (Debian 11's debian/control, less docs), CUDA, g++-11 for nvcc,
# and what pydensecrf2's sdist needs: removed after the build, except the libraries that
# caffe and pycaffe link (found with ldd) and what the Python packages need.
build_debs="nvidia-cuda-toolkit g++-11 cmake make dpkg-dev libboost-dev
libboost-filesystem-dev libboost-system-dev libboost-thread-dev libboost-python-dev
libgflags-dev libgoogle-glog-dev libhdf5-dev libleveldb-dev liblmdb-dev libopenblas-dev
libopencv-dev libprotobuf-dev libprotoc-dev libsnappy-dev protobuf-compiler
g++ cython3 python3-dev"
# The project's Python packages (Debian 12's versions) and OpenBLAS.
debs="libopenblas0-pthread python3-numpy python3-protobuf python3-lmdb python3-opencv
python3-scipy python3-matplotlib python3-tqdm python3-pil python3-skimage python3-pip
python3-setuptools python3-wheel"
# The NVIDIA driver's user-space half (libcuda.so.1) must match the host's kernel module:
# run.sh binds the host's; the copy CUDA's packages pull in is removed (run as root without a
# GPU, it would create /dev/nvidia* device nodes in the host's /dev).
driver_debs="libcuda1"
# What Debian 12 lacks (fetch_wheels).
wheels="pycocotools==2.0.11 pytest==8.3.5 iniconfig==2.1.0 pluggy==1.5.0 packaging==25.0
nvidia-nccl-cu11==2.21.5"
sdists="pydensecrf2==1.1"

recipe=$({ cat "$0" "$here/root-lib.sh" "$here/caffe-gpu-guard.sh"; echo "$arch_bin"; } | sha256sum | cut -c1-12)
cache=${TRANSFERNET_CACHE:-$HOME/.cache/transfernet}
root=${TRANSFERNET_CUDA_ROOT:-$cache/caffe-cuda-bookworm-$recipe}

if [ -f "$root/.transfernet-complete" ]; then
  echo "$root"
  exit 0
fi
check_builder
start_build
bootstrap bookworm main,contrib,non-free,non-free-firmware

# Debian 11's source archive only for the caffe source package.
echo "deb-src $mirror bullseye main" >"$tmp/etc/apt/sources.list.d/bullseye-src.list"
step "apt-get install CUDA 11.8, g++-11, Caffe's build dependencies and the Python packages"
in_root apt-get update -qq >>"$log" 2>&1 || fail "apt-get update"
in_root apt-get install -y -qq --no-install-recommends $build_debs $debs >>"$log" 2>&1 \
  || fail "apt-get install"

fetch_wheels 3.11
step "NCCL: libnccl.so.2 and nccl.h from the wheel into /usr/local"
python3 -m zipfile -e "$wheel_dir"/nvidia_nccl_cu11-*.whl "$wheel_dir/nccl" >>"$log" 2>&1 || fail "NCCL unzip"
install -m 0644 "$wheel_dir/nccl/nvidia/nccl/include/nccl.h" "$tmp/usr/local/include/"
install -m 0755 "$wheel_dir/nccl/nvidia/nccl/lib/libnccl.so.2" "$tmp/usr/local/lib/"
ln -sf libnccl.so.2 "$tmp/usr/local/lib/libnccl.so"
rm -rf "$wheel_dir/nccl" "$wheel_dir"/nvidia_nccl_cu11-*.whl

install_wheels --break-system-packages

step "caffe $caffe_version: source from Debian 11 (with Debian's patches), protobuf 3.21 fix"
in_root /bin/sh -c "mkdir -p /usr/src/caffe && cd /usr/src/caffe &&
  apt-get source -qq --only-source caffe=$caffe_version" >>"$log" 2>&1 || fail "apt-get source"
src=$(echo "$tmp"/usr/src/caffe/caffe-*/)
src=/${src#"$tmp"/}
# protobuf 3.21's CodedInputStream::SetTotalBytesLimit takes one argument (the warning
# threshold was removed).
sed -i 's/SetTotalBytesLimit(kProtoReadBytesLimit, 536870912)/SetTotalBytesLimit(kProtoReadBytesLimit)/' \
  "$tmp$src/src/caffe/util/io.cpp"
grep -q 'SetTotalBytesLimit(kProtoReadBytesLimit)' "$tmp$src/src/caffe/util/io.cpp" \
  || fail "protobuf fix"

step "caffe: cmake (SASS sm_${arch_bin// /,sm_}, PTX compute_$arch_ptx; cuDNN off, NCCL on)"
# As Debian's debian/rules configures the CPU package, with CUDA switched on.
in_root /bin/sh -c "mkdir -p $src/build && cd $src/build && cmake .. \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_SKIP_RPATH=TRUE \
  -DCMAKE_C_COMPILER=gcc-11 -DCMAKE_CXX_COMPILER=g++-11 -DCUDA_HOST_COMPILER=/usr/bin/gcc-11 \
  -DCPU_ONLY=OFF -DUSE_CUDNN=OFF -DUSE_NCCL=ON \
  -DCUDA_ARCH_NAME=Manual -DCUDA_ARCH_BIN='$arch_bin' -DCUDA_ARCH_PTX='$arch_ptx' \
  -DBLAS=Generic -DBUILD_SHARED_LIBS=ON -DBUILD_docs=OFF -DBUILD_matlab=OFF \
  -DBUILD_python=ON -DBUILD_python_layer=ON -Dpython_version=3.11 \
  -DUSE_LEVELDB=ON -DUSE_LMDB=ON -DUSE_OPENCV=ON -DALLOW_LMDB_NOLOCK=OFF" >>"$log" 2>&1 \
  || fail cmake
step "caffe: make -j${BUILD_JOBS:-$(nproc)}"
in_root /bin/sh -c "cd $src/build && make -j${BUILD_JOBS:-$(nproc)} all && make install" \
  >>"$log" 2>&1 || fail "caffe build"

# What `make env CAFFE=cuda` prints (transfernet/cuda.py), from the compiler and CMake.
mkdir -p "$tmp/usr/share/caffe-cuda"
{ echo "CUDA: $(in_root nvcc --version | sed -n 's/.*release \([^,]*\), V\(.*\)/\1 (nvcc V\2)/p')"
  echo "architectures: $(sed -n 's/^-- Added CUDA NVCC flags for: //p' "$log" | tail -1)"
} >"$tmp/usr/share/caffe-cuda/build-info"

step "remove the build tree, compilers, headers, CUDA toolkit and driver; keep what caffe links"
remove "$tmp/usr/src/caffe"
# Kept: the packages of the libraries caffe and pycaffe link, and the Python packages. A
# build package that one of them depends on stays too (python3-scipy needs python3-pythran,
# which needs python3-dev and libboost-dev): each candidate is removed only if apt's dry run
# of its purge removes nothing kept.
cat >"$tmp/tmp/linked-packages.sh" <<'EOF'
ldd /usr/bin/caffe /usr/lib/python3/dist-packages/caffe/_caffe.so |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  while read -r lib; do dpkg -S "*/${lib##*/}" 2>/dev/null || true; done |
  sed 's/: .*//; s/, /\n/g' | sed 's/:.*//' | sort -u
EOF
cat >"$tmp/tmp/removable.sh" <<'EOF'
for pkg in "$@"; do
  apt-get -s purge "$pkg" | sed -n 's/^Purg \([^ ]*\).*/\1/p' | grep -qxFf /tmp/keep || echo "$pkg"
done
EOF
in_root /bin/sh /tmp/linked-packages.sh >"$tmp/tmp/keep" 2>>"$log" \
  && grep -qx libcudart11.0 "$tmp/tmp/keep" || fail "finding the linked packages"
echo $debs | tr ' ' '\n' >>"$tmp/tmp/keep"
in_root apt-mark manual $(cat "$tmp/tmp/keep") >>"$log" 2>&1 || fail "apt-mark"
removable=$(in_root /bin/sh /tmp/removable.sh $build_debs $driver_debs) || fail "apt-get -s purge"
echo "removing: $removable" >>"$log"
in_root apt-get purge -y -qq $removable >>"$log" 2>&1 || fail "apt-get purge"
in_root apt-get autoremove --purge -y -qq >>"$log" 2>&1 || fail "apt-get autoremove"
in_root apt-get clean >>"$log" 2>&1
rm -f "$tmp"/tmp/linked-packages.sh "$tmp"/tmp/removable.sh "$tmp"/tmp/keep
in_root ldconfig
# A guard for `caffe ... -gpu N` on a machine without an NVIDIA driver (Caffe aborts there
# with a stack trace) and the folder run.sh binds the host's driver libraries into.
install -m 0755 "$here/caffe-gpu-guard.sh" "$tmp/usr/local/bin/caffe"
mkdir -p "$tmp/usr/local/nvidia/lib"

step "check: caffe links CUDA and NCCL, pycaffe and the Python packages import"
in_root /bin/sh -c 'ldd /usr/bin/caffe | grep -q "not found" && exit 1
  ldd /usr/bin/caffe | grep -q libcudart && ldd /usr/bin/caffe | grep -q libnccl' >>"$log" 2>&1 \
  || { in_root ldd /usr/bin/caffe >>"$log" 2>&1; fail "ldd check"; }
in_root python3 -c 'import caffe, cv2, lmdb, google.protobuf, scipy, matplotlib, tqdm, PIL
import pycocotools.mask, pydensecrf.densecrf, pytest
assert caffe.has_nccl(), "pycaffe has no NCCL"' >>"$log" 2>&1 || fail "import check"
in_root readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 | grep -q openblas \
  || fail "OpenBLAS check"
! in_root /bin/sh -c 'ldconfig -p | grep -q "libcuda\.so\.1 "' || fail "driver removal check"
in_root nvcc --version >/dev/null 2>&1 && fail "toolkit removal check"

finish_build "$recipe"
