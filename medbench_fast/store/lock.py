"""One writer per run folder (and part namespace) at a time.

The lock is a file ``RUN_DIR/.lock`` (``.lock-<namespace>`` for other namespaces) created
with ``O_EXCL`` and holding the writer's host, pid, process start time and command. A
second writer gets :class:`RunLockedError` naming them. A lock whose process is gone on
this host (or whose pid was reused by another process) is stale and taken over; a lock
held from another host cannot be checked and must be removed by hand, as the message says.

Taking the lock (creating it, or judging the present one stale, removing it and creating
ours) happens under an exclusive ``flock`` of the run folder itself, so of many processes
that find the same stale lock exactly one takes it over; the others then find the
winner's live lock. The kernel drops the ``flock`` when its process dies, so it never
goes stale itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from medbench_fast.store.run_info import utc_now


class RunLockedError(RuntimeError):
    """The run folder is being written by another process."""


_MAX_PID = 2 ** 31 - 1  # pid_t is a signed 32-bit integer


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_start(pid)
    return started is None or now is None or now == started


class RunLock:
    """Exclusive writer lock of ``run_dir`` for ``namespace`` (``main`` for a whole run)."""

    def __init__(self, run_dir: str | os.PathLike, *, command: str, namespace: str = "main"):
        self.path = Path(run_dir) / (".lock" if namespace == "main" else f".lock-{namespace}")
        self.record = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": _process_start(os.getpid()),
                       "command": command, "since": utc_now()}
        self.held = False

    def acquire(self) -> RunLock:
        with _folder_guard(self.path.parent):
            return self._acquire()

    def _acquire(self) -> RunLock:
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or self._stale(holder):
                    self.path.unlink(missing_ok=True)  # a killed writer's lock: take it over
                    continue
                raise RunLockedError(
                    f"{self.path.parent}: being written by {holder.get('command', 'medbench')} "
                    f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}); "
                    f"wait for it to finish, or remove {self.path} if that process is gone") from None
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.record, fh)
            self.held = True
            return self
        raise RunLockedError(f"{self.path}: could not take the lock (it keeps reappearing)")

    def _holder(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written right now, or garbage: stale only if it stays so
        return data if isinstance(data, dict) else {}

    def _stale(self, holder: dict) -> bool:
        if not holder:  # empty or unreadable: a writer killed between creating and filling it
            try:
                return time.time() - self.path.stat().st_mtime > 10
            except FileNotFoundError:
                return True
        if holder.get("host") != self.record["host"]:
            return False
        pid = holder.get("pid")
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= _MAX_PID:
            raise RunLockedError(f"{self.path}: not a lock medbench-fast writes (its pid {str(pid)[:40]!r} is not a "
                                 f"process id); remove {self.path} if no medbench process is writing "
                                 f"{self.path.parent}")
        return not _alive(pid, holder.get("process_start"))

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def _folder_guard(folder: Path):
    """An exclusive ``flock`` of ``folder`` (the run folder) while a lock is taken or taken over.

    Where the file system does not lock (some network mounts), taking a stale lock falls back
    to the ``O_EXCL`` create alone."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the flock
