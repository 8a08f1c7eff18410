#!/usr/bin/env bash
# The runtime without root: run as root, it switches to an ordinary USER with a fresh HOME (a
# clean cache) and checks, as USER:
# - on a machine that forbids user namespaces (reproduced without touching the machine: USER
#   inside a user namespace of its own whose user.max_user_namespaces is 1, used up by a
#   nested one), building either root and entering one stop with the message naming the ways
#   out; without a subordinate uid range (as nobody), building stops naming what is missing;
# - interrupted builds (SIGINT and SIGKILL of the CPU build, SIGTERM of the CUDA build during
#   apt-get) leave no partial root: a killed one is removed by the next build;
# - the Caffe root builds (runtime/build-root.sh, mmdebstrap in a user namespace; about 3
#   minutes) and `caffe --version`, a pycaffe import and host device files work in it through
#   runtime/run.sh;
# - runtime/bind-nvidia.sh binds a driver library into a root inside a user namespace (a
#   stand-in for the host's libcuda.so.1, listed by a stand-in ldconfig: no GPU here).
# Prints each check, the build time and `test-rootless: ok`.
#   runtime/test-rootless.sh USER
# USER needs a subordinate uid and gid range (/etc/subuid, /etc/subgid: useradd gives one);
# mmdebstrap and uidmap are installed if missing, as build-root.sh installs debootstrap.
set -euo pipefail
user=${1:?usage: runtime/test-rootless.sh USER}
if [ "$(id -u)" != 0 ] || [ "$(id -u "$user")" = 0 ]; then
  echo "test-rootless: run as root, with an ordinary user to switch to" >&2
  exit 2
fi
top=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v mmdebstrap >/dev/null || ! command -v newuidmap >/dev/null; then
  apt-get update -qq && apt-get install -y -qq mmdebstrap uidmap
fi
home=$(mktemp -d /tmp/transfernet-rootless.XXXXXX)
chown "$user:" "$home"
cache=$home/.cache/transfernet
trap 'rm -rf --one-file-system "$home"' EXIT
as=(setpriv --reuid="$user" --regid="$user" --init-groups
    env -i HOME="$home" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 CUDA_ARCH=90)
as_user() { "${as[@]}" "$@"; }
fail() { echo "test-rootless: FAIL $*" >&2; exit 1; }
# expect NAME STATUS PATTERN COMMAND...: COMMAND's exit status and a line of its output.
expect() {
  local name=$1 status=$2 pattern=$3 out rc=0
  shift 3
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" = "$status" ] && grep -Eq -- "$pattern" <<<"$out" \
    || fail "$name: exit $rc (expected $status), output:"$'\n'"$out"
  echo "test-rootless: ok   $name"
}
# no_userns COMMAND...: COMMAND as USER where creating a user namespace fails as on a machine
# with user.max_user_namespaces=0 (ENOSPC; the namespaces vanish with COMMAND).
no_userns() {
  as_user unshare --user --map-root-user /bin/sh -c '
    echo 1 >/proc/sys/user/max_user_namespaces && uid=$0 gid=$1 && shift &&
    exec unshare --user --map-user="$uid" --map-group="$gid" "$@"' \
    "$(id -u "$user")" "$(id -g "$user")" "$@"
}
# interrupt SIGNAL STEP BUILDER: start BUILDER as USER in a process group of its own and send
# SIGNAL to the group (as Ctrl-C does) 3 s after its progress line STEP; then no partial root
# may be left, except after SIGKILL.
interrupt() {
  local signal=$1 step=$2 builder=$3 out=$home/interrupt.out
  # A background job of this (non-interactive) shell starts with SIGINT ignored, which the
  # builder could then not trap: env restores the default before it starts.
  setsid -w env --default-signal=INT /bin/sh -c 'echo $$ >"$0"; exec "$@"' "$home/pgid" \
    "${as[@]}" "$top/runtime/$builder" 2>"$out" &
  while kill -0 $! 2>/dev/null && ! grep -q "] $step" "$out" 2>/dev/null; do sleep 0.5; done
  grep -q "] $step" "$out" || fail "$builder never reached '$step':"$'\n'"$(cat "$out")"
  sleep 3
  kill -"$signal" -- -"$(cat "$home/pgid")"
  { wait $! || true; } 2>/dev/null   # no "Killed" line from the shell
  ! ls "$cache"/caffe-*/.transfernet-complete 2>/dev/null \
    || fail "$builder: the build finished despite SIG$signal during '$step'"
  if [ "$signal" = KILL ]; then
    ls -d "$cache"/*.partial.*[0-9] >/dev/null || fail "$builder: SIGKILL left no partial root"
  elif ls -d "$cache"/*.partial.*[0-9] 2>/dev/null; then
    fail "$builder: SIGTERM or SIGINT during '$step' left a partial root"
  fi
  echo "test-rootless: ok   $builder, SIG$signal during '$step'"
}

ways_out="this machine does not let $user create user namespaces.*Two ways out: a root user"
expect "build-root.sh without user namespaces" 1 "$ways_out" \
  no_userns "$top/runtime/build-root.sh"
expect "build-cuda-root.sh without user namespaces" 1 "$ways_out" \
  no_userns "$top/runtime/build-cuda-root.sh"
nobody_home=$home/nobody && mkdir "$nobody_home" && chown nobody: "$nobody_home"
expect "build-root.sh without a subordinate uid range (as nobody)" 1 \
  "building the Caffe root as nobody needs mmdebstrap and newuidmap .* a subordinate uid" \
  setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
    env -i HOME="$nobody_home" PATH=/usr/bin:/bin "$top/runtime/build-root.sh"

interrupt TERM "apt-get install CUDA" build-cuda-root.sh
interrupt INT "apt-get install Caffe" build-root.sh
interrupt KILL "apt-get install Caffe" build-root.sh

start=$(date +%s)
root=$(as_user "$top/runtime/build-root.sh" 2>"$home/build.err") \
  || fail "build-root.sh:"$'\n'"$(cat "$home/build.err")"
echo "test-rootless: built $root as $user in $(( $(date +%s) - start )) s"
grep -q "removing $cache/caffe-bullseye-.*\.partial\.[0-9]* (left by a build that was killed)" \
  "$home/build.err" || fail "the build did not remove the killed build's partial root"
! ls -d "$cache"/caffe-bullseye-*.partial.* 2>/dev/null \
  || fail "partial roots or logs left after the build"
echo "test-rootless: ok   the build removed what the killed one left"
out=$(as_user env TRANSFERNET_USE_ROOT=1 "$top/runtime/run.sh" \
  'echo "$TRANSFERNET_RUNTIME"; caffe --version
python3 -c "import caffe; print(\"pycaffe\", caffe.__file__, \"Python\" in caffe.layer_type_list())"
test -c /dev/null && head -c 5 /dev/zero | wc -c')
echo "$out"
grep -q "^Debian 11 root $cache/caffe-bullseye-" <<<"$out" || fail "not run in $user's root"
grep -q "^caffe version 1.0.0$" <<<"$out" || fail "caffe --version"
grep -q "^pycaffe /usr/lib/python3/dist-packages/caffe/__init__.py True$" <<<"$out" \
  || fail "pycaffe import"
grep -qx 5 <<<"$out" || fail "the host's device files in the root"
echo "test-rootless: ok   caffe, pycaffe and device files in the root, as $user"
expect "run.sh without user namespaces (the root built)" 1 "$ways_out" \
  no_userns env TRANSFERNET_USE_ROOT=1 "$top/runtime/run.sh" true

# A stand-in driver: a library file and an ldconfig that lists it first, as the host's would.
nv=$home/nvidia && mkdir -p "$nv/bin" "$nv/lib" "$nv/root/usr/local/nvidia/lib"
echo "stand-in libcuda" >"$nv/lib/libcuda.so.555.42" && ln -s libcuda.so.555.42 "$nv/lib/libcuda.so.1"
printf '#!/bin/sh\nprintf "\\tlibcuda.so.1 (libc6,x86-64) => %s\\n\\tlibc.so.6 (libc6,x86-64) => %s\\n"\n' \
  "$nv/lib/libcuda.so.1" /lib/x86_64-linux-gnu/libc.so.6 >"$nv/bin/ldconfig"
chmod 755 "$nv/bin/ldconfig" && chown -R "$user:" "$nv"
expect "bind-nvidia.sh in a user namespace binds the driver's libcuda.so.1" 0 \
  "^stand-in libcuda libcuda.so.1$" \
  as_user env PATH="$nv/bin:/usr/bin:/bin" unshare --user --map-root-user --mount \
    --propagation private /bin/sh -c '"$0" "$1" && cd "$1/usr/local/nvidia/lib" &&
    echo "$(cat libcuda.so.1) $(ls)"' "$top/runtime/bind-nvidia.sh" "$nv/root"
[ -z "$(ls "$nv/root/usr/local/nvidia/lib")" ] || fail "bind-nvidia.sh wrote into the root"
echo "test-rootless: ok"
