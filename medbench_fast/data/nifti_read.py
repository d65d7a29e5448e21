"""Reading NIfTI files (``.nii``, ``.nii.gz``; NIfTI-1 and NIfTI-2) without SimpleITK.

The file is read once and, when compressed, inflated once with the fastest inflater
installed (libdeflate through ``deflate``, else ISA-L through ``isal``, else zlib), and
the voxel array is a view of that one buffer. Geometry is what SimpleITK reports for the
same file (ITK's ``NiftiImageIO``): spacing from ``pixdim``, the sform or the qform chosen
by ITK's rules, origin and direction in LPS, and ``scl_slope`` / ``scl_inter`` applied
as ITK applies them (in double precision, float32 voxels unless the data is float64).

:func:`read_nifti` returns None for every file it does not read exactly as ITK does
(an Analyze header, vectors, complex or RGB voxels, units other than millimetres, an
sform that ITK would judge by tolerances, more than 4 dimensions), and for every file that
is corrupt, cut short or otherwise invalid: those are read by SimpleITK after the checks
of :mod:`medbench_fast.data.nifti`, which name the problem.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from medbench_fast.data import nifti
from medbench_fast.data.errors import VolumeError

#: NIfTI ``datatype`` codes of scalar voxels and their numpy type codes.
SCALAR_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
                1280: "u8"}
#: NIfTI magic strings of single-file headers (``.nii``).
_MAGIC = {348: b"n+1\0", 540: b"n+2\0\r\n\x1a\n"}
#: ``intent_code`` values read as plain scalar images (none, estimate, label, neuroname).
_PLAIN_INTENTS = {0, 1001, 1002, 1003}
_MM = {0, 2}  # xyz units read as millimetres by ITK: unknown, mm
_SECONDS = {0, 8}  # time units ITK leaves unscaled


def _pick_inflater():
    """The fastest installed gzip inflater: ``(name, decompress(bytes) -> bytes, its errors)``.
    Each releases the GIL while it inflates and raises on a stream that is not one complete,
    valid gzip member (libdeflate sizes its output by the trailer's ISIZE, so a shorter
    result than the header announces is caught by the size check)."""
    try:
        import deflate

        return "libdeflate", deflate.gzip_decompress, (deflate.DeflateError, MemoryError, ValueError)
    except ImportError:
        pass
    try:
        from isal import isal_zlib

        return "isal", lambda data: isal_zlib.decompress(data, 16 + 15), (isal_zlib.error, ValueError)
    except ImportError:
        return "zlib", lambda data: zlib.decompress(data, 16 + zlib.MAX_WBITS), (zlib.error, ValueError)


INFLATER, _inflate, _INFLATE_ERRORS = _pick_inflater()


@dataclass(frozen=True)
class NiftiImage:
    """A NIfTI file as SimpleITK reports it: ``array`` in numpy order (last axis = x) and
    geometry in ITK's order (x first), ``len(spacing) == array.ndim``; ``direction`` is the
    row-major ``ndim x ndim`` direction matrix."""

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    sha256: str | None = None


@dataclass(frozen=True)
class _Header:
    endian: str
    ndim: int
    dims: tuple[int, ...]
    datatype: int
    pixdim: tuple[float, ...]
    vox_offset: float
    slope: float
    inter: float
    units: int
    intent: int
    qform_code: int
    sform_code: int
    quatern: tuple[float, ...]  # b, c, d, qoffset x, y, z
    srow: tuple[float, ...]  # 12 values, rows x, y, z
    float32: bool  # NIfTI-1: the header's floats are single precision


def _parse(raw: bytes) -> _Header | None:
    for endian in "<>":
        size = struct.unpack(endian + "i", raw[:4])[0] if len(raw) >= 4 else 0
        if size == 348 and len(raw) >= 348 and raw[344:348] == _MAGIC[348]:
            u = lambda fmt, at: struct.unpack_from(endian + fmt, raw, at)  # noqa: E731
            return _Header(endian, u("h", 40)[0], u("8h", 40)[1:], u("h", 70)[0], u("8f", 76), u("f", 108)[0],
                           u("f", 112)[0], u("f", 116)[0], u("B", 123)[0], u("h", 68)[0], u("h", 252)[0],
                           u("h", 254)[0], u("6f", 256), u("12f", 280), True)
        if size == 540 and len(raw) >= 540 and raw[4:12] == _MAGIC[540]:
            u = lambda fmt, at: struct.unpack_from(endian + fmt, raw, at)  # noqa: E731
            return _Header(endian, u("q", 16)[0], u("8q", 16)[1:], u("h", 12)[0], u("8d", 104), float(u("q", 168)[0]),
                           u("d", 176)[0], u("d", 184)[0], u("i", 500)[0], u("i", 504)[0], u("i", 344)[0],
                           u("i", 348)[0], u("6d", 352), u("12d", 400), False)
    return None


def _squeezed(h: _Header) -> _Header:
    """The header with trailing axes of size 1 beyond the third dropped, as ITK drops them."""
    ndim = h.ndim
    while 3 < ndim <= 7 and h.dims[ndim - 1] == 1:
        ndim -= 1
    return replace(h, ndim=ndim)


def _supported(h: _Header) -> bool:
    """Whether ITK reads this header as a plain scalar image whose geometry this module computes exactly."""
    if not 2 <= h.ndim <= 4 or any(d < 1 for d in h.dims[:h.ndim]) or h.datatype not in SCALAR_TYPES:
        return False
    if h.intent not in _PLAIN_INTENTS or h.units & 7 not in _MM or (h.ndim == 4 and h.units & 0x38 not in _SECONDS):
        return False
    if not all(math.isfinite(p) and p > 0 for p in h.pixdim[1:1 + h.ndim]) or not math.isfinite(h.pixdim[0]):
        return False
    minimum = 352 if h.float32 else 544
    if not (math.isfinite(h.vox_offset) and h.vox_offset == int(h.vox_offset) and h.vox_offset >= minimum):
        return False
    values = h.quatern + h.srow + (h.slope, h.inter)
    return all(math.isfinite(v) for v in values)


def _round(values, float32: bool) -> np.ndarray:
    """Values as ITK's NIfTI library holds them (NIfTI-1 header fields are single precision)."""
    a = np.asarray(values, dtype=np.float64)
    return a.astype(np.float32).astype(np.float64) if float32 else a


def _qform(h: _Header) -> np.ndarray:
    """``qto_xyz``: the quaternion, offsets and ``pixdim`` as ``nifti_quatern_to_dmat44`` builds it."""
    b, c, d, qx, qy, qz = (float(v) for v in _round(h.quatern, h.float32))
    a = 1.0 - (b * b + c * c + d * d)
    if a < 1.0e-7:
        a = 1.0 / math.sqrt(b * b + c * c + d * d)
        b, c, d, a = b * a, c * a, d * a, 0.0
    else:
        a = math.sqrt(a)
    xd, yd, zd = (float(v) if v > 0 else 1.0 for v in _round(h.pixdim[1:4], h.float32))
    if h.pixdim[0] < 0:
        zd = -zd
    m = np.array([
        [(a * a + b * b - c * c - d * d) * xd, 2.0 * (b * c - a * d) * yd, 2.0 * (b * d + a * c) * zd, qx],
        [2.0 * (b * c + a * d) * xd, (a * a + c * c - b * b - d * d) * yd, 2.0 * (c * d - a * b) * zd, qy],
        [2.0 * (b * d - a * c) * xd, 2.0 * (c * d + a * b) * yd, (a * a + d * d - c * c - b * b) * zd, qz],
        [0.0, 0.0, 0.0, 1.0]])
    return _round(m, h.float32)  # NIfTI-1's library holds the matrix in single precision


def _sform(h: _Header) -> np.ndarray:
    return np.vstack([_round(h.srow, h.float32).reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])


def _sform_orthonormal(m: np.ndarray) -> bool | None:
    """Whether ITK finds the sform an invertible affine with orthonormal axes; None when the
    answer depends on ITK's numerics (its test of the inverse loses precision with large
    offsets or badly conditioned axes) or lies within a margin of its tolerances."""
    return _sform_orthonormal_of(m.tobytes())


@functools.lru_cache(maxsize=256)
def _sform_orthonormal_of(matrix: bytes) -> bool | None:
    """:func:`_sform_orthonormal` of a 4x4 float64 matrix's bytes: the files of one dataset
    mostly share one sform, so the SVD runs once per matrix."""
    m = np.frombuffer(matrix, np.float64).reshape(4, 4)
    rot = m[:3, :3]
    singular = np.linalg.svd(rot, compute_uv=False)
    if not (1e-2 <= singular[-1] and singular[0] <= 1e3 and np.abs(m[:3, 3]).max() <= 1e4):
        return None
    unit = rot / np.linalg.norm(rot, axis=0)
    error = float(np.abs(unit @ unit.T - np.eye(3)).max())
    if error < 1e-6:
        return True
    return False if error > 1e-3 else None


def _choose_matrix(h: _Header) -> np.ndarray | None:
    """The matrix ITK takes the origin and direction from; identity for neither form, None
    where ITK's choice cannot be reproduced exactly."""
    q_known, s_known = h.qform_code > 0, h.sform_code > 0
    if not q_known and not s_known:
        return np.eye(4)
    if q_known and not s_known:
        return _qform(h)
    sform = _sform(h)
    ortho = _sform_orthonormal(sform)
    if ortho is None:
        return None
    if ortho and (not q_known or h.sform_code == 1):
        return sform
    if not q_known:
        return None  # ITK refuses a skewed sform without a qform: its own message names the file
    qform = _qform(h)
    if not ortho or np.array_equal(qform, sform):
        return qform
    if np.abs(qform[:3, 3] - sform[:3, 3]).max() > 1e-3:
        return qform  # ITK's comparison of the two (by SVD, within 1e-4) fails on the offsets alone
    return None  # close but not equal: ITK's SVD comparison decides within its tolerances


def _normalize(values: list[float]) -> list[float]:
    total = 0.0
    for v in values:
        total += v * v
    if total == 0.0:
        return values
    norm = math.sqrt(total)
    return [v / norm for v in values]


def _geometry(h: _Header, matrix: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    n = h.ndim
    pixdim = [float(v) for v in _round(h.pixdim[1:1 + n], h.float32)]
    origin = [-float(matrix[0, 3]), -float(matrix[1, 3]), float(matrix[2, 3]), 0.0][:n]
    direction = np.eye(n)
    if h.qform_code <= 0 and h.sform_code <= 0:
        return tuple(pixdim), (0.0,) * n, tuple(float(v) for v in direction.ravel())
    for col in range(min(n, 3)):
        vec = [0.0] * n
        for row in range(min(n, 3)):
            vec[row] = float(matrix[row, col]) * (-1.0 if row < 2 else 1.0)
        direction[:, col] = _normalize(vec)
    return tuple(pixdim), tuple(origin), tuple(float(v) for v in direction.ravel())


def read_nifti(path: str | Path, *, sha256: bool = False) -> NiftiImage | None:
    """Read ``path`` as SimpleITK would; None when the file is invalid, cut short, corrupt or
    of a kind this module leaves to SimpleITK. Non-finite voxels are returned as stored.
    ``sha256``: also hash the file's bytes (read once for both)."""
    try:
        with open(path, "rb", buffering=0) as fh:  # one unbuffered read of the whole file
            raw = fh.read()
    except OSError:
        return None
    digest = hashlib.sha256(raw).hexdigest() if sha256 else None
    if raw[:2] != b"\x1f\x8b":
        return _decode(raw, digest)
    try:
        image = _decode(_inflate(raw), digest)
    except _INFLATE_ERRORS:  # corrupt, cut short, or several gzip members
        image = None
    if image is not None:
        return image
    try:  # member by member, as zlib's gzread (and so ITK) reads them
        return _decode(b"".join(nifti._gzip_blocks(Path(path))), digest)
    except VolumeError:
        return None


@dataclass(frozen=True)
class _Layout:
    """What a header says about its voxels, for :func:`_decode`: the numpy ``shape`` and
    ``dtype``, the byte ``offset`` of the first voxel, the scaling ITK applies (None: none)
    and the geometry of :class:`NiftiImage`."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    scale: tuple[float, float] | None
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _header_bytes(data: bytes) -> bytes:
    """The header's bytes: 540 for NIfTI-2, else the 348 of NIfTI-1 (all a file has if shorter)."""
    return bytes(data[:540] if data[:4] in (b"\x1c\x02\0\0", b"\0\0\x02\x1c") else data[:348])


@functools.lru_cache(maxsize=256)
def _layout(header: bytes) -> _Layout | None:
    """The :class:`_Layout` of a header; None where this module leaves the file to SimpleITK.
    The files of one dataset mostly share their header, so each is worked out once."""
    h = _parse(header)
    if h is not None:
        h = _squeezed(h)
    if h is None or not _supported(h):
        return None
    matrix = _choose_matrix(h)
    if matrix is None:
        return None
    slope, inter = (float(v) for v in _round((h.slope, h.inter), h.float32))
    if any(0.0 < abs(v) < 1e-15 for v in (slope, inter, slope - 1.0)):
        return None  # ITK compares with 1 and 0 within a few ulps
    slope = slope or 1.0  # ITK reads a zero slope as 1 and still adds the intercept
    shape = tuple(int(d) for d in h.dims[:h.ndim])
    return _Layout(shape[::-1], np.dtype(h.endian + SCALAR_TYPES[h.datatype]), int(h.vox_offset),
                   (slope, inter) if slope != 1.0 or inter != 0.0 else None, *_geometry(h, matrix))


def _decode(data: bytes, digest: str | None) -> NiftiImage | None:
    layout = _layout(_header_bytes(data))
    if layout is None or len(data) < layout.offset + layout.nbytes:
        return None
    dtype = layout.dtype
    array = np.frombuffer(data, dtype=dtype, count=math.prod(layout.shape), offset=layout.offset).reshape(layout.shape)
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    if layout.scale is not None:
        slope, inter = layout.scale
        out = np.float64 if array.dtype == np.float64 else np.float32
        array = (array.astype(np.float64) * slope + inter).astype(out, copy=False)
    return NiftiImage(array, layout.spacing, layout.origin, layout.direction, digest)
