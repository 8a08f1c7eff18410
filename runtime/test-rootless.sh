#!/usr/bin/env bash
# The runtime without root: run as root, it switches to an ordinary USER with a fresh HOME (a
# clean cache), builds the Caffe root as USER (runtime/build-root.sh, mmdebstrap in a user
# namespace; about 3 minutes) and runs `caffe --version` and a pycaffe import in it through
# runtime/run.sh, as USER. Prints the build time and `test-rootless: ok`.
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
trap 'rm -rf --one-file-system "$home"' EXIT
as_user() {
  setpriv --reuid="$user" --regid="$user" --init-groups \
    env -i HOME="$home" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "$@"
}

start=$(date +%s)
root=$(as_user "$top/runtime/build-root.sh")
echo "test-rootless: built $root as $user in $(( $(date +%s) - start )) s"
out=$(as_user env TRANSFERNET_USE_ROOT=1 "$top/runtime/run.sh" \
  'echo "$TRANSFERNET_RUNTIME"; caffe --version
python3 -c "import caffe; print(\"pycaffe\", caffe.__file__, \"Python\" in caffe.layer_type_list())"')
echo "$out"
grep -q "^Debian 11 root $home/.cache/transfernet/caffe-bullseye-" <<<"$out"
grep -q "^caffe version 1.0.0$" <<<"$out"
grep -q "^pycaffe /usr/lib/python3/dist-packages/caffe/__init__.py True$" <<<"$out"
echo "test-rootless: ok"
