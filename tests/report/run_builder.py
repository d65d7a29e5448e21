"""Realistic run folders for report tests: evaluated synthetic CT, several models, timings,
case-level scores, latency profiles, a failed case, hostile strings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from medbench_fast.data.reader import Volume, write_volume
from medbench_fast.data.synthetic import LABEL_NAMES, make_case, perturb
from medbench_fast.metrics.options import MetricOptions
from medbench_fast.runner.evaluate import evaluate_folders
from medbench_fast.store.schema import CASES_SCHEMA, LATENCY_SCHEMA, SCORES_SCHEMA

HOSTILE = "<img src=x onerror=alert(1)>"
MODELS = ("fast-net", HOSTILE, "reference-copy")
SHAPE = (16, 48, 48)
SPACING = (2.5, 2.0, 2.0)


def write_small_dataset(folder: Path, n_cases: int) -> dict[str, Path]:
    """Labels plus two prediction folders perturbed with different seeds (small grids: fast tests)."""
    dirs = {name: folder / name for name in ("labels", "pred_a", "pred_b")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        case = make_case(i, shape=SHAPE, spacing=SPACING, n_nodes=2)
        write_volume(Volume(case.labels, case.spacing), dirs["labels"] / f"{case.case_id}.nii.gz")
        write_volume(Volume(perturb(case.labels, seed=i), case.spacing), dirs["pred_a"] / f"{case.case_id}.nii.gz")
        worse = perturb(perturb(case.labels, seed=1000 + i), seed=2000 + i)
        write_volume(Volume(worse, case.spacing), dirs["pred_b"] / f"{case.case_id}.nii.gz")
    return dirs


def _timed(cases: pa.Table, model: str, rng: np.random.Generator, base_s: float) -> pa.Table:
    rows = cases.to_pylist()
    for r in rows:
        r["model"] = model
        if r["success"]:
            r.update(preprocess_s=float(rng.uniform(0.01, 0.02)), inference_s=float(base_s * rng.uniform(0.8, 1.3)),
                     postprocess_s=float(rng.uniform(0.001, 0.003)))
    return pa.Table.from_pylist(rows, schema=CASES_SCHEMA)


def build_run(root: Path, n_cases: int = 10) -> Path:
    """A run folder with three models, one failed case, scores and latency profiles, reports written."""
    from medbench_fast.report.tables import write_reports

    dirs = write_small_dataset(root / "data", n_cases)
    options = MetricOptions(label_names=LABEL_NAMES)
    runs = {}
    for model, pred in zip(MODELS, ("pred_a", "pred_b", "labels")):
        out = root / f"eval-{MODELS.index(model)}"
        evaluate_folders(dirs[pred], dirs["labels"], out, options=options, model=model, progress=False, workers=2)
        runs[model] = out
    first = runs[MODELS[0]]
    run_dir = root / "run"
    run_dir.mkdir()
    rng = np.random.default_rng(7)
    metrics = pq.read_table(first / "metrics.parquet")
    meta = metrics.schema.metadata
    tables = [pq.read_table(runs[m] / "metrics.parquet") for m in MODELS]
    metrics = pa.concat_tables([t.replace_schema_metadata(None) for t in tables]).replace_schema_metadata(meta)
    cases = pa.concat_tables([_timed(pq.read_table(runs[m] / "cases.parquet"), m, rng, base)
                              for m, base in zip(MODELS, (0.05, 0.02, 0.2))])
    failed = {"run_id": "r1", "model": HOSTILE, "case_id": "case_<b>999</b>", "success": False,
              "error": "pred: <script>alert('boom')</script> cannot be read", "total_s": 0.01}
    cases = pa.concat_tables([cases, pa.Table.from_pylist([failed], schema=CASES_SCHEMA)])
    pq.write_table(metrics, run_dir / "metrics.parquet")
    pq.write_table(cases, run_dir / "cases.parquet")
    score_rows = []
    for m, skill in zip(MODELS, (1.5, 0.5, 3.0)):
        for i in range(40):
            target = float(i % 3 == 0)
            for name in ("metastasis", "ene"):
                score = 1 / (1 + np.exp(-(skill * (2 * target - 1) + rng.normal(0, 1.2))))
                score_rows.append({"run_id": "r1", "model": m, "case_id": f"case_{i:03d}", "object_id": 1,
                                   "target_name": name, "score": float(score), "target": target, "object_voxels": 100})
    pq.write_table(pa.Table.from_pylist(score_rows, schema=SCORES_SCHEMA), run_dir / "scores.parquet")
    lat_rows = []
    for m, base in zip(MODELS, (50.0, 20.0, 200.0)):
        for batch in (1, 4):
            samples = sorted(float(v) for v in rng.normal(base * batch, base * 0.05, 30))
            q = np.percentile(samples, [50, 90, 95, 99])
            lat_rows.append({"run_id": "r1", "model": m, "provider": "CPUExecutionProvider", "batch_size": batch,
                             "warmup": 3, "iters": 30, "cold_start_s": 0.4, "p50_ms": q[0], "p90_ms": q[1],
                             "p95_ms": q[2], "p99_ms": q[3], "mean_ms": float(np.mean(samples)),
                             "std_ms": float(np.std(samples)), "cv": float(np.std(samples) / np.mean(samples)),
                             "throughput_items_per_s": 1000.0 * batch / q[0], "peak_rss_mb": 512.0,
                             "gpu_process_peak_mb": None, "unstable": m == HOSTILE, "samples_ms": samples})
    pq.write_table(pa.Table.from_pylist(lat_rows, schema=LATENCY_SCHEMA), run_dir / "latency.parquet")
    info = json.loads((first / "run.json").read_text())
    info.update(command="run", status="finished", cases_run=3 * n_cases, loop_s=2.5,
                models={m: {"kind": "onnx", "session_s": 0.3, "cold_start_s": 0.4,
                            "providers_in_use": ["CPUExecutionProvider"]} for m in MODELS},
                config={"text": f"models:\n  - name: '{HOSTILE}'\n    kind: onnx\n", "sha256": "0" * 64})
    (run_dir / "run.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    write_reports(run_dir)
    return run_dir
