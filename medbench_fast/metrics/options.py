"""``MetricOptions``: the metric options of a run, one frozen object with one serialisation.

Built once at the edge (the ``run`` config, ``evaluate``'s options), used by every case,
and written to ``run.json`` as :meth:`MetricOptions.to_record`; :meth:`MetricOptions.from_record`
is its exact inverse, so a run's tables rebuilt from ``run.json`` (``medbench report``) carry
the same options, regions included. The ``metrics.parquet`` key-value metadata
(:meth:`MetricOptions.metadata`) is the text part of the same record, and the fingerprint
components (:meth:`MetricOptions.fingerprint_components`) are the options' view in a run's
identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from medbench_fast.metrics.regions import Region, check_label, make_regions
from medbench_fast.metrics.selection import (
    EMPTY_MODES, HD95_MODES, SURFACE_MODES, check_choice, resolve_metrics,
)

#: Default relative tolerance on spacing, origin and direction between prediction and reference.
GEOMETRY_RTOL = 1e-4

#: Record keys that are text (also the ``metrics.parquet`` metadata); ``regions`` is added as text there.
_TEXT_KEYS = ("surface_mode", "hd95_mode", "empty_mode", "nsd_tolerance_mm", "metrics")


@dataclass(frozen=True)
class MetricOptions:
    """Metric options shared by every case of a run (see :func:`~medbench_fast.metrics.evaluate.evaluate_pair`).

    ``labels`` None scores every label found; ``label_names`` maps label values to names
    (an empty mapping is None); ``regions`` takes ``{name: label values}`` (in the order
    given) and keeps :class:`~medbench_fast.metrics.regions.Region` objects; ``geometry_rtol``
    is the relative tolerance on the grids of a pair.
    """

    labels: tuple[int, ...] | None = None
    metrics: tuple[str, ...] = field(default_factory=lambda: resolve_metrics(None))
    nsd_tolerance_mm: float = 1.0
    surface: str = "voxel"
    hd95_mode: str = "max"
    empty: str = "one"
    label_names: Mapping[int, str] | None = None
    geometry_rtol: float = GEOMETRY_RTOL
    regions: tuple[Region, ...] = ()

    def __post_init__(self):
        check_choice("surface", self.surface, SURFACE_MODES)
        check_choice("hd95_mode", self.hd95_mode, HD95_MODES)
        check_choice("empty", self.empty, EMPTY_MODES)
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(check_label(v, "labels") for v in self.labels))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "label_names", dict(self.label_names) if self.label_names else None)
        object.__setattr__(self, "regions", make_regions(self.regions, known_labels=self.labels))

    def pair_kwargs(self) -> dict:
        """Keyword arguments of :func:`~medbench_fast.metrics.evaluate.evaluate_pair` (all but ``labels``)."""
        return dict(metrics=self.metrics, nsd_tolerance_mm=self.nsd_tolerance_mm, surface=self.surface,
                    hd95_mode=self.hd95_mode, empty=self.empty, label_names=self.label_names,
                    regions=self.regions)

    def to_record(self) -> dict:
        """The options as JSON values: the ``options`` of ``run.json`` (:meth:`from_record` reads it back).

        Keys: ``surface_mode``, ``hd95_mode``, ``empty_mode``, ``nsd_tolerance_mm`` (text, as in
        the Parquet metadata), ``metrics`` (comma-separated), ``labels`` (list or None),
        ``label_names`` (``{"1": name}`` or None), ``geometry_rtol``, and ``regions``
        (``{name: [label values]}`` in id order) when there are regions."""
        record = {"surface_mode": self.surface, "hd95_mode": self.hd95_mode, "empty_mode": self.empty,
                  "nsd_tolerance_mm": repr(float(self.nsd_tolerance_mm)), "metrics": ",".join(self.metrics),
                  "labels": None if self.labels is None else list(self.labels),
                  "label_names": None if not self.label_names else {str(k): v for k, v in self.label_names.items()},
                  "geometry_rtol": float(self.geometry_rtol)}
        if self.regions:
            record["regions"] = {r.name: list(r.labels) for r in self.regions}
        return record

    @classmethod
    def from_record(cls, record: Mapping) -> MetricOptions:
        """The options of a :meth:`to_record` record (keys of other settings, such as
        ``worst_distance`` and ``threshold`` in ``run.json``, are ignored). Regions recorded as
        text by earlier versions (``"-1:WT=1,2,3;-2:TC=1,3"``) are read too. Raises
        ``ValueError`` naming a missing or invalid key."""
        missing = [k for k in _TEXT_KEYS if not isinstance(record.get(k), str)]
        if missing:
            raise ValueError(f"the recorded options lack {', '.join(missing)}")
        labels, names, regions = record.get("labels"), record.get("label_names"), record.get("regions")
        try:
            return cls(
                labels=None if labels is None else tuple(labels),
                metrics=tuple(filter(None, record["metrics"].split(","))),
                nsd_tolerance_mm=float(record["nsd_tolerance_mm"]), surface=record["surface_mode"],
                hd95_mode=record["hd95_mode"], empty=record["empty_mode"],
                label_names={int(k): str(v) for k, v in names.items()} if names else None,
                geometry_rtol=float(record.get("geometry_rtol", GEOMETRY_RTOL)),
                regions=_parse_region_text(regions) if isinstance(regions, str) else regions,
            )
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"the recorded options are not valid: {exc}") from None

    def metadata(self) -> dict[str, str]:
        """Key-value metadata of ``metrics.parquet``: the text entries of :meth:`to_record`, and
        the regions as ``"-1:WT=1,2,3;-2:TC=1,3"`` when there are regions."""
        record = self.to_record()
        meta = {k: record[k] for k in _TEXT_KEYS}
        if self.regions:
            meta["regions"] = ";".join(f"{r.id}:{r.name}=" + ",".join(map(str, r.labels)) for r in self.regions)
        return meta

    def fingerprint_components(self) -> dict:
        """The options as components of a run's fingerprint (labels sorted, names by label)."""
        return {"labels": None if self.labels is None else sorted(int(x) for x in self.labels),
                "label_names": None if not self.label_names else {str(k): v for k, v in sorted(self.label_names.items())},
                "metrics": list(self.metrics), "surface": self.surface, "hd95_mode": self.hd95_mode,
                "tolerance_mm": float(self.nsd_tolerance_mm), "empty": self.empty,
                "geometry_rtol": float(self.geometry_rtol),
                "regions": [[r.name, sorted(int(x) for x in r.labels)] for r in self.regions]}


def _parse_region_text(text: str) -> dict[str, list[int]]:
    """``"-1:WT=1,2,3;-2:TC=1,3"`` (the metadata form) -> ``{"WT": [1, 2, 3], "TC": [1, 3]}`` in id order."""
    found = []
    for item in filter(None, text.split(";")):
        rid, _, rest = item.partition(":")
        name, sep, values = rest.rpartition("=")
        if not sep or not rid.lstrip("-").isdigit():
            raise ValueError(f"the recorded regions {text!r} are not id:NAME=labels;...")
        found.append((-int(rid), name, [int(v) for v in values.split(",")]))
    return {name: values for _, name, values in sorted(found)}
