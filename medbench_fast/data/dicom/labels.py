"""From SEG segments and RTSTRUCT ROIs to dataset labels.

Without rules, a SEG segment's label is its SegmentNumber and an RTSTRUCT ROI's label is
its ROINumber. With rules (``dataset.dicom_labels`` in the config: ``{pattern: label}``,
first match wins, in the order written), a pattern is

* ``GTVp``: the exact segment label / ROI name;
* ``nocase:gtvp``: the same, ignoring case;
* ``regex:^LN_(L|R)_.*$``: a Python regular expression that must match the whole name;
* ``code:SCT:39607008``: a SEG segment whose SegmentedPropertyTypeCode is ``scheme:value``.

A segment or ROI that matches no rule is an error listing it, unless
``dataset.dicom_unmatched: ignore``; the ignored names are kept in the volume's metadata.
Where structures overlap, the higher label wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODES = ("exact", "nocase", "regex", "code")


@dataclass(frozen=True)
class LabelRule:
    mode: str
    pattern: str
    label: int

    def matches(self, name: str, codes: tuple[str, ...] = ()) -> bool:
        if self.mode == "exact":
            return name == self.pattern
        if self.mode == "nocase":
            return name.casefold() == self.pattern.casefold()
        if self.mode == "regex":
            return re.fullmatch(self.pattern, name) is not None
        return self.pattern in codes


@dataclass(frozen=True)
class LabelRules:
    """Ordered rules; empty means labels by SegmentNumber / ROINumber."""

    rules: tuple[LabelRule, ...] = ()
    unmatched: str = "error"  # or "ignore"

    def label_for(self, name: str, number: int, codes: tuple[str, ...] = ()) -> int | None:
        """The label of a segment / ROI, or None when rules are given and none matches."""
        if not self.rules:
            return number
        return next((r.label for r in self.rules if r.matches(name, codes)), None)

    @property
    def key(self) -> str:
        """A stable text of the rules (part of the volume cache key)."""
        return repr((self.rules, self.unmatched))


def parse_rules(mapping: dict | None, unmatched: str = "error", *, where: str = "dicom_labels") -> LabelRules:
    """Rules from the config mapping ``{pattern: label}``; errors name the key."""
    rules = []
    for pattern, label in (mapping or {}).items():
        if isinstance(label, bool) or not isinstance(label, int) or label < 1:
            raise ValueError(f"{where}.{pattern}: expected a label (integer >= 1), got {label!r}")
        text = str(pattern)
        mode, _, rest = text.partition(":")
        if mode in ("nocase", "regex", "code") and rest:
            if mode == "regex":
                try:
                    re.compile(rest)
                except re.error as exc:
                    raise ValueError(f"{where}.{pattern}: not a valid regular expression: {exc}") from None
            if mode == "code" and rest.count(":") != 1:
                raise ValueError(f"{where}.{pattern}: expected code:SCHEME:VALUE, e.g. code:SCT:39607008")
            rules.append(LabelRule(mode, rest, label))
        else:
            rules.append(LabelRule("exact", text, label))
    return LabelRules(tuple(rules), unmatched)
