"""nnU-Net v2 trained-model folders (``kind: nnunet``) against nnU-Net's own predictor.

The folders are built by nnunetv2 itself (:mod:`nnunet_synthetic` (in tests/):
fingerprint and plans from nnunetv2's planner on generated datasets, networks built from
the plans, checkpoints in ``nnUNetTrainer``'s format). ``medbench run`` predicts the held-out
cases with ``output.save_predictions``; ``nnUNetPredictor.predict_from_files_sequential``
(the steps ``nnUNetv2_predict`` runs, in this process) predicts the same images from the same
folder. Per case, the label maps must agree on at least 99.99 % of the voxels and reach a
Dice of at least 0.999 on every label (or region) of at least 2,000 voxels: 3d_fullres and
2d, one fold and two, mirroring on and off, a 2-channel region-based dataset trained on
``fold_all``.
"""

from __future__ import annotations

import json
import shutil
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.data.reader import load_volume
from medbench_fast.models.spec import ModelError

pytestmark = pytest.mark.slow

#: Model entries of dataset 501 (1 channel, labels 1 and 2): name -> (configuration, folds, mirroring).
PLAIN = {"fullres_f0": ("3d_fullres", [0], True), "fullres_f01_nomirror": ("3d_fullres", [0, 1], False),
         "2d_f0_nomirror": ("2d", [0], False), "2d_f01": ("2d", [0, 1], True)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from nnunet_synthetic import build_trained_folders

    root = tmp_path_factory.mktemp("nnunet")
    folders = build_trained_folders(root, {
        501: {"configurations": ("3d_fullres", "2d"), "folds": (0, 1)},
        502: {"channels": ("T1", "T2"), "regions": True, "folds": ("all",), "seed": 1}})
    return root, folders


def _nnunet_predict(folder, folds, mirroring, images, out):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                    perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                    verbose_preprocessing=False, allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(folder), use_folds=tuple(folds))
        predictor.predict_from_files_sequential(str(images), str(out), save_probabilities=False, overwrite=True,
                                                folder_with_segs_from_prev_stage=None)
    finally:
        torch.set_num_threads(threads)


def _run(tmp_path, raw, models: dict, name: str):
    entries = "".join(textwrap.indent(textwrap.dedent(f"""\
        - name: {n}
          kind: nnunet
          path: {path}
          configuration: {cfg}
          folds: {json.dumps(folds)}
          mirroring: {str(mirror).lower()}
        """), "  ") for n, (path, cfg, folds, mirror) in models.items())
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"dataset:\n  nnunet: {raw}\n  split: test\nmodels:\n{entries}"
                      f"benchmark:\n  threads: 1\n  warmup: 1\noutput:\n  dir: {tmp_path}/runs\n"
                      f"  save_predictions: true\n  formats: [json]\n")
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["run", "--config", str(config), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def _assert_parity(ours_dir, theirs_dir, cases):
    for case in cases:
        ours = load_volume(ours_dir / f"{case}.nii.gz")
        theirs = load_volume(theirs_dir / f"{case}.nii.gz")
        a, b = ours.array, theirs.array
        assert a.shape == b.shape
        assert ours.spacing == pytest.approx(theirs.spacing) and ours.origin == pytest.approx(theirs.origin)
        assert (a == b).mean() >= 0.9999, (ours_dir, case, (a != b).sum())
        big = [v for v in np.unique(b) if v != 0 and (b == v).sum() >= 2000]
        assert big, "the reference predicts no label of 2,000 voxels: the comparison would say nothing"
        for v in big:
            dice = 2 * ((a == v) & (b == v)).sum() / ((a == v).sum() + (b == v).sum())
            assert dice >= 0.999, (ours_dir, case, v, dice)


def test_label_maps_equal_nnunet_predict(tmp_path, trained):
    root, folders = trained
    raw = root / "raw" / "Dataset501_Synth"
    cases = sorted(p.name[:-len(".nii.gz")] for p in (raw / "labelsTs").iterdir())
    models = {n: (folders[501][cfg], cfg, folds, mirror) for n, (cfg, folds, mirror) in PLAIN.items()}
    out = _run(tmp_path, raw, models, "plain")
    rows = pq.read_table(out / "cases.parquet").to_pylist()
    assert all(r["success"] for r in rows) and len(rows) == len(PLAIN) * len(cases)
    assert all(r["patches"] > 1 and r["preprocess_s"] > 0 and r["postprocess_s"] > 0 for r in rows)
    for name, (cfg, folds, mirror) in PLAIN.items():
        theirs = tmp_path / "nnunet" / name
        _nnunet_predict(folders[501][cfg], folds, mirror, raw / "imagesTs", theirs)
        _assert_parity(out / "predictions" / name, theirs, cases)
    spec = json.loads((out / "run.json").read_text())["models"]["fullres_f01_nomirror"]["spec"]
    assert spec["source"]["folds"] == ["0", "1"] and spec["source"]["mirror_axes"] == []


def test_two_channel_region_model_equals_nnunet_predict(tmp_path, trained):
    root, folders = trained
    raw = root / "raw" / "Dataset502_Synth"
    cases = sorted(p.name[:-len(".nii.gz")] for p in (raw / "labelsTs").iterdir())
    out = _run(tmp_path, raw, {"regions": (folders[502]["3d_fullres"], "3d_fullres", ["all"], True)}, "regions")
    theirs = tmp_path / "nnunet"
    _nnunet_predict(folders[502]["3d_fullres"], ["all"], True, raw / "imagesTs", theirs)
    _assert_parity(out / "predictions" / "regions", theirs, cases)
    labels = {r["label"] for r in pq.read_table(out / "metrics.parquet").to_pylist()}
    assert {1, 2} <= labels and min(labels) < 0  # the dataset's labels and its region


def test_export_is_cached_by_checkpoint_hash(tmp_path, trained):
    from medbench_fast.models.nnunet.export import export_nnunet

    _, folders = trained
    folder = tmp_path / "copy"
    shutil.copytree(folders[501]["3d_fullres"], folder)
    cache = tmp_path / "cache"
    path, spec, hit = export_nnunet(folder, tmp_path / "a.onnx", folds=[0], cache_dir=cache)
    assert not hit and spec.strategy.patch_size == [8, 16, 16] and spec.source["parity_max_abs_diff"] < 1e-3
    import onnx

    graph = onnx.load(str(path)).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 1, 8, 16, 16]
    assert export_nnunet(folder, tmp_path / "b.onnx", folds=[0], cache_dir=cache)[2]
    assert export_nnunet(folder, tmp_path / "b.onnx", folds=[0], step_size=0.25, cache_dir=cache)[2]
    ckpt = folder / "fold_0" / "checkpoint_final.pth"
    ckpt.write_bytes(ckpt.read_bytes() + b"\0")  # other bytes: another export
    assert not export_nnunet(folder, tmp_path / "c.onnx", folds=[0], cache_dir=cache)[2]


def test_folder_problems_are_named(tmp_path, trained):
    from medbench_fast.models.nnunet.folder import read_trained_folder

    _, folders = trained
    folder = tmp_path / "copy"
    shutil.copytree(folders[501]["3d_fullres"], folder)
    assert read_trained_folder(folder).folds == ("0", "1")
    with pytest.raises(ModelError, match=r"fold_3/checkpoint_final.pth: checkpoint not found \(folds with "
                                         r"checkpoint_final.pth: 0, 1\)"):
        read_trained_folder(folder, folds=[0, 3])
    with pytest.raises(ModelError, match="no configuration '3d_lowres'"):
        read_trained_folder(folder, configuration="3d_lowres")
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ModelError, match="is a cascade stage"):
        read_trained_folder(folder, configuration="3d_cascade_fullres")
    (folder / "plans.json").unlink()
    with pytest.raises(ModelError, match="not an nnU-Net trained-model folder"):
        read_trained_folder(folder)


def test_config_keys_and_cli_errors(tmp_path, trained):
    from medbench_fast.config import ConfigError, validate

    _, folders = trained
    model = {"name": "m", "kind": "nnunet", "path": str(folders[501]["2d"]), "folds": [0, "all"]}
    assert validate({"models": [model]}).models[0].folds == (0, "all")
    with pytest.raises(ConfigError, match=r"models\[0\].mirroring: only for kind 'nnunet'"):
        validate({"models": [{"name": "m", "path": "x.onnx", "mirroring": False}]})
    with pytest.raises(ConfigError, match=r"models\[0\].folds: expected folds"):
        validate({"models": [{**model, "folds": [-1]}]})
    result = CliRunner().invoke(cli, ["export", "--nnunet", str(folders[501]["2d"]), "--folds", "7",
                                      "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code != 0 and "fold_7/checkpoint_final.pth: checkpoint not found" in result.output
