#!/usr/bin/env python3
"""Train a stage with pycaffe on the CPU, one GPU, or several GPUs data-parallel (NCCL).

    python3 tools/train.py --solver solvers/joint.prototxt [--gpus 0,1] [--snapshot S]
                           [--iter-size N]

Without --gpus (CPU) or with one GPU this is `caffe train -solver S [-gpu N] [-snapshot S]`:
the solver of the prototxt's own type (Adam here) starts from its `weights` (or resumes from
the .solverstate of --snapshot, which then replaces them, as in the CLI), and the same glog
lines (stderr) and snapshots result. With several GPUs, which the `caffe` CLI refuses for nets
with Python layers, one process per GPU runs a solver (caffe.set_solver_count / rank /
multiprocess); NCCL broadcasts rank 0's weights, then sums and averages the gradients every
iteration (the callbacks of BVLC's python/train.py); rank 0 logs and snapshots. The data layer
gives each rank its own part of the batch stream (python_layers/data_layer.py).

Ctrl-C on the CPU or one GPU snapshots the iteration reached, as `caffe train` does, and says
how to resume from it; with several GPUs the ranks are stopped and the last periodic
snapshot is named (exit status 130 either way).

stdout: the effective batch per iteration (per-GPU batch x iter_size x GPUs), a warning when it
differs from the solver's single-GPU value (64 in the paper; --iter-size restores it), and a
progress line per display interval:
    train: iteration 20/15000, 1.52 s/iteration, 42.1 images/s
"""

import argparse
import glob
import json
import multiprocessing
import os
import sys
import tempfile
import time
from multiprocessing import connection

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from transfernet import cuda, interrupt, weights

DATA_LAYER = "SourceTargetData"
RESUME = "resume with the same command and --snapshot that .solverstate"


def gpu_list(text):
    """'0,1' -> [0, 1] (argparse type of --gpus); '' -> [] (CPU)."""
    try:
        gpus = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected GPU ids like 0,1, got %r" % text) from None
    if len(set(gpus)) != len(gpus) or min(gpus, default=0) < 0:
        raise argparse.ArgumentTypeError("expected distinct GPU ids >= 0, got %r" % text)
    return gpus


def forward_batch(solver):
    """Images per forward pass of the solver's train net: its SourceTargetData batch_size."""
    net = (
        weights.read_prototxt(solver.net, caffe_pb2.NetParameter())
        if solver.net
        else solver.net_param
    )
    for layer in net.layer:
        train = not layer.include or any(r.phase == caffe_pb2.TRAIN for r in layer.include)
        if layer.type == "Python" and layer.python_param.layer == DATA_LAYER and train:
            return json.loads(layer.python_param.param_str)["batch_size"]
    raise ValueError(
        "%s: no %s layer in the TRAIN phase (the per-GPU batch is its "
        "batch_size)" % (solver.net or "net_param", DATA_LAYER)
    )


def batch_report(batch, iter_size, solver_iter_size, devices):
    """Lines describing the effective batch per iteration, and a warning if it differs from the
    solver's single-GPU value (batch x the solver's iter_size)."""
    effective, single = batch * iter_size * devices, batch * solver_iter_size
    lines = [
        "train: effective batch %d per iteration = batch %d x iter_size %d x %d %s"
        % (effective, batch, iter_size, devices, "GPUs" if devices > 1 else "solver")
    ]
    if effective != single:
        hint = ""
        if single % (batch * devices) == 0:
            hint = "; --iter-size %d keeps it" % (single // (batch * devices))
        lines.append(
            "train: warning: effective batch %d differs from the solver's single-GPU "
            "%d (batch %d x iter_size %d)%s" % (effective, single, batch, solver_iter_size, hint)
        )
    return lines


def add_progress(solver, display, images_per_iteration):
    """Print a progress line to stdout every `display` iterations (rank 0)."""
    state = {"iter": solver.iter, "time": time.time()}
    max_iter = solver.param.max_iter

    def on_start():
        it = solver.iter
        if it > state["iter"] and it % display == 0:
            seconds = (time.time() - state["time"]) / (it - state["iter"])
            print(
                "train: iteration %d/%d, %.2f s/iteration, %.1f images/s"
                % (it, max_iter, seconds, images_per_iteration / seconds),
                flush=True,
            )
            state.update(iter=it, time=time.time())

    solver.add_callback(on_start, lambda: None)


def run_solver(solver_path, snapshot, gpus, rank, uid, images_per_iteration):
    """One solver: the whole run on CPU / one GPU, or rank `rank` of len(gpus) with NCCL."""
    if gpus:
        caffe.set_device(gpus[rank])
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    if len(gpus) > 1:
        interrupt.ignore_in_worker()  # the parent stops the ranks
        caffe.set_solver_count(len(gpus))
        caffe.set_solver_rank(rank)
        caffe.set_multiprocess(True)
    solver = caffe.get_solver(solver_path)
    if snapshot:
        solver.restore(snapshot)
    if rank == 0 and solver.param.display:
        add_progress(solver, solver.param.display, images_per_iteration)
    if len(gpus) > 1:
        nccl = caffe.NCCL(solver, uid)
        nccl.bcast()
        solver.add_callback(nccl)
        if solver.param.layer_wise_reduce:
            solver.net.after_backward(nccl)
    try:
        if rank == 0:
            solver.solve()  # logs, tests, snapshots (rank 0 only) and the final snapshot
        else:
            solver.step(solver.param.max_iter - solver.iter)
    except KeyboardInterrupt:
        # Raised by Python code (a callback, a Python layer) before the iteration's update:
        # the weights and solver state are those of solver.iter.
        solver.snapshot()
        param = weights.read_prototxt(solver_path, caffe_pb2.SolverParameter())
        raise interrupt.Interrupted(
            "stopped at iteration %d of %d; snapshot %s"
            % (solver.iter, param.max_iter, solverstate(param, solver.iter))
        ) from None


def solverstate(param, iteration="*"):
    """The .solverstate file a solver (SolverParameter `param`) snapshots at `iteration`
    (default: a glob pattern of them all)."""
    hdf5 = param.snapshot_format == caffe_pb2.SolverParameter.HDF5
    return "%s_iter_%s.solverstate%s" % (param.snapshot_prefix, iteration, ".h5" if hdf5 else "")


def last_solverstate(param):
    """The newest .solverstate of a solver's snapshot prefix, or None."""
    found = glob.glob(solverstate(param))
    return max(found, key=os.path.getmtime) if found else None


def run_ranks(param, solver_path, snapshot, gpus, images_per_iteration):
    """One process per GPU; if one fails, stop the others (they would wait in NCCL forever).
    Returns the exit code."""
    uid = caffe.NCCL.new_uid()
    ctx = multiprocessing.get_context("spawn")  # no CUDA state inherited from this process
    procs = [
        ctx.Process(
            target=run_solver,
            name="train-rank-%d" % rank,
            daemon=True,
            args=(solver_path, snapshot, gpus, rank, uid, images_per_iteration),
        )
        for rank in range(len(gpus))
    ]
    for proc in procs:
        proc.start()
    try:
        return wait_for_ranks(procs, gpus)
    except KeyboardInterrupt:
        interrupt.stop_workers()
        raise interrupt.Interrupted(
            "ranks stopped; last snapshot %s" % (last_solverstate(param) or "none (start over)")
        ) from None


def wait_for_ranks(procs, gpus):
    """Wait for the rank processes; if one fails, stop the others. The exit code."""
    running = list(procs)
    while running:
        for sentinel in connection.wait([p.sentinel for p in running]):
            proc = next(p for p in running if p.sentinel == sentinel)
            proc.join()
            running.remove(proc)
            if proc.exitcode != 0:
                print(
                    "train: rank %d (GPU %d) failed (exit code %s); stopping the others"
                    % (procs.index(proc), gpus[procs.index(proc)], proc.exitcode),
                    file=sys.stderr,
                    flush=True,
                )
                for other in running:
                    other.terminate()
                    other.join()
                return 1
    return 0


def run_solver_file(param, path, snapshot, iter_size, folder):
    """The solver prototxt to run: `path` itself, or a copy in `folder` with the weights
    cleared (a snapshot replaces them, as `caffe train -snapshot` does) and iter_size set."""
    if not snapshot and iter_size in (None, param.iter_size):
        return path
    param = caffe_pb2.SolverParameter.FromString(param.SerializeToString())
    if snapshot:
        del param.weights[:]
    if iter_size is not None:
        param.iter_size = iter_size
    copy = os.path.join(folder, os.path.basename(path))
    with open(copy, "w") as f:
        f.write(text_format.MessageToString(param))
    return copy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--solver", required=True, help="solver prototxt (solvers/*.prototxt)")
    parser.add_argument(
        "--gpus", type=gpu_list, default=[], help="GPU ids, e.g. 0 or 0,1,2,3 (default: CPU)"
    )
    parser.add_argument("--snapshot", help=".solverstate to resume from")
    parser.add_argument(
        "--iter-size",
        type=int,
        help="replace the solver's iter_size "
        "(e.g. the paper's batch 64 on 2 GPUs: 8 instead of 16)",
    )
    args = parser.parse_args(argv)
    try:
        param = weights.read_prototxt(args.solver, caffe_pb2.SolverParameter())
        batch = forward_batch(param)
    except OSError as exc:
        parser.exit(2, "train: cannot read %s: %s\n" % (exc.filename, exc.strerror))
    except ValueError as exc:
        parser.exit(2, "train: %s\n" % exc)
    if args.iter_size is not None and args.iter_size < 1:
        parser.exit(2, "train: --iter-size must be >= 1, got %d\n" % args.iter_size)
    if args.snapshot and not os.path.isfile(args.snapshot):
        parser.exit(2, "train: --snapshot %s: no such file\n" % args.snapshot)
    if args.gpus:
        problem = cuda.check_devices(args.gpus)
        if problem:
            parser.exit(1, "train: --gpus %s: %s\n" % (",".join(map(str, args.gpus)), problem))
    if len(args.gpus) > 1 and not caffe.has_nccl():
        parser.exit(
            1,
            "train: --gpus %s: this pycaffe is built without NCCL (the CUDA "
            "runtime of `make env CAFFE=cuda` has it)\n" % ",".join(map(str, args.gpus)),
        )
    iter_size = param.iter_size if args.iter_size is None else args.iter_size
    devices = max(len(args.gpus), 1)
    print("\n".join(batch_report(batch, iter_size, param.iter_size, devices)), flush=True)
    with tempfile.TemporaryDirectory(prefix="train-") as folder:
        path = run_solver_file(param, args.solver, args.snapshot, args.iter_size, folder)
        images = batch * iter_size * devices
        if len(args.gpus) > 1:
            return run_ranks(param, path, args.snapshot, args.gpus, images)
        run_solver(path, args.snapshot, args.gpus, 0, None, images)
    return 0


if __name__ == "__main__":
    sys.exit(interrupt.run(main, "train", RESUME))
