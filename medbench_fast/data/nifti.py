"""What ITK does not check in NIfTI files: completeness and non-finite voxel values.

ITK reads a ``.nii`` shorter than its header announces, and a cut-short ``.nii.gz``, without
complaint (the missing voxels read as 0), and it silently replaces NaN and infinite float
voxels by 0. These checks read the header and the raw voxel bytes themselves. Sizes are in
bytes; the expected size is ``vox_offset`` plus the voxel data that the header's dimensions
and ``bitpix`` announce. Multi-member gzip files (concatenated members, as ``gzip -t``
accepts) are read member by member; zero padding and trailing non-gzip bytes after a
complete member are ignored, as zlib's ``gzread`` (used by ITK) ignores them.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medbench_fast.data.errors import VolumeError

#: NIfTI ``datatype`` codes of floating-point voxels (float32, float64).
_FLOAT_TYPES = {16: "f4", 64: "f8"}
#: Bytes per voxel of each NIfTI ``datatype`` (ITK reads by datatype, whatever ``bitpix`` says).
DATATYPE_BYTES = {2: 1, 4: 2, 8: 4, 16: 4, 32: 8, 64: 8, 128: 3, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8,
                  1536: 16, 1792: 16, 2048: 32, 2304: 4}
_BLOCK = 1 << 22
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1 or NIfTI-2 header that locate the voxel data."""

    endian: str  # "<" or ">"
    datatype: int
    data_offset: int  # bytes before the voxels (vox_offset, at least the header size)
    data_bytes: int  # bytes of voxel data the dimensions announce

    @property
    def expected(self) -> int:
        return self.data_offset + self.data_bytes

    @property
    def float_dtype(self) -> np.dtype | None:
        """The voxels' numpy dtype when they are floating point, else None."""
        code = _FLOAT_TYPES.get(self.datatype)
        return None if code is None else np.dtype(self.endian + code)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def parse_header(raw: bytes, name: str) -> NiftiHeader:
    """Parse the first 540 bytes of a NIfTI file; :class:`VolumeError` naming ``name`` if invalid."""
    for endian in "<>":
        size_field = struct.unpack(endian + "i", raw[:4])[0] if len(raw) >= 4 else 0
        if size_field == 348 and len(raw) >= 348:
            dims = struct.unpack(endian + "8h", raw[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", raw[70:74])
            vox_offset, minimum = struct.unpack(endian + "f", raw[108:112])[0], 352
            break
        if size_field == 540 and len(raw) >= 540:
            datatype, bitpix = struct.unpack(endian + "2h", raw[12:16])
            dims = struct.unpack(endian + "8q", raw[16:80])
            vox_offset, minimum = struct.unpack(endian + "q", raw[168:176])[0], 544
            break
    else:
        raise VolumeError(f"{name}: cannot be read as NIfTI: the header size field is not 348 or 540, "
                          f"or the header is cut short at {len(raw)} bytes")
    ndim = int(dims[0])
    if not 1 <= ndim <= 7:
        raise VolumeError(f"{name}: cannot be read as NIfTI: invalid header: dim[0] is {ndim}, expected 1 to 7")
    if any(int(d) < 1 for d in dims[1:1 + ndim]):
        raise VolumeError(f"{name}: cannot be read as NIfTI: invalid header: dimensions {[int(d) for d in dims[1:1 + ndim]]} "
                          "must all be >= 1")
    if bitpix <= 0 or bitpix % 8 or not np.isfinite(vox_offset) or vox_offset < 0:
        raise VolumeError(f"{name}: cannot be read as NIfTI: invalid header: bitpix {bitpix}, vox_offset {vox_offset}")
    n_voxels = int(np.prod([int(d) for d in dims[1:1 + ndim]], dtype=object))
    item = max(bitpix // 8, DATATYPE_BYTES.get(int(datatype), 0))
    return NiftiHeader(endian, int(datatype), max(int(vox_offset), minimum), n_voxels * item)


def _gzip_blocks(path: Path) -> Iterator[bytes]:
    """Decompressed blocks (at most ``_BLOCK`` bytes each) of every member of a gzip file, in order.

    Raises :class:`VolumeError` when the data is corrupt or the last member is cut short.
    """
    decomp, between = None, False
    with open(path, "rb") as fh:
        for data in iter(lambda: fh.read(_BLOCK), b""):
            while True:
                if decomp is None:
                    if between:  # zero padding, another member, or trailing bytes
                        data = data.lstrip(b"\0")
                        if not data:
                            break
                        if not data.startswith(_GZIP_MAGIC[:len(data)]):
                            return  # trailing bytes after a complete member: ignored, as gzread does
                    decomp = zlib.decompressobj(zlib.MAX_WBITS | 16)
                try:
                    out = decomp.decompress(data, _BLOCK)  # bounded output: label maps compress 100x
                except zlib.error as exc:
                    raise VolumeError(f"{path}: corrupt gzip data: {exc}") from None
                if out:
                    yield out
                if decomp.eof:
                    data, decomp, between = decomp.unused_data, None, True
                    if not data:
                        break
                    continue
                data = decomp.unconsumed_tail
                if not data and len(out) < _BLOCK:  # everything consumed and flushed: read on
                    break
    if decomp is not None:
        raise VolumeError(f"{path}: truncated: the gzip data ends inside a compressed member")


def _read_header(path: Path, gz: bool) -> bytes:
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            return fh.read(540)
    except (OSError, EOFError, zlib.error) as exc:  # gzip reports a bad stream as OSError or EOFError
        raise VolumeError(f"{path}: cannot be read as NIfTI: the gzip stream is corrupt or cut short: {exc}") from None


def _gzip_isize(path: Path) -> int:
    """The last member's ISIZE field: its uncompressed size mod 2**32."""
    with open(path, "rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return struct.unpack("<I", fh.read(4))[0]


def _voxel_blocks(path: Path, header: NiftiHeader, gz: bool) -> Iterator[bytes]:
    """The raw voxel bytes (``data_offset`` to ``expected``), in blocks."""
    if gz:
        skip, left = header.data_offset, header.data_bytes
        for block in _gzip_blocks(path):
            if skip >= len(block):
                skip -= len(block)
                continue
            block = block[skip:skip + left]
            skip, left = 0, left - len(block)
            yield block
            if not left:
                return
        return
    with open(path, "rb") as fh:
        fh.seek(header.data_offset)
        left = header.data_bytes
        while left:
            block = fh.read(min(_BLOCK, left))
            if not block:
                return
            left -= len(block)
            yield block


def check_nifti(path: Path) -> NiftiHeader:
    """Parse the header of ``path`` (``.nii`` or ``.nii.gz``) and check that the file holds
    every voxel the header announces; :class:`VolumeError` stating expected and found bytes."""
    size = path.stat().st_size
    gz = _is_gzip(path)
    header = parse_header(_read_header(path, gz), str(path))
    if not gz:
        found = size
    elif size >= 18 and _gzip_isize(path) == header.expected % 2**32:
        return header  # the usual single-member file: its trailer states the full size
    else:
        found = header.data_offset + sum(len(b) for b in _voxel_blocks(path, header, gz))
    if found < header.expected:
        what = "decompressed data holds" if gz else "file holds"
        raise VolumeError(f"{path}: truncated: the NIfTI header announces {header.expected} bytes "
                          f"({header.data_offset} header + {header.data_bytes} voxel data), the {what} {found}")
    return header


def count_non_finite(path: Path, header: NiftiHeader) -> int:
    """Number of NaN or infinite voxels in the raw data of a float NIfTI file (0 for other types)."""
    dtype = header.float_dtype
    if dtype is None:
        return 0
    gz = _is_gzip(path)
    count, carry = 0, b""
    for block in _voxel_blocks(path, header, gz):
        block = carry + block
        usable = len(block) - len(block) % dtype.itemsize
        values = np.frombuffer(block, dtype=dtype, count=usable // dtype.itemsize)
        count += int(values.size - np.count_nonzero(np.isfinite(values)))
        carry = block[usable:]
    return count
