"""Paired model comparisons: per-case differences, Wilcoxon signed-rank test, Holm correction across pairs."""

from __future__ import annotations

import itertools
import math

import numpy as np

from medbench_fast.report.stats import holm, wilcoxon_signed_rank

#: Metrics compared between models, with whether higher is better.
COMPARED = {"dice": True, "nsd": True, "hd95": False}
ALPHA = 0.05


def compare_pair(per_case_a: dict, per_case_b: dict, metric: str, *, skip: frozenset = frozenset()) -> dict | None:
    """Statistics of ``a - b`` over the cases (not in ``skip``) where both have a finite ``metric``;
    None without such cases. ``cases_only_a``/``cases_only_b`` count the cases one model lacks."""
    common = sorted((set(per_case_a) & set(per_case_b)) - skip)
    only = {"cases_only_a": len(set(per_case_a) - set(per_case_b)), "cases_only_b": len(set(per_case_b) - set(per_case_a))}
    pairs = [(per_case_a[c][metric], per_case_b[c][metric]) for c in common
             if metric in per_case_a[c] and metric in per_case_b[c]]
    pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    if not pairs:
        return None
    a, b = np.array(pairs).T
    diff = a - b
    test = wilcoxon_signed_rank(a, b)
    return {"n": len(pairs), **only, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "mean_diff": float(diff.mean()), "median_diff": float(np.median(diff)),
            "n_nonzero": test["n"], "w_plus": test["w_plus"], "statistic": test["statistic"],
            "p_value": test["p_value"], "test": test["method"]}


def _with_inf(inf_labels: dict, model: str, metric: str) -> frozenset:
    return frozenset(c for c, counts in inf_labels.get(model, {}).items() if counts.get(metric))


def paired_comparisons(per_case: dict, inf_labels: dict, *, alpha: float = ALPHA, conflicts=None,
                       allow_conflicts: bool = False) -> list[dict]:
    """Every model pair for each compared metric, Holm-adjusted within the metric.

    ``conflicts(model_a, model_b, metric)``, when given, lists the conventions of ``metric`` that
    differ between the two models' runs: such a pair is not tested (a row with ``tested``
    False and the ``reason``, left out of the Holm family), unless ``allow_conflicts``, which
    tests it and records the differences as ``conventions_differ``.

    ``per_case`` and ``inf_labels`` come from :func:`~medbench_fast.report.summary.foreground_per_case`;
    a case where either model has an infinite distance for some label is left out of that
    pair's distance comparison. ``better`` names the model whose values are better (by the
    sign of the rank sums) when the adjusted p-value is below ``alpha``, else None.
    """
    out = []
    models = sorted(per_case)
    for metric, higher in COMPARED.items():
        rows, untested = [], []
        for a, b in itertools.combinations(models, 2):
            differ = conflicts(a, b, metric) if conflicts else []
            if differ and not allow_conflicts:
                untested.append({"metric": metric, "model_a": a, "model_b": b, "tested": False, "significant": False,
                                 "reason": "conventions differ: " + "; ".join(differ)})
                continue
            skip = _with_inf(inf_labels, a, metric) | _with_inf(inf_labels, b, metric)
            res = compare_pair(per_case[a], per_case[b], metric, skip=skip)
            if res is not None:
                rows.append({"metric": metric, "model_a": a, "model_b": b, "tested": True, **res,
                             **({"conventions_differ": "; ".join(differ)} if differ else {})})
        adjusted = holm([r["p_value"] for r in rows])
        for r, p in zip(rows, adjusted):
            half = r["n_nonzero"] * (r["n_nonzero"] + 1) / 4.0  # W+ under no difference
            significant = not math.isnan(p) and p < alpha and r["w_plus"] != half
            winner, loser = (r["model_a"], r["model_b"]) if (r["w_plus"] > half) == higher else (r["model_b"], r["model_a"])
            r.update(p_holm=p, significant=significant, better=winner if significant else None,
                     worse=loser if significant else None)
        out.extend(rows + untested)
    return out
