"""Hostile strings in every field of the leaderboard that comes from data, and a parser that
lists the markup a page really holds."""

from __future__ import annotations

import copy
from html.parser import HTMLParser

#: Markup, template syntax, quotes, entities, unicode and a very long string.
PAYLOADS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "</script><script>alert(3)</script>",
    "{{7*7}} {% if 1 %}x{% endif %} ${7*7} {#c#}",
    "'single' \"double\" `back` \\",
    "a & b &amp; &lt;c&gt; &#60;d",
    "\u00fcn\u00efc\u00f6d\u00e9 \u2713 \u6f22\u5b57 \u202erlt \U0001f600",
    "<svg onload=alert(4)>" + "long " * 2000,
    "javascript:alert(5)",
    "</textarea></pre></td></tr></table><style>body{display:none}</style>",
    "<!-- open comment",
    "]]><![CDATA[<b onmouseover=alert(6)>",
)
#: Tags and attributes the leaderboard templates write; anything else came from data.
TAGS = {"html", "head", "meta", "title", "style", "body", "header", "div", "h1", "h2", "h3", "p", "nav", "a",
        "main", "ul", "li", "svg", "g", "circle", "line", "rect", "text", "section", "label", "select", "option",
        "table", "thead", "tbody", "tr", "th", "td", "button", "span", "strong", "em", "code", "figure",
        "figcaption", "dl", "dt", "dd", "details", "summary", "pre", "footer", "script"}
ATTRIBUTES = {"lang", "charset", "name", "content", "http-equiv", "class", "href", "id", "viewbox", "role",
              "aria-label", "scope", "type", "value", "selected", "title", "data-type", "data-better", "data-v",
              "data-model", "cx", "cy", "r", "fill", "stroke", "x", "y", "x1", "y1", "x2", "y2", "width", "height",
              "text-anchor", "dy", "transform"}


def payload(i: int) -> str:
    return PAYLOADS[i % len(PAYLOADS)] + f" #{i}"


class Page(HTMLParser):
    """Start tags with their attributes, and all text, of an HTML page (entities decoded)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.comments: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        self.comments.append(data)

    def handle_decl(self, decl):
        if decl.lower() != "doctype html":
            self.comments.append(decl)

    def unknown_decl(self, data):
        self.comments.append(data)

    def handle_pi(self, data):
        self.comments.append(data)


def _rename(mapping: dict, names: dict) -> dict:
    return {names.get(k, k): v for k, v in mapping.items()}


#: The run.json keys the page shows.
SHOWN_INFO = ("run_id", "started", "finished", "status", "command", "model", "executor", "shards", "ray_startup_s",
              "git_commit", "hardware", "versions", "options")


def poison(summary: dict, per_case: dict, info: dict) -> tuple[dict, dict, dict, list[str]]:
    """Copies of a report's inputs with a payload in every string the page shows from data:
    model, case, label, target, stage, provider and run names, errors, comparison verdicts and
    reasons, conventions, every run.json fact, models, workers and the config text; and the
    payloads the page must show (as text or in an attribute such as a tooltip)."""
    s, per_case, info = copy.deepcopy(summary), copy.deepcopy(per_case), copy.deepcopy(info)
    counter = iter(range(10_000))
    shown: list[str] = []

    def fresh(visible: bool = True) -> str:
        text = payload(next(counter))
        if visible:
            shown.append(text)
        return text

    models = sorted(set(s["cases"]) | set(s["models"]) | set(s["classification"]) | set(per_case))
    names = {m: fresh() for m in models}
    for key in ("cases", "models", "per_label", "classification"):
        s[key] = _rename(s[key], names)
    for key in ("stages", "profiles"):
        s["latency"][key] = _rename(s["latency"][key], names)
    per_case = _rename(per_case, names)
    for cases in per_case.values():
        for case in list(cases):
            cases[fresh(visible=False)] = cases.pop(case)  # per-case values feed the charts only
    for c in s["cases"].values():
        for f in c["failures"]:
            f.update(case_id=fresh(), error=fresh())
        c["failures"].append({"case_id": fresh(), "error": fresh()})
    for labels in s["per_label"].values():
        for label in list(labels):
            entry = labels.pop(label)
            entry["label_name"] = fresh()
            labels[fresh()] = entry
    for targets in s["classification"].values():
        for target in list(targets):
            entry = targets.pop(target)
            entry.update(auc_ci95=None, auc_ci_note=fresh())
            targets[fresh()] = entry
    for stages in s["latency"]["stages"].values():
        for stage in list(stages):
            if stage not in ("total", "inference"):
                stages[fresh()] = stages.pop(stage)
    for profiles in s["latency"]["profiles"].values():
        for p in profiles:
            p["provider"] = fresh()
    a, b = list(names.values())[:2]
    tested = [c for c in s["comparisons"] if c.get("tested", True)]
    for c in s["comparisons"]:
        c.update(model_a=names.get(c["model_a"], c["model_a"]), model_b=names.get(c["model_b"], c["model_b"]))
        if c.get("significant"):
            c.update(better=names.get(c["better"], c["better"]), worse=names.get(c["worse"], c["worse"]))
        if c.get("tested", True):
            c["conventions_differ"] = fresh()
    if tested:
        s["comparisons"].append({**tested[0], "metric": fresh(), "significant": True, "better": a,
                                 "worse": b})
    s["comparisons"].append({"metric": fresh(), "model_a": a, "model_b": b, "tested": False,
                             "reason": fresh()})
    s["comparison_scope"] = {"labels": {"compared": [fresh()],
                                        "dropped": {fresh(): [fresh()]}}}
    s["conventions"]["threshold"] = fresh()
    s["run"].update(run_id=fresh(), started=fresh(), finished=fresh())

    def strings(value):
        if isinstance(value, str):
            return fresh()
        if isinstance(value, dict):
            return {k: strings(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strings(v) for v in value]
        return value

    info = {k: strings(v) if k in SHOWN_INFO else v for k, v in info.items()}
    for key in ("hardware", "versions", "options"):
        info[key] = {**(info.get(key) or {}), fresh(): fresh(),
                     fresh(): [fresh()]}
    info["providers"] = [fresh(), fresh()]
    info["conventions"] = fresh()
    info["fingerprint"] = {"sha256": fresh()}
    info["models"] = {name: {"kind": fresh(), "providers_in_use": [fresh()],
                             "session_s": 0.1, "cold_start_s": 0.2,
                             "spec": {"source": {"hub": fresh(), "sha": fresh(visible=False),  # shown cut to 12 characters
                                                 "license": fresh()}}}
                      for name in names.values()}
    info["workers"] = [{"executor": fresh(), "host": fresh(), "pid": 7,
                        "cuda_visible_devices": fresh(), "threads": 2,
                        "providers_in_use": {a: [fresh()]}, "cases_done": 3,
                        "cold_start_s": {a: 0.5}, "ended": fresh()}]
    info["config"] = {"text": "\n".join(PAYLOADS), "sha256": fresh()}
    shown += PAYLOADS  # the config text
    return s, per_case, info, shown


def compared(summary: dict, info: dict) -> tuple[dict, dict]:
    """The inputs of a comparison page whose run names are payloads too."""
    s, other = copy.deepcopy(summary), copy.deepcopy(info)
    runs = [payload(9000), payload(9001)]
    s["run"] = {"runs": runs}
    return s, {"runs": {runs[0]: info, runs[1]: other}}
