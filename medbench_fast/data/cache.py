"""Memory-mapped volume cache: decode a file once, memory-map it afterwards.

Each entry is ``<key>.npy`` (the voxel array, ``(Z, Y, X)``) plus ``<key>.json`` (geometry
and the source's path, size, mtime and sha256), where ``key`` hashes the source's absolute
path. An entry is valid while the source's size and modification time (ns) are unchanged;
a changed source is decoded again. Writers use a unique temporary name and ``os.replace``,
so concurrent readers and writers never see a partial file.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from medbench_fast.data.reader import Volume, decode_volume

#: Environment variable naming the cache folder.
CACHE_ENV = "MEDBENCH_CACHE_DIR"
_FORMAT = 1


def default_cache_dir() -> Path:
    """``$MEDBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/medbench-fast/volumes``, else ``~/.cache/...``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medbench-fast" / "volumes"


def source_fingerprint(path: Path) -> dict:
    """Size (bytes) and newest mtime (ns) of a file, or of all files in a DICOM folder."""
    if path.is_dir():
        stats = [p.stat() for p in sorted(path.iterdir()) if p.is_file()]
        return {"size": sum(s.st_size for s in stats), "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _sha256(path: Path) -> str | None:
    if path.is_dir():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _map_npy(path: Path) -> np.ndarray:
    """Memory-map an ``.npy`` file read-only, with its pages mapped up front where the OS
    allows it (``MAP_POPULATE``: one call instead of a page fault per 64 KiB on first touch)."""
    populate = getattr(mmap, "MAP_POPULATE", None)
    if populate is None:
        return np.load(path, mmap_mode="r")
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        offset = fh.tell()
        mapped = mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
    return np.ndarray(shape, dtype=dtype, buffer=mapped, offset=offset, order="F" if fortran else "C")


def _atomic_write(target: Path, write) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


class VolumeCache:
    """A folder of decoded volumes; ``load`` returns read-only memory-mapped arrays."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    def _paths(self, source: Path) -> tuple[Path, Path]:
        key = hashlib.sha256(str(source).encode()).hexdigest()[:24]
        return self.root / f"{key}.npy", self.root / f"{key}.json"

    def load(self, path: str | os.PathLike) -> Volume:
        """Load ``path`` from the cache, decoding and storing it first if needed."""
        source = Path(path).resolve()
        hit = self._read_entry(source)
        if hit is not None:
            return hit
        volume = decode_volume(path)
        self._write_entry(source, volume)
        return Volume(volume.array, volume.spacing, volume.origin, volume.direction, str(path), {"cache": "miss"})

    def _read_entry(self, source: Path) -> Volume | None:
        npy, header_path = self._paths(source)
        try:
            header = json.loads(header_path.read_text(encoding="utf-8"))
            if header.get("format") != _FORMAT or header.get("source") != str(source):
                return None
            if {k: header[k] for k in ("size", "mtime_ns")} != source_fingerprint(source):
                return None
            array = _map_npy(npy) if header["nbytes"] else np.load(npy)
            if list(array.shape) != header["shape"] or str(array.dtype) != header["dtype"]:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Volume(array, tuple(header["spacing"]), tuple(header["origin"]), tuple(header["direction"]),
                      str(source), {"cache": "hit", "sha256": header.get("sha256")})

    def _write_entry(self, source: Path, volume: Volume) -> None:
        npy, header_path = self._paths(source)
        self.root.mkdir(parents=True, exist_ok=True)
        fingerprint = source_fingerprint(source)
        array = np.ascontiguousarray(volume.array)
        header = {
            "format": _FORMAT, "source": str(source), **fingerprint, "sha256": _sha256(source),
            "shape": list(array.shape), "dtype": str(array.dtype), "nbytes": int(array.nbytes),
            "spacing": list(volume.spacing), "origin": list(volume.origin), "direction": list(volume.direction),
        }

        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, array)

        _atomic_write(npy, write_npy)
        _atomic_write(header_path, lambda tmp: tmp.write_text(json.dumps(header, indent=1), encoding="utf-8"))

    def info(self) -> dict:
        """Entry count, total bytes and folder of the cache."""
        entries = list(self.root.glob("*.json")) if self.root.exists() else []
        size = sum(p.stat().st_size for p in self.root.iterdir()) if self.root.exists() else 0
        return {"path": str(self.root), "entries": len(entries), "bytes": size}

    def clear(self) -> int:
        """Delete the cache folder; return the number of entries removed."""
        n = self.info()["entries"]
        if self.root.exists():
            shutil.rmtree(self.root)
        return n
