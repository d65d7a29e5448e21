"""Memory-mapped volume cache: decode a file once, memory-map it afterwards.

Each entry is ``<key>.npy`` (the voxel array, ``(Z, Y, X)``) plus ``<key>.json`` (geometry
and the source's path, fingerprint and sha256), where ``key`` hashes the source's absolute
path. An entry is valid while the source's fingerprint is unchanged: its size, modification
time, status-change time (ctime, ns) and inode. Replacing a file (rename, copy, extraction)
gives it a new inode or ctime even when size and mtime are kept, and ctime cannot be set
back by users, so a replaced source is always decoded again. A DICOM folder's fingerprint
covers every file in it.

Writers use a unique temporary name and ``os.replace``, so concurrent readers and writers
never see a partial file; ``clear`` removes entries one by one and never the folder, so it
can race readers and writers. The cache never fails a case: a folder that cannot be
written (read-only, full, removed) is reported once as a warning, and volumes are then read
without it. Temporary files of killed writers are removed by ``info``, ``clear`` and the
first write of each :class:`VolumeCache`.

An entry is stored only where it pays for itself on its first reuse (:meth:`VolumeCache.worth_storing`):
writing an entry costs about as much as copying its bytes (a few ms per 10 MB), and looking it
up costs a few file-system calls, so a volume smaller than :data:`MIN_BYTES` decoded, or one
that decoded faster than :data:`MAX_DECODE_RATE` bytes per second (a label map that inflates
at several GB/s, an uncompressed ``.nii``), is decoded again on every read instead. Slow decodes
(CT and MR ``.nii.gz``, DICOM series, rasterised RTSTRUCTs, other formats) are stored.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import stat
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from medbench_fast.data.reader import Volume, decode_volume
from medbench_fast.files import atomic_write, temp_writer

#: Environment variable naming the cache folder.
CACHE_ENV = "MEDBENCH_CACHE_DIR"
_FORMAT = 2
#: Fingerprint fields compared with a cached entry's header.
_FINGERPRINT = ("size", "mtime_ns", "ctime_ns", "inode")
#: A temporary file whose writer is gone, or older than this (s), is stale.
STALE_TEMP_S = 3600.0
#: Decoded volumes smaller than this (bytes) are not stored: decoding one costs well under a
#: millisecond, less than writing two files and looking them up again.
MIN_BYTES = 1 << 20
#: Volumes that decoded faster than this (bytes of array per second of the reading thread's CPU
#: time) are not stored: writing
#: the entry (measured at 0.5-1 GB/s into the page cache) would cost more than decoding again.
MAX_DECODE_RATE = 1e9


def default_cache_dir() -> Path:
    """``$MEDBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/medbench-fast/volumes``, else ``~/.cache/...``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medbench-fast" / "volumes"


def source_fingerprint(path: Path) -> dict:
    """Size (bytes), mtime and ctime (ns) and inode of a file; for a DICOM folder the total
    size, the newest mtime and ctime, and a digest of every file's name, inode, size and times."""
    st = path.stat()
    if stat.S_ISDIR(st.st_mode):
        files = sorted(p for p in path.iterdir() if p.is_file())
        stats = [p.stat() for p in files]
        listing = "\n".join(f"{p.name}:{s.st_ino}:{s.st_size}:{s.st_mtime_ns}:{s.st_ctime_ns}" for p, s in zip(files, stats))
        return {"size": sum(s.st_size for s in stats), "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
                "ctime_ns": max((s.st_ctime_ns for s in stats), default=0),
                "inode": hashlib.sha256(listing.encode()).hexdigest()[:16]}
    return _stat_fingerprint(st)


def _stat_fingerprint(st: os.stat_result) -> dict:
    """The fingerprint of a file from its ``stat``."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def _combined_fingerprint(sources: list[Path]) -> dict:
    """The fingerprint of several files or folders: total size, newest mtime and ctime, and a
    digest of every one's inode."""
    prints = [source_fingerprint(s) for s in sources]
    inodes = ",".join(str(p["inode"]) for p in prints)
    return {"size": sum(p["size"] for p in prints), "mtime_ns": max(p["mtime_ns"] for p in prints),
            "ctime_ns": max(p["ctime_ns"] for p in prints), "inode": hashlib.sha256(inodes.encode()).hexdigest()[:16]}


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


def _writer_gone(tmp: Path) -> bool:
    """Whether the process that named ``tmp`` (:func:`~medbench_fast.files.temp_name`) no longer runs here."""
    pid = temp_writer(tmp)
    if pid is None:
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


class VolumeCache:
    """A folder of decoded volumes; ``load`` returns read-only memory-mapped arrays."""

    def __init__(self, root: str | os.PathLike | None = None, *, min_bytes: int = MIN_BYTES,
                 max_decode_rate: float | None = MAX_DECODE_RATE):
        """``min_bytes`` and ``max_decode_rate`` (None: no limit) choose which volumes are
        stored (:meth:`worth_storing`); ``min_bytes=0, max_decode_rate=None`` stores every one."""
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.min_bytes = min_bytes
        self.max_decode_rate = max_decode_rate
        self._lock = threading.Lock()
        self._real_dirs: dict[str, str] = {}  # absolute folder -> its real path (see _source)
        self._swept = False
        self.write_error: str | None = None  # set when the folder cannot be written; writes stop

    def _paths(self, key: str) -> tuple[str, str]:
        """The ``.npy`` and ``.json`` files of the entry of ``key`` (a real path or a derived key)."""
        name = os.path.join(self.root, hashlib.sha256(key.encode()).hexdigest()[:24])
        return name + ".npy", name + ".json"

    def load(self, path: str | os.PathLike, *, channels: bool = False) -> Volume:
        """Load ``path`` from the cache, decoding and storing it first if needed
        (``channels``: a 4D file is ``(C, Z, Y, X)``, see :func:`load_volume`)."""
        # the fingerprint is taken before decoding: a source replaced while decoding never matches
        source, fingerprint = self._source(path)
        hit = self._read_entry(source, fingerprint) if fingerprint is not None else None
        if hit is not None:
            return hit
        start = time.thread_time()
        volume = decode_volume(path, channels=channels, sha256=self.write_error is None)
        self._store(source, volume, fingerprint, decode_s=time.thread_time() - start, source=source)
        return Volume(volume.array, volume.spacing, volume.origin, volume.direction, str(path), {"cache": "miss"})

    def _source(self, path: str | os.PathLike) -> tuple[str, dict | None]:
        """The real path of ``path`` (symbolic links resolved; it keys the entry) and the
        fingerprint of the file or folder it names (None where it is missing: decoding names the
        problem). A regular file is ``lstat``-ed once for both, and the real path of its folder
        is worked out once per folder: a folder whose links change meanwhile only misplaces an
        entry, since an entry is used only with the fingerprint of the file actually read."""
        name = os.fspath(path)
        try:
            st = os.lstat(name)
        except OSError:
            return os.path.realpath(name), None
        if stat.S_ISREG(st.st_mode):
            folder, base = os.path.split(name)
            real = self._real_dirs.get(folder)
            if real is None:
                real = os.path.realpath(folder)
                if os.path.isabs(folder) and len(self._real_dirs) < 4096:  # a relative one depends on the cwd
                    self._real_dirs[folder] = real
            return os.path.join(real, base), _stat_fingerprint(st)
        source = os.path.realpath(name)
        try:
            return source, source_fingerprint(Path(source))
        except OSError:
            return source, None

    def load_derived(self, key: str, sources: list[Path], decode, *, label: str) -> Volume:
        """Load a volume computed from several files (a DICOM-SEG or RTSTRUCT placed on its
        series), decoding it with ``decode()`` on a miss. ``key`` names the computation (files
        and options); the entry is valid while every source's fingerprint is unchanged.
        ``label`` is the volume's ``path``; JSON-serialisable ``meta`` is kept with the entry."""
        fingerprint = _combined_fingerprint(sources)
        hit = self._read_entry(key, fingerprint)
        if hit is not None:
            return Volume(hit.array, hit.spacing, hit.origin, hit.direction, label, hit.meta)
        start = time.thread_time()
        volume = decode()
        self._store(key, volume, fingerprint, meta=volume.meta, decode_s=time.thread_time() - start)
        return Volume(volume.array, volume.spacing, volume.origin, volume.direction, label, {**volume.meta, "cache": "miss"})

    def worth_storing(self, nbytes: int, decode_s: float) -> bool:
        """Whether a volume of ``nbytes`` decoded bytes whose decode took ``decode_s`` seconds of
        the reading thread's CPU time is stored: at least ``min_bytes``, and decoded slower than
        ``max_decode_rate``. CPU time, not wall time: waiting for a core or for the GIL while
        other cases are scored is no work that the cache would save."""
        if nbytes < self.min_bytes:
            return False
        return self.max_decode_rate is None or nbytes < decode_s * self.max_decode_rate

    def _store(self, key: str, volume: Volume, fingerprint: dict | None, meta: dict | None = None, *,
               decode_s: float, source: str | None = None) -> None:
        """Write the entry of ``key`` where :meth:`worth_storing` (``source``: the file or folder
        decoded, hashed where the decoder did not); a folder that cannot be written turns the
        cache's writes off (warned once)."""
        if self.write_error is None and fingerprint is not None and self.worth_storing(volume.array.nbytes, decode_s):
            try:
                self._write_entry(key, volume, fingerprint, meta, source)
            except OSError as exc:
                self._disable_writes(exc)

    def _disable_writes(self, exc: OSError) -> None:
        with self._lock:
            if self.write_error is not None:
                return
            self.write_error = f"{self.root}: {exc.strerror or exc}"
        warnings.warn(f"volume cache {self.write_error}; reading volumes without the cache from now on",
                      RuntimeWarning, stacklevel=3)

    def _read_entry(self, key: str, fingerprint: dict) -> Volume | None:
        """The entry of ``key`` where it was stored with ``fingerprint``, else None."""
        npy, header_path = self._paths(key)
        if not os.access(header_path, os.F_OK):  # no entry (most volumes): answered without an exception
            return None
        try:
            with open(header_path, encoding="utf-8") as fh:
                header = json.loads(fh.read())
            if header.get("format") != _FORMAT or header.get("source") != key:
                return None
            if {k: header[k] for k in _FINGERPRINT} != fingerprint:
                return None
            array = _map_npy(npy) if header["nbytes"] else np.load(npy)
            if list(array.shape) != header["shape"] or str(array.dtype) != header["dtype"]:
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return Volume(array, tuple(header["spacing"]), tuple(header["origin"]), tuple(header["direction"]),
                      key, {**header.get("meta", {}), "cache": "hit", "sha256": header.get("sha256")})

    def _write_entry(self, key: str, volume: Volume, fingerprint: dict, meta: dict | None, source: str | None) -> None:
        npy, header_path = self._paths(key)
        self.root.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self.remove_stale_temps()
            self._swept = True
        array = np.ascontiguousarray(volume.array)
        header = {
            "format": _FORMAT, "source": key, **fingerprint,
            "sha256": volume.meta.get("sha256") or (_sha256(Path(source)) if source is not None else None),
            "meta": meta or {},
            "shape": list(array.shape), "dtype": str(array.dtype), "nbytes": int(array.nbytes),
            "spacing": list(volume.spacing), "origin": list(volume.origin), "direction": list(volume.direction),
        }

        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, array)

        atomic_write(npy, write_npy)
        atomic_write(header_path, lambda tmp: tmp.write_text(json.dumps(header, indent=1), encoding="utf-8"))

    def remove_stale_temps(self) -> int:
        """Delete temporary files left by killed writers; return how many were removed."""
        removed = 0
        now = time.time()
        for tmp in self.root.glob(".*.tmp") if self.root.is_dir() else ():
            try:
                stale = _writer_gone(tmp) or now - tmp.stat().st_mtime > STALE_TEMP_S
            except FileNotFoundError:
                continue
            removed += stale and _unlink(tmp)
        return removed

    def info(self) -> dict:
        """Entry count, total bytes and folder of the cache (stale temporary files removed first)."""
        self.remove_stale_temps()
        entries, size = 0, 0
        for p in self.root.iterdir() if self.root.is_dir() else ():
            try:
                size += p.stat().st_size
            except FileNotFoundError:  # removed by a concurrent clear
                continue
            entries += p.suffix == ".json" and not p.name.startswith(".")
        return {"path": str(self.root), "entries": entries, "bytes": size}

    def clear(self) -> int:
        """Delete every entry and stale temporary file; return the number of entries removed.

        The folder itself stays, so concurrent readers and writers go on (a reader whose
        entry vanished decodes the source again).
        """
        self.remove_stale_temps()
        removed = 0
        for header in list(self.root.glob("*.json")) if self.root.is_dir() else ():
            removed += _unlink(header)
            _unlink(header.with_suffix(".npy"))
        for npy in list(self.root.glob("*.npy")) if self.root.is_dir() else ():  # orphans of a partial write
            _unlink(npy)
        return removed
