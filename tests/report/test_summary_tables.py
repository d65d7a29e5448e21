"""Per-case foreground means, model summaries and edge-case runs, on hand-made tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medbench_fast.report.paired import paired_comparisons
from medbench_fast.report.summary import describe, foreground_per_case, model_summary
from medbench_fast.report.tables import write_reports
from medbench_fast.store.schema import CASES_SCHEMA, METRICS_SCHEMA, SCORES_SCHEMA

INF = math.inf


def _metrics(rows):
    full = [{"run_id": "r", "label_name": None, **r} for r in rows]
    return pa.Table.from_pylist(full, schema=METRICS_SCHEMA)


def test_foreground_means_leave_out_background_nan_and_inf():
    table = _metrics([
        {"model": "m", "case_id": "a", "label": 0, "dice": 0.0, "hd95": 100.0},
        {"model": "m", "case_id": "a", "label": 1, "dice": 0.8, "hd95": 2.0},
        {"model": "m", "case_id": "a", "label": 2, "dice": 0.6, "hd95": INF},
        {"model": "m", "case_id": "b", "label": 1, "dice": None, "hd95": INF},
        {"model": "m", "case_id": "b", "label": 2, "dice": 0.4, "hd95": INF},
    ])
    means, infs = foreground_per_case(table)
    assert means["m"]["a"]["dice"] == pytest.approx(0.7) and means["m"]["a"]["hd95"] == 2.0
    assert means["m"]["b"]["dice"] == pytest.approx(0.4) and means["m"]["b"]["hd95"] == INF
    assert infs["m"]["a"]["hd95"] == 1 and infs["m"]["b"]["hd95"] == 2 and infs["m"]["a"]["dice"] == 0
    summary = model_summary(means, infs)["m"]
    assert summary["cases"] == 2
    assert summary["hd95"]["mean"] == 2.0 and summary["hd95"]["inf_count"] == 1
    assert summary["hd95"]["inf_labels"] == 3 and summary["hd95"]["cases_with_inf"] == 2
    assert summary["dice"]["mean"] == pytest.approx(0.55)


def test_describe_fields():
    d = describe([1.0, 2.0, None, INF, 3.0])
    assert (d["count"], d["nan_count"], d["inf_count"]) == (5, 1, 1)
    assert d["mean"] == 2.0 and d["median"] == 2.0 and d["std"] == 1.0
    assert d["ci95"][0] >= 1.0 and d["ci95"][1] <= 3.0
    empty = describe([None, INF])
    assert empty["mean"] is None and empty["ci95"] is None


def test_distance_comparisons_skip_cases_with_infinite_labels():
    means = {m: {c: {"hd95": v} for c, v in zip("abcdefgh", values)}
             for m, values in (("x", [1, 2, 3, 4, 5, 6, 7, 8]), ("y", [2, 3, 4, 5, 6, 7, 8, 9]))}
    infs = {"x": {c: {"hd95": int(c == "a")} for c in "abcdefgh"}, "y": {c: {"hd95": 0} for c in "abcdefgh"}}
    (row,) = paired_comparisons(means, infs)
    assert row["n"] == 7 and row["better"] == "x" and row["metric"] == "hd95"


def _write(folder, metrics, cases, scores=None):
    folder.mkdir()
    pq.write_table(metrics, folder / "metrics.parquet")
    pq.write_table(pa.Table.from_pylist(cases, schema=CASES_SCHEMA), folder / "cases.parquet")
    if scores:
        pq.write_table(pa.Table.from_pylist(scores, schema=SCORES_SCHEMA), folder / "scores.parquet")


def test_run_where_every_case_failed(tmp_path):
    _write(tmp_path / "run", METRICS_SCHEMA.empty_table(),
           [{"run_id": "r", "model": "m", "case_id": "c1", "success": False, "error": "unreadable"}])
    files = write_reports(tmp_path / "run")
    s = json.loads(files["summary"].read_text())
    assert s["success_rate"] == 0.0 and s["models"] == {} and s["cases"]["m"]["failures"][0]["error"] == "unreadable"
    assert "unreadable" in files["html"].read_text()


def test_case_level_model_only(tmp_path):
    cases = [{"run_id": "r", "model": "ene-net", "case_id": f"c{i}", "success": True, "inference_s": 0.1}
             for i in range(8)]
    scores = [{"run_id": "r", "model": "ene-net", "case_id": f"c{i}", "object_id": 1, "target_name": "ene",
               "score": i / 8, "target": float(i >= 4), "object_voxels": 10} for i in range(8)]
    _write(tmp_path / "run", METRICS_SCHEMA.empty_table(), cases, scores)
    files = write_reports(tmp_path / "run")
    s = json.loads(files["summary"].read_text())
    c = s["classification"]["ene-net"]["ene"]
    assert c["auc"] == 1.0 and c["at_threshold"]["tp"] == 4 and c["at_youden"]["threshold"] == 0.5
    page = files["html"].read_text()
    assert '<section id="classification">' in page and '<tr data-model="ene-net">' in page


def _slow_foreground_per_case(table):
    """The per-case loop: each case's finite foreground values in table order, ``np.mean``."""
    rows = table.to_pylist()
    names = ("dice", "hd95")
    groups: dict = {}
    for r in rows:
        if r["label"] != 0:
            groups.setdefault((r["model"], r["case_id"]), []).append(r)
    means, infs = {}, {}
    for (model, case_id), case in sorted(groups.items()):
        for name in names:
            arr = np.array([np.nan if r[name] is None else r[name] for r in case], dtype=np.float64)
            finite = arr[np.isfinite(arr)]
            n_inf = int(np.isinf(arr).sum())
            means.setdefault(model, {}).setdefault(case_id, {})[name] = (
                float(finite.mean()) if finite.size else INF if n_inf else math.nan)
            infs.setdefault(model, {}).setdefault(case_id, {})[name] = n_inf
    return means, infs


@pytest.mark.parametrize("seed", range(6))
def test_foreground_means_equal_numpys_per_case_mean_to_the_last_bit(seed):
    """The vectorised per-case means are numpy's means of each case's finite values, bit for bit:
    cases with 1 to 13 labels (numpy sums 8 or more pairwise), rows out of order, values of
    very different magnitudes, None, NaN, +inf and -0.0."""
    rng = np.random.default_rng(seed)
    rows = []
    for case in rng.permutation(30):
        for label in rng.permutation(rng.integers(0, 14, rng.integers(1, 14))):
            for model in ("b", "a"):
                values = {}
                for name in ("dice", "hd95"):
                    r = rng.uniform()
                    values[name] = (None if r < 0.1 else INF if r < 0.2 else math.nan if r < 0.25 else -0.0 if r < 0.3
                                    else float(rng.normal() * 10.0 ** rng.integers(-6, 7)))
                rows.append({"model": model, "case_id": f"c{case}", "label": int(label), **values})
    table = _metrics(rows)
    means, infs = foreground_per_case(table)
    slow_means, slow_infs = _slow_foreground_per_case(table)
    assert infs == slow_infs
    assert [(m, list(cases)) for m, cases in means.items()] == [(m, list(cases)) for m, cases in slow_means.items()]
    for model, cases in slow_means.items():
        for case_id, values in cases.items():
            got = means[model][case_id]
            assert np.array([got[k] for k in values]).tobytes() == np.array(list(values.values())).tobytes()
