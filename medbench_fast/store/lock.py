"""One writer per run folder (and part namespace) at a time.

The lock is a file ``RUN_DIR/.lock`` (``.lock-<namespace>`` for other namespaces) held with
:class:`~medbench_fast.files.FileLock` (``flock``) for the whole write and holding the
writer's host, pid, process start time and command. A second writer finds it held and gets
:class:`RunLockedError` naming them. The kernel drops the lock when its writer dies (killed
included), so the next writer takes it over at once, and of many that try exactly one wins.

The record keeps the rules of a file system without ``flock`` and of a lock written by hand:
a lock whose process is alive on this host is held; a lock from another host cannot be
checked and must be removed by hand, as the message says; a record that is not a lock
medbench-fast writes is refused.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from medbench_fast.files import FileLock
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
        self._kernel = True

    def acquire(self) -> RunLock:
        lock = FileLock(self.path)
        if not lock.acquire(wait=False):
            raise RunLockedError(self._busy(self._holder() or {}))
        try:
            holder, self._kernel = self._holder(), lock.kernel
            if holder is not None and not self._stale(holder):
                raise RunLockedError(self._busy(holder))
            data = json.dumps(self.record).encode()  # the last writer's record, replaced in place
            os.ftruncate(lock.fd, 0)
            os.pwrite(lock.fd, data, 0)
        except BaseException:
            lock.release()
            raise
        self._lock, self.held = lock, True
        return self

    def _busy(self, holder: dict) -> str:
        return (f"{self.path.parent}: being written by {holder.get('command', 'medbench')} "
                f"(pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}); "
                f"wait for it to finish, or remove {self.path} if that process is gone")

    def _holder(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written right now, or garbage: stale only if it stays so
        return data if isinstance(data, dict) else {}

    def _stale(self, holder: dict) -> bool:
        """Whether the record of a lock no process holds (where the file system has no
        ``flock``: of a lock file) is a writer's that is gone."""
        if not holder:  # empty or unreadable: a writer killed between creating and filling it
            if self._kernel:
                return True
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
            self._lock.release(remove=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

