"""``leaderboard.html``: one self-contained page (inline CSS, JS and SVG; no network access).

Every string from data (model names, case ids, labels, errors, versions, config text) is
HTML-escaped. A Content-Security-Policy allows only the page's own inline style and script
(by hash) and blocks every request, so injected markup could neither run nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from medbench_fast.report import sections as sec
from medbench_fast.report.charts import colour
from medbench_fast.report.markup import h


def _template(name: str) -> str:
    return resources.files("medbench_fast.report").joinpath("templates", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def _legend(models: list[str]) -> str:
    items = "".join(f'<li><svg viewBox="0 0 10 10" class="swatch"><circle cx="5" cy="5" r="5" fill="{colour(i)}"/></svg>'
                    f"{h(m)}</li>" for i, m in enumerate(models))
    return f'<ul class="legend">{items}</ul>'


def _subtitle(summary: dict, info: dict) -> str:
    run = summary.get("run") or {}
    if "runs" in run:
        return "Comparison of runs " + ", ".join(h(n) for n in run["runs"])
    bits = [f"run {h(run.get('run_id'))}"] if run.get("run_id") else []
    if run.get("started"):
        bits.append(f"{h(run.get('started'))} \u2192 {h(run.get('finished'))}")
    bits.append(f"{summary.get('total_cases', 0)} case rows, {summary.get('successful_cases', 0)} successful")
    return " \u00b7 ".join(bits)


def render_leaderboard(summary: dict, per_case: dict, info: dict) -> str:
    """The page for a (JSON-safe) summary, per-case foreground means and the run's ``run.json``."""
    models = sec.ordered_models(summary)
    sections = [
        sec.leaderboard_section(summary, models), sec.comparison_section(summary),
        sec.per_label_section(summary, models), sec.distribution_section(per_case, models),
        sec.scatter_section(summary, models), sec.classification_section(summary, models),
        sec.latency_section(summary, models), sec.failures_section(summary, models), sec.environment_section(info),
    ]
    sections = [s for s in sections if s]
    nav = "".join(f'<a href="#{ident}">{title}</a>' for ident, title, _ in sections)
    body = "".join(f'<section id="{ident}"><h2>{title}</h2>{html}</section>' for ident, title, html in sections)
    css, js = _template("leaderboard.css"), _template("leaderboard.js")
    page = _template("leaderboard.html")
    values = {
        "csp": f"default-src 'none'; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
               f"base-uri 'none'; form-action 'none'",
        "title": "medbench leaderboard", "css": css, "js": js, "subtitle": _subtitle(summary, info),
        "nav": nav, "legend": _legend(models), "sections": body,
    }
    return re.sub(r"\{\{ (\w+) \}\}", lambda m: values[m.group(1)], page)
