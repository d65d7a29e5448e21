"""Compact terminal tables of a run's results."""

from __future__ import annotations

import json
from pathlib import Path

import click

_COLUMNS = (("dice", "Dice"), ("iou", "IoU"), ("hd95", "HD95 mm"), ("nsd", "NSD"))


def _fmt(stats: dict | None) -> str:
    if stats and stats.get("mean") is None and stats.get("inf_count"):
        return f"inf ({stats['inf_count']})"
    if not stats or stats.get("mean") is None:
        return "-"
    text = f"{stats['mean']:.3f}"
    return text + (f" ({stats['inf_count']} inf)" if stats.get("inf_count") else "")


def print_label_table(run_dir: str | Path) -> None:
    """Mean metrics per model and label from ``summary.json``."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    header = f"{'model':<22} {'label':<16} {'cases':>5} " + " ".join(f"{title:>12}" for _, title in _COLUMNS)
    click.echo(header)
    click.echo("-" * len(header))
    for model, labels in summary["per_label"].items():
        for label, entry in labels.items():
            name = f"{label} {entry.get('label_name') or ''}".strip()
            cells = " ".join(f"{_fmt(entry.get(key)):>12}" for key, _ in _COLUMNS)
            click.echo(f"{model[:22]:<22} {name[:16]:<16} {entry['cases']:>5} {cells}")
    run = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    for model, info in (run.get("models") or {}).items():
        if info.get("note"):
            click.echo(f"  {model}: {info['note']}")


def print_classification_table(run_dir: str | Path) -> None:
    """ROC AUC (95 % interval), Brier score and counts per case-level model and target."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    models = summary.get("classification") or {}
    if not models:
        return
    click.echo(f"\n{'model':<22} {'target':<18} {'objects':>7} {'ROC AUC':>8} {'95 % CI':>15} {'Brier':>7}")
    for model, targets in models.items():
        for target, m in targets.items():
            ci = m.get("auc_ci95") or [None, None]
            ci_text = f"{ci[0]:.2f}-{ci[1]:.2f}" if None not in ci else "-"
            auc = f"{m['auc']:.3f}" if m.get("auc") is not None else "-"
            brier = f"{m['brier']:.3f}" if m.get("brier") is not None else "-"
            click.echo(f"{model[:22]:<22} {target[:18]:<18} {m.get('n', 0):>7} {auc:>8} {ci_text:>15} {brier:>7}")
