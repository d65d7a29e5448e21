"""Messages on hostile input and a hostile environment: the right file is named, no internal
error text, no third-party noise on stderr, no "?" where a file name belongs, and a closed
standard output ends the command quietly."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from medbench_fast.cli.errors import EXIT_OUTPUT_CLOSED, describe_os_error
from medbench_fast.cli.main import cli

SHAPE, SPACING = (8, 32, 32), (2.5, 1.0, 1.0)


def _medbench(*args, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "medbench_fast", *args], env=env, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=300, check=False)


def _errors(out: Path) -> list[str]:
    return pq.read_table(out / "cases.parquet").column("error").to_pylist()


def test_a_seg_with_zero_frames_names_the_seg(tmp_path):
    import pydicom

    from dicom_synthetic import SeriesSpec, write_ct_series, write_seg
    from medbench_fast.data.reader import Volume, write_volume

    mask = np.zeros(SHAPE, bool)
    mask[2:5, 5:20, 5:20] = True
    write_ct_series(tmp_path / "ref" / "x", SeriesSpec(SHAPE, SPACING))
    seg = tmp_path / "ref" / "x.seg.dcm"
    write_seg(seg, tmp_path / "ref" / "x", {1: mask})
    ds = pydicom.dcmread(seg)
    ds.PerFrameFunctionalGroupsSequence, ds.NumberOfFrames, ds.PixelData = [], 0, b""
    ds.save_as(seg)
    (tmp_path / "pred").mkdir()
    write_volume(Volume(mask.astype(np.uint8), SPACING), tmp_path / "pred" / "x.nii.gz")
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                                      "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 3, result.output
    [error] = _errors(tmp_path / "out")
    assert error.startswith(f"{seg}: not a readable DICOM-SEG: it has no frames"), error
    assert "IndexError" not in error and "x.nii.gz" not in error


def test_a_truncated_uncompressed_metaimage_is_named_without_itk_noise(tmp_path):
    import SimpleITK as sitk

    mask = np.zeros(SHAPE, np.uint8)
    mask[2:5, 5:20, 5:20] = 1
    for side in ("pred", "ref"):
        (tmp_path / side).mkdir()
        sitk.WriteImage(sitk.GetImageFromArray(mask), str(tmp_path / side / "x.mha"), useCompression=False)
    bad = tmp_path / "pred" / "x.mha"
    bad.write_bytes(bad.read_bytes()[:-3000])
    proc = _medbench("evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                     "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 3, proc.stderr
    [error] = _errors(tmp_path / "out")
    assert error == (f"{bad}: truncated: the MetaImage header announces {mask.size} bytes of voxel data, "
                     f"the file holds {mask.size - 3000}")
    assert "MetaImage" not in proc.stderr and "No such file" not in proc.stderr, proc.stderr


def test_a_closed_standard_output_ends_the_command_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader went away: ``medbench config init | head -0``
    try:
        proc = _medbench("config", "init", stdout=write)
    finally:
        os.close(write)
    assert proc.returncode == EXIT_OUTPUT_CLOSED == 141
    assert proc.stderr == ""


@pytest.mark.parametrize("exc, text", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "no space left on the device; finished results"),
    (OSError(errno.EIO, os.strerror(errno.EIO), "/data/x.nii.gz"), "/data/x.nii.gz: Input/output error"),
    (OSError("Error writing bytes to file"), "Error writing bytes to file"),
])
def test_an_os_error_without_a_file_name_has_no_question_mark(exc, text):
    message = describe_os_error(exc)
    assert message.startswith(text) and "?" not in message and "None" not in message


def test_write_errors_name_the_file_they_were_writing(tmp_path, monkeypatch):
    from medbench_fast.files import write_text_atomic

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError) as info:
        write_text_atomic(tmp_path / "summary.json", "{}")
    assert info.value.filename == str(tmp_path / "summary.json")
    assert describe_os_error(info.value).startswith(f"{tmp_path / 'summary.json'}: no space left on the device")


def test_a_broken_pipe_that_is_not_standard_output_is_an_error(monkeypatch):
    """Only a closed standard output ends quietly; another broken pipe (a worker's, a server's)
    is reported."""
    import medbench_fast.config as config

    def broken():
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    monkeypatch.setattr(config, "example_config", broken)
    result = CliRunner().invoke(cli, ["config", "init"])
    assert result.exit_code == 1 and "Error: Broken pipe" in result.output, result.output
