"""transfernet.atomic: temporaries' names, the removal of a dead writer's leftovers, the
write checks made before a tool starts its work."""

import os
import subprocess

import pytest

from transfernet import atomic


def test_temporaries_are_named_recognisably_and_removed_only_once_their_writer_died(tmp_path):
    target = tmp_path / "a.png"
    with atomic.atomic_path(str(target)) as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(".a.png.%d.tmp" % os.getpid()) and name.endswith(".png")
        assert atomic.is_temporary(tmp) and not atomic.is_temporary(str(target))
        open(tmp, "w").close()
        assert atomic.remove_stale_temporaries(str(tmp_path)) == []  # its writer lives
    assert os.listdir(str(tmp_path)) == ["a.png"]
    proc = subprocess.Popen(["true"])
    proc.wait()
    stale = tmp_path / (".b.json.%d.tmpabc_1234.json" % proc.pid)
    stale.write_text("{")
    for other in (".b.json.k2j3h4q0.json", "b.json", ".b.json.12.tmpshort.json"):
        (tmp_path / other).write_text("")
        assert not atomic.is_temporary(other)
    assert atomic.remove_stale_temporaries(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and len(os.listdir(str(tmp_path))) == 4
    assert atomic.remove_stale_temporaries(str(tmp_path / "missing")) == []


def test_write_checks_name_the_path_and_the_reason(tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("")
    atomic.check_writable_folder(str(tmp_path / "new" / "deeper"))
    assert os.listdir(str(tmp_path / "new" / "deeper")) == []  # created, probe removed
    with pytest.raises(OSError, match="output folder %s exists and is a file" % a_file):
        atomic.check_writable_folder(str(a_file))
    with pytest.raises(
        OSError, match="cannot create output folder %s: %s is a file" % (a_file / "x" / "y", a_file)
    ):
        atomic.check_writable_folder(str(a_file / "x" / "y"))
    with pytest.raises(OSError, match="--out file %s is a folder; name a file" % tmp_path):
        atomic.check_writable_file(str(tmp_path), "--out file")
    with pytest.raises(OSError, match="folder of the --out file %s exists and is a file" % a_file):
        atomic.check_writable_file(str(a_file / "e.json"), "--out file")
    atomic.check_writable_file(str(tmp_path / "sub" / "e.json"))
    assert os.path.isdir(str(tmp_path / "sub")) and os.listdir(str(tmp_path / "sub")) == []
