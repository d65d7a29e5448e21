"""Regions: unions of labels scored like labels (BraTS whole tumour = labels 1, 2 and 3).

A region's reference mask is ``isin(ref, labels)`` and its predicted mask
``isin(pred, labels)``. Its counts follow from the joint histogram ``C`` of the pair with no
further pass over the volumes: ``tp = sum C[S, S]``, ``fn = sum C[S, :] - tp``,
``fp = sum C[:, S] - tp`` for the label set ``S``. Surface metrics use the two union masks,
cropped to the union of the labels' bounding boxes. Every convention of METRICS.md,
empty masks included, applies to regions unchanged.

In ``metrics.parquet`` a region is a row like a label's: ``label`` is the region's id,
``-1`` for the first region given, ``-2`` for the second, ... (never a label value, which
is ``>= 0``), and ``label_name`` is its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Region:
    """A named set of label values; ``id`` (< 0) is its ``label`` value in metric rows."""

    name: str
    labels: tuple[int, ...]
    id: int


#: The largest label value accepted anywhere (label maps are integer images; int64 holds every one).
LABEL_MAX = 2**63 - 1


def check_label(value, where: str) -> int:
    """``value`` as a foreground label value (an integer 1..LABEL_MAX); ``ValueError`` naming ``where``.

    The one rule for label values given by the user (``--labels``, ``dataset.labels``,
    regions from the config, ``--regions`` or a ``dataset.json``): 0 is the background."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= LABEL_MAX:
        shown = repr(value) if not isinstance(value, int) or abs(value) < 10**12 else f"{str(value)[:12]}..."
        raise ValueError(f"{where}: {shown} is not a foreground label value (an integer from 1 to {LABEL_MAX}; "
                         f"0 is the background)")
    return value


def region_id(index: int) -> int:
    """The ``label`` value of the region given at position ``index`` (0-based): ``-1 - index``."""
    return -1 - index


def make_regions(regions: Mapping[str, Iterable[int]] | Iterable[Region] | None,
                 known_labels: Iterable[int] | None = None, *, where: str = "regions") -> tuple[Region, ...]:
    """Validate ``{name: label values}`` (in the order given) into :class:`Region` objects.

    The one check of regions from every source (config, ``--regions``, ``dataset.json``).
    ``known_labels``: the dataset's labels, when known; a region naming another label is an
    error. Raises ``ValueError`` whose message starts with ``<where>.<name>``.
    """
    if regions is None:
        return ()
    if not isinstance(regions, Mapping):
        return tuple(regions)
    known = None if known_labels is None else {int(v) for v in known_labels}
    out = []
    prefix = where
    for i, (name, values) in enumerate(regions.items()):
        where = f"{prefix}.{name}"
        if not isinstance(name, str) or not name:
            raise ValueError(f"{prefix}: region names must be non-empty text, got {name!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"{where}: expected a list of label values, got {values!r}")
        values = list(values)
        if not values:
            raise ValueError(f"{where}: expected at least one label value")
        for v in values:
            check_label(v, where)
        if known is not None:
            unknown = sorted(set(values) - known)
            if unknown:
                raise ValueError(f"{where}: label(s) {unknown} are not among the dataset's labels {sorted(known)}")
        out.append(Region(name, tuple(sorted(set(values))), region_id(i)))
    return tuple(out)


def parse_regions(text: str | None) -> dict[str, list[int]] | None:
    """``"WT=1,2,3;TC=1,3;ET=3"`` -> ``{"WT": [1, 2, 3], "TC": [1, 3], "ET": [3]}`` (None stays None)."""
    if not text:
        return None
    out: dict[str, list[int]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"regions: {item!r} is not NAME=label,label,...")
        if name.strip() in out:
            raise ValueError(f"regions.{name.strip()}: the region is given twice; give each region name once")
        try:
            out[name.strip()] = [int(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"regions.{name.strip()}: {values!r} is not a comma-separated list of labels") from None
    return out
