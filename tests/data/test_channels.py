"""Reading multi-channel images: 4D files, vector images, one file per channel."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from datasets import write_4d, write_image

from medbench_fast.data.cache import VolumeCache
from medbench_fast.data.channels import load_channel_files, load_channels_file
from medbench_fast.data.reader import VolumeError, load_volume

SPACING = (2.0, 1.0, 1.25)


@pytest.mark.parametrize("cached", [False, True])
def test_4d_file_is_channels_first_with_3d_geometry(tmp_path, cached):
    stack = np.random.default_rng(0).random((3, 4, 5, 6)).astype(np.float32)
    write_4d(tmp_path / "x.nii.gz", stack, spacing=SPACING)
    cache = VolumeCache(tmp_path / "cache", min_bytes=0, max_decode_rate=None) if cached else None
    for _ in range(2):  # miss, then hit
        volume = load_volume(tmp_path / "x.nii.gz", cache=cache, channels=True)
        np.testing.assert_array_equal(volume.array, stack)
        assert volume.shape == (4, 5, 6) and volume.channels == 3
        assert np.allclose(volume.spacing, SPACING)
    with pytest.raises(VolumeError, match="is 4D with 3 time points"):
        load_volume(tmp_path / "x.nii.gz")  # a single-channel consumer still refuses it


def test_one_channel_4d_and_vector_images(tmp_path):
    write_4d(tmp_path / "one.nii.gz", np.ones((1, 4, 5, 6), np.float32))
    assert load_volume(tmp_path / "one.nii.gz", channels=True).array.shape == (4, 5, 6)
    rgb = np.arange(4 * 5 * 6 * 3, dtype=np.uint8).reshape(4, 5, 6, 3)
    image = sitk.GetImageFromArray(rgb, isVector=True)
    image.SetSpacing((1.25, 1.0, 2.0))
    sitk.WriteImage(image, str(tmp_path / "rgb.mha"))
    volume = load_volume(tmp_path / "rgb.mha", channels=True)
    np.testing.assert_array_equal(volume.array, np.moveaxis(rgb, -1, 0))
    assert volume.spacing == SPACING


def test_channel_files_stack_on_one_grid_and_name_the_file_off_it(tmp_path):
    a, b = np.zeros((4, 5, 6), np.int16), np.ones((4, 5, 6), np.int16)
    write_image(tmp_path / "c_0000.nii.gz", a)
    write_image(tmp_path / "c_0001.nii.gz", b)
    volume = load_channel_files([str(tmp_path / "c_0000.nii.gz"), str(tmp_path / "c_0001.nii.gz")], ("T1", "T2"))
    assert volume.array.shape == (2, 4, 5, 6) and volume.meta["channel_names"] == ("T1", "T2")
    write_image(tmp_path / "c_0001.nii.gz", np.ones((4, 5, 7), np.int16))
    with pytest.raises(VolumeError, match=r"c_0001.nii.gz: shape \(4, 5, 7\) differs from first channel"):
        load_channel_files([str(tmp_path / "c_0000.nii.gz"), str(tmp_path / "c_0001.nii.gz")])
    with pytest.raises(VolumeError, match=r"c_0000.nii.gz: holds 1 channel\(s\); the dataset's modality lists 2"):
        load_channels_file(str(tmp_path / "c_0000.nii.gz"), ("T1", "T2"))
