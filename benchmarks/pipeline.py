"""The data path and the tools, measured at the paper's sizes (config.PAPER): LMDB builds of
the built-in dataset, the data layer (target >= 500 images/s with 2 workers), the comp6
evaluation of 1,449 label-map pairs (target <= 3 s), the peak memory of a joint training step
(in a child process), and tools/infer.py --crf with worker processes (target >= 1.6x with 2).
"""

import contextlib
import io
import json
import os
import re
import resource
import subprocess
import sys
import time

import caffe
from caffe.proto import caffe_pb2

from benchmarks.caffe_nets import clocks, data_layer_net
from benchmarks.inputs import write_eval_pairs, write_infer_inputs
from benchmarks.stats import median_ratio
from data_prep import coco, voc
from transfernet import config, nets, score
from transfernet.atomic import write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFER_SPEED = re.compile(r"\(([\d.]+) s, ([\d.]+) images/s\)")


@contextlib.contextmanager
def silenced():
    """Silence the builders' progress bars and summaries."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def bench_build(builtin, out, workers=2):
    """Build the built-in source and target datasets at the paper's resize; records/s of each."""
    size = config.PAPER.data.resize
    result = {}
    for name, build in (
        (
            "source",
            lambda d: coco.build_source(
                os.path.join(builtin, "coco"), d, size=size, workers=workers
            ),
        ),
        (
            "target",
            lambda d: voc.build_target(
                os.path.join(builtin, "VOCdevkit", "VOC2012"), d, size=size, workers=workers
            ),
        ),
    ):
        folder = os.path.join(out, name)
        start = time.perf_counter()
        with silenced():
            meta = build(folder)
        seconds = time.perf_counter() - start
        result[name] = {
            "path": folder,
            "records": meta["count"],
            "seconds": seconds,
            "records_per_s": meta["count"] / seconds,
        }
    return result


def measure_throughput(params, batches=50, warmup=3):
    """Images/s of net.forward() on the TRAIN net holding only SourceTargetData."""
    net = data_layer_net(params)
    layer = net.layers[0]
    try:
        for _ in range(warmup):
            net.forward()
        start = time.time()
        for _ in range(batches):
            net.forward()
        elapsed = time.time() - start
    finally:
        layer.close()
    return batches * params["batch_size"] / elapsed


def bench_data_layer(source, target, workers=(1, 2), batches=40, batch_size=8):
    """SourceTargetData images/s (TRAIN, 3 tops) at the paper's crop from records at its
    resize, by wall time with each worker count, and per CPU second of one core with workers 0
    (all the work in this process: a load-independent measure of the cost of an image)."""
    cfg = config.PAPER
    params = {
        "source": source,
        "target": target,
        "source_fraction": cfg.data.source_fraction,
        "batch_size": batch_size,
        "resize": cfg.data.resize,
        "crop": cfg.architecture.crop,
        "num_classes": cfg.architecture.num_classes,
        "seed": 0,
    }
    result = {
        "images_per_s": {
            w: measure_throughput(dict(params, workers=w), batches=batches) for w in workers
        }
    }
    net = data_layer_net(dict(params, workers=0))
    net.forward()
    start = time.process_time()
    for _ in range(batches):
        net.forward()
    result["per_cpu_s_inprocess"] = batches * batch_size / (time.process_time() - start)
    return result


def bench_eval(folder, count, workers=2):
    """Seconds of transfernet.score.evaluate over `count` generated 500x375 pairs."""
    ids = write_eval_pairs(folder, count)
    start = clocks()
    result = score.evaluate(
        os.path.join(folder, "pred"), os.path.join(folder, "gt"), ids, workers=workers
    )
    seconds, cpu = clocks() - start
    return {"images": count, "seconds": seconds, "cpu_seconds": cpu, "mean_iou": result["mean_iou"]}


def joint_step(source, target, batch, folder):
    """One Adam step of the paper-size joint net (data layer on the given datasets) in this
    process; prints {"seconds", "vmhwm_mb"} as JSON. Run it in a child (peak_rss_joint)."""
    cfg = config.PAPER.with_data(source=source, target=target)
    net_path = os.path.join(folder, "joint_train.prototxt")
    solver_path = os.path.join(folder, "solver.prototxt")
    write_text(net_path, str(nets.joint_train(cfg, batch=batch)))
    stage = cfg.schedule.stages["joint"]
    solver = caffe_pb2.SolverParameter(
        net=net_path,
        type="Adam",
        base_lr=stage.base_lr,
        momentum=0.9,
        momentum2=0.999,
        lr_policy="fixed",
        max_iter=1,
        display=0,
        snapshot_after_train=False,
        random_seed=0,
    )
    write_text(solver_path, str(solver))
    caffe.set_mode_cpu()
    sgd = caffe.get_solver(solver_path)
    start = time.perf_counter()
    sgd.step(1)
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as f:
        hwm = [line.split()[1] for line in f if line.startswith("VmHWM:")][0]
    sgd.net.layers[0].close()
    print(json.dumps({"seconds": seconds, "vmhwm_mb": int(hwm) / 1024.0}))


def peak_rss_joint(source, target, batch, folder):
    """Run joint_step in a child process (Caffe's log level inherited); {"seconds",
    "vmhwm_mb"} (main process only: the data layer's worker processes are not included)."""
    code = "from benchmarks import pipeline; pipeline.joint_step(%r, %r, %d, %r)" % (
        source,
        target,
        batch,
        folder,
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    if proc.returncode:
        raise RuntimeError(
            "joint training step failed (exit %d):\n%s" % (proc.returncode, proc.stderr[-3000:])
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def children_cpu():
    """CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_infer_workers(folder, count=12, rounds=2, workers=(0, 2), seed=0):
    """images/s of tools/infer.py --crf with ground-truth labels (2-3 per image) on
    `count` VOC-sized images, the tiny seg_deploy net with seeded filler weights, for each
    worker count, the runs of a round side by side; speedup: median over rounds of
    images/s with workers[-1] over images/s with workers[0]. infer.py times its image
    loop (not its start-up). cores_used: CPU seconds of each run (its workers included) per
    second of its wall time, which shows how much of the machine other work left it."""
    cfg = config.TINY
    listing, images, gt = write_infer_inputs(folder, count, seed)
    caffe.set_random_seed(seed)
    weights = os.path.join(folder, "seg_deploy.caffemodel")
    caffe.Net(cfg.layout.model("seg_deploy"), caffe.TEST).save(weights)
    rates, cores = {w: [] for w in workers}, {w: [] for w in workers}
    for r in range(rounds):
        for w in workers:
            out = os.path.join(folder, "pred_round%d_workers%d" % (r, w))
            start, cpu = time.perf_counter(), children_cpu()
            proc = subprocess.run(
                [
                    sys.executable,
                    "tools/infer.py",
                    "--config",
                    cfg.name,
                    "--weights",
                    weights,
                    "--list",
                    listing,
                    "--root",
                    images,
                    "--gt-labels",
                    gt,
                    "--crf",
                    "--workers",
                    str(w),
                    "--out",
                    out,
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                universal_newlines=True,
            )
            if proc.returncode:
                raise RuntimeError(
                    "tools/infer.py --workers %d failed (exit %d):\n%s"
                    % (w, proc.returncode, proc.stderr[-3000:])
                )
            cores[w].append((children_cpu() - cpu) / (time.perf_counter() - start))
            rates[w].append(float(INFER_SPEED.search(proc.stdout).group(2)))
    return {
        "images": count,
        "images_per_s": rates,
        "cores_used": cores,
        "speedup": median_ratio(rates[workers[0]], rates[workers[-1]]),
    }
