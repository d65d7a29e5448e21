"""A small real benchmark setup: synthetic CT cases and the ONNX baseline model."""

from __future__ import annotations

import textwrap

import pytest

from medbench_fast.demo import write_dataset
from medbench_fast.demo.baseline import build_baseline


@pytest.fixture(scope="session")
def bench_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_assets")
    write_dataset(root / "data", n_cases=12, seed=3)
    build_baseline(root / "models" / "baseline.onnx")
    return root


@pytest.fixture
def write_config():
    """``write_config(folder, assets, ...)`` -> path of a benchmark_config.yaml in ``folder``."""
    return _write_config


def _write_config(folder, assets, *, extra: str = "", max_cases: int | None = None, write_every: int = 2):
    text = textwrap.dedent(f"""\
        dataset:
          image_dir: {assets}/data/images
          seg_dir: {assets}/data/labels
          label_names: {{1: body, 2: vertebra, 3: spinal_cord, 4: airway, 5: lymph_node}}
          {'max_cases: ' + str(max_cases) if max_cases else ''}
        models:
          - name: baseline
            path: {assets}/models/baseline.onnx
        benchmark:
          write_every: {write_every}
          metrics: [counts, hd95]
        output:
          dir: {folder}/runs
          formats: [csv, json]
        """) + extra
    path = folder / "benchmark_config.yaml"
    path.write_text(text)
    return path
