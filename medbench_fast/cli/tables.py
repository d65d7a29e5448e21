"""Compact terminal tables of a run's results."""

from __future__ import annotations

import json
from pathlib import Path

import click

_COLUMNS = (("dice", "Dice"), ("iou", "IoU"), ("hd95", "HD95 mm"), ("nsd", "NSD"))


def _fmt(stats: dict | None) -> str:
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
