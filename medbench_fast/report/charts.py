"""Inline SVG charts for the leaderboard: box-and-strip plots per model, latency-vs-accuracy scatter.

Charts are deterministic strings (no randomness: strip jitter is a fixed pattern) and every
data string is HTML-escaped. Styling comes from the page's stylesheet via class names.
"""

from __future__ import annotations

import math
from html import escape

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


def _x_axis(lo: float, hi: float, y: float, label: str, to_x) -> list[str]:
    parts = [f'<line class="axis" x1="{_LEFT}" y1="{_num(y)}" x2="{_WIDTH - _RIGHT}" y2="{_num(y)}"/>']
    for t in nice_ticks(lo, hi):
        x = _num(to_x(t))
        parts.append(f'<line class="grid" x1="{x}" y1="{_TOP}" x2="{x}" y2="{_num(y)}"/>')
        parts.append(f'<text class="tick" x="{x}" y="{_num(y + 16)}" text-anchor="middle">{_tick_label(t)}</text>')
    parts.append(f'<text class="axis-label" x="{_num((_LEFT + _WIDTH - _RIGHT) / 2)}" y="{_num(y + 34)}" '
                 f'text-anchor="middle">{escape(label)}</text>')
    return parts


def box_strip(groups: dict[str, list[float]], *, label: str, title: str, order: list[str] | None = None,
              domain: tuple[float, float] | None = None) -> str:
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

    parts = [f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    parts += _x_axis(lo, hi, _TOP + _ROW * len(names), label, to_x)
    for i, model in enumerate(names):
        values = finite[model]
        cy = _TOP + _ROW * i + _ROW / 2
        left_out = len(groups.get(model, [])) - values.size
        parts.append(f'<text class="name" x="{_LEFT - 8}" y="{_num(cy + 4)}" text-anchor="end">'
                     f"<title>{escape(model)}</title>{escape(_short(model))}</text>")
        if not values.size:
            parts.append(f'<text class="note" x="{_LEFT + 6}" y="{_num(cy + 4)}">no finite values</text>')
            continue
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        iqr = q3 - q1
        w_lo = values[values >= q1 - 1.5 * iqr].min()
        w_hi = values[values <= q3 + 1.5 * iqr].max()
        c, y = colour(i), _num(cy)
        x_q1, x_med = _num(to_x(q1)), _num(to_x(med))
        parts.append(f'<line class="whisker" x1="{_num(to_x(w_lo))}" y1="{y}" x2="{_num(to_x(w_hi))}" y2="{y}"/>')
        parts.append(f'<rect class="box" x="{x_q1}" y="{_num(cy - 9)}" width="{_num(max(to_x(q3) - to_x(q1), 1))}" '
                     f'height="18" fill="{c}" stroke="{c}"/>')
        parts.append(f'<line class="median" x1="{x_med}" y1="{_num(cy - 10)}" x2="{x_med}" y2="{_num(cy + 10)}"/>')
        for j, v in enumerate(values):
            jitter = ((j * 7) % 11 - 5) * 1.4
            parts.append(f'<circle class="dot" cx="{_num(to_x(v))}" cy="{_num(cy + jitter)}" r="2.6" fill="{c}"/>')
        if left_out:
            parts.append(f'<text class="note" x="{_WIDTH - _RIGHT}" y="{_num(cy - 11)}" text-anchor="end">'
                         f"{left_out} not finite</text>")
    parts.append("</svg>")
    return "".join(parts)


def scatter(points: list[tuple[str, float, float, int]], *, x_label: str, y_label: str, title: str) -> str:
    """Scatter of ``(model, x, y, colour index)`` points, each labelled with its model name."""
    points = [p for p in points if math.isfinite(p[1]) and math.isfinite(p[2])]
    height = 320
    left, bottom, top = 64, height - 48, 16
    right = _WIDTH - 24
    if not points:
        return ""
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

    parts = [f'<svg class="chart" viewBox="0 0 {_WIDTH} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
             f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>']
    for t in nice_ticks(x_lo, x_hi):
        x = _num(to_x(t))
        parts.append(f'<line class="grid" x1="{x}" y1="{top}" x2="{x}" y2="{bottom}"/>')
        parts.append(f'<text class="tick" x="{x}" y="{bottom + 16}" text-anchor="middle">{_tick_label(t)}</text>')
    for t in nice_ticks(y_lo, y_hi, 4):
        y = _num(to_y(t))
        parts.append(f'<line class="grid" x1="{left}" y1="{y}" x2="{right}" y2="{y}"/>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{y}" text-anchor="end" dy="4">{_tick_label(t)}</text>')
    parts.append(f'<text class="axis-label" x="{_num((left + right) / 2)}" y="{height - 8}" text-anchor="middle">'
                 f"{escape(x_label)}</text>")
    parts.append(f'<text class="axis-label" x="16" y="{_num((top + bottom) / 2)}" text-anchor="middle" '
                 f'transform="rotate(-90 16 {_num((top + bottom) / 2)})">{escape(y_label)}</text>')
    for model, x, y, idx in points:
        cx, cy = to_x(x), to_y(y)
        anchor = "end" if cx > (left + right) / 2 else "start"
        dx = -9 if anchor == "end" else 9
        parts.append(f'<circle class="point" cx="{_num(cx)}" cy="{_num(cy)}" r="6" fill="{colour(idx)}">'
                     f"<title>{escape(model)}</title></circle>")
        parts.append(f'<text class="point-label" x="{_num(cx + dx)}" y="{_num(cy + 4)}" text-anchor="{anchor}">'
                     f"{escape(_short(model))}</text>")
    parts.append("</svg>")
    return "".join(parts)
