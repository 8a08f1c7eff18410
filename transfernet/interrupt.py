"""Ctrl-C in the long-running tools, and the worker processes they start.

A tool runs as `sys.exit(interrupt.run(main, "infer.py", RESUME))`: on Ctrl-C it prints one
line, `<tool>: interrupted: <what was finished>; <how to resume>`, and exits with 130 (128 +
SIGINT), without a KeyboardInterrupt traceback. Code that knows what it finished raises
Interrupted(what) from the KeyboardInterrupt; otherwise the line says "nothing finished".

A terminal sends Ctrl-C to every process of the job: worker processes ignore it
(ignore_in_worker) and are stopped by their parent (a multiprocessing.Pool's terminate on
leaving its `with` block; stop_workers for a ProcessPoolExecutor, whose shutdown would wait
for its tasks), so they print no traceback and stop at once; a child that must not outlive
its parent asks the kernel to kill it when the parent dies (die_with_parent).
"""

import ctypes
import multiprocessing
import os
import signal
import sys

EXIT_STATUS = 128 + signal.SIGINT
PR_SET_PDEATHSIG = 1


class Interrupted(Exception):
    """Ctrl-C, with what was finished (the message)."""


def run(main, tool, resume):
    """main()'s exit status; on Ctrl-C one line goes to stderr and the status is
    EXIT_STATUS."""
    try:
        return main()
    except Interrupted as e:
        finished = str(e)
    except KeyboardInterrupt:
        finished = "nothing finished"
    sys.stdout.flush()
    print("%s: interrupted: %s; %s" % (tool, finished, resume), file=sys.stderr, flush=True)
    return EXIT_STATUS


def ignore_in_worker():
    """In a worker process: ignore Ctrl-C (the parent stops the worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_workers():
    """Terminate this process's multiprocessing children and wait for them (not while a
    multiprocessing.Pool is open: it would start new workers in their place)."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join()


def die_with_parent(parent_pid, sig=signal.SIGKILL):
    """In a child process: ask the kernel (Linux prctl) to send `sig` to it when its parent
    dies; exit at once if the parent `parent_pid` is already gone."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except OSError:
        pass
    if os.getppid() != parent_pid:
        os._exit(0)
