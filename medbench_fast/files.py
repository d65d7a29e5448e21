"""Writing files atomically: a unique temporary name in the target's folder, then ``os.replace``.

Readers see the old file or the complete new one, never a partial file; a failed write
(disk full, permission lost, an exception in ``write``) removes its temporary file and
leaves the target as it was. Temporary names start with ``.`` and end with ``.tmp``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def temp_name(target: Path) -> Path:
    """A unique temporary path beside ``target`` (``.<name>.<pid>.<random>.tmp``)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


def atomic_write(target: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` to fill a temporary file, then rename it to ``target``."""
    target = Path(target)
    tmp = temp_name(target)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``target`` atomically."""
    atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
