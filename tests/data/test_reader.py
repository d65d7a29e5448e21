"""Reading every supported format into (Z, Y, X) with millimetre geometry, and bad files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk
from volume_writers import write_dicom_series

from medbench_fast.data.reader import (
    Volume,
    VolumeError,
    case_id_from_path,
    load_volume,
    write_volume,
)


@pytest.fixture
def volume(rng):
    array = rng.integers(-1000, 1000, (5, 6, 7)).astype(np.int16)
    return Volume(array, spacing=(2.5, 0.75, 0.5), origin=(-10.0, 20.0, 30.5))


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_round_trip_each_format(tmp_path, volume, ext):
    path = tmp_path / f"case_007{ext}"
    write_volume(volume, path)
    got = load_volume(path)
    np.testing.assert_array_equal(got.array, volume.array)
    assert got.shape == (5, 6, 7)
    np.testing.assert_allclose(got.spacing, volume.spacing, rtol=1e-6)
    np.testing.assert_allclose(got.origin, volume.origin, rtol=1e-6)
    assert case_id_from_path(path) == "case_007"


def test_dicom_series_folder(tmp_path, volume):
    folder = write_dicom_series(volume, tmp_path / "patient_12")
    got = load_volume(folder)
    np.testing.assert_array_equal(got.array, volume.array)
    np.testing.assert_allclose(got.spacing, volume.spacing, rtol=1e-5)
    np.testing.assert_allclose(got.origin, volume.origin, atol=1e-4)
    assert case_id_from_path(folder) == "patient_12"


def test_4d_with_trailing_singleton_is_squeezed(tmp_path):
    image = sitk.GetImageFromArray(np.arange(2 * 3 * 4).reshape(1, 2, 3, 4).astype(np.uint8), isVector=False)
    sitk.WriteImage(image, str(tmp_path / "a.nii.gz"))
    assert load_volume(tmp_path / "a.nii.gz").shape == (2, 3, 4)


@pytest.mark.parametrize("content, message", [
    (b"", "file is empty"),
    (b"this is not an image at all", "cannot be read"),
])
def test_unreadable_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(content)
    with pytest.raises(VolumeError, match=message) as info:
        load_volume(path)
    assert str(path) in str(info.value)


def test_truncated_file(tmp_path, volume):
    path = tmp_path / "trunc.nii.gz"
    write_volume(volume, path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(VolumeError, match="trunc.nii.gz"):
        load_volume(path)


def test_2d_image_is_refused(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.uint8)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(VolumeError, match="2D; expected a 3D volume"):
        load_volume(tmp_path / "flat.nii.gz")


def test_missing_file(tmp_path):
    with pytest.raises(VolumeError, match="file not found"):
        load_volume(tmp_path / "nope.nii.gz")


def test_truncated_uncompressed_nii_states_expected_and_found(tmp_path, volume):
    path = tmp_path / "short.nii"
    write_volume(volume, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])  # ITK would read the last voxels as 0
    with pytest.raises(VolumeError, match=f"announces {len(data)} bytes .* holds {len(data) - 10}") as info:
        load_volume(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_refused_in_every_format(tmp_path, ext, bad):
    array = np.zeros((3, 4, 5), np.float32)
    array[1, 2, 3] = bad  # SimpleITK reads NaN and inf in NIfTI as 0
    path = tmp_path / f"float{ext}"
    write_volume(Volume(array, spacing=(1.0, 1.0, 1.0)), path)
    with pytest.raises(VolumeError, match="1 voxel value\\(s\\) are NaN or infinite") as info:
        load_volume(path)
    assert str(path) in str(info.value)


def test_finite_float_nifti_with_zeros_is_read(tmp_path):
    array = np.zeros((3, 4, 5), np.float64)
    array[0, 0, :] = [0.5, -1.25, 3.0, 1e30, -1e-30]
    write_volume(Volume(array, spacing=(1.0, 1.0, 1.0)), tmp_path / "f.nii.gz")
    np.testing.assert_array_equal(load_volume(tmp_path / "f.nii.gz").array, array)


def test_multi_member_gzip_nifti_is_read(tmp_path, volume):
    write_volume(volume, tmp_path / "plain.nii")
    raw = (tmp_path / "plain.nii").read_bytes()
    path = tmp_path / "multi.nii.gz"
    path.write_bytes(gzip.compress(raw[:100]) + gzip.compress(raw[100:400]) + gzip.compress(raw[400:]))
    assert gzip.decompress(path.read_bytes()) == raw  # what gzip -t checks
    np.testing.assert_array_equal(load_volume(path).array, volume.array)
    path.write_bytes(path.read_bytes()[:-30])  # the last member cut short
    with pytest.raises(VolumeError, match="truncated"):
        load_volume(path)


def test_compressed_metaimage_announcing_more_voxels_is_refused(tmp_path, volume):
    path = tmp_path / "more.mha"
    sitk.WriteImage(sitk.GetImageFromArray(volume.array), str(path), useCompression=True)
    data = path.read_bytes().replace(b"DimSize = 7 6 5", b"DimSize = 7 6 6")
    path.write_bytes(data)  # ITK would make up the sixth slice
    with pytest.raises(VolumeError, match="announces 504 bytes of voxel data, the compressed data holds 420"):
        load_volume(path)


@pytest.mark.parametrize("ndims", ["-1", "-5 4 3", "0", "eleven"])
def test_metaimage_with_invalid_ndims_is_an_error_not_a_crash(tmp_path, volume, ndims):
    path = tmp_path / "dims.mha"
    sitk.WriteImage(sitk.GetImageFromArray(volume.array), str(path))
    path.write_bytes(path.read_bytes().replace(b"NDims = 3", f"NDims = {ndims}".encode()))
    with pytest.raises(VolumeError, match="cannot be read as MetaImage") as info:
        load_volume(path)
    assert str(path) in str(info.value)


def test_gzip_members_are_read_whole_with_tiny_blocks(tmp_path, monkeypatch):
    from medbench_fast.data import nifti

    monkeypatch.setattr(nifti, "_BLOCK", 7)  # member boundaries and output draining inside blocks
    raw = bytes(np.random.default_rng(0).integers(0, 3, 5000, dtype=np.uint8)) + bytes(20000)
    path = tmp_path / "g.gz"
    for parts in ([raw], [raw[:10], raw[10:3000], raw[3000:]]):
        whole = b"".join(gzip.compress(p) for p in parts)
        path.write_bytes(whole + b"\0\0\0")  # zero padding after the last member is allowed
        assert b"".join(nifti._gzip_blocks(path)) == raw
        path.write_bytes(whole[:-5])
        with pytest.raises(VolumeError, match="truncated"):
            b"".join(nifti._gzip_blocks(path))
