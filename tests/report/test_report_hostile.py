"""Hostile strings through every field of the leaderboard that comes from data: the page holds
them as text, and no markup of theirs (no element, attribute, comment or script) gets in."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from report.hostile import ATTRIBUTES, PAYLOADS, TAGS, Page, compared, poison

from medbench_fast.report.charts import Dots
from medbench_fast.report.html import environment, render_leaderboard
from medbench_fast.report.run import load_run
from medbench_fast.report.tables import summarize

TEMPLATES = Path(__file__).resolve().parents[2] / "medbench_fast" / "report" / "templates"


@pytest.fixture(scope="module")
def hostile(bench_run):
    summary = json.loads((bench_run / "summary.json").read_text())  # the JSON-safe summary the page is built from
    run = load_run(bench_run)
    _, per_case = summarize(run)
    s, pc, info, shown = poison(summary, per_case, run.info)
    cs, cinfo = compared(s, info)
    subtitle = list(s["run"].values())  # a comparison's subtitle names its runs instead
    return {"run": render_leaderboard(s, pc, info), "comparison": render_leaderboard(cs, pc, cinfo),
            "shown": {"run": shown, "comparison": [p for p in shown if p not in subtitle] + cs["run"]["runs"]}}


@pytest.mark.parametrize("kind", ["run", "comparison"])
def test_no_markup_from_data_reaches_the_page(hostile, kind):
    page = hostile[kind]
    parsed = Page(page)
    tags = Counter(tag for tag, _ in parsed.tags)
    assert set(tags) <= TAGS, set(tags) - TAGS
    assert tags["script"] == 1 and tags["style"] == 1 and tags["img"] == 0
    for tag, attrs in parsed.tags:
        assert set(attrs) <= ATTRIBUTES, (tag, set(attrs) - ATTRIBUTES)
        assert attrs.get("href", "#").startswith("#"), attrs
    assert parsed.comments == []
    # Raw markup of the payloads never appears unescaped.
    for raw in ("<script>alert", "<img", "<svg onload", "<style>body", "<!--", "<![CDATA[", "<b onmouseover",
                "</textarea>"):
        assert raw not in page, raw
    assert page.count("<script") == 1 and page.count("</script>") == 1


@pytest.mark.parametrize("kind", ["run", "comparison"])
def test_every_hostile_string_is_shown_as_text(hostile, kind):
    parsed = Page(hostile[kind])
    text = "".join(parsed.text)
    attributes = "\n".join(v for _, attrs in parsed.tags for v in attrs.values() if v)
    shown = hostile["shown"][kind]
    # Nested lists and maps of run.json facts are shown as JSON, whose strings escape quotes.
    missing = [p[:60] for p in shown
               if p not in text and p not in attributes and json.dumps(p, ensure_ascii=False)[1:-1] not in text]
    assert missing == []
    assert len(shown) > 60  # model, case, label, target, stage, provider names, errors, verdicts, facts, config
    for p in PAYLOADS:
        assert p in text  # template syntax among them: written as it is, never evaluated
    assert "\n".join(PAYLOADS) in text  # the config text, line breaks kept


def test_templates_escape_everything():
    env = environment()
    assert env.autoescape is True
    for template in TEMPLATES.glob("*.html"):
        source = template.read_text(encoding="utf-8")
        assert "|safe" not in source.replace(" ", "") and "Markup" not in source, template.name
        # One exception, for speed: the strip plot's dot coordinates, which Dots holds as floats only.
        assert source.count("autoescape false") == (1 if template.name == "charts.html" else 0), template.name
    with pytest.raises(TypeError, match="floats"):
        Dots("#000000", [("<b>", 1.0)])
