#!/usr/bin/env python3
"""The performance bench (`make bench`): prints a table and writes runs/bench/bench.json.

    python3 tools/bench.py --out runs/bench/bench.json --builtin data/builtin

Measures (benchmarks/): the paper-size joint net layer by layer and the Python layers' share
and host<->device bytes; the joint net with the stock unpooling against the same net with the
Python Unpool layer (time ratio, bytes before/after); seg_deploy with K = 1, 2, 3 labels against
K one-label forwards (and its bytes at K = 3); the authors' inference protocol per VOC-sized
image with K = 1 and 2 labels; the data layer with 1 and 2 workers; LMDB builds of the built-in
dataset at the paper's resize (330x330); comp6 evaluation of 1,449 generated PNG pairs; the peak
RSS of one paper-size joint training step at batch 8.
Needs the built-in dataset (`make builtin`) and about 12 GB of memory (the batch-8 joint
step); 7.5 minutes measured on 2 cores shared with other jobs (load average 3-6). Ctrl-C
stops with one line naming the steps done; nothing is written before the end (exit status
130). Caffe's log is shown with --verbose.
"""

import argparse
import os
import sys
import tempfile
import time

from transfernet.verbosity import quiet_caffe

quiet_caffe(sys.argv)  # before caffe is imported

import caffe  # noqa: E402

from benchmarks import measure, pipeline, report  # noqa: E402
from transfernet import config, interrupt  # noqa: E402

RESUME = "run the same command again (the bench starts over)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/bench/bench.json", help="JSON result file")
    p.add_argument("--builtin", default="data/builtin", help="built-in dataset (make builtin)")
    p.add_argument(
        "--timing-iterations",
        type=int,
        default=2,
        help="timed forward+backward passes of the joint net (after one warm-up)",
    )
    p.add_argument(
        "--unpool-rounds",
        type=int,
        default=6,
        help="timed rounds of the stock / Python unpooling comparison",
    )
    p.add_argument(
        "--deploy-repeats",
        type=int,
        default=6,
        help="timed rounds of the deploy comparison (after a warm-up round)",
    )
    p.add_argument(
        "--authors-rounds",
        type=int,
        default=3,
        help="timed rounds of the authors' protocol per image, K = 1 and 2 (after a warm-up)",
    )
    p.add_argument("--data-batches", type=int, default=40, help="data layer batches of 8")
    p.add_argument("--eval-images", type=int, default=1449, help="generated PNG pairs")
    p.add_argument("--rss-batch", type=int, default=8, help="batch of the joint training step")
    p.add_argument("--verbose", action="store_true", help="show Caffe's log")
    a = p.parse_args(argv)
    if not os.path.isdir(os.path.join(a.builtin, "coco")):
        sys.exit("bench.py: built-in dataset %s missing: run `make builtin`" % a.builtin)
    caffe.set_mode_cpu()
    start = time.time()
    results = {"machine": measure.machine()}

    def step(name, fn):
        t = time.time()
        print("bench: %s ..." % name, file=sys.stderr, flush=True)
        results[name] = fn()
        print("bench: %s done in %.1f s" % (name, time.time() - t), file=sys.stderr, flush=True)

    try:
        run_steps(a, results, step)
    except KeyboardInterrupt:
        done = [name for name in results if name != "machine"]
        raise interrupt.Interrupted(
            "steps done: %s; nothing written (%s is written after the last step)"
            % (", ".join(done) or "none", a.out)
        ) from None
    results["machine"]["loadavg_end"] = measure.loadavg()
    results["summary"] = report.summary(results)
    results.update(results["summary"])
    results["seconds"] = time.time() - start
    print(report.format_report(results))
    report.write_json(a.out, results)
    print("wrote %s (%.0f s)" % (a.out, results["seconds"]))
    return 0


def run_steps(a, results, step):
    """The bench's measurements, each step(name, fn) filling results[name]."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        step("build", lambda: pipeline.bench_build(a.builtin, os.path.join(tmp, "lmdb")))
        source, target = (results["build"][k]["path"] for k in ("source", "target"))
        step(
            "data_layer", lambda: pipeline.bench_data_layer(source, target, batches=a.data_batches)
        )
        step("eval", lambda: pipeline.bench_eval(os.path.join(tmp, "eval"), a.eval_images))
        step("joint", lambda: measure.bench_joint_layers(config.PAPER, a.timing_iterations))
        step("unpool", lambda: measure.bench_unpool(config.PAPER, a.unpool_rounds))
        step("deploy", lambda: measure.bench_deploy(config.PAPER, repeats=a.deploy_repeats))
        step("authors", lambda: measure.bench_authors(config.PAPER, rounds=a.authors_rounds))
        step("rss", lambda: pipeline.peak_rss_joint(source, target, a.rss_batch, tmp))
        step("infer_workers", lambda: pipeline.bench_infer_workers(os.path.join(tmp, "infer")))


if __name__ == "__main__":
    sys.exit(interrupt.run(main, "bench.py", RESUME))
