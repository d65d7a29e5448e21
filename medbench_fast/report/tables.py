"""Report files of a run folder: ``results.csv``, ``cases.csv``, ``summary.json``, ``leaderboard.html``.

Pure functions of the run's Parquet files and ``run.json``: rebuilding them from the same
files gives byte-identical output (the only timestamps are the run's own).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv

from medbench_fast.files import atomic_write, path_inside, write_text_atomic
from medbench_fast.report.latency import profile_rows, stage_summary, wall_throughput
from medbench_fast.report.conventions import convention_differences, label_sets
from medbench_fast.report.paired import paired_comparisons
from medbench_fast.report.run import RunTables, load_run
from medbench_fast.report.summary import (
    case_summary,
    foreground_per_case,
    model_summary,
    nnunet_summary,
    per_label_summary,
    replace_inf_by_diagonal,
    seed_fields,
)

FORMATS = ("csv", "json", "html")
#: The files of each report format, in the order they are written.
REPORT_FILES = {"csv": ("results.csv", "cases.csv"), "json": ("summary.json",), "html": ("leaderboard.html",)}


def report_files(formats=FORMATS) -> list[str]:
    """Names of the report files that ``formats`` write, in writing order."""
    return [name for f in FORMATS if f in formats for name in REPORT_FILES[f]]
WORST_DISTANCE = ("inf", "diagonal")
#: The seed prototype's per-case CSV columns.
SEED_CASE_COLUMNS = ("case_id", "model", "inference_time", "success", "image_shape", "seg_shape")


#: First characters that make spreadsheets evaluate a CSV cell as a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(text: str | None) -> str | None:
    """``text`` prefixed with ``'`` when a spreadsheet would run it as a formula, else unchanged."""
    return "'" + text if text and text.startswith(FORMULA_STARTS) else text


def neutralise_table(table: pa.Table) -> pa.Table:
    """``table`` with :func:`neutralise_cell` applied to every string column (for CSV only).

    Plain Python over the column's values: a run's string columns are short, and a column
    without a risky cell (the usual case) is kept as it is, so ``pyarrow.compute`` (0.04 s to
    import) is not needed."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            values = table.column(i).to_pylist()
            if any(v and v.startswith(FORMULA_STARTS) for v in values):
                table = table.set_column(i, field, pa.array([neutralise_cell(v) for v in values], field.type))
    return table


def _json_safe(value):
    """NaN becomes null and infinities the strings "inf"/"-inf" (strict JSON has neither)."""
    kind = type(value)
    if kind is float:  # the common leaves first: exact type checks cost less than isinstance
        return value if value - value == 0.0 else _non_finite(value)  # inf - inf and NaN - NaN are NaN
    if kind is str or kind is int or value is None or kind is bool:
        return value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):  # numpy's float64 and other subclasses
        return value if math.isfinite(value) else _non_finite(value)
    return value


def _non_finite(value: float):
    if math.isnan(value):
        return None
    return "inf" if value > 0 else "-inf"


def summary_json(summary: dict) -> str:
    """The text of ``summary.json`` for a JSON-safe ``summary`` (:func:`_json_safe`): keys sorted,
    objects indented by two spaces with one key per line, arrays of numbers or strings on one
    line, and arrays holding objects or arrays (``metric_per_case``, failures, comparisons)
    one compact item per line. Python's ``json.dumps(indent=...)`` encodes in pure Python; this
    walks only the few indented levels there and leaves each line's items to the C encoder,
    about ten times faster on the per-case section of a thousand cases."""
    return _indented(summary, "") + "\n"


#: One line of JSON by the C encoder, keys sorted.
_compact = json.JSONEncoder(sort_keys=True, allow_nan=False).encode


def _indented(value, pad: str) -> str:
    inner = pad + "  "
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        return "{\n" + ",\n".join(f"{inner}{_compact(k)}: {_indented(v, inner)}" for k, v in sorted(value.items())) \
            + "\n" + pad + "}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        return "[\n" + ",\n".join(inner + _compact(v) for v in value) + "\n" + pad + "]"
    return _compact(value)


def classification_section(scores: pa.Table | None, *, threshold: float = 0.5) -> dict:
    """``{model: {target_name: classification_summary}}`` over rows with both a score and a target."""
    if scores is None:
        return {}
    from medbench_fast.metrics.classification import classification_summary  # scipy.stats: only for scores

    groups: dict[tuple[str, str], tuple[list, list]] = {}
    for r in scores.select(["model", "target_name", "score", "target"]).to_pylist():
        if r["score"] is None or r["target"] is None:
            continue
        s, t = groups.setdefault((r["model"], r["target_name"] or ""), ([], []))
        s.append(r["score"])
        t.append(r["target"])
    out: dict = {}
    for (model, target), (s, t) in sorted(groups.items()):
        out.setdefault(model, {})[target] = classification_summary(s, t, threshold=threshold)
    return out


def _run_record(info: dict) -> dict:
    keys = ("run_id", "started", "finished", "command", "git_commit")
    if "runs" in info:
        return {"runs": {name: {k: run.get(k) for k in keys} for name, run in info["runs"].items()}}
    return {k: info.get(k) for k in keys}


def _comparison_inputs(tables: RunTables, metrics: pa.Table, per_case: dict, inf_labels: dict):
    """For merged runs: per-case means over the labels every run scored, a function naming the
    conventions that differ between two models' runs, and the comparison scope for the summary."""
    model_runs = tables.info.get("model_runs")
    if not model_runs:
        return per_case, inf_labels, None, None
    runs = tables.info["runs"]
    labels: dict[str, set[int]] = {name: set() for name in runs}
    for model, label in zip(metrics.column("model").to_pylist(), metrics.column("label").to_pylist()):
        if label != 0:
            labels[model_runs[model]].add(label)
    scope = {"labels": label_sets({k: v for k, v in labels.items() if v}), "runs": dict(sorted(model_runs.items()))}
    if scope["labels"]["dropped"]:
        import pyarrow.compute as pc  # merged runs only

        keep = pc.is_in(metrics.column("label"), value_set=pa.array(scope["labels"]["compared"], metrics.schema.field("label").type))
        per_case, inf_labels = foreground_per_case(metrics.filter(keep))

    def conflicts(a: str, b: str, metric: str) -> list[str]:
        ra, rb = model_runs[a], model_runs[b]
        return [] if ra == rb else convention_differences(metric, runs[ra]["conventions"], runs[rb]["conventions"])

    return per_case, inf_labels, conflicts, scope


def summarize(tables: RunTables, *, worst_distance: str = "inf", threshold: float = 0.5,
              allow_conflicts: bool = False) -> tuple[dict, dict]:
    """The ``summary.json`` content and the per-case foreground means ``{model: {case: {metric: v}}}``.

    For merged runs, models of different runs are tested only on the labels every run scored
    and only for metrics computed under the same conventions (``allow_conflicts`` tests them
    anyway and records the differences); ``comparison_scope`` says what was compared.
    """
    if worst_distance not in WORST_DISTANCE:
        raise ValueError(f"worst_distance: {worst_distance!r} is not one of inf, diagonal")
    metrics = tables.metrics
    if worst_distance == "diagonal":
        metrics = replace_inf_by_diagonal(metrics, tables.cases)
    per_case, inf_labels = foreground_per_case(metrics)
    cmp_case, cmp_inf, conflicts, scope = _comparison_inputs(tables, metrics, per_case, inf_labels)
    summary = {
        "run_id": tables.info.get("run_id"),
        "run": _run_record(tables.info),
        "conventions": {**tables.conventions, "worst_distance": worst_distance, "threshold": threshold},
        **seed_fields(tables.cases),
        "cases": case_summary(tables.cases),
        "models": model_summary(per_case, inf_labels),
        "per_label": per_label_summary(metrics),
        "comparisons": paired_comparisons(cmp_case, cmp_inf, conflicts=conflicts, allow_conflicts=allow_conflicts),
        **({"comparison_scope": scope} if scope else {}),
        "latency": {"stages": stage_summary(tables.cases), "profiles": profile_rows(tables.latency),
                    "wall": wall_throughput(tables.info)},
        "classification": classification_section(tables.scores, threshold=threshold),
        "nnunet": nnunet_summary(metrics, tables.cases),
    }
    return summary, per_case


def build_summary(run_dir: str | os.PathLike, *, worst_distance: str = "inf", threshold: float = 0.5) -> dict:
    """The ``summary.json`` content of a run folder (``worst_distance``: ``inf`` or ``diagonal``)."""
    return summarize(load_run(run_dir), worst_distance=worst_distance, threshold=threshold)[0]


def _shape_text(shape) -> str:
    return "" if shape is None else "(" + ", ".join(str(int(n)) for n in shape) + ")"


def seed_cases_csv(cases: pa.Table) -> str:
    """The seed prototype's per-case CSV: inference time in seconds, shapes as ``(z, y, x)``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(SEED_CASE_COLUMNS)
    for r in cases.select(["case_id", "model", "inference_s", "success", "shape"]).to_pylist():
        shape = _shape_text(r["shape"])
        time_s = "" if r["inference_s"] is None else repr(float(r["inference_s"]))
        writer.writerow([neutralise_cell(r["case_id"]), neutralise_cell(r["model"]), time_s, bool(r["success"]),
                         shape, shape])
    return buf.getvalue()


class ReportsError(Exception):
    """A report file could not be written (the results it reports on are whole).

    Attributes: ``failed`` (the file), ``cause`` (the OSError), ``written`` and ``missing``
    (report files written before it, and the ones not written, it included).
    """

    def __init__(self, out_dir: Path, failed: Path, cause: OSError, written: list[Path], missing: list[Path], *,
                 rerun: str | None = None):
        self.out_dir, self.failed, self.cause, self.written, self.missing = out_dir, failed, cause, written, missing
        reason = cause.strerror or str(cause)
        done = ", ".join(p.name for p in written) or "none"
        todo = ", ".join(p.name for p in missing)
        fix = "free space on its disk" if cause.errno == errno.ENOSPC else "fix that"
        super().__init__(f"{failed}: {reason}; reports not written: {todo} (written: {done}); "
                         f"{fix}, then run `{rerun or 'the command again'}`")

    def record(self) -> dict:
        """What ``run.json`` keeps of the failure under ``reports``."""
        return {"status": "failed", "error": str(self), "written": [p.name for p in self.written],
                "missing": [p.name for p in self.missing]}


def write_tables_reports(tables: RunTables, out_dir: str | os.PathLike, *, formats=FORMATS,
                         worst_distance: str = "inf", threshold: float = 0.5,
                         allow_conflicts: bool = False, rerun: str | None = None) -> dict[str, Path]:
    """Write the requested report ``formats`` of ``tables`` into ``out_dir``; return the paths by kind
    (``allow_conflicts``: see :func:`summarize`).

    Each file is written atomically (a failed write keeps the previous file); a file that
    cannot be written (disk full, no permission) stops the writing with :class:`ReportsError`,
    which names it, the files written before it and those not written, and says to run
    ``rerun`` (the command that writes them again) once the cause is fixed. In the CSV
    files, text cells that a spreadsheet would run as a formula get a leading ``'``; the
    Parquet files keep the text as it is.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"formats: {sorted(unknown)} not among {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps: list[tuple[str, Path, Callable[[Path], None]]] = []
    if "csv" in formats:
        metrics = neutralise_table(tables.metrics.replace_schema_metadata(None))
        steps.append(("csv", path_inside(out_dir, REPORT_FILES["csv"][0]), lambda path: atomic_write(
            path, lambda tmp: pcsv.write_csv(metrics, tmp))))
        steps.append(("cases_csv", path_inside(out_dir, REPORT_FILES["csv"][1]),
                      lambda path: write_text_atomic(path, seed_cases_csv(tables.cases))))
    if "json" in formats or "html" in formats:
        summary, per_case = summarize(tables, worst_distance=worst_distance, threshold=threshold,
                                      allow_conflicts=allow_conflicts)
        summary = _json_safe(summary)
    if "json" in formats:
        steps.append(("summary", path_inside(out_dir, REPORT_FILES["json"][0]), lambda path: write_text_atomic(
            path, summary_json(summary))))
    if "html" in formats:
        from medbench_fast.report.html import render_leaderboard

        steps.append(("html", path_inside(out_dir, REPORT_FILES["html"][0]),
                      lambda path: write_text_atomic(path, render_leaderboard(summary, per_case, tables.info))))
    files: dict[str, Path] = {}
    for kind, path, write in steps:
        try:
            write(path)
        except OSError as exc:
            raise ReportsError(out_dir, path, exc, list(files.values()), [p for _, p, _ in steps[len(files):]],
                               rerun=rerun) from exc
        files[kind] = path
    return files


def write_reports(run_dir: str | os.PathLike, *, worst_distance: str = "inf", formats=FORMATS,
                  threshold: float = 0.5) -> dict[str, Path]:
    """Write the run folder's reports: ``csv`` (``results.csv``, one row per model, case, label, and the
    seed's ``cases.csv``), ``json`` (``summary.json``) and ``html`` (``leaderboard.html``)."""
    return write_tables_reports(load_run(run_dir), run_dir, formats=formats, worst_distance=worst_distance,
                                threshold=threshold, rerun=f"medbench report {run_dir}")
