"""Inline SVG charts for the leaderboard: box-and-strip plots per model, latency-vs-accuracy scatter.

Charts are computed here as plain shapes (deterministic: strip jitter is a fixed pattern);
``templates/charts.html`` draws them, autoescaped. Styling comes from the page's stylesheet
via class names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Okabe-Ito colours, readable for colour-blind viewers; model ``i`` gets ``PALETTE[i % 8]``.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_WIDTH = 600
_LEFT = 165
_RIGHT = 24
_ROW = 34
_TOP = 14
_AXIS = 40
_NAME_CHARS = 20


@dataclass(frozen=True, slots=True)
class Line:
    cls: str
    x1: str
    y1: str
    x2: str
    y2: str
    tag = "line"


@dataclass(frozen=True, slots=True)
class Rect:
    cls: str
    x: str
    y: str
    width: str
    height: str
    fill: str
    tag = "rect"


@dataclass(frozen=True, slots=True)
class Circle:
    cls: str
    cx: str
    cy: str
    r: str
    fill: str
    title: str | None = None  # tooltip
    tag = "circle"


@dataclass(frozen=True, slots=True)
class Dots:
    """One row's cases of a strip plot: small circles of one colour at ``points`` ``(cx, cy)``,
    floats rounded to 0.1 (numbers only, so the template writes them without escaping)."""

    fill: str
    points: list[tuple[float, float]]
    tag = "dots"

    def __post_init__(self):
        if not all(type(x) is float and type(y) is float for x, y in self.points):
            raise TypeError("Dots.points must be floats")


@dataclass(frozen=True, slots=True)
class Label:
    """A ``<text>``: ``anchor`` is ``text-anchor``; ``title`` a tooltip (the full name of a shortened one)."""

    cls: str
    x: str
    y: str
    text: str
    anchor: str | None = None
    dy: str | None = None
    transform: str | None = None
    title: str | None = None
    tag = "text"


@dataclass(frozen=True, slots=True)
class Chart:
    """One SVG: its size, its accessible title and its shapes, drawn in order."""

    width: int
    height: int
    title: str
    shapes: list


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if math.isfinite(v) else "0"


def _short(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[:_NAME_CHARS - 1] + "\u2026"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _tick_label(v: float) -> str:
    return f"{v:g}"


def _x_axis(lo: float, hi: float, y: float, label: str, to_x) -> list:
    shapes = [Line("axis", str(_LEFT), _num(y), str(_WIDTH - _RIGHT), _num(y))]
    for t in nice_ticks(lo, hi):
        x = _num(to_x(t))
        shapes.append(Line("grid", x, str(_TOP), x, _num(y)))
        shapes.append(Label("tick", x, _num(y + 16), _tick_label(t), "middle"))
    shapes.append(Label("axis-label", _num((_LEFT + _WIDTH - _RIGHT) / 2), _num(y + 34), label, "middle"))
    return shapes


def box_strip(groups: dict[str, list[float]], *, label: str, title: str, order: list[str] | None = None,
              domain: tuple[float, float] | None = None) -> Chart:
    """Horizontal box plot (quartiles, whiskers at 1.5 IQR) with every case as a dot, one row per model.

    Non-finite values are left out; a row says how many were. ``domain`` fixes the value axis.
    """
    names = order or list(groups)
    finite = {m: np.asarray([v for v in groups.get(m, []) if v is not None and math.isfinite(v)]) for m in names}
    everything = np.concatenate([a for a in finite.values() if a.size] or [np.zeros(1)])
    lo, hi = domain or (float(everything.min()), float(everything.max()))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.0 if domain else (hi - lo) * 0.04
    lo, hi = lo - pad, hi + pad
    height = _TOP + _ROW * len(names) + _AXIS + 8

    def to_x(v: float) -> float:
        return _LEFT + (v - lo) / (hi - lo) * (_WIDTH - _LEFT - _RIGHT)

    shapes = _x_axis(lo, hi, _TOP + _ROW * len(names), label, to_x)
    for i, model in enumerate(names):
        values = finite[model]
        cy = _TOP + _ROW * i + _ROW / 2
        left_out = len(groups.get(model, [])) - values.size
        shapes.append(Label("name", str(_LEFT - 8), _num(cy + 4), _short(model), "end", title=model))
        if not values.size:
            shapes.append(Label("note", str(_LEFT + 6), _num(cy + 4), "no finite values"))
            continue
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        iqr = q3 - q1
        w_lo = values[values >= q1 - 1.5 * iqr].min()
        w_hi = values[values <= q3 + 1.5 * iqr].max()
        c, y = colour(i), _num(cy)
        x_med = _num(to_x(med))
        shapes.append(Line("whisker", _num(to_x(w_lo)), y, _num(to_x(w_hi)), y))
        shapes.append(Rect("box", _num(to_x(q1)), _num(cy - 9), _num(max(to_x(q3) - to_x(q1), 1)), "18", c))
        shapes.append(Line("median", x_med, _num(cy - 10), x_med, _num(cy + 10)))
        xs = np.round(_LEFT + (values - lo) / (hi - lo) * (_WIDTH - _LEFT - _RIGHT), 1).tolist()
        ys = np.round(cy + (np.arange(values.size) * 7 % 11 - 5) * 1.4, 1).tolist()
        shapes.append(Dots(c, list(zip(xs, ys))))
        if left_out:
            shapes.append(Label("note", str(_WIDTH - _RIGHT), _num(cy - 11), f"{left_out} not finite", "end"))
    return Chart(_WIDTH, height, title, shapes)


def scatter(points: list[tuple[str, float, float, int]], *, x_label: str, y_label: str, title: str) -> Chart | None:
    """Scatter of ``(model, x, y, colour index)`` points, each labelled with its model name; None without points."""
    points = [p for p in points if math.isfinite(p[1]) and math.isfinite(p[2])]
    height = 320
    left, bottom, top = 64, height - 48, 16
    right = _WIDTH - 24
    if not points:
        return None
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    x_lo, x_hi = min(0.0, min(xs)), max(xs) * 1.1 or 1.0
    y_lo, y_hi = min(ys), max(ys)
    span = max(y_hi - y_lo, 0.02)
    y_lo, y_hi = max(0.0, y_lo - span * 0.25), min(1.0, y_hi + span * 0.25) if y_hi <= 1.0 else y_hi + span * 0.25

    def to_x(v):
        return left + (v - x_lo) / (x_hi - x_lo) * (right - left)

    def to_y(v):
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    shapes = [Line("axis", str(left), str(bottom), str(right), str(bottom)),
              Line("axis", str(left), str(top), str(left), str(bottom))]
    for t in nice_ticks(x_lo, x_hi):
        x = _num(to_x(t))
        shapes.append(Line("grid", x, str(top), x, str(bottom)))
        shapes.append(Label("tick", x, str(bottom + 16), _tick_label(t), "middle"))
    for t in nice_ticks(y_lo, y_hi, 4):
        y = _num(to_y(t))
        shapes.append(Line("grid", str(left), y, str(right), y))
        shapes.append(Label("tick", str(left - 6), y, _tick_label(t), "end", dy="4"))
    mid = _num((top + bottom) / 2)
    shapes.append(Label("axis-label", _num((left + right) / 2), str(height - 8), x_label, "middle"))
    shapes.append(Label("axis-label", "16", mid, y_label, "middle", transform=f"rotate(-90 16 {mid})"))
    for model, x, y, idx in points:
        cx, cy = to_x(x), to_y(y)
        anchor = "end" if cx > (left + right) / 2 else "start"
        dx = -9 if anchor == "end" else 9
        shapes.append(Circle("point", _num(cx), _num(cy), "6", colour(idx), title=model))
        shapes.append(Label("point-label", _num(cx + dx), _num(cy + 4), _short(model), anchor))
    return Chart(_WIDTH, height, title, shapes)
