"""Metric names, groups and mode names (written once here), and the user's selection of them."""

from __future__ import annotations

from collections.abc import Iterable

from medbench_fast.metrics.overlap import EXTRA_METRICS, OVERLAP_METRICS

#: Surface metrics, in the column order of ``metrics.parquet``.
SURFACE_METRICS = ("hd", "hd95", "assd", "masd", "nsd")
VOLUME_METRICS = ("ref_volume_ml", "pred_volume_ml")
GROUPS = {
    "counts": OVERLAP_METRICS + VOLUME_METRICS,
    "surface": SURFACE_METRICS,
}
#: Computed when the user names nothing.
DEFAULT_METRICS = GROUPS["counts"] + GROUPS["surface"]
ALL_NAMES = DEFAULT_METRICS + EXTRA_METRICS

#: Surface representations, HD95 conventions and both-empty conventions (METRICS.md).
SURFACE_MODES = ("voxel", "surfel")
HD95_MODES = ("max", "pooled")
EMPTY_MODES = ("one", "nan")


def resolve_metrics(metrics: str | Iterable[str] | None) -> tuple[str, ...]:
    """Expand a selection (names and the groups ``counts``/``surface``; comma-separated text
    or an iterable) into metric names in canonical order. ``None`` selects the defaults.
    Counts (tp, fp, fn, tn) and the empty flags are always computed and are not named here.
    """
    if metrics is None:
        return DEFAULT_METRICS
    items = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else [str(m).strip() for m in metrics]
    chosen: set[str] = set()
    for item in filter(None, items):
        if item in GROUPS:
            chosen.update(GROUPS[item])
        elif item in ALL_NAMES:
            chosen.add(item)
        elif item not in ("tp", "fp", "fn", "tn", "ref_empty", "pred_empty"):
            valid = ", ".join(("counts", "surface") + ALL_NAMES)
            raise ValueError(f"metrics: unknown metric {item!r}; choose from {valid}")
    return tuple(name for name in ALL_NAMES if name in chosen)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise raise naming the argument."""
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return value
