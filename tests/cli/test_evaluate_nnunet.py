"""``medbench evaluate`` on nnU-Net's file naming, against nnU-Net's own ``compute_metrics_on_folder``.

References sit in ``Dataset001_BraTS/labelsTs`` beside a region-based ``dataset.json``;
predictions are an nnU-Net prediction folder (``<case>.nii.gz`` plus the JSON files and
probability maps nnU-Net writes there). Dice, IoU and the counts of every label and region
must equal nnU-Net's, case by case, and so must its means and foreground mean.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from datasets import case_arrays, write_image, write_nnunet

from medbench_fast.cli.main import cli

REGIONS_NNUNET = [1, 2, 3, (1, 2, 3), (1, 3)]  # labels 1-3; whole tumour and tumour core
OUR_ID = {1: 1, 2: 2, 3: 3, (1, 2, 3): -1, (1, 3): -2}


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0)


@pytest.fixture
def nnunet_folders(tmp_path):
    rng = np.random.default_rng(16)
    cases = {}
    for i in range(4):
        label, _ = case_arrays(rng, (8, 14, 16), empty=(i == 3))
        cases[f"BRATS_{i:03d}"] = (label, {"T1w": label.astype(np.float32)})
    root = write_nnunet(tmp_path / "Dataset001_BraTS", cases, ("T1w",), regions=True)
    preds = tmp_path / "predictions"
    for case_id, (label, _) in cases.items():
        pred = label.copy()
        flip = rng.random(label.shape) < 0.08
        pred[flip] = rng.integers(0, 4, int(flip.sum()))
        if case_id == "BRATS_002":
            pred[pred == 1] = 0  # necrosis missed entirely
        write_image(preds / f"{case_id}.nii.gz", pred)
    # What nnU-Net writes beside its predictions; none of it is a case.
    (preds / "dataset.json").write_text((root / "dataset.json").read_text())
    (preds / "plans.json").write_text("{}")
    (preds / "predict_from_raw_data_args.json").write_text("{}")
    np.savez_compressed(preds / "BRATS_000.npz", probabilities=np.zeros((4, 2, 2, 2), np.float16))
    return root, preds


@pytest.mark.slow
def test_dice_and_iou_equal_nnunet_evaluate_folder(tmp_path, nnunet_folders):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    root, preds = nnunet_folders
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"),
                                      "--out", str(out), "--empty", "nan", "--metrics", "counts", "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "4 cases, 0 failed" in result.output
    theirs = compute_metrics_on_folder(str(root / "labelsTs"), str(preds), None, SimpleITKIO(), ".nii.gz",
                                       REGIONS_NNUNET, num_processes=1)
    rows = {(r["case_id"], r["label"]): r for r in pq.read_table(out / "metrics.parquet").to_pylist()}
    assert {label for _, label in rows} == {1, 2, 3, -1, -2}
    assert rows[("BRATS_000", -1)]["label_name"] == "whole tumor"
    for case in theirs["metric_per_case"]:
        case_id = case["prediction_file"].rsplit("/", 1)[1][: -len(".nii.gz")]
        for key, values in case["metrics"].items():
            ours = rows[(case_id, OUR_ID[key])]
            for theirs_name, our_name in (("Dice", "dice"), ("IoU", "iou"), ("TP", "tp"), ("FP", "fp"),
                                          ("FN", "fn"), ("TN", "tn")):
                assert _same(ours[our_name], values[theirs_name]), (case_id, key, theirs_name)
    summary = json.loads((out / "summary.json").read_text())["nnunet"][preds.name]
    for key, values in theirs["mean"].items():
        assert _same(summary["mean"][str(OUR_ID[key])]["Dice"], values["Dice"]), key
        assert _same(summary["mean"][str(OUR_ID[key])]["IoU"], values["IoU"]), key
    assert _same(summary["foreground_mean"]["Dice"], theirs["foreground_mean"]["Dice"])


def test_dataset_json_in_the_prediction_folder_gives_labels_and_regions(tmp_path, nnunet_folders):
    root, preds = nnunet_folders
    (root / "dataset.json").unlink()  # only the prediction folder's copy is left
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"),
                                      "--out", str(out), "--metrics", "counts,hd95", "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "metrics.parquet")
    names = dict(zip(table.column("label").to_pylist(), table.column("label_name").to_pylist()))
    assert names == {1: None, 2: None, 3: "enhancing tumor", -1: "whole tumor", -2: "tumor core"}
    meta = pq.read_metadata(out / "metrics.parquet").metadata
    assert meta[b"regions"] == b"-1:whole tumor=1,2,3;-2:tumor core=1,3"


def test_regions_option_overrides_and_is_checked(tmp_path, nnunet_folders):
    root, preds = nnunet_folders
    args = ["evaluate", "--pred", str(preds), "--ref", str(root / "labelsTs"), "--out", str(tmp_path / "e"),
            "--metrics", "counts", "--quiet"]
    result = CliRunner().invoke(cli, args + ["--regions", "WT=1,2,3;NET=1,5"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "regions.NET: label(s) [5] are not among the dataset's labels [1, 2, 3]" in result.output
    result = CliRunner().invoke(cli, args + ["--regions", "CORE=1,3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    labels = set(pq.read_table(tmp_path / "e" / "metrics.parquet").column("label").to_pylist())
    assert labels == {1, 2, 3, -1}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"channel_names": {"0": "T1"}, "labels": {"tumour": [1, "x"]}, "file_ending": ".nii.gz"}))
    result = CliRunner().invoke(cli, args + ["--dataset-json", str(bad)], catch_exceptions=False)
    assert result.exit_code == 2 and f"{bad}: labels.tumour: expected a non-negative integer label value" in result.output
