"""Shared pieces of the dataset builders: the parallel build loop, skip reports, the command
line's errors and signals."""

import contextlib
import multiprocessing
import os
import signal
import sys
import time

import cv2
from tqdm import tqdm

from transfernet import interrupt, records
from transfernet.fileio import Skip

CHUNKSIZE = 8
REBUILD = "run the same command again to build it"

# Reasons an input is skipped as bad (listed in report.tsv), besides fileio's image reasons.
UNREADABLE_MASK = "unreadable_mask"
SIZE_MISMATCH = "mask_size_differs_from_image"
UNKNOWN_CATEGORY = "unknown_category_id"
DEGENERATE_POLYGON = "degenerate_polygon"


def dataset_meta(kind, size, table, classes, **fields):
    """A builder's meta.json before the build: its kind ("source" or "target"), record size,
    ClassTable (label vector length and tag) and the {id: name} `classes` it holds."""
    return dict(
        fields,
        kind=kind,
        size=size,
        num_classes=table.num_classes,
        class_table=table.tag,
        classes={str(k): n for k, n in sorted(classes.items())},
    )


def require_files(what, root, expected, download):
    """FileNotFoundError listing the expected layout if any of `expected` is missing."""
    missing = [p for p in expected if not os.path.exists(os.path.join(root, p))]
    if missing:
        raise FileNotFoundError(
            "%s not found under %s: missing %s.\nExpected layout:\n%s\nDownload: %s"
            % (
                what,
                os.path.abspath(root),
                ", ".join(missing),
                "\n".join("  %s/%s" % (root.rstrip("/"), p) for p in expected),
                download,
            )
        )


def _imap(fn, tasks, workers):
    if workers <= 1:
        for task in tasks:
            yield fn(task)
        return
    with multiprocessing.Pool(workers, initializer=_init_worker) as pool:
        for result in pool.imap(fn, tasks, chunksize=CHUNKSIZE):
            yield result


def _init_worker():
    interrupt.ignore_in_worker()
    cv2.setNumThreads(1)  # one OpenCV thread per worker: the workers already use every core


def _guarded(fn_task):
    """Worker entry: run fn(task); turn Skip into a ('skip', reason, detail) result."""
    fn, task = fn_task
    try:
        return ("ok",) + tuple(fn(task))
    except Skip as s:
        return ("skip", s.reason, s.detail)


def build(
    out_dir, tasks, fn, meta, workers=2, map_size=records.DEFAULT_MAP_SIZE, desc="build", skipped=()
):
    """Run fn over tasks in worker processes (ordered) and write the dataset atomically.

    tasks: list of (item_name, task); fn(task) -> (image_value, mask_value or None, class_ids)
    or raises Skip. skipped: (reason, item, detail) rows of inputs found bad before the build.
    meta["dropped"] gains one count per skip reason; skipped items go to report.tsv;
    meta["class_counts"] counts images per class id. Prints a summary, also when no record
    is left (then ValueError naming the parameters).
    """
    meta = dict(meta)
    dropped = meta.setdefault("dropped", {})
    class_counts = {}
    report = list(skipped)
    for reason, _, _ in report:
        dropped[reason] = dropped.get(reason, 0) + 1
    start = time.time()

    def produce():
        # Closed when done: zip stops at the last task, leaving _imap (and its pool) open.
        with contextlib.closing(_imap(_guarded, [(fn, t) for _, t in tasks], workers)) as results:
            bar = tqdm(
                zip(tasks, results),
                total=len(tasks),
                desc=desc,
                file=sys.stderr,
                unit="img",
                dynamic_ncols=True,
            )
            with bar:
                for (name, _), result in bar:
                    if result[0] == "skip":
                        dropped[result[1]] = dropped.get(result[1], 0) + 1
                        report.append((result[1], name, result[2]))
                        continue
                    for c in result[3]:
                        class_counts[str(c)] = class_counts.get(str(c), 0) + 1
                    yield result[1], result[2]
        meta["class_counts"] = dict(sorted(class_counts.items(), key=lambda kv: int(kv[0])))

    try:
        count = records.write_dataset(out_dir, produce(), meta, map_size=map_size, report=report)
    except records.EmptyDataset:
        _print_summary(out_dir, 0, time.time() - start, dropped, report, written=False)
        raise ValueError(
            "%s: no records to write: every input was dropped (counts above); "
            "parameters: %s"
            % (out_dir, ", ".join("%s=%s" % kv for kv in sorted(meta.get("params", {}).items())))
        )
    _print_summary(out_dir, count, time.time() - start, dropped, report, written=True)
    return records.read_meta(out_dir)


def _print_summary(out_dir, count, seconds, dropped, report, written):
    """Kept count, rate and one line per drop reason; where report.tsv is if it was written,
    else the first skipped input of each reason."""
    print(
        "%s: kept %d images (%.0f records/s, %.1f s)" % (out_dir, count, count / seconds, seconds)
    )
    example = {}
    for reason, item, detail in report:
        example.setdefault(reason, detail if item in detail else "%s: %s" % (item, detail))
    for reason, n in sorted(dropped.items()):
        if n:
            print(
                "  dropped %d: %s%s"
                % (
                    n,
                    reason,
                    "" if written or reason not in example else " (first: %s)" % example[reason],
                )
            )
    if report and written:
        print("  skipped inputs listed in %s" % os.path.join(out_dir, "report.tsv"))
    sys.stdout.flush()  # before an error on stderr


def run_build(tool, out, build):
    """A builder's command line around build(): its exit status. An error (a missing file, a
    bad input, nothing to write) is one line `<tool>: <message>` and status 1; Ctrl-C
    (interrupt.run's line, status 130) and SIGTERM (status 143) keep nothing of the build."""

    def main():
        exit_on_sigterm()
        try:
            build()
        except KeyboardInterrupt:
            raise interrupt.Interrupted(
                "%s not built (nothing of this build is kept)" % out
            ) from None
        except (OSError, ValueError) as e:
            print("%s: %s" % (tool, e), file=sys.stderr)
            return 1
        return 0

    return interrupt.run(main, tool, REBUILD)


def exit_on_sigterm():
    """Turn SIGTERM into SystemExit, so a killed build removes its partial output as Ctrl-C
    does. Worker processes forked later keep SIGTERM's default action (Pool.terminate)."""
    main = os.getpid()

    def handler(signum, frame):
        if os.getpid() != main:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
