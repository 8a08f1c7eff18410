"""Atomic file writes: write to a temporary file next to the target, then rename.

Every temporary is named .<target>.<pid>.tmp<random><ext>, e.g. `.a.png.4711.tmpk2j3h4q0.png`:
hidden, recognisable (is_temporary), tagged with the writing process so that a later run can
tell a killed writer's leftover from a live one (remove_stale_temporaries), and ending in the
target's extension, so writers that pick a format from the name (PIL, matplotlib) still work.
"""

import contextlib
import os
import re
import tempfile

_UMASK = os.umask(0o022)
os.umask(_UMASK)
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp[a-z0-9_]{8}(\.[^.]*)?$")  # mkstemp: 8 characters


def is_temporary(name):
    """Whether a file name (or path) is an atomic_path temporary."""
    return bool(_TEMPORARY.match(os.path.basename(name)))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(folder):
    """Remove the temporaries in `folder` whose writer has died (e.g. SIGKILLed mid-write);
    returns their paths. A missing folder has none."""
    if not os.path.isdir(folder):
        return []
    stale = [
        os.path.join(folder, name)
        for name in sorted(os.listdir(folder))
        if is_temporary(name) and not _alive(int(_TEMPORARY.match(name).group(1)))
    ]
    for path in stale:
        os.remove(path)
    return stale


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in `path`'s folder; rename it to `path` if the block succeeds.

    On an exception the temporary file is removed and `path` is left untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(
        prefix=".%s.%d.tmp" % (base, os.getpid()), suffix=os.path.splitext(base)[1], dir=folder
    )
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text(path, text):
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def check_writable_folder(folder, what="output folder"):
    """Create `folder` if needed and check that files can be written in it; OSError naming
    the folder and the reason (a file in its place or on its path, no permission, read-only
    file system) otherwise."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OSError("%s %s exists and is a file, not a folder" % (what, folder))
    parent = os.path.abspath(folder)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OSError("cannot create %s %s: %s is a file, not a folder" % (what, folder, parent))
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-check")
        write_text(probe, "")
        os.remove(probe)
    except OSError as e:
        raise OSError("cannot write in %s %s: %s" % (what, folder, e.strerror or e)) from None


def check_writable_file(path, what="output file"):
    """Check that `path` can be written (check_writable_folder of its folder, which is
    created); OSError if it is a folder or its folder cannot be written."""
    if os.path.isdir(path):
        raise OSError("%s %s is a folder; name a file" % (what, path))
    check_writable_folder(os.path.dirname(path) or ".", "folder of the %s" % what)
