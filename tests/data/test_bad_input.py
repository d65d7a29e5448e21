"""Bad input is never scored: each kind becomes a failed row naming the file and the problem,
through ``medbench evaluate`` end to end; valid but unusual files are read."""

from __future__ import annotations

import csv
import gzip
import itertools

import numpy as np
import pyarrow.parquet as pq
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.data.reader import Volume, write_volume

SPACING = (2.0, 0.8, 0.8)
SHAPE = (4, 10, 12)


def _labels(rng) -> np.ndarray:
    ref = np.zeros(SHAPE, np.uint8)
    ref[1:3, 2:8, 3:9] = 1
    ref[rng.random(SHAPE) < 0.05] = 2
    return ref


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_volume(Volume(array, SPACING), path)


def _multi_member_gzip(nii_bytes: bytes, path) -> None:
    """A valid .nii.gz of three gzip members (as ``cat a.gz b.gz c.gz`` makes; ``gzip -t`` passes)."""
    cuts = (0, 200, len(nii_bytes) // 2, len(nii_bytes))
    path.write_bytes(b"".join(gzip.compress(nii_bytes[a:b]) for a, b in itertools.pairwise(cuts)))
    assert gzip.decompress(path.read_bytes()) == nii_bytes


def test_bad_inputs_fail_and_unusual_valid_files_are_scored(tmp_path, rng):
    refs, preds = tmp_path / "labels", tmp_path / "model"
    good = {}
    problems = {}
    for case in ("plain", "multi", "=HYPERLINK(1)", "+sum", "-1", "@cmd", "truncated", "nan", "inf_nrrd",
                 "uint64", "huge_float"):
        ext = ".nrrd" if case == "inf_nrrd" else ".nii.gz"
        ref = _labels(rng)
        _write(refs / f"{case}{ext}", ref)
        good[case] = ref
    for case in ("plain", "=HYPERLINK(1)", "+sum", "-1", "@cmd"):
        _write(preds / f"{case}.nii.gz", good[case])
    # a valid multi-member .nii.gz
    _write(tmp_path / "raw" / "multi.nii", good["multi"])
    _multi_member_gzip((tmp_path / "raw" / "multi.nii").read_bytes(), preds / "multi.nii.gz")
    # an uncompressed .nii cut short: ITK reads the missing half as zeros
    _write(tmp_path / "raw" / "truncated.nii", good["truncated"])
    raw = (tmp_path / "raw" / "truncated.nii").read_bytes()
    (refs / "truncated.nii.gz").rename(refs / "truncated.nii")
    _write(refs / "truncated.nii", good["truncated"])
    (preds / "truncated.nii").write_bytes(raw[: len(raw) - 200])
    problems["truncated"] = f"announces {len(raw)} bytes"
    nan = good["nan"].astype(np.float32)
    nan[0, 0, 0] = np.nan
    _write(preds / "nan.nii.gz", nan)  # SimpleITK reads NaN in NIfTI as 0
    problems["nan"] = "1 voxel value(s) are NaN or infinite"
    inf = good["inf_nrrd"].astype(np.float64)
    inf[1, 1, 1:3] = np.inf
    _write(preds / "inf_nrrd.nrrd", inf)
    problems["inf_nrrd"] = "2 voxel value(s) are NaN or infinite"
    big = good["uint64"].astype(np.uint64)
    big[0, 0, 0] = np.iinfo(np.uint64).max
    _write(preds / "uint64.nii.gz", big)
    problems["uint64"] = "label 18446744073709551615 is out of range"
    huge = good["huge_float"].astype(np.float32)
    huge[0, 0, 0] = 1e20
    _write(preds / "huge_float.nii.gz", huge)
    problems["huge_float"] = "label 1e+20 is out of range"

    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(preds), "--ref", str(refs), "--out", str(out),
                                      "--quiet", "--metrics", "counts"], catch_exceptions=False)
    assert result.exit_code == 3, result.output  # finished, with failed cases
    cases = {c["case_id"]: c for c in pq.read_table(out / "cases.parquet").to_pylist()}
    for case_id, fragment in problems.items():
        assert not cases[case_id]["success"], case_id
        assert fragment in cases[case_id]["error"] and case_id in cases[case_id]["error"], cases[case_id]["error"]
    scored = {case for case, c in cases.items() if c["success"]}
    assert scored == set(good) - set(problems)
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert all(r["dice"] == 1.0 for r in metrics)  # every scored prediction equals its reference

    # formula-looking case ids are kept in Parquet and neutralised in both CSV files
    risky = {"=HYPERLINK(1)", "+sum", "-1", "@cmd"}
    assert risky <= {r["case_id"] for r in metrics}
    for name in ("results.csv", "cases.csv"):
        with open(out / name, newline="", encoding="utf-8") as fh:
            ids = {row["case_id"] for row in csv.DictReader(fh)}
        assert {"'" + c for c in risky} <= ids and not ids & risky, name
