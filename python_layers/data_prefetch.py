"""SourceTargetData's batch loaders: worker processes over shared memory, or in-process.

Worker w prepares the layer's batches w, w+W, w+2W, ... (data_sampling.fill_batch) into
shared-memory slots; the layer consumes them in order, so the batches are those of workers 0.
Workers are daemon processes that also die with their parent (PR_SET_PDEATHSIG);
pycaffe never frees a Python layer, so call `close()` to stop them before the process
ends if needed (they are stopped at interpreter exit anyway).
"""

import multiprocessing
import os
import queue
import traceback
import weakref

import cv2
import numpy as np
from data_params import NAME, batch_shapes
from data_sampling import Reader, fill_batch, stream_index

from transfernet import interrupt

SLOTS_PER_WORKER = 2  # shared-memory batches each worker may have ready ahead of the net
POLL_SECONDS = 1.0  # how often blocked workers / the layer check that the other side lives


def _worker(cfg, w, workers, slots, free, ready, stop, parent_pid):
    """Process w: fill the layer's batches w, w+W, ... into free slots, announce them on
    `ready`."""
    interrupt.die_with_parent(parent_pid)
    interrupt.ignore_in_worker()  # Ctrl-C stops the net's process, which ends this one
    cv2.setNumThreads(1)
    try:
        reader = Reader(cfg)
        k = w
        while not stop.is_set():
            try:
                slot = free.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if os.getppid() != parent_pid:
                    return
                continue
            fill_batch(reader, cfg, stream_index(cfg, k), slots[slot])
            ready.put((slot, k))
            k += workers
    except Exception:  # reported to the layer, which raises it in forward()
        ready.put(("error", traceback.format_exc()))


def _shutdown(procs, stop):
    stop.set()
    for proc in procs:
        proc.join(timeout=2 * POLL_SECONDS)
        if proc.is_alive():
            proc.terminate()
            proc.join()


class Prefetcher:
    """Batches in order from `workers` forked processes through shared-memory slots."""

    def __init__(self, cfg):
        ctx = multiprocessing.get_context("fork")  # spawn would re-run the caffe binary
        self.workers = cfg["workers"]
        self.stop = ctx.Event()
        self.queues, self.slots, self.procs = [], [], []
        shapes = batch_shapes(cfg)
        for w in range(self.workers):
            slots = [
                [
                    np.frombuffer(ctx.RawArray("f", int(np.prod(s))), np.float32).reshape(s)
                    for s in shapes
                ]
                for _ in range(SLOTS_PER_WORKER)
            ]
            free, ready = ctx.Queue(), ctx.Queue()
            for slot in range(SLOTS_PER_WORKER):
                free.put(slot)
            proc = ctx.Process(
                target=_worker,
                name="%s-worker-%d" % (NAME, w),
                daemon=True,
                args=(cfg, w, self.workers, slots, free, ready, self.stop, os.getpid()),
            )
            self.slots.append(slots)
            self.queues.append((free, ready))
            self.procs.append(proc)
        for proc in self.procs:
            proc.start()
        self.count = 0
        self.close = weakref.finalize(self, _shutdown, self.procs, self.stop)

    def pids(self):
        return [proc.pid for proc in self.procs]

    def fill(self, out):
        """Copy the next batch into `out`."""
        w = self.count % self.workers
        free, ready = self.queues[w]
        while True:
            try:
                message = ready.get(timeout=POLL_SECONDS)
                break
            except queue.Empty:
                if not self.procs[w].is_alive():
                    raise RuntimeError(
                        "%s: worker %d died (exit code %s)" % (NAME, w, self.procs[w].exitcode)
                    ) from None
        slot, k = message
        if slot == "error":
            raise RuntimeError("%s: worker %d failed:\n%s" % (NAME, w, k))
        assert k == self.count, (k, self.count)
        for dst, src in zip(out, self.slots[w][slot]):
            dst[...] = src
        free.put(slot)
        self.count += 1


class InProcess:
    """workers 0: batches prepared in the layer's own process."""

    def __init__(self, cfg):
        self.cfg, self.reader, self.count = cfg, Reader(cfg), 0

    def pids(self):
        return []

    def fill(self, out):
        fill_batch(self.reader, self.cfg, stream_index(self.cfg, self.count), out)
        self.count += 1

    def close(self):
        pass


def loader(cfg):
    """The configuration's batch loader: Prefetcher, or InProcess with workers 0."""
    return (Prefetcher if cfg["workers"] else InProcess)(cfg)
