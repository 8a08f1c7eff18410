#!/usr/bin/env python3
"""Performance bench of issue 6: prints a table and writes runs/bench/bench.json.

    python3 tools/bench.py --out runs/bench/bench.json --builtin data/builtin

Measures (transfernet/bench.py): the paper-size joint net layer by layer and the Python
layers' share and host<->device bytes; the joint net with the stock unpooling against the
same net with the Python Unpool layer (time ratio, bytes before/after); seg_deploy with
K = 1, 2, 3 labels against K one-label forwards (and its bytes at K = 3); the data
layer with 1 and 2 workers; LMDB builds of the built-in dataset at 330x330; comp6 evaluation
of 1,449 generated PNG pairs; the peak RSS of one paper-size joint training step at batch 8.
Needs the built-in dataset (`make builtin`) and about 12 GB of memory (the batch-8 joint
step); 7.5 minutes measured on 2 cores shared with other jobs (load average 3-6).
"""
import argparse
import os
import sys
import tempfile
import time

from transfernet.verbosity import QUIET

os.environ.setdefault("GLOG_minloglevel", QUIET)

import caffe  # noqa: E402

from transfernet import bench, config  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/bench/bench.json", help="JSON result file")
    p.add_argument("--builtin", default="data/builtin", help="built-in dataset (make builtin)")
    p.add_argument("--timing-iterations", type=int, default=2,
                   help="timed forward+backward passes of the joint net (after one warm-up)")
    p.add_argument("--unpool-rounds", type=int, default=6,
                   help="timed rounds of the stock / Python unpooling comparison")
    p.add_argument("--deploy-repeats", type=int, default=6,
                   help="timed rounds of the deploy comparison (after a warm-up round)")
    p.add_argument("--data-batches", type=int, default=40, help="data layer batches of 8")
    p.add_argument("--eval-images", type=int, default=1449, help="generated PNG pairs")
    p.add_argument("--rss-batch", type=int, default=8, help="batch of the joint training step")
    a = p.parse_args(argv)
    if not os.path.isdir(os.path.join(a.builtin, "coco")):
        sys.exit("bench.py: built-in dataset %s missing: run `make builtin`" % a.builtin)
    caffe.set_mode_cpu()
    start = time.time()
    results = {"machine": bench.machine()}

    def step(name, fn):
        t = time.time()
        print("bench: %s ..." % name, file=sys.stderr, flush=True)
        results[name] = fn()
        print("bench: %s done in %.1f s" % (name, time.time() - t), file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        step("build", lambda: bench.bench_build(a.builtin, os.path.join(tmp, "lmdb")))
        source, target = (results["build"][k]["path"] for k in ("source", "target"))
        step("data_layer", lambda: bench.bench_data_layer(source, target,
                                                          batches=a.data_batches))
        step("eval", lambda: bench.bench_eval(os.path.join(tmp, "eval"), a.eval_images))
        step("joint", lambda: bench.bench_joint_layers(config.PAPER, a.timing_iterations))
        step("unpool", lambda: bench.bench_unpool(config.PAPER, a.unpool_rounds))
        step("deploy", lambda: bench.bench_deploy(config.PAPER, repeats=a.deploy_repeats))
        step("rss", lambda: bench.peak_rss_joint(source, target, a.rss_batch, tmp))
        step("infer_workers", lambda: bench.bench_infer_workers(os.path.join(tmp, "infer")))
    results["machine"]["loadavg_end"] = bench.loadavg()
    results["summary"] = bench.summary(results)
    results.update(results["summary"])
    results["seconds"] = time.time() - start
    print(bench.format_report(results))
    bench.write_json(a.out, results)
    print("wrote %s (%.0f s)" % (a.out, results["seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
