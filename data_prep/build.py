"""The datasets of a dataset spec (data_prep.spec): its class table and its target and source
LMDBs, each built unless it is current (`make data SPEC=...`).

  python3 -m data_prep.build SPEC --size 138 [--ratio 0.5 --seed 1] [--workers 2]
  python3 -m data_prep.build SPEC --check     # validate the spec; print its class table

Writes OUT/classes.json (transfernet.class_table), OUT/target (data_prep.voc or data_prep.tags)
and OUT/source (data_prep.coco; OUT/source_r050_s1 for --ratio 0.5 --seed 1). A dataset is
current if it was built after the spec file (or `newer_than`) with the same size, subset and
class table.
"""

import argparse
import os
import sys

from data_prep import coco, common, spec, tags, voc
from transfernet import class_table, records


def load_source(dataset_spec):
    """(the source instances JSON, the spec's class_table.SourceClasses for it)."""
    dataset = coco.load_instances(dataset_spec.source.coco)
    return dataset, spec.source_classes(dataset_spec, dataset["categories"])


def build(dataset_spec, size, subsets=((1.0, 0),), workers=2, log=print, newer_than=None):
    """Write the class table, then build the target LMDB and a source LMDB per (ratio, subset
    seed) of `subsets` (see the module docstring), the source JSON read once; `log` gets a
    line per LMDB built. Returns (ClassTable, target, {(ratio, subset seed): source})."""
    marker = newer_than or dataset_spec.path
    missing = [m for m in spec.missing_inputs(dataset_spec) if not m[0].startswith("val.")]
    if missing:
        raise FileNotFoundError(
            "%s names inputs that do not exist: %s (paths are relative to the spec's folder)"
            % (dataset_spec.path, "; ".join("%s %s" % item for item in missing))
        )
    dataset, sources = load_source(dataset_spec)
    table = sources.table
    os.makedirs(dataset_spec.out, exist_ok=True)
    class_table.write(
        spec.table_path(dataset_spec),
        table,
        spec=os.path.abspath(dataset_spec.path),
        coco_category_ids={str(k): c for c, k in sorted(sources.ids.items())},
    )
    target = spec.target_folder(dataset_spec)
    text = "records %dx%d" % (size, size)
    if not is_current(target, size, marker, table):
        log("building %s (%s)" % (target, text))
        build_target(dataset_spec.target, target, table, size, workers)
    folders = {}
    for ratio, seed in dict.fromkeys(subsets):
        source = folders[ratio, seed] = spec.source_folder(dataset_spec, ratio, seed)
        if is_current(source, size, marker, table, ratio=ratio, seed=seed):
            continue
        subset = ", ratio %g, subset seed %d" % (ratio, seed) if ratio < 1 else ""
        log("building %s (%s%s)" % (source, text, subset))
        coco.build_source(
            os.path.dirname(os.path.abspath(dataset_spec.path)),
            source,
            dataset_spec.source.coco,
            dataset_spec.source.images,
            size,
            ratio,
            seed,
            workers,
            sources,
            dataset,
        )
    return table, target, folders


def build_target(target, out_dir, table, size, workers):
    """The target LMDB of a spec.Target: a VOC tree (with SBD if the spec names one that is
    there: the paper's spec names it, and a VOC-only target is VOC train), a tags CSV or a
    COCO JSON."""
    if target.kind == "voc":
        sbd = (
            target.sbd
            if target.sbd and os.path.isfile(os.path.join(target.sbd, "train.txt"))
            else None
        )
        return voc.build_target(target.path, out_dir, sbd, size, workers, table)
    return tags.build_target(target.kind, target.path, target.images, out_dir, table, size, workers)


def is_current(folder, size, marker, table, **params):
    """records.is_current, and built for the class table."""
    return (
        records.is_current(folder, size, marker, **params)
        and records.read_meta(folder).get("class_table") == table.tag
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("spec", help="dataset spec JSON (data_prep/spec.py)")
    p.add_argument("--size", type=int, help="record size (the config's data.resize)")
    p.add_argument("--check", action="store_true", help="validate the spec, print its table")
    p.add_argument("--ratio", type=float, default=1.0, help="random fraction of the source kept")
    p.add_argument("--seed", type=int, default=0, help="seed of the --ratio subset")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    a = p.parse_args(argv)
    if not (a.check or a.size):
        p.error("give --size (or --check)")
    try:
        dataset_spec = spec.load(a.spec)
        if a.check:
            print("\n".join(spec.describe(load_source(dataset_spec)[1].table)))
            return 0
    except (OSError, ValueError) as e:
        print("data_prep.build: %s" % e, file=sys.stderr)
        return 1

    def run():
        table = build(dataset_spec, a.size, [(a.ratio, a.seed)], a.workers)[0]
        print("\n".join(spec.describe(table) + ["wrote %s" % spec.table_path(dataset_spec)]))

    return common.run_build("data_prep.build", dataset_spec.out, run)


if __name__ == "__main__":
    sys.exit(main())
