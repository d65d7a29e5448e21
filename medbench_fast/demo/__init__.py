"""The embedded default benchmark: synthetic head-and-neck CT, locally built models, full run.

``run_demo`` writes a seeded synthetic dataset (images, reference labels, per-node ENE
targets), builds every model kind locally with no download, and runs ``medbench run``:

- ``hu-threshold-baseline``: an ONNX graph of HU thresholds and morphology (a real,
  working classical segmenter; see :mod:`medbench_fast.demo.baseline`);
- ``segformer-tiny``: a randomly initialised SegFormer from a config, exported to ONNX
  (optimum where installed, else torch.onnx; only with the ``export`` extra; untrained);
- ``aiene-dualnet``: the AI-ENE DualNet architecture with random weights, written as a
  Keras-2 ``.h5`` and converted by the real converter, scored per lymph node (untrained).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medbench_fast.config import Config
from medbench_fast.data.reader import Volume, write_volume
from medbench_fast.data.synthetic import LABEL_NAMES, make_case, perturb

NODE_LABEL = 5
UNTRAINED = "untrained: random weights, shown to exercise the pipeline; its scores mean nothing"


@dataclass
class DemoResult:
    data_dir: Path
    run_dir: Path
    n_cases: int
    n_failed: int
    files: dict
    notes: list[str] = field(default_factory=list)


def node_targets(labels: np.ndarray, nodes: list[dict], spacing) -> list[dict]:
    """Targets per connected node component, numbered as the AI-ENE model numbers them.

    Each component takes the metastasis/ENE targets of the synthetic node whose centre is
    nearest to its centroid (overlapping nodes merge into one component: either target
    is positive if any merged node's is).
    """
    from medbench_fast.models.aiene.preprocess import label_components

    components, ids = label_components(labels, NODE_LABEL)
    rows = []
    centres = np.asarray([n["centre_mm"] for n in nodes], dtype=np.float64)
    for oid in ids:
        voxels = np.argwhere(components == oid)
        centroid = voxels.mean(axis=0) * np.asarray(spacing)
        inside = {int(np.argmin(((centres - v * np.asarray(spacing)) ** 2).sum(1))) for v in voxels[:: max(1, len(voxels) // 50)]}
        inside.add(int(np.argmin(((centres - centroid) ** 2).sum(1))))
        rows.append({"object_id": oid, "nodal_metastasis": max(nodes[i]["metastasis"] for i in inside),
                     "ene": max(nodes[i]["ene"] for i in inside)})
    return rows


def write_dataset(data_dir: str | os.PathLike, *, n_cases: int, seed: int = 0) -> dict[str, Path]:
    """Write ``images/``, ``labels/``, ``preds/`` (perturbed references, for ``medbench evaluate``)
    as .nii.gz, and ``targets.csv`` (per node: nodal_metastasis, ene). Returns the paths."""
    root = Path(data_dir)
    folders = {name: root / name for name in ("images", "labels", "preds")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    targets = []
    for i in range(n_cases):
        case = make_case(i, seed=seed)
        for name, array in (("images", case.image), ("labels", case.labels),
                            ("preds", perturb(case.labels, seed=seed * 100_003 + i))):
            write_volume(Volume(array, case.spacing), folders[name] / f"{case.case_id}.nii.gz")
        targets += [{"case_id": case.case_id, **row} for row in node_targets(case.labels, case.nodes, case.spacing)]
    folders["targets"] = root / "targets.csv"
    with open(folders["targets"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case_id", "object_id", "nodal_metastasis", "ene"])
        writer.writeheader()
        writer.writerows(targets)
    return folders


def _segformer(folder: Path) -> Path:
    """A tiny randomly initialised SegFormer (1 channel, 6 classes, 128 x 128) saved with its processor."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()

    id2label = {0: "background", **{k: v for k, v in LABEL_NAMES.items()}}
    config = SegformerConfig(num_channels=1, num_labels=len(id2label), id2label=id2label,
                             label2id={v: k for k, v in id2label.items()}, hidden_sizes=[8, 16, 24, 32],
                             depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=32,
                             sr_ratios=[8, 4, 2, 1])
    import torch

    torch.manual_seed(0)
    SegformerForSemanticSegmentation(config).eval().save_pretrained(folder)
    SegformerImageProcessor(size={"height": 128, "width": 128}, image_mean=[0.5], image_std=[0.5]).save_pretrained(folder)
    return folder


def build_models(model_dir: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Build the demo's models; return config model entries and notes on skipped kinds."""
    from medbench_fast.demo.baseline import build_baseline
    from medbench_fast.models.aiene.dualnet import write_dualnet_h5

    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    entries = [{"name": "hu-threshold-baseline", "kind": "onnx", "path": str(build_baseline(root / "baseline.onnx")),
                "note": "classical HU-threshold + morphology segmenter (no learning)"}]
    notes = []
    try:
        import onnxscript  # noqa: F401  torch.onnx's exporter
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        notes.append("segformer-tiny skipped: install the export extra (pip install -e '.[export]') to export it")
    else:
        entries.append({"name": "segformer-tiny", "kind": "huggingface", "path": str(_segformer(root / "segformer")),
                        "task": "semantic-segmentation", "note": UNTRAINED})
    h5 = root / "aiene_dualnet.h5"
    if not h5.exists():
        write_dualnet_h5(h5, seed=0)
    entries.append({"name": "aiene-dualnet", "kind": "aiene", "path": str(h5), "node_label": NODE_LABEL,
                    "note": UNTRAINED})
    return entries, notes


def demo_config(data: dict[str, Path], models: list[dict], run_root: Path) -> Config:
    """The benchmark config of the demo (the same mapping a YAML file would give)."""
    import yaml

    from medbench_fast.config import validate

    raw = {
        "dataset": {"image_dir": str(data["images"]), "seg_dir": str(data["labels"]),
                    "label_names": dict(LABEL_NAMES), "targets_csv": str(data["targets"])},
        "models": models,
        "benchmark": {"warmup": 1, "write_every": 4},
        "output": {"dir": str(run_root), "formats": ["csv", "json", "html"]},
    }
    return validate(yaml.safe_load(yaml.safe_dump(raw)), source="demo config")


def run_demo(out_dir: str | os.PathLike, *, n_cases: int = 8, seed: int = 0, progress: bool | None = None) -> DemoResult:
    """Generate the dataset under ``out_dir/data``, build the models under ``out_dir/models``
    and benchmark them into ``out_dir/run`` (the config is kept as ``out_dir/benchmark_config.yaml``)."""
    import yaml

    from medbench_fast.data.cache import VolumeCache
    from medbench_fast.runner.pipeline import run_benchmark

    out = Path(out_dir).resolve()
    data = write_dataset(out / "data", n_cases=n_cases, seed=seed)
    models, notes = build_models(out / "models")
    config = demo_config(data, models, out)
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    (out / "benchmark_config.yaml").write_text(text, encoding="utf-8")
    result = run_benchmark(config, config_text=text, run_dir=out / "run", overwrite=True, progress=progress,
                           cache=VolumeCache(out / "cache"))
    return DemoResult(out / "data", result.run_dir, result.n_cases, result.n_failed, result.files, notes)
