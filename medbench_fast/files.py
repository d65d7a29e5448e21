"""Writing files atomically, the one lock, and safe names.

Every file the project replaces is written to a temporary name beside it, then renamed
with ``os.replace`` (:func:`atomic_path`; :func:`atomic_write` for a writer callback,
:func:`write_text_atomic`, :func:`write_bytes_atomic`; :func:`atomic_folder` for a folder).
Readers see the old file or the complete new one, never a partial file; a failed write
(disk full, permission lost, an exception in the writer, the process killed) leaves the
target as it was, and every way but a kill removes the temporary file. Temporary names
start with ``.``, end with ``.tmp`` and hold the writer's pid and a random part, so two
processes or two threads never share one. Nothing is ``fsync``-ed: a rename is atomic for
other processes, not across a power cut.

:class:`FileLock` is the one lock: an exclusive ``flock`` of a file that the kernel drops
when its holder exits or is killed, so it never goes stale.

Every path the project writes from a name it was given (a model name, a case id) is built
by :func:`path_inside`, which refuses a name that would leave the folder the user named.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no kernel lock (see FileLock)
    fcntl = None


def read_json_object(path: Path, error: type[Exception]) -> dict:
    """The JSON object in the file ``path``; ``error`` naming the file when it is not valid JSON
    (or not UTF-8) or holds something other than an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data


def temp_name(target: Path) -> Path:
    """A unique temporary path beside ``target`` (``.<name>.<pid>.<random>.tmp``)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def temp_writer(tmp: Path) -> int | None:
    """The pid of the process that named ``tmp`` with :func:`temp_name`; None for another name."""
    parts = tmp.name.split(".")
    if len(parts) < 5 or parts[0] or parts[-1] != "tmp" or not parts[-3].isdigit():
        return None
    return int(parts[-3])


@contextmanager
def naming(target: str | os.PathLike) -> Iterator[None]:
    """Give an ``OSError`` raised inside that names no file (a ``write`` on a full disk) the name
    ``target``, so that its message says which file could not be written."""
    try:
        yield
    except OSError as exc:
        if not exc.filename:
            exc.filename = str(target)
        raise


@contextmanager
def atomic_path(target: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``target`` to write; renamed to ``target`` when the block ends
    normally, removed when it raises (an ``OSError`` without a file name gets ``target``'s).
    ``suffix`` ends the temporary name, for writers that choose the format by extension
    (SimpleITK: ``".nii.gz"``).

    For writers that take a path (``pq.write_table``, ``np.save``, ``seg.save_as``)::

        with atomic_path(out) as tmp:
            np.save(tmp, array)
    """
    target = Path(target)
    tmp = temp_name(target)
    if suffix:
        tmp = tmp.with_name(tmp.name + suffix)
    try:
        with naming(target):
            yield tmp
            os.replace(tmp, target)
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def atomic_write(target: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``target`` (an error names it)."""
    with atomic_path(target) as tmp:
        write(tmp)


def atomic_create(target: str | os.PathLike, write: Callable[[Path], object]) -> bool:
    """Like :func:`atomic_write`, but only where ``target`` does not exist yet: the complete file
    appears under a hard link, or not at all. False (nothing written) when ``target`` exists."""
    target = Path(target)
    tmp = temp_name(target)
    try:
        with naming(target):
            write(tmp)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
        return True
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``target`` atomically."""
    atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    atomic_write(target, lambda tmp: tmp.write_bytes(data))


@contextmanager
def atomic_folder(target: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """A temporary folder beside ``target`` to fill; renamed to ``target`` when the block ends
    normally, removed when it raises.

    ``replace``: a folder already at ``target`` is moved aside and removed. Otherwise it is
    kept (another process finished the same folder first) and the new one is discarded.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    old = None
    try:
        with naming(target):
            yield tmp
            if replace and target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".old.tmp",
                                            dir=target.parent))
                os.replace(target, old / target.name)
            try:
                os.replace(tmp, target)
            except OSError:
                if replace or not target.is_dir():
                    raise
    finally:
        for leftover in (tmp, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover)


class FileLock:
    """An exclusive lock on the file ``path`` (created when absent): a ``flock`` that the kernel
    drops when its holder exits or is killed, so it never goes stale and needs no takeover.

    Two processes, or two threads opening the lock each, never hold it at once. A holder that
    removes the file on release (``release(remove=True)``) cannot let a waiter lock the removed
    file: a lock taken on a file no longer at ``path`` is dropped and taken again. :attr:`fd`
    is the locked file, for a holder that records itself in it. Where the file system has no
    ``flock`` (some network mounts, Windows), :attr:`kernel` is False and the lock excludes
    nothing: a holder that must be alone checks what it can (see
    :class:`~medbench_fast.store.lock.RunLock`).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.fd: int | None = None
        self.kernel = False

    def acquire(self, *, wait: bool = True) -> bool:
        """Take the lock, waiting for the holder when ``wait``; False when held elsewhere and not ``wait``."""
        if self.fd is not None:
            raise RuntimeError(f"{self.path}: this lock is already held")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is None:
                    raise OSError("no flock")
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                kernel = True
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError:  # no locking on this file system
                kernel = False
            try:
                here = os.stat(self.path)
                mine = os.fstat(fd)
                same = (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                same = False
            if same:
                self.fd, self.kernel = fd, kernel
                return True
            os.close(fd)  # the holder removed the file as it let go: lock the one at path now

    def release(self, *, remove: bool = False) -> None:
        """Let go (``remove``: delete the lock file first, while still holding it)."""
        if self.fd is None:
            return
        try:
            if remove:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)  # drops the flock
            self.fd = None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class UnsafePathError(ValueError):
    """A name that would put a written file outside the folder the user named."""


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be one file name inside a folder (None when it can): empty, ``.`` or
    ``..``, or holding a path separator, a NUL or another control character."""
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return f"{name!r} names a folder, not a file"
    bad = sorted({c for c in name if c in "/\\\0" or ord(c) < 32 or ord(c) == 127})
    if bad:
        return "it holds " + ", ".join(repr(c) for c in bad)
    return None


def safe_name(text: str) -> str:
    """``text`` as one harmless file name: characters other than letters, digits and ``._+-=@,``
    become ``_``, and a leading ``.`` too (no hidden files, no ``..``)."""
    out = re.sub(r"[^\w.+\-=@,]", "_", str(text), flags=re.ASCII)
    return "_" + out[1:] if out.startswith(".") else out or "_"


def path_inside(root: str | os.PathLike, *names: str) -> Path:
    """``root / names[0] / names[1] ...`` for a file the project writes, checked to lie inside ``root``.

    Every name must be one file name (:func:`name_problem`) and the result, with links
    resolved, must lie inside ``root``; otherwise :class:`UnsafePathError` names both.
    """
    root = Path(root)
    path = root
    for name in names:
        problem = name_problem(str(name))
        if problem:
            raise UnsafePathError(f"{root}: refusing to write {str(name)!r} there: {problem}")
        path = path / str(name)
    if not path.resolve().is_relative_to(root.resolve()):
        raise UnsafePathError(f"{path}: refusing to write outside {root} (it resolves to {path.resolve()})")
    return path
