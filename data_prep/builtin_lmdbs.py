"""The built-in dataset and its LMDBs, each made unless it is current: the data of tools/demo.py
and tools/repro_mini.py.

  data_dir/coco, data_dir/VOCdevkit/VOC2012   the trees (data_prep.builtin)
  data_dir/lmdb/target                        the target LMDB (data_prep.voc)
  data_dir/lmdb/source                        the source LMDB of every source image
  data_dir/lmdb/source_r050_s1, ...           a source subset: ratio 0.5, subset seed 1
                                              (data_prep.coco's --ratio/--seed)
"""

import os

from data_prep import builtin, coco, voc
from transfernet import records

ALL_SOURCE = (1.0, 0)  # (ratio, subset seed) of the source LMDB of every image


def source_name(ratio, subset_seed):
    """Folder name in data_dir/lmdb of the source LMDB of a (ratio, subset seed)."""
    return "source" if ratio == 1 else "source_r%03d_s%d" % (round(100 * ratio), subset_seed)


def ensure_lmdbs(data_dir, size, log, subsets=(ALL_SOURCE,), seed=0, workers=2, **counts):
    """Generate the built-in dataset into `data_dir` (data_prep.builtin.ensure with `seed` and
    its image `counts`), then build its target LMDB and a source LMDB per (ratio, subset seed)
    of `subsets`, records `size` x `size`, each unless records.is_current says it is current.
    `log` gets one line per thing made. Returns (voc_root, target LMDB,
    {(ratio, subset seed): source LMDB})."""
    settings = dict(seed=seed, **counts)
    if builtin.ensure(data_dir, workers=workers, **settings):
        log(
            "generated the built-in dataset in %s (%s)"
            % (data_dir, ", ".join("%s %s" % item for item in settings.items()))
        )
    marker = os.path.join(data_dir, builtin.MARKER)
    voc_root = os.path.join(data_dir, "VOCdevkit", "VOC2012")
    target = os.path.join(data_dir, "lmdb", "target")
    records_text = "records %dx%d" % (size, size)
    if not records.is_current(target, size, marker):
        log("building %s (%s)" % (target, records_text))
        voc.build_target(voc_root, target, size=size, workers=workers)
    sources = {}
    for ratio, subset_seed in dict.fromkeys(subsets):
        folder = os.path.join(data_dir, "lmdb", source_name(ratio, subset_seed))
        if not records.is_current(folder, size, marker, ratio=ratio, seed=subset_seed):
            subset = ", ratio %g, subset seed %d" % (ratio, subset_seed) if ratio < 1 else ""
            log("building %s (%s%s)" % (folder, records_text, subset))
            coco.build_source(
                os.path.join(data_dir, "coco"),
                folder,
                size=size,
                ratio=ratio,
                seed=subset_seed,
                workers=workers,
            )
        sources[ratio, subset_seed] = folder
    return voc_root, target, sources
