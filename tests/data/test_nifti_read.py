"""The NIfTI reader against SimpleITK: voxels, dtype and geometry equal for every variant it
reads itself, and everything else left to SimpleITK (``read_nifti`` returns None)."""

from __future__ import annotations

import gzip
import itertools
import os
import struct
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medbench_fast.data import nifti_read
from medbench_fast.data.nifti_read import read_nifti

DTYPES = ["u1", "i1", "i2", "u2", "i4", "u4", "i8", "u8", "f4", "f8"]


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _affine(rng, ndim: int = 3) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = _rotation(rng) * rng.uniform(0.3, 3.0, 3)
    affine[:3, 3] = rng.uniform(-100, 100, 3)
    return affine


def _same_as_sitk(path, *, fast: bool = True) -> None:
    image = sitk.ReadImage(str(path))
    expected = sitk.GetArrayFromImage(image)
    got = read_nifti(path)
    if not fast:
        assert got is None
        return
    assert got is not None, f"{path} was left to SimpleITK"
    assert got.array.dtype == expected.dtype and got.array.shape == expected.shape
    np.testing.assert_array_equal(got.array, expected)
    assert got.spacing == image.GetSpacing()
    assert got.origin == image.GetOrigin()
    assert got.direction == image.GetDirection()


def _save(image, path, *, qform: int, sform: int, affine) -> None:
    image.set_qform(affine, code=qform)
    image.set_sform(affine, code=sform)
    nib.save(image, path)


@pytest.mark.parametrize("codes", [(0, 0), (1, 0), (2, 0), (0, 1), (0, 2), (0, 4), (1, 1), (2, 1)])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_qform_sform_variants_match_sitk(tmp_path, codes, suffix):
    rng = np.random.default_rng(sum(codes) * 7 + len(suffix))
    for i in range(4):
        affine = _affine(rng)
        if i == 0:  # axis-aligned with flips
            affine[:3, :3] = np.diag(rng.choice([-1.0, 1.0], 3) * rng.uniform(0.5, 2.0, 3))
        data = rng.integers(0, 5, (5, 6, 7)).astype(np.uint8)
        path = tmp_path / f"case{i}{suffix}"
        _save(nib.Nifti1Image(data, affine), path, qform=codes[0], sform=codes[1], affine=affine)
        _same_as_sitk(path)


def test_sitk_written_files_match(tmp_path, rng):
    """SimpleITK writes qform and sform codes 1 (scanner): the sform's precision is kept."""
    for i in range(5):
        array = rng.integers(0, 5, (6, 7, 8)).astype(np.uint8)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(tuple(rng.uniform(0.3, 3, 3)))
        image.SetOrigin(tuple(rng.uniform(-100, 100, 3)))
        image.SetDirection(tuple(_rotation(rng).ravel()))
        path = tmp_path / f"s{i}.nii.gz"
        sitk.WriteImage(image, str(path), useCompression=True)
        _same_as_sitk(path)


def test_different_qform_and_sform(tmp_path, rng):
    """Both known, sform not scanner-anatomical and far from the qform: ITK takes the qform;
    a skewed sform: the qform too."""
    data = rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)
    q_affine, s_affine = _affine(rng), _affine(rng)
    image = nib.Nifti1Image(data, q_affine)
    image.set_qform(q_affine, code=1)
    image.set_sform(s_affine, code=2)
    nib.save(image, tmp_path / "far.nii")
    _same_as_sitk(tmp_path / "far.nii")
    skew = q_affine.copy()
    skew[0, 1] += 0.5
    image.set_sform(skew, code=1)
    nib.save(image, tmp_path / "skew.nii")
    _same_as_sitk(tmp_path / "skew.nii")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("endian", ["<", ">"])
def test_every_datatype_and_endianness(tmp_path, dtype, endian):
    rng = np.random.default_rng(len(dtype) + ord(endian))
    kind = np.dtype(dtype)
    if kind.kind == "f":
        data = rng.normal(0, 100, (4, 5, 6)).astype(kind)
    else:
        info = np.iinfo(kind)
        data = rng.integers(info.min, info.max, (4, 5, 6), dtype=kind, endpoint=True)
    header = nib.Nifti1Header(endianness=endian)
    header.set_data_dtype(kind)
    nib.Nifti1Image(data, _affine(rng), header).to_filename(tmp_path / "v.nii.gz")
    assert nib.load(tmp_path / "v.nii.gz").header.endianness == endian
    _same_as_sitk(tmp_path / "v.nii.gz")


@pytest.mark.parametrize("shape", [(7, 9), (5, 6, 7), (5, 6, 7, 1), (5, 6, 7, 3)])
def test_2d_3d_4d(tmp_path, shape, rng):
    data = rng.integers(0, 4, shape).astype(np.int16)
    affine = _affine(rng)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 2.5
    _save(image, tmp_path / "v.nii.gz", qform=1, sform=1, affine=affine)
    _same_as_sitk(tmp_path / "v.nii.gz")


@pytest.mark.parametrize("slope_inter", [(1.0, 0.0), (0.0, 5.0), (0.5, 3.0), (0.1, 0.3), (2.0, -1024.0)])
@pytest.mark.parametrize("dtype", ["u1", "i2", "u2", "i4", "f4", "f8"])
def test_scl_slope_and_inter(tmp_path, slope_inter, dtype, rng):
    data = rng.integers(0, 100, (4, 5, 6)).astype(dtype)
    image = nib.Nifti1Image(data, _affine(rng), dtype=dtype)
    path = tmp_path / "v.nii"
    image.to_filename(path)
    raw = bytearray(path.read_bytes())  # nibabel's writer would rescale the data: set the fields by hand
    raw[112:120] = np.array(slope_inter, "<f4").tobytes()
    path.write_bytes(bytes(raw))
    _same_as_sitk(path)


def test_multi_member_gzip_and_padding(tmp_path, rng):
    data = rng.integers(0, 5, (6, 7, 8)).astype(np.uint8)
    affine = _affine(rng)
    _save(nib.Nifti1Image(data, affine), tmp_path / "v.nii", qform=1, sform=1, affine=affine)
    raw = (tmp_path / "v.nii").read_bytes()
    cuts = (0, 200, len(raw) // 2, len(raw))
    members = b"".join(gzip.compress(raw[a:b]) for a, b in itertools.pairwise(cuts))
    for name, content in (("multi", members), ("padded", gzip.compress(raw) + b"\0" * 64),
                          ("trailing", gzip.compress(raw) + b"not gzip")):
        path = tmp_path / f"{name}.nii.gz"
        path.write_bytes(content)
        _same_as_sitk(path)


def test_left_to_sitk(tmp_path, rng):
    """Kinds read by SimpleITK: both codes known and close but not equal, units in metres,
    RGB voxels, 5 dimensions."""
    data = rng.integers(0, 5, (5, 6, 7)).astype(np.uint8)
    affine = _affine(rng)
    _save(nib.Nifti1Image(data, affine), tmp_path / "close.nii", qform=1, sform=2, affine=affine)
    _same_as_sitk(tmp_path / "close.nii", fast=False)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("meter")
    image.to_filename(tmp_path / "metre.nii")
    _same_as_sitk(tmp_path / "metre.nii", fast=False)
    rgb = np.zeros((5, 6, 7), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.Nifti1Image(rgb, affine).to_filename(tmp_path / "rgb.nii")
    _same_as_sitk(tmp_path / "rgb.nii", fast=False)


def test_nifti2_equals_nifti1(tmp_path, rng):
    """SimpleITK does not read NIfTI-2; the reader gives it the geometry of the same header as NIfTI-1
    (equal up to NIfTI-1's single precision)."""
    for codes in ((0, 0), (1, 0), (0, 2), (1, 1)):
        data = rng.integers(0, 5, (5, 6, 7)).astype(np.int16)
        affine = _affine(rng)
        _save(nib.Nifti1Image(data, affine), tmp_path / "one.nii.gz", qform=codes[0], sform=codes[1], affine=affine)
        _save(nib.Nifti2Image(data, affine), tmp_path / "two.nii.gz", qform=codes[0], sform=codes[1], affine=affine)
        one, two = read_nifti(tmp_path / "one.nii.gz"), read_nifti(tmp_path / "two.nii.gz")
        assert one is not None and two is not None
        np.testing.assert_array_equal(one.array, two.array)
        for a, b in ((one.spacing, two.spacing), (one.origin, two.origin), (one.direction, two.direction)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)


def test_inflater_is_the_fastest_installed():
    assert nifti_read.INFLATER == "libdeflate"


@pytest.mark.parametrize("missing", [("deflate",), ("deflate", "isal")])
def test_fallback_inflaters(tmp_path, monkeypatch, rng, missing):
    """Without libdeflate, ISA-L; without both, zlib: the same voxels, and the same refusals."""
    for name in missing:
        monkeypatch.setitem(sys.modules, name, None)
    name, inflate, errors = nifti_read._pick_inflater()
    assert name == ("isal" if missing == ("deflate",) else "zlib")
    monkeypatch.setattr(nifti_read, "_inflate", inflate)
    monkeypatch.setattr(nifti_read, "_INFLATE_ERRORS", errors)
    test_multi_member_gzip_and_padding(tmp_path, rng)
    sitk.WriteImage(sitk.GetImageFromArray(rng.integers(0, 5, (6, 7, 8)).astype(np.uint8)), str(tmp_path / "s.nii.gz"))
    _same_as_sitk(tmp_path / "s.nii.gz")
    data = (tmp_path / "s.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    assert read_nifti(tmp_path / "cut.nii.gz") is None


# Fuzz: random header fields and damaged gzip streams. The reader never raises; what it reads
# is what SimpleITK reads from the same bytes.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_N", 40)), deadline=None, derandomize=not os.environ.get("FUZZ_N"),
                suppress_health_check=list(HealthCheck))
_FIELDS = {"dim0": (40, "h"), "dim1": (42, "h"), "dim4": (48, "h"), "datatype": (70, "h"), "bitpix": (72, "h"),
           "pixdim0": (76, "f"), "pixdim2": (84, "f"), "vox_offset": (108, "f"), "scl_slope": (112, "f"),
           "scl_inter": (116, "f"), "xyzt_units": (123, "B"), "intent": (68, "h"), "qform_code": (252, "h"),
           "sform_code": (254, "h"), "quatern_c": (260, "f"), "qoffset_y": (272, "f"), "srow_y1": (300, "f"),
           "srow_z3": (324, "f")}


def _seed_file() -> bytes:
    rng = np.random.default_rng(5)
    affine = _affine(rng)
    image = nib.Nifti1Image(rng.integers(0, 9, (3, 4, 5)).astype(np.int16), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image.to_bytes()


SEED = _seed_file()


def _differential(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"case{suffix}"
        path.write_bytes(data)
        got = read_nifti(path)  # never raises
        if got is None:
            return
        image = sitk.ReadImage(str(path))
        expected = sitk.GetArrayFromImage(image)
        assert got.array.dtype == expected.dtype
        np.testing.assert_array_equal(got.array, expected)
        assert (got.spacing, got.origin, got.direction) == (image.GetSpacing(), image.GetOrigin(), image.GetDirection())


@FUZZ
@given(field=st.sampled_from(sorted(_FIELDS)), data=st.data(), compressed=st.booleans())
def test_fuzz_header_fields(field, data, compressed):
    raw = bytearray(SEED)
    offset, code = _FIELDS[field]
    if code == "f":
        value = data.draw(st.one_of(st.floats(width=32), st.sampled_from([0.0, 1.0, -1.0, 1e-8, 1e30])))
    elif code == "B":
        value = data.draw(st.integers(0, 255))
    else:
        value = data.draw(st.one_of(st.integers(-3, 8), st.sampled_from([16, 64, 128, 512, 1002, 1007, 2304, -32768])))
    raw[offset:offset + struct.calcsize(code)] = struct.pack("<" + code, value)
    _differential(gzip.compress(bytes(raw)) if compressed else bytes(raw), ".nii.gz" if compressed else ".nii")


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["flip", "cut", "members", "append"]))
def test_fuzz_gzip_streams(data, kind):
    stream = bytearray(gzip.compress(SEED))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            stream[data.draw(st.integers(0, len(stream) - 1))] ^= data.draw(st.integers(1, 255))
    elif kind == "cut":
        stream = stream[: data.draw(st.integers(0, len(stream) - 1))]
    elif kind == "members":
        cut = data.draw(st.integers(0, len(SEED)))
        stream = bytearray(gzip.compress(SEED[:cut]) + gzip.compress(SEED[cut:]))
    else:
        stream += data.draw(st.binary(max_size=40))
    _differential(bytes(stream), ".nii.gz")


def test_files_sharing_a_header_keep_their_own_voxels_and_lengths(tmp_path, rng):
    """A header's layout and geometry are worked out once per distinct header: files with the
    same header still get their own voxels, a cut-short one is still refused, and a header
    that differs in one field gets its own geometry."""
    affine = _affine(rng)
    arrays = [rng.integers(0, 9, (5, 6, 7)).astype(np.int16) for _ in range(3)]
    for i, data in enumerate(arrays):
        _save(nib.Nifti1Image(data, affine), tmp_path / f"{i}.nii", qform=1, sform=1, affine=affine)
    headers = {(tmp_path / f"{i}.nii").read_bytes()[:348] for i in range(3)}
    assert len(headers) == 1
    nifti_read._layout.cache_clear()
    for i, data in enumerate(arrays):
        _same_as_sitk(tmp_path / f"{i}.nii")
    assert nifti_read._layout.cache_info().misses == 1
    raw = (tmp_path / "0.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(raw[:-1])
    assert read_nifti(tmp_path / "cut.nii") is None
    moved = affine.copy()
    moved[:3, 3] += 1.5
    _save(nib.Nifti1Image(arrays[0], moved), tmp_path / "moved.nii", qform=1, sform=1, affine=moved)
    _same_as_sitk(tmp_path / "moved.nii")
    assert read_nifti(tmp_path / "moved.nii").origin != read_nifti(tmp_path / "0.nii").origin
