"""Arrow schemas of the run folder's Parquet files (contract: ARCHITECTURE.md)."""

from __future__ import annotations

import pyarrow as pa

_F = pa.float64()

METRICS_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("case_id", pa.string()),
    ("label", pa.int64()), ("label_name", pa.string()),
    ("tp", pa.int64()), ("fp", pa.int64()), ("fn", pa.int64()), ("tn", pa.int64()),
    ("dice", _F), ("iou", _F), ("sensitivity", _F), ("specificity", _F), ("precision", _F),
    ("volume_similarity", _F), ("ref_volume_ml", _F), ("pred_volume_ml", _F),
    ("hd", _F), ("hd95", _F), ("assd", _F), ("masd", _F), ("nsd", _F), ("nsd_tolerance_mm", _F),
    ("ref_empty", pa.bool_()), ("pred_empty", pa.bool_()),
])
#: Optional metric columns, appended when requested.
EXTRA_METRIC_FIELDS = {"dice_smoothed": _F}

CASES_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("case_id", pa.string()),
    ("success", pa.bool_()), ("error", pa.string()),
    ("image_path", pa.string()), ("ref_path", pa.string()), ("pred_path", pa.string()),
    ("shape", pa.list_(pa.int64())), ("spacing", pa.list_(_F)),
    ("load_s", _F), ("preprocess_s", _F), ("inference_s", _F), ("postprocess_s", _F),
    ("metrics_s", _F), ("total_s", _F), ("patches", pa.int64()),
])


def metrics_schema(extra: tuple[str, ...] = ()) -> pa.Schema:
    """:data:`METRICS_SCHEMA` plus the requested optional columns (``extra``: names of
    :data:`EXTRA_METRIC_FIELDS`; other names are ignored, so a run's metric list may be given)."""
    extra = tuple(m for m in extra if m in EXTRA_METRIC_FIELDS)
    schema = METRICS_SCHEMA
    for name in extra:
        schema = schema.append(pa.field(name, EXTRA_METRIC_FIELDS[name]))
    return schema

#: Case-level model outputs: one row per (model, case, object, target).
SCORES_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("case_id", pa.string()),
    ("object_id", pa.int64()), ("target_name", pa.string()), ("score", _F), ("target", _F),
    ("object_voxels", pa.int64()),
])

#: Latency profiles: one row per (model, provider, batch_size), raw samples kept.
LATENCY_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("model", pa.string()), ("provider", pa.string()), ("batch_size", pa.int64()),
    ("warmup", pa.int64()), ("iters", pa.int64()), ("cold_start_s", _F),
    ("p50_ms", _F), ("p90_ms", _F), ("p95_ms", _F), ("p99_ms", _F), ("mean_ms", _F), ("std_ms", _F), ("cv", _F),
    ("throughput_items_per_s", _F), ("peak_rss_mb", _F), ("gpu_process_peak_mb", _F), ("unstable", pa.bool_()),
    ("samples_ms", pa.list_(_F)),
])
