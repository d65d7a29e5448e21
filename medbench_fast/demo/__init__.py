"""The embedded default benchmark: synthetic CT, perturbed predictions, full evaluation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.data.reader import Volume, write_volume
from medbench_fast.data.synthetic import LABEL_NAMES, make_case, perturb


@dataclass
class DemoResult:
    data_dir: Path
    run_dir: Path
    n_cases: int
    n_failed: int
    files: dict


def write_dataset(data_dir: str | os.PathLike, *, n_cases: int, seed: int = 0) -> dict[str, Path]:
    """Write ``images/``, ``labels/`` and ``preds/`` folders of .nii.gz cases; return the folders."""
    root = Path(data_dir)
    folders = {name: root / name for name in ("images", "labels", "preds")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        case = make_case(i, seed=seed)
        for name, array in (("images", case.image), ("labels", case.labels),
                            ("preds", perturb(case.labels, seed=seed * 100_003 + i))):
            write_volume(Volume(array, case.spacing), folders[name] / f"{case.case_id}.nii.gz")
    return folders


def run_demo(out_dir: str | os.PathLike, *, n_cases: int = 8, seed: int = 0, progress: bool | None = None) -> DemoResult:
    """Generate the dataset under ``out_dir/data`` and evaluate it into ``out_dir/run``."""
    from medbench_fast.data.cache import VolumeCache
    from medbench_fast.runner.evaluate import EvaluateOptions, evaluate_folders

    out = Path(out_dir)
    folders = write_dataset(out / "data", n_cases=n_cases, seed=seed)
    result = evaluate_folders(folders["preds"], folders["labels"], out / "run",
                              options=EvaluateOptions(label_names=LABEL_NAMES), cache=VolumeCache(out / "cache"),
                              progress=progress, model="perturbed-reference")
    return DemoResult(out / "data", result.run_dir, result.n_cases, result.n_failed, result.files)
