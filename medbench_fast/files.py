"""Writing files atomically: a unique temporary name in the target's folder, then ``os.replace``.

Readers see the old file or the complete new one, never a partial file; a failed write
(disk full, permission lost, an exception in ``write``) removes its temporary file and
leaves the target as it was. Temporary names start with ``.`` and end with ``.tmp``.

Every path the project writes from a name it was given (a model name, a case id) is built
by :func:`path_inside`, which refuses a name that would leave the folder the user named.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_name(target: Path) -> Path:
    """A unique temporary path beside ``target`` (``.<name>.<pid>.<random>.tmp``)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


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


def atomic_write(target: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``target`` (an error names it)."""
    target = Path(target)
    tmp = temp_name(target)
    try:
        with naming(target):
            write(tmp)
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``target`` atomically."""
    atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


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
