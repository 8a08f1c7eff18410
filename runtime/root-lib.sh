# The steps both Caffe roots are built with, sourced by runtime/build-root.sh and
# runtime/build-cuda-root.sh (and part of both recipe hashes: a change here rebuilds both
# roots); runtime/run.sh sources it for the user-namespace check alone.
#
# As root: debootstrap, then commands in a chroot. As any other user: mmdebstrap, run as root
# of a user namespace that maps the user to root and the user's subordinate uid/gid range to
# the packages' own users (unshare --map-auto; mmdebstrap's own --mode=unshare maps root to a
# subordinate uid instead, which cannot enter a home folder of mode 700 or 750), and commands
# in a chroot in such a namespace; when the root is complete every file is given to the user,
# so it is entered with only the user's own uid mapped to root (runtime/run.sh; no range
# needed to run it).
#
# The builder sets $name (its messages' prefix), $root (the finished root's path), $root_var (the
# variable that overrides it) and $make_env (the make command that builds it), then:
#   check_builder; start_build; bootstrap SUITE COMPONENTS; in_root CMD...; finish_build RECIPE
# A root is built under a temporary name ($tmp, next to $root; its log $log beside it) and
# renamed when complete: an interrupted build is never used. Interrupted (Ctrl-C, SIGTERM) or
# failed, the build removes its partial root (a failed one keeps its log); what one that could
# not left (SIGKILL, power loss) is removed by the next build, as are old logs.
PATH=$PATH:/usr/sbin:/sbin  # chroot, for users whose PATH lacks them
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootless=
[ "$(id -u)" = 0 ] || rootless=1

# user_namespaces_or_exit PREFIX: as an ordinary user, stop with the ways out when the machine
# forbids user namespaces (building and entering a root without root needs one).
user_namespaces_or_exit() {
  [ -n "$rootless" ] && ! unshare --user --map-root-user --mount --propagation private true \
    2>/dev/null || return 0
  echo "$1: this machine does not let $(id -un) create user namespaces (unshare --user" \
       "--mount failed: e.g. sysctl user.max_user_namespaces=0," \
       "kernel.unprivileged_userns_clone=0 or kernel.apparmor_restrict_unprivileged_userns=1)," \
       "and building or entering the Caffe root without root needs them. Two ways out: a root" \
       "user builds the root once and runs the project's commands as root (make env as root;" \
       "the root is then in root's ~/.cache/transfernet), or you bring your own pycaffe (a" \
       "python3 that can import caffe: runtime/run.sh then runs the CPU flavour's commands on" \
       "the host; README.md, The Caffe runtime)" >&2
  exit 1
}

# check_builder: the tools the build needs, installed as root, asked for as a user.
check_builder() {
  if [ -z "$rootless" ]; then
    if ! command -v debootstrap >/dev/null; then
      echo "$name: installing debootstrap" >&2
      apt-get update -qq >&2 && apt-get install -y -qq debootstrap >&2
    fi
    return
  fi
  user_namespaces_or_exit "$name"
  if ! command -v mmdebstrap >/dev/null || ! command -v newuidmap >/dev/null \
     || ! unshare --map-auto --map-root-user true 2>/dev/null; then
    echo "$name: building the Caffe root as $(id -un) needs mmdebstrap and newuidmap" \
         "(apt-get install mmdebstrap uidmap) and a subordinate uid and gid range for" \
         "$(id -un) in /etc/subuid and /etc/subgid (an administrator, e.g.: usermod" \
         "--add-subuids 100000-165535 --add-subgids 100000-165535 $(id -un)). Or a root user" \
         "builds the root once and gives it to you (as root: $root_var=/srv/transfernet-root" \
         "$make_env && chown -R $(id -un): /srv/transfernet-root; you then set" \
         "$root_var=/srv/transfernet-root), or you bring your own pycaffe (README.md, The Caffe" \
         "runtime)" >&2
    exit 1
  fi
}

# remove PATH...: as a user, inside a user namespace with the user's uid range, since the
# packages' files belong to it until the root is handed over.
remove() {
  ${rootless:+unshare --map-auto --map-root-user} rm -rf --one-file-system "$@"
}

# start_build: clear what earlier builds left (the partial root of one that was killed, the
# logs of failed ones), then set $tmp and $log and remove $tmp on exit.
start_build() {
  local stale pid
  for stale in "$root".partial.*; do
    case "$stale" in *.log) pid=${stale%.log} ;; *) pid=$stale ;; esac
    [ -e "$stale" ] && ! kill -0 "${pid##*.}" 2>/dev/null || continue
    [ -d "$stale" ] && echo "$name: removing $stale (left by a build that was killed)" >&2
    remove "$stale"
  done
  mkdir -p "$(dirname "$root")"
  tmp="$root.partial.$$"
  log="$tmp.log"   # next to the root, not in it: it outlives a failed build
  trap 'remove "$tmp"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  start=$(date +%s)
}

step() { echo "$name: [$(( $(date +%s) - start ))s] $*" >&2; }
fail() { tail -30 "$log" >&2; echo "$name: $1 failed (log: $log)" >&2; exit 1; }

# bootstrap SUITE COMPONENTS: a minimal Debian SUITE in $tmp with apt's COMPONENTS (main,...).
bootstrap() {
  if [ -z "$rootless" ]; then
    step "debootstrap $1 into $tmp (log: $log)"
    debootstrap --variant=minbase --components="$2" "$1" "$tmp" "$mirror" >"$log" 2>&1 \
      || fail debootstrap
  else
    step "mmdebstrap $1 into $tmp, in a user namespace (log: $log)"
    # A PID namespace of its own lets it mount /proc in the root (sysfs stays unmounted: a
    # warning in the log, not needed by apt or dpkg).
    unshare --map-auto --map-root-user --mount --pid --fork \
      mmdebstrap --mode=root --variant=minbase --components="$2" "$1" "$tmp" "$mirror" \
      >"$log" 2>&1 || fail mmdebstrap
  fi
}

# in_root CMD...: runs CMD in the root being built, in a private mount namespace (mounts vanish
# with it; as a user, in a user namespace with the user's range too, where /proc can be bound
# but not mounted anew).
in_root() {
  unshare ${rootless:+--map-auto --map-root-user} --mount --propagation private /bin/sh -c '
    if [ -n "$2" ]; then mount --rbind /proc "$1/proc"; else mount -t proc proc "$1/proc"; fi &&
    mount --rbind /dev "$1/dev" && shift 2 &&
    exec chroot "$0" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
      HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' "$tmp" "$tmp" "$rootless" "$@"
}

# fetch_wheels PYTHON_VERSION: $wheels and $sdists into the root's /tmp/transfernet-wheels,
# downloaded by the host's pip (the root cannot reach PyPI).
fetch_wheels() {
  step "pip: fetch the cp${1/./} wheels and sdists on the host"
  wheel_dir=$tmp/tmp/transfernet-wheels
  mkdir -p "$wheel_dir"
  pip_host() { env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL python3 -m pip "$@"; }
  pip_host download -q --no-deps --only-binary=:all: --python-version "$1" \
    --platform manylinux2014_x86_64 --platform any -d "$wheel_dir" $wheels \
    >>"$log" 2>&1 \
    && pip_host download -q --no-deps --no-binary=:all: -d "$wheel_dir" \
      $sdists >>"$log" 2>&1 \
    || fail "pip download"
}

# install_wheels [PIP_OPTION...]: installs what fetch_wheels fetched in the root, offline, and
# removes the downloads.
install_wheels() {
  step "pip: install the wheels in the root, offline (builds pydensecrf with g++)"
  in_root /bin/sh -c 'cd /tmp/transfernet-wheels && python3 -m pip install -q --no-index \
    --no-deps --no-build-isolation --no-warn-script-location "$@" *.whl *.tar.gz' pip "$@" \
    >>"$log" 2>&1 || fail "pip install"
  remove "$wheel_dir"
}

# finish_build RECIPE: as a user, every file to the user; marks the root complete, renames it
# to $root and keeps the log in it.
finish_build() {
  if [ -n "$rootless" ]; then
    unshare --map-auto --map-root-user chown -hR 0:0 "$tmp" || fail "handing the files over"
  fi
  echo "$1" >"$tmp/.transfernet-complete"
  mv -T "$tmp" "$root"
  trap - EXIT INT TERM
  mv "$log" "$root/.transfernet-build.log"
  step "done: $root ($(du -sh --one-file-system "$root" | cut -f1))"
  echo "$root"
}
