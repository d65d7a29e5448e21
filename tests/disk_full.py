"""A folder on a small, nearly full disk for disk-full tests.

Where the tests run as root and may mount, the folder is a real tmpfs of the given size;
otherwise (or with ``MEDBENCH_TEST_NO_MOUNT=1``) :func:`small_disk` yields ``False`` and the
test injects ``ENOSPC`` instead.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_disk(folder: Path, size_kib: int):
    """Mount a ``size_kib`` tmpfs on ``folder`` (created); yield whether that worked."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = False
    may_mount = hasattr(os, "geteuid") and os.geteuid() == 0 and not os.environ.get("MEDBENCH_TEST_NO_MOUNT")
    if may_mount and shutil.which("mount"):
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)],
                                capture_output=True, check=False)
        mounted = result.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path, leave_bytes: int) -> None:
    """Write a filler file so that about ``leave_bytes`` stay free on ``folder``'s disk."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as fh:
        try:
            fh.write(b"\0" * max(0, free - leave_bytes))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def enospc(*_args, **_kwargs):
    """Stands in for a write on a full disk."""
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
