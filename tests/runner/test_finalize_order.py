"""Finalize keeps the consolidated tables in key order without pyarrow's compute kernels."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medbench_fast.data.reader import Volume, write_volume
from medbench_fast.runner.finalize import _merge_in_order, _sorted

KEYS = ("model", "case_id", "label")
SCHEMA = pa.schema([("model", pa.string()), ("case_id", pa.string()), ("label", pa.int64()), ("v", pa.float64())])


def _rows(rng, n):
    return sorted({(str(rng.choice(["a", "b"])), f"c{rng.integers(0, 40):02d}", int(rng.integers(0, 6))) for _ in range(n)})


@pytest.mark.parametrize("seed", range(8))
def test_merge_in_order_equals_a_stable_sort_of_both(seed):
    rng = np.random.default_rng(seed)
    keys = _rows(rng, 60)
    taken = set(rng.choice(len(keys), size=len(keys) // 3, replace=False).tolist())
    base = [k for i, k in enumerate(keys) if i not in taken]
    extra = [k for i, k in enumerate(keys) if i in taken]
    if seed % 4 == 0:  # also a key already present (a row of another kind at an equal key)
        extra = sorted(extra + base[:2])
    table = pa.Table.from_pylist([{**dict(zip(KEYS, k)), "v": float(i)} for i, k in enumerate(base)], schema=SCHEMA)
    more = pa.Table.from_pylist([{**dict(zip(KEYS, k)), "v": -1.0 - i} for i, k in enumerate(extra)], schema=SCHEMA)
    merged = _merge_in_order(table, more, KEYS)
    expected = pa.concat_tables([table, more]).sort_by([(k, "ascending") for k in KEYS])  # stable
    assert merged.to_pylist() == expected.to_pylist()
    assert _sorted(merged, KEYS) is merged  # found in order: not sorted again


def test_merge_of_rows_out_of_order_leaves_the_sort_to_sorted():
    table = pa.Table.from_pylist([{"model": "a", "case_id": "c2", "label": 1, "v": 0.0},
                                  {"model": "a", "case_id": "c1", "label": 1, "v": 1.0}], schema=SCHEMA)
    more = pa.Table.from_pylist([{"model": "a", "case_id": "c1", "label": 2, "v": 2.0}], schema=SCHEMA)
    merged = _merge_in_order(table, more, KEYS)
    assert merged.num_rows == 3
    assert [r["v"] for r in _sorted(merged, KEYS).to_pylist()] == [1.0, 2.0, 0.0]


def test_evaluate_with_filled_labels_never_loads_pyarrow_compute(tmp_path):
    """A case without some label gets both-empty rows for it; the run's tables and reports
    are still written without importing ``pyarrow.compute`` (0.04 s), and in key order."""
    rng = np.random.default_rng(2)
    for i in range(3):
        ref = rng.integers(0, 4 if i else 2, (6, 8, 8)).astype(np.uint8)  # case 0 has labels 0-1 only
        for folder in ("ref", "pred"):
            (tmp_path / folder).mkdir(exist_ok=True)
            write_volume(Volume(ref, (1.0, 1.0, 1.0)), tmp_path / folder / f"case{i}.nii.gz")
    code = """
import json, sys
from medbench_fast.cli.main import cli
try:
    cli(["evaluate", "--pred", sys.argv[1], "--ref", sys.argv[2], "--out", sys.argv[3], "--quiet", "--metrics", "counts"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
print(json.dumps("pyarrow.compute" in sys.modules))
"""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pred"), str(tmp_path / "ref"), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) is False
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    keys = [(r["model"], r["case_id"], r["label"]) for r in rows]
    assert keys == sorted(keys) and len(keys) == 3 * 3  # every case has labels 1-3, case0's 2 and 3 filled
    filled = [r for r in rows if r["case_id"] == "case0" and r["label"] >= 2]
    assert [r["dice"] for r in filled] == [1.0, 1.0]  # both empty: Dice 1 under the default convention
