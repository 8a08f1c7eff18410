#!/usr/bin/env python3
"""The performance bench (`make bench`): prints a table and writes runs/bench/bench.json.

    python3 tools/bench.py --out runs/bench/bench.json --builtin data/builtin

Measures (transfernet/performance.py; the dataset builds and the data layer here): the
paper-size joint net layer by layer and the Python layers' share and host<->device bytes;
the joint net with the stock unpooling against the same net with the Python Unpool layer
(time ratio, bytes before/after); seg_deploy with K = 1, 2, 3 labels against K one-label
forwards (and its bytes at K = 3); the authors' inference protocol per VOC-sized image with
K = 1 and 2 labels; the data layer with 1 and 2 workers; LMDB builds of the
built-in dataset at 330x330; comp6 evaluation of 1,449 generated PNG pairs; the peak RSS of
one paper-size joint training step at batch 8.
Needs the built-in dataset (`make builtin`) and about 12 GB of memory (the batch-8 joint
step); 7.5 minutes measured on 2 cores shared with other jobs (load average 3-6). Ctrl-C
stops with one line naming the steps done; nothing is written before the end (exit status
130).
"""

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

from transfernet.verbosity import QUIET

os.environ.setdefault("GLOG_minloglevel", QUIET)

import caffe  # noqa: E402
from data_layer import measure_throughput, net_prototxt  # noqa: E402

from data_prep import coco, voc  # noqa: E402
from transfernet import config, interrupt, performance  # noqa: E402

RECORD_SIZE, CROP = 330, 320  # records stored at the paper's resize, cropped to its input
RESUME = "run the same command again (the bench starts over)"


@contextlib.contextmanager
def _quiet():
    """Silence the builders' progress bars and summaries."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def bench_build(builtin, out, workers=2):
    """Build the built-in source and target datasets at 330x330; records/s of each."""
    result = {}
    for name, build in (
        (
            "source",
            lambda d: coco.build_source(
                os.path.join(builtin, "coco"), d, size=RECORD_SIZE, workers=workers
            ),
        ),
        (
            "target",
            lambda d: voc.build_target(
                os.path.join(builtin, "VOCdevkit", "VOC2012"), d, size=RECORD_SIZE, workers=workers
            ),
        ),
    ):
        folder = os.path.join(out, name)
        start = time.perf_counter()
        with _quiet():
            meta = build(folder)
        seconds = time.perf_counter() - start
        result[name] = {
            "path": folder,
            "records": meta["count"],
            "seconds": seconds,
            "records_per_s": meta["count"] / seconds,
        }
    return result


def bench_data_layer(source, target, workers=(1, 2), batches=40, batch_size=8):
    """SourceTargetData images/s (TRAIN, 3 tops) at 320x320 from 330x330 records, by wall
    time with each worker count, and per CPU second of one core with workers 0 (all the
    work in this process: a load-independent measure of the cost of an image)."""
    params = {
        "source": source,
        "target": target,
        "source_fraction": config.PAPER.data.source_fraction,
        "batch_size": batch_size,
        "resize": RECORD_SIZE,
        "crop": CROP,
        "num_classes": 80,
        "seed": 0,
    }
    result = {
        "images_per_s": {
            w: measure_throughput(dict(params, workers=w), batches=batches) for w in workers
        }
    }
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
        f.write(net_prototxt(dict(params, workers=0)))
        f.flush()
        net = caffe.Net(f.name, caffe.TRAIN)
    net.forward()
    start = time.process_time()
    for _ in range(batches):
        net.forward()
    result["per_cpu_s_inprocess"] = batches * batch_size / (time.process_time() - start)
    return result


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
    a = p.parse_args(argv)
    if not os.path.isdir(os.path.join(a.builtin, "coco")):
        sys.exit("bench.py: built-in dataset %s missing: run `make builtin`" % a.builtin)
    caffe.set_mode_cpu()
    start = time.time()
    results = {"machine": performance.machine()}

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
    results["machine"]["loadavg_end"] = performance.loadavg()
    results["summary"] = performance.summary(results)
    results.update(results["summary"])
    results["seconds"] = time.time() - start
    print(performance.format_report(results))
    performance.write_json(a.out, results)
    print("wrote %s (%.0f s)" % (a.out, results["seconds"]))
    return 0


def run_steps(a, results, step):
    """The bench's measurements, each step(name, fn) filling results[name]."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        step("build", lambda: bench_build(a.builtin, os.path.join(tmp, "lmdb")))
        source, target = (results["build"][k]["path"] for k in ("source", "target"))
        step("data_layer", lambda: bench_data_layer(source, target, batches=a.data_batches))
        step("eval", lambda: performance.bench_eval(os.path.join(tmp, "eval"), a.eval_images))
        step("joint", lambda: performance.bench_joint_layers(config.PAPER, a.timing_iterations))
        step("unpool", lambda: performance.bench_unpool(config.PAPER, a.unpool_rounds))
        step("deploy", lambda: performance.bench_deploy(config.PAPER, repeats=a.deploy_repeats))
        step("authors", lambda: performance.bench_authors(config.PAPER, rounds=a.authors_rounds))
        step("rss", lambda: performance.peak_rss_joint(source, target, a.rss_batch, tmp))
        step("infer_workers", lambda: performance.bench_infer_workers(os.path.join(tmp, "infer")))


if __name__ == "__main__":
    sys.exit(interrupt.run(main, "bench.py", RESUME))
