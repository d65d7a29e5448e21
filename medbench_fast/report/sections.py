"""Sections of the leaderboard page, each ``(anchor id, title, HTML body)`` or None when empty."""

from __future__ import annotations

import json

from medbench_fast.report.charts import box_strip, scatter
from medbench_fast.report.latency import headline_stage
from medbench_fast.report.markup import ci_text, fmt_p, h, inf_text, num_cell, table, text_cell

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
#: A page section: (anchor id, escaped title, HTML body).
Section = tuple[str, str, str]


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
    header = [("#", "num", None), ("Model", "text", None)] + [
        (title, "num", "desc" if higher else "asc") for _, title, _, higher, _ in present]
    rows = []
    for rank, model in enumerate(models, 1):
        cells = [f'<td class="num rank" data-v="{rank}">{rank}</td>', text_cell(model, "model")]
        for key, _, where, _, digits in present:
            value = _leaderboard_value(key, where, model, summary)
            if key == "success_rate":
                c = summary["cases"].get(model, {})
                cells.append(num_cell(None if value is None else 100 * value, digits,
                                       f'<span class="ci">{c.get("successful", 0)}/{c.get("cases", 0)}</span>'))
            elif key == "dice":
                cells.append(num_cell(value, digits, ci_text(summary["models"].get(model, {}).get("dice"))))
            elif where == "metric":
                cells.append(num_cell(value, digits, inf_text(summary["models"].get(model, {}).get(key))))
            else:
                cells.append(num_cell(value, digits))
        rows.append(f'<tr data-model="{h(model)}">{"".join(cells)}</tr>')
    options = "".join(
        f'<option value="{i + 2}"{" selected" if key == DEFAULT_RANK else ""}>{h(title)}</option>'
        for i, (key, title, *_rest) in enumerate(present))
    controls = (f'<label class="rank-by">Rank by <select id="rank-by">{options}</select></label>' if present else "")
    note = (f"Metrics are per-case means over foreground labels, averaged over successful cases; brackets: "
            f"bootstrap 95 % interval of the mean. Distances average the labels with a finite value; "
            f"\u201cinf left out\u201d counts labels whose distance is infinite (a mask is empty). "
            f"Latency columns quote the {h(_stage_note(summary))} stage. Click a column header to sort.")
    return ("leaderboard", "Leaderboard", f'{controls}<p class="note">{note}</p>'
            + table(header, rows, table_id="leaderboard-table"))


def comparison_section(summary: dict) -> Section | None:
    rows = []
    for c in summary["comparisons"]:
        if not c.get("tested", True):
            rows.append("<tr>" + text_cell(c["metric"]) + text_cell(c["model_a"], "model")
                        + text_cell(c["model_b"], "model") + num_cell(None, 0) + num_cell(None, 4) + num_cell(None, 4)
                        + f'<td>not tested: {h(c["reason"])}</td></tr>')
            continue
        if c["significant"]:
            verdict = f'<strong>{h(c["better"])}</strong> better than {h(c["worse"])} ({fmt_p(c["p_holm"])})'
        else:
            verdict = f'no significant difference ({fmt_p(c["p_holm"])})'
        if c.get("conventions_differ"):
            verdict += f' <em>(conventions differ: {h(c["conventions_differ"])})</em>'
        rows.append("<tr>" + text_cell(c["metric"]) + text_cell(c["model_a"], "model") + text_cell(c["model_b"], "model")
                    + num_cell(c["n"], 0) + num_cell(c["mean_diff"], 4) + num_cell(c["p_holm"], 4)
                    + f"<td>{verdict}</td></tr>")
    if not rows:
        return None
    header = [("Metric", "text", None), ("A", "text", None), ("B", "text", None), ("Cases", "num", None),
              ("Mean A \u2212 B", "num", None), ("p (Holm)", "num", "asc"), ("Result", "text", None)]
    note = ("Paired per-case differences, two-sided Wilcoxon signed-rank test, Holm correction across model "
            "pairs of each metric; a verdict is shown only when the adjusted p-value is below 0.05. Models of "
            "different runs are tested only where the runs computed the metric under the same conventions.")
    scope = summary.get("comparison_scope")
    if scope and scope["labels"]["dropped"]:
        dropped = "; ".join(f"{run}: {', '.join(map(str, labels))}" for run, labels in scope["labels"]["dropped"].items())
        note += (f" Labels compared: {', '.join(map(str, scope['labels']['compared']))}; labels scored by only some "
                 f"runs were left out ({dropped}).")
    note = h(note)
    return ("comparisons", "Paired comparisons", f'<p class="note">{note}</p>{table(header, rows)}')


def per_label_section(summary: dict, models: list[str]) -> Section | None:
    keys = [("dice", "Dice", 3), ("iou", "IoU", 3), ("hd95", "HD95 mm", 2), ("nsd", "NSD", 3)]
    rows = []
    for model in models:
        for label, entry in (summary["per_label"].get(model) or {}).items():
            cells = [text_cell(model, "model"), text_cell(f"{label} {entry.get('label_name') or ''}".strip()),
                     num_cell(entry.get("cases"), 0)]
            for key, _, digits in keys:
                stats = entry.get(key) or {}
                extra = ci_text(stats) if key == "dice" else ""
                if stats.get("inf_count"):
                    extra += f'<span class="ci">{stats["inf_count"]} inf</span>'
                cells.append(num_cell(stats.get("mean"), digits, extra))
            rows.append("<tr>" + "".join(cells) + "</tr>")
    header = [("Model", "text", None), ("Label", "text", None), ("Cases", "num", None)] + [
        (title, "num", "asc" if key == "hd95" else "desc") for key, title, _ in keys]
    return ("labels", "Per label", table(header, rows)) if rows else None


def distribution_section(per_case: dict, models: list[str]) -> Section | None:
    charts = []
    plots = (("dice", "Dice per case", (0.0, 1.0)), ("hd95", "HD95 per case (mm), labels with a finite distance", None))
    for key, label, domain in plots:
        groups = {m: [c.get(key) for c in per_case.get(m, {}).values() if c.get(key) is not None] for m in models}
        if any(groups.values()):
            svg = box_strip(groups, label=label, title=label, order=models, domain=domain)
            charts.append(f'<figure><div class="chart-wrap">{svg}</div><figcaption>{h(label)}: box = quartiles, '
                          f"whiskers = 1.5 IQR, dots = cases.</figcaption></figure>")
    return ("distributions", "Per-case distributions", f'<div class="charts">{"".join(charts)}</div>') if charts else None


def scatter_section(summary: dict, models: list[str]) -> Section | None:
    points = []
    for i, model in enumerate(models):
        lat = _leaderboard_value("p50_ms", "latency", model, summary)
        dice = _leaderboard_value("dice", "metric", model, summary)
        if lat is not None and dice is not None:
            points.append((model, lat, dice, i))
    svg = scatter(points, x_label=f"p50 latency, ms ({_stage_note(summary)})", y_label="mean Dice",
                  title="Latency vs accuracy")
    return ("tradeoff", "Latency vs accuracy", f'<figure><div class="chart-wrap">{svg}</div></figure>') if svg else None


def classification_section(summary: dict, models: list[str]) -> Section | None:
    rows = []
    for model in models:
        for target, c in summary["classification"].get(model, {}).items():
            at, yo = c["at_threshold"], c["at_youden"] or {}
            ci = c.get("auc_ci95")
            note = c.get("auc_ci_note")
            auc_extra = (f'<span class="ci">[{ci[0]:.3f}, {ci[1]:.3f}]</span>' if ci
                         else f'<span class="ci" title="{h(note)}">no interval</span>' if note and c["auc"] is not None
                         else "")
            rows.append("<tr>" + text_cell(model, "model") + text_cell(target)
                        + num_cell(c["positives"], 0) + num_cell(c["negatives"], 0)
                        + num_cell(c["auc"], 3, auc_extra) + num_cell(c["brier"], 3)
                        + "".join(num_cell(at.get(k), 3) for k in THRESHOLD_METRICS)
                        + num_cell(yo.get("threshold"), 3) + num_cell(yo.get("sensitivity"), 3)
                        + num_cell(yo.get("specificity"), 3) + "</tr>")
    if not rows:
        return None
    threshold = summary["conventions"].get("threshold")
    header = [("Model", "text", None), ("Target", "text", None), ("Pos", "num", None), ("Neg", "num", None),
              ("ROC AUC", "num", "desc"), ("Brier", "num", "asc"), ("Sens", "num", "desc"), ("Spec", "num", "desc"),
              ("Prec", "num", "desc"), ("Acc", "num", "desc"), ("F1", "num", "desc"), ("Youden thr", "num", None),
              ("Sens @Y", "num", "desc"), ("Spec @Y", "num", "desc")]
    note = (f"Case-level scores. Sensitivity to F1 at threshold {h(threshold)}; the Youden columns at the threshold "
            f"maximising sensitivity + specificity \u2212 1. AUC interval: DeLong 95 %.")
    return ("classification", "Classification", f'<p class="note">{note}</p>{table(header, rows)}')


def latency_section(summary: dict, models: list[str]) -> Section | None:
    keys = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "throughput_per_s")
    rows = []
    for model in models:
        for stage, s in summary["latency"]["stages"].get(model, {}).items():
            rows.append("<tr>" + text_cell(model, "model") + text_cell(stage) + num_cell(s["count"], 0)
                        + "".join(num_cell(s.get(k), 2) for k in keys) + "</tr>")
    header = [("Model", "text", None), ("Stage", "text", None), ("Cases", "num", None), ("p50 ms", "num", "asc"),
              ("p90 ms", "num", "asc"), ("p95 ms", "num", "asc"), ("p99 ms", "num", "asc"), ("Mean ms", "num", "asc"),
              ("Per s", "num", "desc")]
    parts = [table(header, rows)] if rows else []
    prof = []
    for model, profiles in summary["latency"]["profiles"].items():
        for p in profiles:
            flag = ' <span class="warn">unstable</span>' if p.get("unstable") else ""
            prof.append("<tr>" + text_cell(model, "model") + text_cell(p.get("provider"))
                        + num_cell(p.get("batch_size"), 0) + num_cell(p.get("cold_start_s"), 3)
                        + "".join(num_cell(p.get(k), 2) for k in ("p50_ms", "p95_ms", "p99_ms"))
                        + num_cell(p.get("cv"), 3, flag) + num_cell(p.get("throughput_items_per_s"), 1)
                        + num_cell(p.get("peak_rss_mb"), 0) + "</tr>")
    if prof:
        header = [("Model", "text", None), ("Provider", "text", None), ("Batch", "num", None), ("Cold start s", "num", "asc"),
                  ("p50 ms", "num", "asc"), ("p95 ms", "num", "asc"), ("p99 ms", "num", "asc"), ("CV", "num", "asc"),
                  ("Items/s", "num", "desc"), ("Peak RSS MB", "num", "asc")]
        parts.append("<h3>Profiles</h3>" + table(header, prof))
    wall = summary["latency"].get("wall")
    if wall:
        parts.insert(0, f'<p>Pipeline: {wall["cases"]} cases in {wall["seconds"]:.2f} s on the wall clock, '
                        f'<strong>{wall["cases_per_s"]:.2f} cases/s</strong> (all models, stages overlapped).</p>')
    note = ("Per-stage times of successful cases; per s = cases per second of stage time, as if the stage ran "
            "alone. Profiles: throughput on the wall clock, warm-up excluded.")
    return ("latency", "Latency", f'<p class="note">{note}</p>{"".join(parts)}') if parts else None


def failures_section(summary: dict, models: list[str]) -> Section | None:
    rows = []
    for model in models:
        for f in summary["cases"].get(model, {}).get("failures", []):
            rows.append("<tr>" + text_cell(model, "model") + text_cell(f["case_id"])
                        + f'<td class="error" data-v="{h(f["error"])}"><code>{h(f["error"])}</code></td></tr>')
    if not rows:
        return ("failures", "Failures", '<p class="note">No case failed.</p>')
    header = [("Model", "text", None), ("Case", "text", None), ("Error", "text", None)]
    return ("failures", f"Failures ({len(rows)})", table(header, rows))


def _dl(items: dict) -> str:
    rows = "".join(f"<dt>{h(k)}</dt><dd>{h(json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)}</dd>"
                   for k, v in items.items() if v is not None)
    return f"<dl>{rows}</dl>" if rows else ""


def _hub_source(m: dict) -> dict:
    """The Hub provenance of a run.json model entry (``hub``, ``revision``, ``sha``, ``license``), or {}."""
    spec = m.get("spec") if isinstance(m.get("spec"), dict) else {}
    source = spec.get("source") if isinstance(spec.get("source"), dict) else {}
    return source if source.get("hub") else {}


def _model_table(models: dict) -> str:
    rows = []
    models = {name: m if isinstance(m, dict) else {} for name, m in models.items()}
    hub = any(_hub_source(m) for m in models.values())
    for name, m in sorted(models.items()):
        providers = m.get("providers_in_use")
        source = _hub_source(m)
        hub_cells = (text_cell(f"{source['hub']}@{str(source.get('sha'))[:12]}" if source else None)
                     + text_cell(source.get("license") or ("unknown" if source else None))) if hub else ""
        rows.append("<tr>" + text_cell(name, "model") + text_cell(m.get("kind")) + hub_cells
                    + text_cell(", ".join(map(str, providers)) if isinstance(providers, list) else providers)
                    + num_cell(m.get("session_s"), 3) + num_cell(m.get("cold_start_s"), 3) + "</tr>")
    header = [("Model", "text", None), ("Kind", "text", None),
              *([("Hub source", "text", None), ("License", "text", None)] if hub else []),
              ("Providers in use", "text", None), ("Session s", "num", "asc"), ("Cold start s", "num", "asc")]
    return "<h3>Models</h3>" + table(header, rows)


def _workers_table(workers: list) -> str:
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
        rows.append("<tr>" + text_cell(w.get("executor")) + text_cell(w.get("host")) + num_cell(w.get("pid"), 0)
                    + text_cell(w.get("cuda_visible_devices")) + num_cell(w.get("threads"), 0) + text_cell(providers)
                    + num_cell(w.get("cases_done"), 0) + num_cell(cold_total, 3) + text_cell(w.get("ended"))
                    + "</tr>")
    header = [("Executor", "text", None), ("Host", "text", None), ("PID", "num", None),
              ("CUDA_VISIBLE_DEVICES", "text", None), ("Threads", "num", None), ("Providers in use", "text", None),
              ("Cases", "num", None), ("Cold start s", "num", "asc"), ("Ended", "text", None)]
    return "<h3>Workers</h3>" + table(header, rows)


def _environment(info: dict) -> str:
    """Blocks of one run's ``run.json``: run, hardware, versions, providers, options, models, config."""
    run = {k: info.get(k) for k in ("run_id", "started", "finished", "status", "command", "model", "executor",
                                    "shards", "ray_startup_s", "git_commit")}
    run["fingerprint"] = (info.get("fingerprint") or {}).get("sha256")
    blocks = ["<div><h3>Run</h3>" + _dl(run) + "</div>"]
    for key, title in (("hardware", "Hardware"), ("versions", "Versions"), ("providers", "Providers"),
                       ("options", "Options"), ("conventions", "Conventions")):
        value = info.get(key)
        if value:
            text = ", ".join(map(str, value)) if isinstance(value, list) else value
            body = _dl(value) if isinstance(value, dict) else f"<p>{h(text)}</p>"
            blocks.append(f"<div><h3>{title}</h3>{body}</div>")
    if isinstance(info.get("models"), dict) and info["models"]:
        blocks.append('<div class="wide">' + _model_table(info["models"]) + "</div>")
    if isinstance(info.get("workers"), list) and info["workers"]:
        blocks.append('<div class="wide">' + _workers_table(info["workers"]) + "</div>")
    config = info.get("config")
    text = config.get("text") if isinstance(config, dict) else config
    if text:
        sha = config.get("sha256") if isinstance(config, dict) else None
        digest = f'<p class="note">sha256 <code>{h(sha)}</code></p>' if sha else ""
        blocks.append(f'<div class="wide"><details><summary>Config</summary>{digest}<pre>{h(text)}</pre></details></div>')
    return f'<div class="env">{"".join(blocks)}</div>'


def environment_section(info: dict) -> Section | None:
    if "runs" in info:
        body = "".join(f'<h3 class="run-name">Run {h(name)}</h3>{_environment(run)}' for name, run in info["runs"].items())
    else:
        body = _environment(info)
    return ("environment", "Environment", body)
