"""Building blocks of the leaderboard as plain data: number formats, table cells, tables.

Nothing here writes markup: the autoescaping templates (``templates/*.html``) turn these
objects into HTML, so every string from data reaches the page escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def fmt(value, digits: int = 3) -> str:
    """A number with ``digits`` decimals; a dash for missing or non-finite values; text as it is."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "\u2013"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def fmt_p(p) -> str:
    """``p = 0.012`` or ``p < 0.001``."""
    if p is None:
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


@dataclass(frozen=True, slots=True)
class Note:
    """A small annotation after a cell's number: an interval, a count, a warning (``cls``),
    with an optional tooltip."""

    text: str
    cls: str = "ci"
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Num:
    """A right-aligned number cell; its sort key (``data-v``) is the exact value, empty when missing."""

    value: object
    digits: int
    notes: tuple[Note, ...] = ()
    cls: str = ""
    kind = "num"

    @property
    def sort_key(self) -> str:
        v = self.value
        return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else repr(float(v))

    @property
    def text(self) -> str:
        return fmt(self.value, self.digits)


@dataclass(frozen=True, slots=True)
class Text:
    """A text cell, sorted by its text; ``code`` sets it in monospace (error messages)."""

    text: object
    cls: str = ""
    code: bool = False
    kind = "text"

    @property
    def sort_key(self) -> str:
        return "" if self.text is None else str(self.text)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of a paired comparison: ``better`` than ``worse`` at ``p``, no significant
    difference (``better`` None), or not tested with a ``reason``."""

    p: str = ""
    better: str | None = None
    worse: str | None = None
    differ: str | None = None
    reason: str | None = None
    kind = "verdict"


@dataclass(frozen=True, slots=True)
class Row:
    cells: tuple
    model: str | None = None  # ``data-model`` of the leaderboard's rows


@dataclass(frozen=True, slots=True)
class Table:
    """A sortable table: ``columns`` are ``(title, type num|text, better asc|desc|None)``."""

    columns: tuple[tuple[str, str, str | None], ...]
    rows: list[Row]
    ident: str = ""


def ci_notes(stats: dict | None) -> tuple[Note, ...]:
    """The bootstrap 95 % interval of ``stats`` as a note, if it has one."""
    ci = (stats or {}).get("ci95")
    return (Note(f"[{ci[0]:.3f}, {ci[1]:.3f}]"),) if ci else ()


def inf_notes(stats: dict | None) -> tuple[Note, ...]:
    """How many labels had an infinite distance and were left out of the mean."""
    n = (stats or {}).get("inf_labels")
    return (Note(f"{n} inf left out"),) if n else ()
