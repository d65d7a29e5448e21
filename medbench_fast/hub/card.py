"""The dataset card (``README.md``) of a published run.

YAML front matter first: ``license``, ``tags``, ``pretty_name`` and ``configs`` whose
``data_files`` point at the Parquet tables, so the Hub's dataset viewer shows each table;
then the leaderboard as a Markdown table (Hub models with their commit sha and license),
the metric conventions and the environment. The card is a pure function of the run
folder's files, so publishing the same run twice gives the same bytes.
"""

from __future__ import annotations

import yaml

#: Parquet tables of a run folder, in the order the viewer lists them (the first is the default).
TABLES = ("metrics", "cases", "scores", "latency")


def _num(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _mean(summary: dict, model: str, metric: str):
    return (((summary.get("models") or {}).get(model) or {}).get(metric) or {}).get("mean")


def _source(entry: dict) -> tuple[str, str]:
    source = entry.get("source") or (entry.get("spec") or {}).get("source") or {}
    if source.get("hub"):
        return f"`{source['hub']}@{str(source.get('sha'))[:12]}`", source.get("license") or "unknown"
    return entry.get("kind") or "", ""


def leaderboard_rows(run: dict, summary: dict) -> list[list[str]]:
    """One row per model, ranked by mean Dice (models without Dice last, by name)."""
    models = run.get("models") or {}
    names = sorted(set(models) | set(summary.get("cases") or {}),
                   key=lambda m: (_mean(summary, m, "dice") is None, -(_mean(summary, m, "dice") or 0.0), m))
    rows = []
    for rank, name in enumerate(names, 1):
        source, license_ = _source(models.get(name) or {})
        cases = (summary.get("cases") or {}).get(name) or {}
        rows.append([str(rank), f"`{name.replace('`', '')}`", source, license_, f"{cases.get('successful', '')}/{cases.get('cases', '')}",
                     _num(_mean(summary, name, "dice")), _num(_mean(summary, name, "hd95"), 2),
                     _num(_mean(summary, name, "nsd"))])
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    clean = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in clean)]


def dataset_card(run: dict, summary: dict, files: list[str], *, license_: str, tags: list[str] | None = None) -> str:
    """The card's text for a run (``run.json`` and ``summary.json`` contents) and its file names."""
    tables = [t for t in TABLES if f"{t}.parquet" in files]
    configs = [{"config_name": t, "data_files": f"{t}.parquet", **({"default": True} if i == 0 else {})}
               for i, t in enumerate(tables)]
    front = {"license": license_, "pretty_name": f"medbench-fast results {run.get('run_id', '')}".strip(),
             "tags": sorted({"medical-imaging", "medbench-fast", "benchmark", *(tags or [])}), "configs": configs}
    versions = run.get("versions") or {}
    hardware = run.get("hardware") or {}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# medbench-fast results: `{run.get('run_id', '')}`", "",
             (f"Run from {run.get('started', '?')} to {run.get('finished', '?')} with medbench-fast "
              f"{versions.get('medbench-fast', '')}: {len(run.get('models') or {})} model(s). Each Parquet table "
              f"opens in the dataset viewer above."), "",
             "## Leaderboard", "",
             *_table(["rank", "model", "source", "license", "cases ok", "Dice", "HD95 (mm)", "NSD"],
                     leaderboard_rows(run, summary)), "",
             ("Means over cases of the per-case foreground means; `leaderboard.html` has intervals, paired tests "
              "and per-label views."), "",
             "## Conventions", ""]
    conventions = {k: run.get(k) for k in ("surface_mode", "hd95_mode", "empty_mode", "nsd_tolerance_mm") if k in run}
    conventions = conventions or {k: v for k, v in (run.get("options") or {}).items() if not isinstance(v, (dict, list))}
    lines += [f"- {k}: `{v}`" for k, v in sorted(conventions.items())] or ["- see `run.json`"]
    lines += ["", "## Environment", "",
              *(f"- {k}: `{v}`" for k, v in sorted(hardware.items()) if v not in (None, "", [])),
              *(f"- {k} `{v}`" for k, v in sorted(versions.items())), "",
              "## Files", "", *_table(["file", "content"], [[f"`{f}`", FILE_NOTES.get(f, "")] for f in files]), ""]
    return "\n".join(lines)


FILE_NOTES = {
    "metrics.parquet": "one row per (model, case, label): counts, overlap and surface metrics",
    "cases.parquet": "one row per (model, case): success, error, per-stage seconds (paths relative to the run)",
    "scores.parquet": "case-level scores and targets",
    "latency.parquet": "per-model latency statistics with raw samples",
    "summary.json": "summary statistics, paired tests, nnU-Net-compatible section",
    "leaderboard.html": "self-contained interactive leaderboard",
    "run.json": "run metadata: config, versions, hardware, models with their Hub commit sha",
    "README.md": "this card",
}
