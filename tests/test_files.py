"""The one atomic-write helper and the one lock: what a crash leaves, what concurrency does.

Every file the project replaces goes through :mod:`medbench_fast.files`, so these are the
tests of crash and concurrency behaviour for all of them (run.json, parts, shard status,
DICOM-SEG, export-cache entries, run-folder and export-cache locks).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medbench_fast.files import (
    FileLock,
    atomic_create,
    atomic_folder,
    atomic_path,
    atomic_write,
    temp_name,
    temp_writer,
    write_bytes_atomic,
    write_text_atomic,
)

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_temporary_name_tells_its_writer(tmp_path):
    """Cleaners of killed writers' files (the volume cache) read the writer's pid from the name."""
    for name in ("a", "x.nii.gz", "1.2.3", ".hidden.9.tmp"):
        assert temp_writer(temp_name(tmp_path / name)) == os.getpid()
    with atomic_folder(tmp_path / "entry") as folder:
        assert temp_writer(folder) == os.getpid()
    for other in ("a.tmp", ".a.tmp", ".a.x.y.tmp", ".a.12.ab.log", "a.12.ab.tmp", ".12.ab.tmp"):
        assert temp_writer(tmp_path / other) is None, other


def test_bytes_text_and_writers_that_take_a_path(tmp_path):
    write_bytes_atomic(tmp_path / "a.bin", b"\x00\x01")
    write_text_atomic(tmp_path / "a.txt", "é\n")
    table = pa.table({"x": [1, 2]})
    atomic_write(tmp_path / "a.parquet", lambda tmp: pq.write_table(table, tmp))
    with atomic_path(tmp_path / "a.npy") as tmp:
        with open(tmp, "wb") as fh:  # np.save on a bare path would append ".npy"
            np.save(fh, np.arange(3))
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "é\n"
    assert pq.read_table(tmp_path / "a.parquet").equals(table)
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2]
    assert _leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old")

    def half(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="run.json"):  # the error names the file it could not write
        atomic_write(target, half)
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise ValueError("writer bug")
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from medbench_fast.files import atomic_write

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"new" * 100000)
            fh.flush()
            print("writing", flush=True)
            time.sleep(60)

    atomic_write(Path(sys.argv[1]), write)
""")


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], env=ENV, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert target.read_text() == "old"
    leftover = _leftovers(tmp_path)  # the killed writer's temporary file, named by its pid
    assert len(leftover) == 1 and f".run.json.{proc.pid}." in leftover[0]


CONCURRENT_WRITER = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from medbench_fast.files import write_bytes_atomic

    target, me = Path(sys.argv[1]), sys.argv[2]

    def write(thread):
        body = f"{me}-{thread}:".encode() * 5000
        for _ in range(30):
            write_bytes_atomic(target, body)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
""")


def test_many_processes_and_threads_replacing_one_file(tmp_path):
    """4 processes x 4 threads replace one file while a reader reads it: every read is one
    writer's complete content, and no temporary file is left."""
    target = tmp_path / "status.json"
    target.write_bytes(b"first:" * 5000)
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(target), str(i)], env=ENV)
             for i in range(4)]
    seen = set()
    while any(p.poll() is None for p in procs):
        data = target.read_bytes()
        piece = data[:data.index(b":") + 1]
        assert data == piece * 5000, "a read saw a partial or mixed file"
        seen.add(piece)
    assert all(p.wait(60) == 0 for p in procs)
    assert len(seen) > 1 and _leftovers(tmp_path) == []


def test_of_many_creators_exactly_one_writes(tmp_path):
    target = tmp_path / "run.json"
    wins = []

    def create(i):
        if atomic_create(target, lambda tmp: tmp.write_text(f"writer {i}")):
            wins.append(i)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and target.read_text() == f"writer {wins[0]}" and _leftovers(tmp_path) == []


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    entry = tmp_path / "entry"
    with atomic_folder(entry) as tmp:
        (tmp / "model.onnx").write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_folder(entry) as tmp:
            (tmp / "model.onnx").write_text("broken")
            raise RuntimeError("build failed")
    assert (entry / "model.onnx").read_text() == "one"
    with atomic_folder(entry, replace=False) as tmp:  # another process finished it first: kept
        (tmp / "model.onnx").write_text("two")
    assert (entry / "model.onnx").read_text() == "one"
    with atomic_folder(entry) as tmp:  # replaced
        (tmp / "model.onnx").write_text("three")
    assert (entry / "model.onnx").read_text() == "three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]


HOLDER = textwrap.dedent("""
    import sys, time
    from medbench_fast.files import FileLock

    lock = FileLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    time.sleep(60)
""")


def test_a_holder_killed_with_sigkill_releases_the_lock(tmp_path):
    path = tmp_path / ".lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        lock = FileLock(path)
        assert not lock.acquire(wait=False)  # held by a live process
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert lock.acquire(wait=False) and lock.kernel  # the kernel let go with the process
        lock.release(remove=True)
        assert not path.exists()
    finally:
        proc.kill()
        proc.wait(30)


CONTENDER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from medbench_fast.files import FileLock

    path, folder, me = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    while not (folder / "start").exists():
        time.sleep(0.002)
    for turn in range(10):
        with FileLock(path) as lock:
            fd = os.open(folder / "inside", os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if another holds it too
            os.close(fd)
            count = int((folder / "count").read_text())
            time.sleep(0.002)
            (folder / "count").write_text(str(count + 1))
            os.unlink(folder / "inside")
            if (me + turn) % 2:
                lock.release(remove=True)  # a holder that removes the lock file as it lets go
""")


def test_many_processes_one_holder_at_a_time(tmp_path):
    """8 processes take one lock 10 times each; half of the releases remove the lock file (as
    a run folder's lock does). Never two holders at once, and no update lost."""
    (tmp_path / "count").write_text("0")
    procs = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(tmp_path / ".lock"), str(tmp_path), str(i)],
                              env=ENV, stderr=subprocess.PIPE, text=True) for i in range(8)]
    time.sleep(0.5)
    (tmp_path / "start").touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(errors)[-3000:]
    assert (tmp_path / "count").read_text() == "80"


def test_two_threads_of_one_process_exclude_each_other(tmp_path):
    first = FileLock(tmp_path / ".lock")
    assert first.acquire(wait=False)
    second, got = FileLock(tmp_path / ".lock"), []
    waiter = threading.Thread(target=lambda: got.append(second.acquire()))
    waiter.start()
    waiter.join(0.3)
    assert got == []  # still waiting
    first.release()
    waiter.join(30)
    assert got == [True]
    second.release()
