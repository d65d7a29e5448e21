"""An nnU-Net v2 trained-model folder, read and checked before anything is exported.

A folder as ``nnUNetv2_train`` writes it holds ``dataset.json``, ``plans.json`` and
``fold_<k>/<checkpoint>`` per trained fold (``fold_all`` for a model trained on every
case). :func:`read_trained_folder` checks the configuration, the folds and the checkpoint
files and says what is wrong naming the file; nothing here imports torch or nnunetv2.

Refused: ``3d_cascade_fullres`` (and any configuration with ``previous_stage``), whose input
stacks the prediction of another configuration onto the image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.files import read_json_object
from medbench_fast.models.spec import ModelError

DEFAULT_CONFIGURATION = "3d_fullres"
DEFAULT_CHECKPOINT = "checkpoint_final.pth"
#: nnU-Net's default tile step size (a fraction of the patch).
DEFAULT_STEP_SIZE = 0.5


@dataclass(frozen=True)
class TrainedFolder:
    """A checked trained-model folder: its plans and dataset.json and the chosen checkpoints."""

    folder: Path
    configuration: str
    folds: tuple[str, ...]
    checkpoint: str
    plans: dict
    dataset_json: dict

    def checkpoint_paths(self) -> list[Path]:
        return [self.folder / f"fold_{f}" / self.checkpoint for f in self.folds]

    def source_files(self) -> list[Path]:
        """The files an export depends on (its cache key hashes them)."""
        return [self.folder / "plans.json", self.folder / "dataset.json", *self.checkpoint_paths()]

    @property
    def config(self) -> dict:
        return self.plans["configurations"][self.configuration]


def _json(path: Path) -> dict:
    if not path.is_file():
        raise ModelError(f"{path.parent}: not an nnU-Net trained-model folder (no {path.name})")
    return read_json_object(path, ModelError)


def _fold_name(fold) -> str:
    text = str(fold).strip()
    if text == "all" or (text.isdigit() and not isinstance(fold, bool)):
        return text if text == "all" else str(int(text))
    raise ModelError(f"fold {fold!r} is neither a fold number nor 'all'")


def available_folds(folder: Path, checkpoint: str) -> list[str]:
    """Folds with ``checkpoint``, numbered folds first (as nnU-Net finds them; ``all`` only alone)."""
    found = [p.name[len("fold_"):] for p in folder.glob("fold_*") if (p / checkpoint).is_file()]
    numbered = sorted(int(f) for f in found if f.isdigit())
    return [str(f) for f in numbered] or (["all"] if "all" in found else [])


def read_trained_folder(folder: str | os.PathLike, *, configuration: str | None = None, folds=None,
                        checkpoint: str | None = None) -> TrainedFolder:
    """Read and check a trained-model folder.

    ``configuration``: a configuration of ``plans.json`` (default: the one the folder is named
    after, ``<trainer>__<plans>__<configuration>``, else ``3d_fullres``). ``folds``:
    fold numbers and/or ``all`` (one value or a list; default every ``fold_<k>`` holding the
    checkpoint, as nnU-Net's predictor finds them). ``checkpoint``: file name in each fold
    folder (default ``checkpoint_final.pth``).
    """
    root = Path(folder)
    if not root.is_dir():
        raise ModelError(f"{root}: nnU-Net trained-model folder not found")
    plans = _json(root / "plans.json")
    dataset_json = _json(root / "dataset.json")
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or not configs:
        raise ModelError(f"{root / 'plans.json'}: no configurations")
    configuration = configuration or _configuration_of(root, configs)
    if configuration not in configs:
        raise ModelError(f"{root / 'plans.json'}: no configuration {configuration!r} (the plans have "
                         f"{', '.join(sorted(configs))})")
    merged = _configuration(configs, configuration, root)
    if merged.get("previous_stage") or configuration.endswith("cascade_fullres"):
        raise ModelError(f"{root}: configuration {configuration!r} is a cascade stage: its input stacks the "
                         f"prediction of {merged.get('previous_stage') or 'the low-resolution stage'} onto the image, "
                         f"which is not supported; benchmark 3d_fullres or 3d_lowres instead")
    checkpoint = checkpoint or DEFAULT_CHECKPOINT
    if folds is None or folds == []:
        chosen = available_folds(root, checkpoint)
        if not chosen:
            raise ModelError(f"{root}: no fold_<k>/{checkpoint} found (give folds and checkpoint of this folder)")
    else:
        chosen = [_fold_name(f) for f in (folds if isinstance(folds, (list, tuple)) else [folds])]
        if len(set(chosen)) != len(chosen):
            raise ModelError(f"{root}: folds repeat: {chosen}")
    for fold in chosen:
        path = root / f"fold_{fold}" / checkpoint
        if not path.is_file():
            have = available_folds(root, checkpoint)
            raise ModelError(f"{path}: checkpoint not found (folds with {checkpoint}: {', '.join(have) or 'none'})")
    return TrainedFolder(root, configuration, tuple(chosen), checkpoint, plans, dataset_json)


def _configuration_of(root: Path, configs: dict) -> str:
    named = root.name.rsplit("__", 1)[-1] if "__" in root.name else None
    return named if named in configs else DEFAULT_CONFIGURATION


def _configuration(configs: dict, name: str, root: Path) -> dict:
    """A configuration with the ones it ``inherits_from`` merged in (as nnU-Net's plans manager does)."""
    seen = []
    merged: dict = {}
    while name is not None:
        if name in seen or name not in configs:
            raise ModelError(f"{root / 'plans.json'}: configuration {seen[-1] if seen else name!r} inherits from "
                             f"{name!r}, which is {'a cycle' if name in seen else 'missing'}")
        seen.append(name)
        merged = {**configs[name], **merged}
        name = configs[name].get("inherits_from")
    return merged
