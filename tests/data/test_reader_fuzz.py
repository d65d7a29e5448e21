"""Bounded fuzz of the readers: random header fields and truncations of small NIfTI, NRRD and
MetaImage files. Every input is read correctly or fails with a VolumeError naming the file;
never another exception, never values the file does not hold."""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medbench_fast.data.reader import VolumeError, load_volume

ORIGINAL = (np.arange(3 * 4 * 5).reshape(3, 4, 5) * 37 - 900).astype(np.int16)
SPACING = (2.0, 0.5, 0.75)
FORMATS = [(".nii", False), (".nii.gz", True), (".nrrd", False), (".nrrd", True), (".mha", False), (".mha", True)]
FUZZ = settings(max_examples=int(__import__("os").environ.get("FUZZ_N", 25)), deadline=None, derandomize=not __import__("os").environ.get("FUZZ_N"), suppress_health_check=list(HealthCheck))


def _encoded(ext: str, compress: bool) -> bytes:
    image = sitk.GetImageFromArray(ORIGINAL)
    image.SetSpacing(tuple(reversed(SPACING)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x{ext}"
        sitk.WriteImage(image, str(path), useCompression=compress)
        return path.read_bytes()


FILES = {(ext, c): _encoded(ext, c) for ext, c in FORMATS}


def _read(data: bytes, ext: str):
    """The Volume read from ``data``, or None after a VolumeError that names the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"case{ext}"
        path.write_bytes(data)
        try:
            volume = load_volume(path)
        except VolumeError as exc:
            assert str(path) in str(exc), exc
            return None
        return volume


@FUZZ
@given(fmt=st.sampled_from(FORMATS), fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_files_fail_or_read_every_voxel(fmt, fraction):
    data = FILES[fmt]
    volume = _read(data[: int(len(data) * fraction)], fmt[0])
    if volume is not None:  # e.g. a gzip trailer cut off after the last voxel
        np.testing.assert_array_equal(volume.array, ORIGINAL)
        assert volume.spacing == SPACING


# NIfTI-1 header fields: (offset, struct code) of the fields that locate, type, scale or place voxels.
NIFTI_FIELDS = {
    "sizeof_hdr": (0, "i"), "dim0": (40, "h"), "dim1": (42, "h"), "dim2": (44, "h"), "dim3": (46, "h"),
    "dim4": (48, "h"), "datatype": (70, "h"), "bitpix": (72, "h"), "pixdim1": (80, "f"), "pixdim3": (88, "f"),
    "vox_offset": (108, "f"), "scl_slope": (112, "f"), "scl_inter": (116, "f"), "qform_code": (252, "h"),
    "sform_code": (254, "h"), "quatern_b": (256, "f"), "srow_x0": (280, "f"), "magic": (344, "4s"),
}
NUMPY_OF_DATATYPE = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
                     1280: "u8"}
SMALL_INTS = st.one_of(st.integers(-4, 70), st.sampled_from([0, -1, 128, 256, 512, 768, 1024, 1280, 2304,
                                                              2**15 - 1, -(2**15)]))
ANY_FLOATS = st.floats(width=32, allow_nan=True, allow_infinity=True)


def _independent_nifti(header: bytes, body: bytes) -> np.ndarray | None:
    """The voxels the (NIfTI-1, little-endian) header announces, decoded with numpy; None where
    the header is outside this simple decoder's reach (then only the error contract is checked)."""
    dims = struct.unpack("<8h", header[40:56])
    datatype, bitpix = struct.unpack("<2h", header[70:74])
    vox_offset, slope, inter = struct.unpack("<3f", header[108:120])
    code = NUMPY_OF_DATATYPE.get(datatype)
    if code is None or dims[0] != 3 or min(dims[1:4]) < 1 or bitpix != 8 * np.dtype(code).itemsize:
        return None
    if not (np.isfinite(vox_offset) and vox_offset >= 352 and vox_offset == int(vox_offset)):
        return None
    if not (slope in (0.0, 1.0) and inter == 0.0):
        return None
    n = dims[1] * dims[2] * dims[3]
    raw = (header + body)[int(vox_offset):]
    if len(raw) < n * np.dtype(code).itemsize:
        return None
    return np.frombuffer(raw, "<" + code, count=n).reshape(dims[3], dims[2], dims[1])


@FUZZ
@given(compressed=st.booleans(), field=st.sampled_from(sorted(NIFTI_FIELDS)), data=st.data())
def test_nifti_header_fields(compressed, field, data):
    raw = bytearray(FILES[(".nii", False)])
    offset, code = NIFTI_FIELDS[field]
    if code == "h":
        value = data.draw(SMALL_INTS.filter(lambda v: -(2**15) <= v < 2**15))
    elif code == "i":
        value = data.draw(st.sampled_from([0, 348, 540, -1, 2**31 - 1, 0x5C010000]))
    elif code == "f":
        value = data.draw(ANY_FLOATS)
    else:
        value = data.draw(st.sampled_from([b"n+1\0", b"ni1\0", b"n+2\0", b"\0\0\0\0", b"xyz\0"]))
    raw[offset:offset + struct.calcsize(code)] = struct.pack("<" + code, value)
    encoded = gzip.compress(bytes(raw)) if compressed else bytes(raw)
    volume = _read(encoded, ".nii.gz" if compressed else ".nii")
    if volume is None:
        return
    assert np.all(np.isfinite(volume.array)) if volume.array.dtype.kind == "f" else True
    expected = _independent_nifti(bytes(raw[:352]), bytes(raw[352:]))
    if expected is not None:
        np.testing.assert_array_equal(volume.array, expected)
    if field in ("pixdim1", "pixdim3", "qform_code", "sform_code", "quatern_b", "srow_x0", "magic"):
        np.testing.assert_array_equal(volume.array, ORIGINAL)  # geometry fields never change voxel values


# Text-header fields: (NRRD key, MetaImage key) and the values tried for them.
TEXT_FIELDS = {
    "sizes": ("sizes", "DimSize"), "type": ("type", "ElementType"), "dimension": ("dimension", "NDims"),
    "encoding": ("encoding", "CompressedData"), "spacing": ("space directions", "ElementSpacing"),
    "origin": ("space origin", "Offset"), "endian": ("endian", "BinaryDataByteOrderMSB"),
    "data": ("data file", "ElementDataFile"),
}
TEXT_VALUES = ["5 4 3", "5 4 2", "5 4 4", "5 4 30", "0 4 3", "-5 4 3", "5 4", "5 4 3 2", "2", "3", "4", "-1",
               "short", "uchar", "float", "double", "int", "MET_SHORT", "MET_UCHAR", "MET_FLOAT", "MET_DOUBLE",
               "MET_INT", "raw", "gzip", "bzip2", "True", "False", "big", "little", "LOCAL", "missing.raw",
               "(1,0,0) (0,1,0) (0,0,1)", "(0,0,0) (0,0,0) (0,0,0)", "(nan,0,0) (0,1,0) (0,0,1)", "1 1 1", "0 0 0",
               "nan nan nan", "(0,0,0)", "(1e308,0,0)", "", "garbage"]
NUMPY_OF_TYPE = {"short": "i2", "uchar": "u1", "float": "f4", "double": "f8", "int": "i4", "MET_SHORT": "i2",
                 "MET_UCHAR": "u1", "MET_FLOAT": "f4", "MET_DOUBLE": "f8", "MET_INT": "i4"}


def _header_end(data: bytes, ext: str) -> int:
    """Offset of the first data byte (after NRRD's blank line, or MetaImage's ElementDataFile line)."""
    if ext == ".nrrd":
        return data.index(b"\n\n") + 2
    return data.index(b"\n", data.index(b"ElementDataFile")) + 1


def _replace_field(data: bytes, ext: str, key: str, value: str) -> bytes | None:
    sep = ": " if ext == ".nrrd" else " = "
    end = _header_end(data, ext) - (1 if ext == ".nrrd" else 0)
    lines = data[:end].split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(key.encode() + sep.encode()):
            lines[i] = f"{key}{sep}{value}".encode()
            return b"\n".join(lines) + data[end:]
    return None


@FUZZ
@given(fmt=st.sampled_from([f for f in FORMATS if f[0] != ".nii" and f[0] != ".nii.gz"]),
       field=st.sampled_from(sorted(TEXT_FIELDS)), value=st.sampled_from(TEXT_VALUES))
def test_text_header_fields(fmt, field, value):
    ext, _ = fmt
    key = TEXT_FIELDS[field][0 if ext == ".nrrd" else 1]
    mutated = _replace_field(FILES[fmt], ext, key, value)
    if mutated is None:
        return
    volume = _read(mutated, ext)
    if volume is None:
        return
    got = volume.array
    if got.dtype.kind == "f":
        assert np.all(np.isfinite(got))
    if field in ("sizes", "dimension"):
        # fewer voxels than written: the first ones; never more than the file holds
        assert got.size <= ORIGINAL.size
        np.testing.assert_array_equal(got.ravel(), ORIGINAL.ravel()[:got.size])
    elif field == "type" and value in NUMPY_OF_TYPE:
        as_type = np.frombuffer(ORIGINAL.tobytes(), "<" + NUMPY_OF_TYPE[value])
        np.testing.assert_array_equal(got.ravel(), as_type[:got.size])
        assert got.size == ORIGINAL.size and as_type.size >= got.size
    elif field == "encoding" and not np.array_equal(got, ORIGINAL):
        # compressed bytes declared raw: the values are those bytes, as the header says
        start = _header_end(mutated, ext)
        body = mutated[start:start + got.nbytes] if fmt[1] else b""
        assert np.array_equal(got.ravel(), np.frombuffer(body, got.dtype.newbyteorder("<")))
    elif field in ("spacing", "origin", "data"):
        np.testing.assert_array_equal(got, ORIGINAL)


@FUZZ
@given(fmt=st.sampled_from(FORMATS), data=st.data())
def test_random_header_bytes(fmt, data):
    ext = fmt[0]
    raw = bytearray(FILES[(".nii", False)] if ext.startswith(".nii") else FILES[fmt])
    end = 352 if ext.startswith(".nii") else _header_end(bytes(raw), ext)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, end - 1))] = data.draw(st.integers(0, 255))
    encoded = gzip.compress(bytes(raw)) if ext == ".nii.gz" else bytes(raw)
    volume = _read(encoded, ext)
    if volume is None:
        return
    if volume.array.dtype.kind == "f":
        assert np.all(np.isfinite(volume.array))
    if ext.startswith(".nii"):
        expected = _independent_nifti(bytes(raw[:352]), bytes(raw[352:]))
        if expected is not None:
            np.testing.assert_array_equal(volume.array, expected)
