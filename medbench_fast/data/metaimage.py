"""What ITK does not check in MetaImage files (``.mha``, ``.mhd``): dimensions and completeness.

ITK crashes the process on a negative ``NDims``, so the dimensions are validated first. It
inflates ``CompressedData = True`` voxel data without checking that it holds every voxel
``DimSize`` announces: the missing ones come back as arbitrary values; and on truncated
uncompressed data it fails with an unrelated system message ("No such file or directory")
after printing its own text on stderr. This check reads the text header (``Key = Value``
lines up to ``ElementDataFile``), inflates compressed data (``LOCAL``, after the header, or
the named data file beside a ``.mhd``) or takes the size of uncompressed data, and compares
sizes in bytes before ITK reads the file.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from medbench_fast.data.errors import VolumeError

#: Bytes per value of each MetaImage ``ElementType``.
ELEMENT_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                 "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                 "MET_DOUBLE": 8}
#: Most axes MetaIO supports.
MAX_DIMS = 10
_MAX_HEADER = 1 << 16
_BLOCK = 1 << 22


def is_metaimage(path: Path) -> bool:
    return path.name.lower().endswith((".mha", ".mhd"))


def _header(path: Path) -> tuple[dict[str, str], int]:
    """Header fields and the byte offset where the data starts (after ``ElementDataFile``)."""
    with open(path, "rb") as fh:
        head = fh.read(_MAX_HEADER)
    fields: dict[str, str] = {}
    offset = 0
    for line in head.splitlines(keepends=True):
        offset += len(line)
        key, sep, value = line.decode("latin-1").partition("=")
        if not sep:
            continue
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, offset
    return fields, -1


def check_metaimage(path: Path) -> None:
    """Raise :class:`VolumeError` when the dimensions are invalid or compressed data holds fewer
    bytes than announced. Headers this check does not understand are left to ITK, which
    reports its own errors."""
    fields, offset = _header(path)
    _check_dims(fields, path)
    if offset < 0:
        return
    compressed = fields.get("CompressedData", "F").startswith(("T", "t", "1"))  # MetaIO's rule
    try:
        sizes = [int(v) for v in fields["DimSize"].split()][: int(fields["NDims"])]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        item = ELEMENT_BYTES[fields["ElementType"]]
    except (KeyError, ValueError):
        return
    if not sizes or min(sizes) < 1 or channels < 1:
        return
    expected = int(np.prod(sizes, dtype=object)) * channels * item
    source = fields["ElementDataFile"]
    if source == "LOCAL":
        data_path, start = path, offset
    elif source.upper() == "LIST" or "%" in source:
        return  # one file per slice: ITK reads and checks them
    else:
        data_path, start = path.parent / source, 0
    if not data_path.is_file():
        raise VolumeError(f"{path}: the data file {source} named by ElementDataFile is missing")
    if not compressed:
        found = data_path.stat().st_size - start
        if found < expected:
            raise VolumeError(f"{path}: truncated: the MetaImage header announces {expected} bytes of voxel data, "
                              f"the file holds {max(found, 0)}")
        return
    found = _inflated_size(data_path, start, expected, path)
    if found < expected:
        raise VolumeError(f"{path}: truncated: the MetaImage header announces {expected} bytes of voxel data, "
                          f"the compressed data holds {found}")


def _check_dims(fields: dict[str, str], path: Path) -> None:
    """``NDims`` must be one integer from 1 to 10 (ITK crashes on a negative one) and ``DimSize``
    must give that many sizes >= 1."""
    if "NDims" not in fields:
        return  # ITK reports the missing field
    try:
        ndims = int(fields["NDims"])
        sizes = [int(v) for v in fields.get("DimSize", "").split()]
    except ValueError:
        raise VolumeError(f"{path}: cannot be read as MetaImage: NDims {fields['NDims']!r} or "
                          f"DimSize {fields.get('DimSize')!r} is not made of integers") from None
    if not 1 <= ndims <= MAX_DIMS:
        raise VolumeError(f"{path}: cannot be read as MetaImage: NDims is {ndims}, expected 1 to {MAX_DIMS}")
    if "DimSize" in fields and (len(sizes) < ndims or min(sizes[:ndims]) < 1):
        raise VolumeError(f"{path}: cannot be read as MetaImage: DimSize {fields['DimSize']!r} does not give "
                          f"{ndims} sizes >= 1")


def _inflated_size(data_path: Path, start: int, limit: int, name: Path) -> int:
    """Bytes inflated from ``data_path`` after ``start`` (zlib or gzip stream), up to ``limit``."""
    decomp = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header, as MetaIO accepts
    total = 0
    with open(data_path, "rb") as fh:
        fh.seek(start)
        for block in iter(lambda: fh.read(_BLOCK), b""):
            try:
                total += len(decomp.decompress(block, max(1, limit + 1 - total)))
                while decomp.unconsumed_tail and total <= limit:
                    total += len(decomp.decompress(decomp.unconsumed_tail, max(1, limit + 1 - total)))
            except zlib.error as exc:
                raise VolumeError(f"{name}: corrupt compressed voxel data: {exc}") from None
            if decomp.eof or total > limit:
                break
    return total
