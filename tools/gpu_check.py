#!/usr/bin/env python3
"""GPU self-check of the CUDA Caffe runtime (`make gpu-check`): right answers, and how fast.

    python3 tools/gpu_check.py [--builtin data/builtin] [--out runs/gpu-check/gpu-check.json]
                               [--gpu 0]

1. `caffe device_query` of every GPU;
2. the paper-size joint net (Eq. 9) with random weights (Caffe's seeded fillers), one forward
   + backward of the same batch of 4 from the built-in dataset (the real data layer on 330-px
   LMDBs) on the CPU and on the GPU, from the same weights: the relative difference of each
   loss and of each parameter gradient must be at most 1e-3;
3. the GPU time of one joint forward + backward at batch 4, layer by layer (synchronised),
   and the Python layers' share;
4. seg_deploy's time per image with K = 1, 2, 3 labels in one forward (and as K one-label
   forwards).
Prints a table and writes the JSON. Exit status 1 if the comparison fails or there is no GPU
(it says why in one line), 0 otherwise. Needs the built-in dataset (`make builtin`) and about
6 GB of host memory (the CPU pass). Caffe's log is shown with --verbose.
"""

import argparse
import os
import sys
import tempfile

from transfernet.verbosity import quiet_caffe

quiet_caffe(sys.argv)  # before caffe is imported

import caffe  # noqa: E402

from benchmarks import gpu, measure, pipeline, report  # noqa: E402
from transfernet import config, cuda, nets  # noqa: E402

BATCH = 4
KS = (1, 2, 3)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--builtin", default="data/builtin", help="built-in dataset (make builtin)")
    p.add_argument("--out", default="runs/gpu-check/gpu-check.json", help="JSON result file")
    p.add_argument("--gpu", type=int, default=0, help="GPU to check against the CPU")
    p.add_argument(
        "--timing-iterations",
        type=int,
        default=5,
        help="timed GPU forward+backward passes (after one warm-up)",
    )
    p.add_argument("--deploy-repeats", type=int, default=6, help="timed deploy rounds")
    p.add_argument("--verbose", action="store_true", help="show Caffe's log")
    a = p.parse_args(argv)
    count, reason = cuda.device_count()
    problem = cuda.check_devices([a.gpu])
    if problem:
        print("gpu-check: %s; nothing checked" % problem, file=sys.stderr)
        return 1
    if not os.path.isdir(os.path.join(a.builtin, "coco")):
        print(
            "gpu-check: built-in dataset %s missing: run `make builtin`" % a.builtin,
            file=sys.stderr,
        )
        return 1
    result = {
        "gpu": a.gpu,
        "gpus": count,
        "batch": BATCH,
        "tolerance": gpu.TOLERANCE,
        "cuda": cuda.describe()[:-1],
        "device_query": gpu.device_query(range(count)),
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        build = pipeline.bench_build(a.builtin, os.path.join(tmp, "lmdb"))
        cfg = config.PAPER.with_data(source=build["source"]["path"], target=build["target"]["path"])
        caffe.set_mode_cpu()
        inputs = gpu.one_batch(cfg, BATCH)
        param = nets.joint_train(cfg, batch=BATCH, input_layers=True)
        weights = os.path.join(tmp, "random.caffemodel")
        comparison, results, seconds = gpu.check_cpu_gpu(param, inputs, weights, a.gpu)
        result.update(
            comparison=comparison,
            cpu_seconds=seconds[0],
            losses={"cpu": results[0][0], "gpu": results[1][0]},
            timing=gpu.time_joint_gpu(param, weights, inputs, a.gpu, a.timing_iterations),
        )
    gpu.set_mode("gpu", a.gpu)
    result["deploy"] = measure.bench_deploy(config.PAPER, ks=KS, repeats=a.deploy_repeats)
    print(report.format_gpu_report(result))
    report.write_json(a.out, result)
    print("wrote %s" % a.out)
    return 0 if comparison["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
