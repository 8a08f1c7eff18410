"""The built-in dataset and its LMDBs, each made unless it is current: the data of tools/demo.py
and tools/repro_mini.py.

  data_dir/coco, data_dir/VOCdevkit/VOC2012   the trees (data_prep.builtin; split "paper")
  data_dir/spec.json                          their dataset spec (data_prep.spec)
  data_dir/lmdb/classes.json, target, source  its class table and LMDBs (data_prep.build)
  data_dir/lmdb/source_r050_s1, ...           a source subset: ratio 0.5, subset seed 1
"""

import collections
import os

from data_prep import build, builtin, spec

ALL_SOURCE = (1.0, 0)  # (ratio, subset seed) of the source LMDB of every image
SPEC_FILE = "spec.json"

# The built-in dataset: its spec.Spec, ClassTable, target LMDB and {(ratio, subset seed):
# source LMDB}.
BuiltinData = collections.namedtuple("BuiltinData", "spec table target sources")


def ensure_lmdbs(data_dir, size, log, subsets=(ALL_SOURCE,), seed=0, workers=2, **settings):
    """Generate the built-in dataset into `data_dir` (data_prep.builtin.ensure with `seed` and
    its `settings`: split, image counts), then build its class table, target LMDB and a source
    LMDB per (ratio, subset seed) of `subsets`, records `size` x `size`, each unless it is
    current. `log` gets one line per thing made. Returns the BuiltinData."""
    settings = dict(seed=seed, **settings)
    if builtin.ensure(data_dir, workers=workers, **settings):
        log(
            "generated the built-in dataset in %s (%s)"
            % (data_dir, ", ".join("%s %s" % item for item in settings.items()))
        )
    marker = os.path.join(data_dir, builtin.MARKER)
    dataset_spec = spec.load(os.path.join(data_dir, SPEC_FILE))
    table, target, sources = build.build(
        dataset_spec, size, subsets, workers, log, newer_than=marker
    )
    return BuiltinData(dataset_spec, table, target, sources)
