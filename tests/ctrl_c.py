"""Ctrl-C of a real tool in a subprocess, as a terminal sends it: SIGINT to the whole process
group (the tool and its workers)."""

import os
import signal
import subprocess
import time


def interrupt_when(cmd, ready, timeout=300, **popen):
    """Run `cmd` in a new session with SIGINT at its default action (a background job of a
    non-interactive shell would have it ignored), send SIGINT to its process group once
    `ready()` holds; (exit status, stdout, stderr). AssertionError if it ends first."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError("ended before it was interrupted:\n%s%s" % (out, err[-3000:]))
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
