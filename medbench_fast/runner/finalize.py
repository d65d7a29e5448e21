"""Turning a run's Parquet parts into its final tables, ``run.json`` and reports."""

from __future__ import annotations

import bisect
from pathlib import Path

import pyarrow as pa

from medbench_fast.metrics.evaluate import both_empty_rows
from medbench_fast.metrics.options import MetricOptions
from medbench_fast import environment
from medbench_fast.store import run_info
from medbench_fast.store.fingerprint import FINGERPRINT_KEY, RUN_ID_KEY
from medbench_fast.store.parts import StoreError, dedupe_last, read_parts, write_table
from medbench_fast.store.schema import CASES_SCHEMA, LATENCY_SCHEMA, SCORES_SCHEMA


def finalize_run(run_dir: Path, *, info: dict, options: MetricOptions, schema, fingerprint: str,
                 worst_distance: str = "inf", formats=("csv", "json", "html"), latency_rows: list[dict] | None = None,
                 threshold: float = 0.5) -> dict:
    """Consolidate the parts of the run of ``fingerprint`` (a part of another fingerprint is
    refused; newest row per key wins), fill both-empty rows for the label union, write
    ``metrics``/``cases`` (and ``scores``/``latency`` when present) Parquet files stamped with
    the fingerprint, ``run.json`` and the reports. Returns the written files, plus the cases
    table as ``_cases``. Reports that cannot be written (disk full) leave ``run.json`` saying
    so under ``reports`` (see :func:`~medbench_fast.store.run_info.record_reports`) and raise
    :class:`~medbench_fast.report.tables.ReportsError`.
    """
    files, cases = consolidate(run_dir, options=options, schema=schema, fingerprint=fingerprint, run_id=info["run_id"])
    stamp = {FINGERPRINT_KEY: fingerprint, RUN_ID_KEY: info["run_id"]}
    if latency_rows:
        files["latency"] = write_table(pa.Table.from_pylist(latency_rows, schema=LATENCY_SCHEMA), run_dir, "latency",
                                       stamp)
    record = {
        **info, "finished": run_info.utc_now(),
        "options": {**options.to_record(), "worst_distance": worst_distance, "threshold": threshold},
        "versions": environment.package_versions(), "hardware": environment.hardware(info.get("workers")),
        "git_commit": environment.git_commit(),
    }
    from medbench_fast.report.tables import ReportsError, report_files, write_reports

    record.pop("reports", None)  # an earlier attempt's record; this one writes every report again
    # until the reports are written, run.json says they are not (a full disk may refuse its update)
    pending = {"status": "pending", "written": [], "missing": report_files(formats)}
    files["run"] = run_info.write_run_json(run_dir, {**record, "reports": pending})
    try:
        files.update(write_reports(run_dir, worst_distance=worst_distance, formats=tuple(formats),
                                   threshold=threshold))
    except ReportsError as exc:  # the results are whole: run.json says which reports are missing
        run_info.record_reports(run_dir, exc.record())
        raise
    run_info.write_run_json(run_dir, record)
    files["_cases"] = cases
    return files


def consolidate(run_dir: Path, *, options: MetricOptions, schema, fingerprint: str, run_id: str) -> tuple[dict, pa.Table]:
    """Write ``metrics``, ``cases`` (and ``scores``) Parquet files from the parts of the run of
    ``fingerprint``; returns the files and the cases table."""
    metrics = dedupe_last(read_parts(run_dir, "metrics", schema, fingerprint=fingerprint), ["model", "case_id", "label"])
    cases = dedupe_last(read_parts(run_dir, "cases", CASES_SCHEMA, fingerprint=fingerprint), ["model", "case_id"])
    succeeded = {(m, c) for m, c, ok in zip(*(cases.column(k).to_pylist() for k in ("model", "case_id", "success")))
                 if ok}
    metrics = _keep_pairs(metrics, succeeded)
    if options.labels is None:
        metrics = _fill_label_union(metrics, cases, options, schema)
    metrics = _sorted(metrics, ("model", "case_id", "label"))
    cases = _sorted(cases, ("model", "case_id"))
    stamp = {FINGERPRINT_KEY: fingerprint, RUN_ID_KEY: run_id}
    files = {"metrics": write_table(metrics, run_dir, "metrics", {**options.metadata(), **stamp}),
             "cases": write_table(cases, run_dir, "cases", stamp)}
    scores = read_parts(run_dir, "scores", SCORES_SCHEMA, fingerprint=fingerprint)
    if scores.num_rows:
        scores = dedupe_last(scores, ["model", "case_id", "object_id", "target_name"])
        scores = _keep_pairs(scores, succeeded)
        scores = _sorted(scores, ("model", "case_id", "object_id", "target_name"))
        files["scores"] = write_table(scores, run_dir, "scores", stamp)
    return files, cases


def rebuild_tables(run_dir: str | Path) -> list[Path]:
    """Rewrite a finished run's consolidated Parquet files from its parts (for a corrupt or
    deleted ``metrics``/``cases``/``scores`` file), with the options and fingerprint recorded
    in its ``run.json``. Raises :class:`StoreError` when the run cannot be rebuilt."""
    from medbench_fast.store.schema import metrics_schema

    run_dir = Path(run_dir)
    info = run_info.read_run_json(run_dir)
    fingerprint = (info.get("fingerprint") or {}).get("sha256")
    recorded = info.get("options")
    if not fingerprint or not recorded or not (run_dir / "parts").is_dir():
        raise StoreError(f"{run_dir}: cannot rebuild the tables: run.json records no finished run with parts/")
    try:
        options = MetricOptions.from_record(recorded)
    except ValueError as exc:
        raise StoreError(f"{run_dir / 'run.json'}: cannot rebuild the tables: {exc}") from None
    schema = metrics_schema(options.metrics)
    files, _ = consolidate(run_dir, options=options, schema=schema, fingerprint=fingerprint, run_id=info["run_id"])
    return sorted(files.values())


def _keep_pairs(table: pa.Table, pairs: set[tuple[str, str]]) -> pa.Table:
    """Rows whose (model, case_id) finished successfully (drops rows of a retried failure)."""
    if table.num_rows == 0:
        return table
    keep = [(m, c) in pairs for m, c in zip(table.column("model").to_pylist(), table.column("case_id").to_pylist())]
    return table if all(keep) else table.filter(pa.array(keep))


def _sorted(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """``table`` sorted by ``keys`` (ascending); one already in order is returned as it is (the
    common case: parts arrive in case order), so pyarrow's compute kernels load only when needed."""
    rows = list(zip(*(table.column(k).to_pylist() for k in keys)))
    try:
        if all(a <= b for a, b in zip(rows, rows[1:])):
            return table
    except TypeError:  # a null key: pyarrow's order (nulls last) decides
        pass
    return table.sort_by([(k, "ascending") for k in keys])


def _fill_label_union(metrics, cases, options, schema):
    """Give every successful case a row for each label seen anywhere in the run."""

    union = sorted(set(metrics.column("label").to_pylist()))
    segmenters = set(metrics.column("model").to_pylist())  # case-level models have no metric rows
    have: dict[tuple[str, str], set[int]] = {}
    for m, c, label in zip(*(metrics.column(k).to_pylist() for k in ("model", "case_id", "label"))):
        have.setdefault((m, c), set()).add(label)
    extra = []
    for row in cases.select(["run_id", "model", "case_id", "success", "shape", "spacing"]).to_pylist():
        if not row["success"] or row["model"] not in segmenters:
            continue
        missing = [label for label in union if label not in have.get((row["model"], row["case_id"]), set())]
        if missing:
            n_voxels = 1
            for s in row["shape"]:
                n_voxels *= s
            for r in both_empty_rows(missing, n_voxels=n_voxels, spacing=row["spacing"], **options.pair_kwargs()):
                extra.append({"run_id": row["run_id"], "model": row["model"], "case_id": row["case_id"], **r})
    if not extra:
        return metrics
    return _merge_in_order(metrics, pa.Table.from_pylist(extra, schema=schema), ("model", "case_id", "label"))


def _merge_in_order(table: pa.Table, extra: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """The rows of ``table`` and ``extra`` in ``keys`` order where each already is in that order
    (the usual case: both-empty rows filled into parts written in case order), by slicing and
    concatenating, so :func:`_sorted` finds the result in order and pyarrow's compute kernels
    (0.04 s to import) stay unloaded; otherwise both concatenated (and sorted later)."""
    rows = list(zip(*(table.column(k).to_pylist() for k in keys)))
    new = list(zip(*(extra.column(k).to_pylist() for k in keys)))
    try:
        if not all(a <= b for seq in (rows, new) for a, b in zip(seq, seq[1:])):
            return pa.concat_tables([table, extra])
    except TypeError:  # a null key: _sorted lets pyarrow order it
        return pa.concat_tables([table, extra])
    pieces, start = [], 0
    for j, key in enumerate(new):
        at = bisect.bisect_right(rows, key, lo=start)  # after equal keys: as if appended, then sorted stably
        pieces += [table.slice(start, at - start), extra.slice(j, 1)]
        start = at
    pieces.append(table.slice(start))
    return pa.concat_tables(pieces).combine_chunks()
