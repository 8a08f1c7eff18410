#!/usr/bin/env bash
# Checks of runtime/run.sh and the Makefile front door, run from the host (`make test-runtime`):
# folders outside the checkout that a target writes end up on the host, missing inputs and
# unbindable outputs are clear errors, and commands reach the runtime exactly as typed.
# Uses the built-in dataset (generated if needed, regenerated once) and a scratch folder
# outside the checkout: inputs in $tmp/in, outputs in new folders under $tmp/out (which no
# input folder contains).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=${TMPDIR:-/tmp}/transfernet-test-run
rm -rf "$tmp" && mkdir -p "$tmp/in/w"
link=runs/.test-run-link
trap 'rm -rf "$tmp" "$link"' EXIT
failures=0
start=$(date +%s)

# check NAME EXPECTED_STATUS PATTERN COMMAND...: run COMMAND, require its exit status and a
# line of its output (stdout and stderr) matching the extended regex PATTERN.
check() {
  local name=$1 status=$2 pattern=$3 out rc=0
  shift 3
  out=$("$@" 2>&1) || rc=$?
  if [ "$rc" = "$status" ] && grep -Eq -- "$pattern" <<<"$out"; then
    echo "ok    $name"
  else
    echo "FAIL  $name: exit $rc (expected $status), output:"; sed 's/^/      /' <<<"$out"
    failures=$((failures + 1))
  fi
}
# on_host NAME PATH: require PATH to exist on the host.
on_host() {
  if [ -e "$2" ]; then
    echo "ok    $1"
  else
    echo "FAIL  $1: $2 is not on the host"
    failures=$((failures + 1))
  fi
}

make -s builtin >/dev/null 2>&1
gt=data/builtin/VOCdevkit/VOC2012/SegmentationClass
ls "$gt" | sed 's/\.png$//' >"$tmp/in/all.txt"
sed -n 1,2p data/builtin/VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt >"$tmp/in/two.txt"

# Outputs in folders that do not exist yet, outside the checkout.
# the built-in dataset's spec, moved to $tmp/in with its paths made absolute, writing into a
# new folder outside
python3 - data/builtin/spec.json "$tmp/in/spec.json" "$tmp/out/db" <<'PY'
import json, os, sys
spec = json.load(open(sys.argv[1]))
base = os.path.dirname(os.path.abspath(sys.argv[1]))
for part in ("source", "target", "val"):
    for key, value in spec[part].items():
        if key in ("coco", "images", "voc", "csv", "sbd", "masks", "list"):
            spec[part][key] = os.path.join(base, value)
spec["out"] = sys.argv[3]
json.dump(spec, open(sys.argv[2], "w"))
PY
check "make data SPEC=<spec writing a new folder>" 0 "kept 400 images" \
  make -s data SPEC="$tmp/in/spec.json" CONFIG=tiny
on_host "  ... the LMDBs are on the host" "$tmp/out/db/target/images/data.mdb"
on_host "  ... and the class table" "$tmp/out/db/classes.json"
check "make eval EVAL_OUT=<new folder>" 0 "wrote $tmp/out/eval/eval.json" \
  make -s eval DATASET=builtin PRED="$gt" GT="$gt" LIST="$tmp/in/all.txt" \
  EVAL_OUT="$tmp/out/eval/eval.json"
on_host "  ... eval.json is on the host" "$tmp/out/eval/eval.json"
check "runtime/run.sh writes tiny weights outside the checkout" 0 "seg.caffemodel" \
  env TRANSFERNET_MOUNTS="$tmp/in/w" runtime/run.sh \
  "cd tests && GLOG_minloglevel=2 python3 -c 'import tiny_weights
print(tiny_weights.make_weights(\"$tmp/in/w\"))'"
check "make infer PRED=<new folder>" 0 "2 images: 2 segmented.*outputs in $tmp/out/pred" \
  make -s infer DATASET=builtin LIST="$tmp/in/two.txt" PRED="$tmp/out/pred" \
  INFER_ARGS="--weights '$tmp/in/w/seg.caffemodel' \
              --classifier-weights '$tmp/in/w/cls.caffemodel'"
on_host "  ... the label PNGs are on the host" "$tmp/out/pred/$(head -1 "$tmp/in/two.txt").png"
# make authors-table end to end: a tiny release in the authors' format, two built-in val images
voc=data/builtin/VOCdevkit/VOC2012
mkdir -p "$tmp/in/voc/ImageSets/Segmentation" "$tmp/in/authors"
cp "$tmp/in/two.txt" "$tmp/in/voc/ImageSets/Segmentation/val.txt"
ln -s "$PWD/$voc/JPEGImages" "$PWD/$voc/SegmentationClass" "$tmp/in/voc/"
env TRANSFERNET_MOUNTS="$tmp/in/authors" runtime/run.sh \
  "cd tests && python3 -c 'import numpy, authors_files as a; from transfernet.config import TINY
a.write_release(\"$tmp/in/authors\", TINY.architecture, a.make_blobs(TINY.architecture, numpy.random.default_rng(0)))'"
check "make authors-table AUTHORS_OUT=<new folder>" 0 "wrote $tmp/out/authors/table.md" \
  make -s authors-table CONFIG=tiny VOC_ROOT="$tmp/in/voc" AUTHORS_DIR="$tmp/in/authors" \
  AUTHORS_OUT="$tmp/out/authors" WORKERS=1
on_host "  ... the imported model and both label maps are on the host" \
  "$tmp/out/authors/transfernet_gt/$(head -1 "$tmp/in/two.txt").png"
check "make authors-table AUTHORS_DIR=<missing>" 2 "authors-table: AUTHORS_DIR=$tmp/none does not exist" \
  make -s authors-table DATASET=builtin AUTHORS_DIR="$tmp/none"
check "runtime/run.sh TRANSFERNET_MOUNTS=<new folder>" 0 "^written$" \
  env TRANSFERNET_MOUNTS="$tmp/out/x" runtime/run.sh \
  "mkdir -p $tmp/out/x && touch $tmp/out/x/f && echo written"
on_host "  ... the file is on the host" "$tmp/out/x/f"
mkdir -p "$tmp/out/elsewhere" runs && ln -sfn "$tmp/out/elsewhere" "$link"
check "runtime/run.sh through a symlink out of the checkout" 0 "^written$" \
  env TRANSFERNET_MOUNTS="$PWD/$link/out" runtime/run.sh \
  "mkdir -p $link/out && touch $link/out/f && echo written"
on_host "  ... the file is at the symlink's target" "$tmp/out/elsewhere/out/f"
if runtime/run.sh 'echo "$TRANSFERNET_RUNTIME"' | grep -q '^Debian 11 root'; then
  check "an output whose nearest existing folder is / is refused" 2 \
    "/transfernet-no-such-folder does not exist.*create it first" \
    make -s eval DATASET=builtin PRED="$gt" GT="$gt" LIST="$tmp/in/all.txt" \
    EVAL_OUT=/transfernet-no-such-folder/eval.json
else
  echo "n/a   the refusal of unbindable outputs (the host's pycaffe runs commands in place)"
fi

# Inputs that do not exist.
check "make infer IMAGES=<missing>" 2 "infer: IMAGES=$tmp/none does not exist" \
  make -s infer DATASET=builtin IMAGES="$tmp/none"
check "make infer LIST=<missing>" 2 "infer: LIST=$tmp/none.txt does not exist" \
  make -s infer DATASET=builtin LIST="$tmp/none.txt"
check "make eval GT=<missing>" 2 "eval: GT=$tmp/none does not exist" \
  make -s eval DATASET=builtin PRED="$gt" GT="$tmp/none"

# The built-in dataset is regenerated when its marker records another generator version.
marker=data/builtin/builtin.json
sed -i 's/"version": [0-9]*/"version": 0/' "$marker"
check "make builtin regenerates a tree of another generator version" 0 \
  "data_prep.builtin: wrote data/builtin" make -s builtin
check "make builtin keeps a current tree" 0 "data_prep.builtin: up to date" make -s builtin

# Commands and argument lists reach the runtime's shell as typed.
check "make run CMD with double quotes" 0 "^1 2$" make -s run CMD='python3 -c "print(1, 2)"'
check "make run CMD with single quotes" 0 "^3$" make -s run CMD="python3 -c 'print(3)'"
check "make run CMD with \$ and ;" 0 "^4 /" make -s run CMD='x=4; echo "$x $HOME"'
check "make run without CMD" 2 "usage: make run CMD=" make -s run
check "make test PYTEST_ARGS with quotes" 0 "2 passed" \
  make -s test PYTEST_ARGS="-q -k 'mask_round_trip or image_round_trip' tests/test_records.py"

echo "test-run: $failures failed ($(( $(date +%s) - start )) s)"
[ "$failures" = 0 ]
