"""Sections of the leaderboard page as data, each a :class:`Section` or None when empty.

Sections hold text, numbers and :mod:`markup` cells only; ``templates/sections.html`` lays
them out (autoescaped), one macro per section ``kind``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from medbench_fast.report.charts import box_strip, scatter
from medbench_fast.report.latency import headline_stage
from medbench_fast.report.markup import Note, Num, Row, Table, Text, Verdict, ci_notes, fmt_p, inf_notes

#: Leaderboard columns: (key, title, where the value lives, higher is better, digits).
COLUMNS = (
    ("dice", "Dice", "metric", True, 3),
    ("iou", "IoU", "metric", True, 3),
    ("sensitivity", "Sensitivity", "metric", True, 3),
    ("specificity", "Specificity", "metric", True, 4),
    ("hd95", "HD95 mm", "metric", False, 2),
    ("nsd", "NSD", "metric", True, 3),
    ("success_rate", "Success", "cases", True, 1),
    ("p50_ms", "p50 ms", "latency", False, 1),
    ("p95_ms", "p95 ms", "latency", False, 1),
    ("throughput_per_s", "Throughput /s", "latency", True, 2),
)
DEFAULT_RANK = "dice"
THRESHOLD_METRICS = ("sensitivity", "specificity", "precision", "accuracy", "f1")


@dataclass(frozen=True)
class Section:
    """One section of the page: its anchor, heading, the macro that lays it out and that macro's data."""

    ident: str
    title: str
    kind: str
    data: dict = field(default_factory=dict)


def _noted(ident: str, title: str, note: str | None = None, tables: tuple[Table, ...] = ()) -> Section:
    """A section of an optional note followed by tables."""
    return Section(ident, title, "noted_tables", {"note": note, "tables": tables})


def _leaderboard_value(key: str, where: str, model: str, summary: dict) -> float | None:
    if where == "metric":
        return ((summary["models"].get(model) or {}).get(key) or {}).get("mean")
    if where == "cases":
        return summary["cases"].get(model, {}).get(key)
    stages = summary["latency"]["stages"].get(model, {})
    stage = headline_stage(stages)
    return stages[stage].get(key) if stage else None


def ordered_models(summary: dict) -> list[str]:
    """Models ordered by mean Dice (best first), then name; models without Dice last."""
    names = sorted(set(summary["cases"]) | set(summary["models"]) | set(summary["classification"]))

    def key(m):
        mean = ((summary["models"].get(m) or {}).get("dice") or {}).get("mean")
        return (mean is None, -(mean or 0.0), m)

    return sorted(names, key=key)


def _stage_note(summary: dict) -> str:
    stages = {headline_stage(s) for s in summary["latency"]["stages"].values()} - {None}
    return ", ".join(sorted(stages)) or "none timed"



def leaderboard_section(summary: dict, models: list[str]) -> Section | None:
    present = [c for c in COLUMNS if any(_leaderboard_value(c[0], c[2], m, summary) is not None for m in models)]
    columns = [("#", "num", None), ("Model", "text", None)] + [
        (title, "num", "desc" if higher else "asc") for _, title, _, higher, _ in present]
    rows = []
    for rank, model in enumerate(models, 1):
        cells = [Num(rank, 0, cls="rank"), Text(model, "model")]
        stats = summary["models"].get(model) or {}
        for key, _, where, _, digits in present:
            value = _leaderboard_value(key, where, model, summary)
            if key == "success_rate":
                c = summary["cases"].get(model, {})
                cells.append(Num(None if value is None else 100 * value, digits,
                                 (Note(f'{c.get("successful", 0)}/{c.get("cases", 0)}'),)))
            elif key == "dice":
                cells.append(Num(value, digits, ci_notes(stats.get("dice"))))
            elif where == "metric":
                cells.append(Num(value, digits, inf_notes(stats.get(key))))
            else:
                cells.append(Num(value, digits))
        rows.append(Row(tuple(cells), model=model))
    options = [(i + 2, title, key == DEFAULT_RANK) for i, (key, title, *_rest) in enumerate(present)]
    note = (f"Metrics are per-case means over foreground labels, averaged over successful cases; brackets: "
            f"bootstrap 95 % interval of the mean. Distances average the labels with a finite value; "
            f"\u201cinf left out\u201d counts labels whose distance is infinite (a mask is empty). "
            f"Latency columns quote the {_stage_note(summary)} stage. Click a column header to sort.")
    return Section("leaderboard", "Leaderboard", "leaderboard", {
        "options": options, "note": note, "table": Table(tuple(columns), rows, "leaderboard-table")})


def comparison_section(summary: dict) -> Section | None:
    rows = []
    for c in summary["comparisons"]:
        if not c.get("tested", True):
            cells = (Num(None, 0), Num(None, 4), Num(None, 4), Verdict(reason=str(c["reason"])))
        else:
            p = fmt_p(c["p_holm"])
            verdict = (Verdict(p, better=c["better"], worse=c["worse"], differ=c.get("conventions_differ"))
                       if c["significant"] else Verdict(p, differ=c.get("conventions_differ")))
            cells = (Num(c["n"], 0), Num(c["mean_diff"], 4), Num(c["p_holm"], 4), verdict)
        rows.append(Row((Text(c["metric"]), Text(c["model_a"], "model"), Text(c["model_b"], "model")) + cells))
    if not rows:
        return None
    columns = (("Metric", "text", None), ("A", "text", None), ("B", "text", None), ("Cases", "num", None),
               ("Mean A \u2212 B", "num", None), ("p (Holm)", "num", "asc"), ("Result", "text", None))
    note = ("Paired per-case differences, two-sided Wilcoxon signed-rank test, Holm correction across model "
            "pairs of each metric; a verdict is shown only when the adjusted p-value is below 0.05. Models of "
            "different runs are tested only where the runs computed the metric under the same conventions.")
    scope = summary.get("comparison_scope")
    if scope and scope["labels"]["dropped"]:
        dropped = "; ".join(f"{run}: {', '.join(map(str, labels))}" for run, labels in scope["labels"]["dropped"].items())
        note += (f" Labels compared: {', '.join(map(str, scope['labels']['compared']))}; labels scored by only some "
                 f"runs were left out ({dropped}).")
    return _noted("comparisons", "Paired comparisons", note, (Table(columns, rows),))


def per_label_section(summary: dict, models: list[str]) -> Section | None:
    keys = [("dice", "Dice", 3), ("iou", "IoU", 3), ("hd95", "HD95 mm", 2), ("nsd", "NSD", 3)]
    rows = []
    for model in models:
        for label, entry in (summary["per_label"].get(model) or {}).items():
            cells = [Text(model, "model"), Text(f"{label} {entry.get('label_name') or ''}".strip()),
                     Num(entry.get("cases"), 0)]
            for key, _, digits in keys:
                stats = entry.get(key) or {}
                notes = ci_notes(stats) if key == "dice" else ()
                if stats.get("inf_count"):
                    notes += (Note(f'{stats["inf_count"]} inf'),)
                cells.append(Num(stats.get("mean"), digits, notes))
            rows.append(Row(tuple(cells)))
    columns = (("Model", "text", None), ("Label", "text", None), ("Cases", "num", None)) + tuple(
        (title, "num", "asc" if key == "hd95" else "desc") for key, title, _ in keys)
    return _noted("labels", "Per label", None, (Table(columns, rows),)) if rows else None


def distribution_section(per_case: dict, models: list[str]) -> Section | None:
    charts = []
    plots = (("dice", "Dice per case", (0.0, 1.0)), ("hd95", "HD95 per case (mm), labels with a finite distance", None))
    for key, label, domain in plots:
        groups = {m: [c.get(key) for c in per_case.get(m, {}).values() if c.get(key) is not None] for m in models}
        if any(groups.values()):
            charts.append((box_strip(groups, label=label, title=label, order=models, domain=domain),
                           f"{label}: box = quartiles, whiskers = 1.5 IQR, dots = cases."))
    return Section("distributions", "Per-case distributions", "charts", {"charts": charts}) if charts else None


def scatter_section(summary: dict, models: list[str]) -> Section | None:
    points = []
    for i, model in enumerate(models):
        lat = _leaderboard_value("p50_ms", "latency", model, summary)
        dice = _leaderboard_value("dice", "metric", model, summary)
        if lat is not None and dice is not None:
            points.append((model, lat, dice, i))
    chart = scatter(points, x_label=f"p50 latency, ms ({_stage_note(summary)})", y_label="mean Dice",
                    title="Latency vs accuracy")
    return Section("tradeoff", "Latency vs accuracy", "figure", {"chart": chart}) if chart else None


def classification_section(summary: dict, models: list[str]) -> Section | None:
    rows = []
    for model in models:
        for target, c in summary["classification"].get(model, {}).items():
            at, yo = c["at_threshold"], c["at_youden"] or {}
            ci = c.get("auc_ci95")
            note = c.get("auc_ci_note")
            auc_notes = ((Note(f"[{ci[0]:.3f}, {ci[1]:.3f}]"),) if ci
                         else (Note("no interval", title=str(note)),) if note and c["auc"] is not None else ())
            rows.append(Row((Text(model, "model"), Text(target), Num(c["positives"], 0), Num(c["negatives"], 0),
                             Num(c["auc"], 3, auc_notes), Num(c["brier"], 3),
                             *(Num(at.get(k), 3) for k in THRESHOLD_METRICS),
                             Num(yo.get("threshold"), 3), Num(yo.get("sensitivity"), 3),
                             Num(yo.get("specificity"), 3))))
    if not rows:
        return None
    threshold = summary["conventions"].get("threshold")
    columns = (("Model", "text", None), ("Target", "text", None), ("Pos", "num", None), ("Neg", "num", None),
               ("ROC AUC", "num", "desc"), ("Brier", "num", "asc"), ("Sens", "num", "desc"), ("Spec", "num", "desc"),
               ("Prec", "num", "desc"), ("Acc", "num", "desc"), ("F1", "num", "desc"), ("Youden thr", "num", None),
               ("Sens @Y", "num", "desc"), ("Spec @Y", "num", "desc"))
    note = (f"Case-level scores. Sensitivity to F1 at threshold {'' if threshold is None else threshold}; the Youden "
            f"columns at the threshold maximising sensitivity + specificity \u2212 1. AUC interval: DeLong 95 %.")
    return _noted("classification", "Classification", note, (Table(columns, rows),))


def latency_section(summary: dict, models: list[str]) -> Section | None:
    keys = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "throughput_per_s")
    rows = []
    for model in models:
        for stage, s in summary["latency"]["stages"].get(model, {}).items():
            rows.append(Row((Text(model, "model"), Text(stage), Num(s["count"], 0),
                             *(Num(s.get(k), 2) for k in keys))))
    columns = (("Model", "text", None), ("Stage", "text", None), ("Cases", "num", None), ("p50 ms", "num", "asc"),
               ("p90 ms", "num", "asc"), ("p95 ms", "num", "asc"), ("p99 ms", "num", "asc"), ("Mean ms", "num", "asc"),
               ("Per s", "num", "desc"))
    stages = Table(columns, rows) if rows else None
    prof = []
    for model, profiles in summary["latency"]["profiles"].items():
        for p in profiles:
            flag = (Note("unstable", cls="warn"),) if p.get("unstable") else ()
            prof.append(Row((Text(model, "model"), Text(p.get("provider")), Num(p.get("batch_size"), 0),
                             Num(p.get("cold_start_s"), 3), *(Num(p.get(k), 2) for k in ("p50_ms", "p95_ms", "p99_ms")),
                             Num(p.get("cv"), 3, flag), Num(p.get("throughput_items_per_s"), 1),
                             Num(p.get("peak_rss_mb"), 0))))
    columns = (("Model", "text", None), ("Provider", "text", None), ("Batch", "num", None),
               ("Cold start s", "num", "asc"), ("p50 ms", "num", "asc"), ("p95 ms", "num", "asc"),
               ("p99 ms", "num", "asc"), ("CV", "num", "asc"), ("Items/s", "num", "desc"), ("Peak RSS MB", "num", "asc"))
    profiles = Table(columns, prof) if prof else None
    wall = summary["latency"].get("wall")
    if wall:
        wall = {"cases": wall["cases"], "seconds": f'{wall["seconds"]:.2f}', "rate": f'{wall["cases_per_s"]:.2f}'}
    if not (stages or profiles or wall):
        return None
    note = ("Per-stage times of successful cases; per s = cases per second of stage time, as if the stage ran "
            "alone. Profiles: throughput on the wall clock, warm-up excluded.")
    return Section("latency", "Latency", "latency", {"note": note, "wall": wall, "stages": stages, "profiles": profiles})


def failures_section(summary: dict, models: list[str]) -> Section | None:
    rows = []
    for model in models:
        for f in summary["cases"].get(model, {}).get("failures", []):
            rows.append(Row((Text(model, "model"), Text(f["case_id"]), Text(f["error"], "error", code=True))))
    if not rows:
        return _noted("failures", "Failures", "No case failed.")
    columns = (("Model", "text", None), ("Case", "text", None), ("Error", "text", None))
    return _noted("failures", f"Failures ({len(rows)})", None, (Table(columns, rows),))


def _pairs(items: dict) -> list[tuple[str, str]]:
    """``(key, text)`` of a mapping's set values; lists and mappings as JSON."""
    return [(str(k), json.dumps(v, sort_keys=True, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v))
            for k, v in items.items() if v is not None]


def _hub_source(m: dict) -> dict:
    """The Hub provenance of a run.json model entry (``hub``, ``revision``, ``sha``, ``license``), or {}."""
    spec = m.get("spec") if isinstance(m.get("spec"), dict) else {}
    source = spec.get("source") if isinstance(spec.get("source"), dict) else {}
    return source if source.get("hub") else {}


def _model_table(models: dict) -> Table:
    rows = []
    models = {name: m if isinstance(m, dict) else {} for name, m in models.items()}
    hub = any(_hub_source(m) for m in models.values())
    for name, m in sorted(models.items()):
        providers = m.get("providers_in_use")
        source = _hub_source(m)
        hub_cells = (Text(f"{source['hub']}@{str(source.get('sha'))[:12]}" if source else None),
                     Text(source.get("license") or ("unknown" if source else None))) if hub else ()
        rows.append(Row((Text(name, "model"), Text(m.get("kind")), *hub_cells,
                         Text(", ".join(map(str, providers)) if isinstance(providers, list) else providers),
                         Num(m.get("session_s"), 3), Num(m.get("cold_start_s"), 3))))
    columns = (("Model", "text", None), ("Kind", "text", None),
               *((("Hub source", "text", None), ("License", "text", None)) if hub else ()),
               ("Providers in use", "text", None), ("Session s", "num", "asc"), ("Cold start s", "num", "asc"))
    return Table(columns, rows)


def _workers_table(workers: list) -> Table:
    """One row per worker of the run: where it ran, on which GPU, what it did, how it ended."""
    rows = []
    for w in workers:
        w = w if isinstance(w, dict) else {}
        cold = w.get("cold_start_s")
        cold_total = sum(v for v in cold.values() if isinstance(v, (int, float))) if isinstance(cold, dict) else None
        providers = w.get("providers_in_use")
        if isinstance(providers, dict):
            providers = "; ".join(f"{m}: {', '.join(map(str, p))}" for m, p in sorted(providers.items())
                                  if isinstance(p, list))
        rows.append(Row((Text(w.get("executor")), Text(w.get("host")), Num(w.get("pid"), 0),
                         Text(w.get("cuda_visible_devices")), Num(w.get("threads"), 0), Text(providers),
                         Num(w.get("cases_done"), 0), Num(cold_total, 3), Text(w.get("ended")))))
    columns = (("Executor", "text", None), ("Host", "text", None), ("PID", "num", None),
               ("CUDA_VISIBLE_DEVICES", "text", None), ("Threads", "num", None), ("Providers in use", "text", None),
               ("Cases", "num", None), ("Cold start s", "num", "asc"), ("Ended", "text", None))
    return Table(columns, rows)


def _environment(info: dict) -> dict:
    """One run's ``run.json`` as blocks: run, hardware, versions, providers, options, models, workers, config."""
    run = {k: info.get(k) for k in ("run_id", "started", "finished", "status", "command", "model", "executor",
                                    "shards", "ray_startup_s", "git_commit")}
    run["fingerprint"] = (info.get("fingerprint") or {}).get("sha256")
    facts = []  # (title, key-value pairs or None, paragraph text or None)
    for key, title in (("hardware", "Hardware"), ("versions", "Versions"), ("providers", "Providers"),
                       ("options", "Options"), ("conventions", "Conventions")):
        value = info.get(key)
        if value:
            if isinstance(value, dict):
                facts.append((title, _pairs(value), None))
            else:
                facts.append((title, None, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))
    models = _model_table(info["models"]) if isinstance(info.get("models"), dict) and info["models"] else None
    workers = _workers_table(info["workers"]) if isinstance(info.get("workers"), list) and info["workers"] else None
    config = info.get("config")
    text = config.get("text") if isinstance(config, dict) else config
    sha = config.get("sha256") if isinstance(config, dict) else None
    return {"run": _pairs(run), "facts": facts, "models": models, "workers": workers,
            "config": str(text) if text else None, "config_sha": str(sha) if text and sha else None}


def environment_section(info: dict) -> Section | None:
    if "runs" in info:
        runs = [(str(name), _environment(run)) for name, run in info["runs"].items()]
    else:
        runs = [(None, _environment(info))]
    return Section("environment", "Environment", "environment", {"runs": runs})
