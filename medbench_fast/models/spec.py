"""The model spec: a small JSON file stored beside an ONNX model (``<name>.spec.json``).

It says everything the runtime needs to turn a :class:`~medbench_fast.data.reader.Volume`
into model inputs and model outputs back into a prediction:

- ``inputs``: the ONNX input names, in the order the strategy feeds them;
  ``layout`` is ``channels_first`` (``N, C, *spatial``) or ``channels_last`` (``N, *spatial, C``).
- ``strategy``: how a volume is cut into model inputs (:class:`StrategySpec`).
- ``channels`` / ``channel_names``: how many image channels the model takes and, by name,
  which of the dataset's channels in which order (nnU-Net ``channel_names``, Decathlon
  ``modality``; names compare case-insensitively). Without names, a case's channels are
  taken in file order; a one-channel image is replicated to ``channels``.
- ``intensity``: ordered intensity steps applied to the image (:class:`IntensityStep`),
  each to every channel or to the channels it names.
- ``target_spacing``: ``(sz, sy, sx)`` mm the image is resampled to first (linear), or ``None``.
- ``output``: what the model returns and how classes map to dataset labels (:class:`OutputSpec`).

Spatial sizes and axes are in ``(Z, Y, X)`` order of the volume array unless a field says
otherwise (``whole_volume`` with ``orientation`` uses the axis order of the orientation code).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

STRATEGIES = ("slice2d", "sliding_window", "whole_volume", "object_crops", "nnunet")
OUTPUT_KINDS = ("segmentation_logits", "label_map", "case_scores")
ACTIVATIONS = ("none", "softmax", "sigmoid")
INTENSITY_OPS = ("window", "clip", "percentile_scale", "zscore", "affine", "normalize")
LAYOUTS = ("channels_first", "channels_last")


class ModelError(ValueError):
    """A model, its spec or its input is not usable; the message names the file and the problem."""


@dataclass
class IntensityStep:
    """One intensity step, applied in order, to each channel separately.

    - ``window``: clip to ``range = [lo, hi]`` (e.g. HU) and scale to ``[0, 1]``.
    - ``clip``: clip to ``range = [lo, hi]`` without scaling (nnU-Net's CT normalisation is
      ``clip`` to the foreground's 0.5 / 99.5 percentiles, then ``affine`` with
      ``scale = 1 / std``, ``shift = -mean / std``).
    - ``percentile_scale``: scale the ``percentiles = [lo, hi]`` (0-100) of the image to
      ``[0, 1]`` and clip to ``[0, 1]``.
    - ``zscore``: subtract the channel's mean, divide by its standard deviation (ddof 1), per
      channel (nnU-Net's MRI normalisation, without its optional non-zero mask).
    - ``affine``: ``x * scale + shift``.
    - ``normalize``: per channel ``(x - mean[c]) / std[c]`` after channels are replicated.

    ``channels``: names (from the spec's ``channel_names``) or indices of the model channels
    the step applies to; default every channel (``normalize`` always acts on all).
    """

    op: str
    range: list[float] | None = None
    percentiles: list[float] | None = None
    scale: float = 1.0
    shift: float = 0.0
    mean: list[float] | None = None
    std: list[float] | None = None
    channels: list[str | int] | None = None


@dataclass
class StrategySpec:
    """How a volume is fed to the model.

    - ``slice2d``: 2D slices along ``axis`` (0 = Z), ``batch_size`` slices per run, each
      resized (linear) to ``input_size = [H, W]`` when given; logits are resized back.
    - ``sliding_window``: 3D patches of ``patch_size`` with ``overlap`` (fraction of the
      patch), blended with a Gaussian of sigma ``sigma_scale * patch_size``.
    - ``whole_volume``: optionally reoriented to ``orientation`` (nibabel-style code such as
      ``"RAS"``: first model axis points to Right, ...), resampled to ``input_size`` with
      ``interpolation`` (``nearest`` or ``linear``), run once, and mapped back.
    - ``object_crops``: one input set per connected component of ``object_label`` in the
      mask (components smaller than ``min_voxels`` dropped; ``connectivity`` 6 or 26).
    - ``nnunet``: an nnU-Net v2 model (:mod:`medbench_fast.models.nnunet`): nnU-Net's
      preprocessing, sliding window of ``patch_size`` (2 or 3 values) and export, with the
      plans, dataset.json and tile step in the spec's ``source``.
    """

    type: str
    axis: int = 0
    batch_size: int = 8
    input_size: list[int] | None = None
    patch_size: list[int] | None = None
    overlap: float = 0.5
    sigma_scale: float = 0.125
    orientation: str | None = None
    interpolation: str = "nearest"
    object_label: int = 1
    min_voxels: int = 1
    connectivity: int = 26


@dataclass
class OutputSpec:
    """What the model returns.

    ``kind``: ``segmentation_logits`` (``N, C, *spatial`` scores, argmaxed), ``label_map``
    (class indices) or ``case_scores`` (``N, K``, one row per object). ``labels`` maps
    model class index -> dataset label value (classes not listed become 0). ``score_names``
    names the ``K`` case scores; ``score_classes``, when given, says which output columns
    they are (e.g. ``[1]``: only the positive class of a 2-class classifier). ``name`` picks the ONNX output (default: the first).
    ``resample``: ``nearest`` (label map) or ``linear`` (scores) when mapping back to the
    input grid.
    """

    kind: str = "segmentation_logits"
    activation: str = "none"
    labels: dict[int, int] = field(default_factory=dict)
    score_names: list[str] = field(default_factory=list)
    score_classes: list[int] = field(default_factory=list)
    name: str | None = None
    resample: str = "linear"


@dataclass
class ModelSpec:
    """A model's spec; ``ModelSpec.from_dict(spec.to_dict()) == spec``."""

    name: str
    inputs: list[str]
    strategy: StrategySpec
    output: OutputSpec
    layout: str = "channels_first"
    channels: int = 1
    channel_names: list[str] | None = None
    intensity: list[IntensityStep] = field(default_factory=list)
    target_spacing: list[float] | None = None
    kind: str = "onnx"
    source: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["output"]["labels"] = {str(k): v for k, v in self.output.labels.items()}
        return d

    def to_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict, *, where: str = "<spec>") -> "ModelSpec":
        """Build and validate a spec; errors name ``where`` and the offending key."""
        if not isinstance(data, dict):
            raise ModelError(f"{where}: spec must be a JSON object, got {type(data).__name__}")
        _known(data, cls, where, "")
        for key in ("name", "inputs", "strategy", "output"):
            if key not in data:
                raise ModelError(f"{where}: missing key {key!r}")
        strategy = _section(data["strategy"], StrategySpec, where, "strategy")
        output = _section(data["output"], OutputSpec, where, "output")
        try:
            output.labels = {int(k): int(v) for k, v in dict(output.labels).items()}
        except (TypeError, ValueError):
            raise ModelError(f"{where}: output.labels must map class index -> label value (integers)") from None
        steps = [_section(s, IntensityStep, where, f"intensity[{i}]") for i, s in enumerate(data.get("intensity", []))]
        rest = {k: v for k, v in data.items() if k not in ("strategy", "output", "intensity")}
        spec = cls(strategy=strategy, output=output, intensity=steps, **rest)
        spec.validate(where)
        return spec

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "ModelSpec":
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"{p}: spec file not found")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelError(f"{p}: not valid JSON ({exc})") from None
        return cls.from_dict(data, where=str(p))

    def validate(self, where: str = "<spec>") -> None:
        """Check values; raise :class:`ModelError` naming ``where`` and the key."""
        s, o = self.strategy, self.output

        def bad(key: str, msg: str) -> ModelError:
            return ModelError(f"{where}: {key}: {msg}")

        if not self.inputs or not all(isinstance(n, str) for n in self.inputs):
            raise bad("inputs", "must be a non-empty list of input names")
        if self.layout not in LAYOUTS:
            raise bad("layout", f"{self.layout!r} is not one of {LAYOUTS}")
        if self.channels < 1:
            raise bad("channels", "must be >= 1")
        if self.channel_names is not None:
            if not all(isinstance(n, str) and n for n in self.channel_names):
                raise bad("channel_names", "must be a list of channel names")
            if len(self.channel_names) != self.channels:
                raise bad("channel_names", f"names {len(self.channel_names)} channel(s); channels is {self.channels}")
            if len({n.lower() for n in self.channel_names}) != len(self.channel_names):
                raise bad("channel_names", f"names repeat: {self.channel_names}")
        if s.type not in STRATEGIES:
            raise bad("strategy.type", f"{s.type!r} is not one of {STRATEGIES}")
        if s.batch_size < 1:
            raise bad("strategy.batch_size", "must be >= 1")
        if s.type == "slice2d":
            if s.axis not in (0, 1, 2):
                raise bad("strategy.axis", "must be 0, 1 or 2")
            if s.input_size is not None and len(s.input_size) != 2:
                raise bad("strategy.input_size", "slice2d needs [H, W]")
        if s.type == "sliding_window":
            if s.patch_size is None or len(s.patch_size) != 3 or min(s.patch_size) < 1:
                raise bad("strategy.patch_size", "sliding_window needs [pz, py, px] >= 1")
            if not 0.0 <= s.overlap < 1.0:
                raise bad("strategy.overlap", "must be in [0, 1)")
        if s.type == "nnunet":
            if s.patch_size is None or len(s.patch_size) not in (2, 3) or min(s.patch_size) < 1:
                raise bad("strategy.patch_size", "nnunet needs the configuration's patch size (2 or 3 values >= 1)")
            missing = [k for k in ("plans", "dataset_json", "configuration", "tile_step_size") if k not in self.source]
            if missing:
                raise bad("source", f"nnunet models need {missing} (export them with medbench export --nnunet)")
            if not 0.0 < float(self.source["tile_step_size"]) <= 1.0:
                raise bad("source.tile_step_size", "must be in (0, 1]")
        if s.type == "whole_volume":
            if s.input_size is None or len(s.input_size) != 3:
                raise bad("strategy.input_size", "whole_volume needs a 3D size")
            if s.orientation is not None and (len(s.orientation) != 3 or
                                              sorted(_AXIS_OF[c] for c in s.orientation.upper()) != [0, 1, 2]):
                raise bad("strategy.orientation", f"{s.orientation!r} is not a 3-letter code over R/L, A/P, S/I")
        if s.interpolation not in ("nearest", "linear"):
            raise bad("strategy.interpolation", "must be 'nearest' or 'linear'")
        if s.type == "object_crops" and o.kind != "case_scores":
            raise bad("output.kind", "object_crops models return case_scores")
        if s.connectivity not in (6, 26):
            raise bad("strategy.connectivity", "must be 6 or 26")
        if o.kind not in OUTPUT_KINDS:
            raise bad("output.kind", f"{o.kind!r} is not one of {OUTPUT_KINDS}")
        if o.activation not in ACTIVATIONS:
            raise bad("output.activation", f"{o.activation!r} is not one of {ACTIVATIONS}")
        if o.resample not in ("nearest", "linear"):
            raise bad("output.resample", "must be 'nearest' or 'linear'")
        if o.kind != "case_scores" and not o.labels:
            raise bad("output.labels", "segmentation models need a class -> label mapping")
        if o.kind == "case_scores" and not o.score_names:
            raise bad("output.score_names", "case_scores models need score names")
        if o.score_classes and (len(o.score_classes) != len(o.score_names) or min(o.score_classes) < 0):
            raise bad("output.score_classes", "needs one output column index (>= 0) per score name")
        if any(v < 0 or v > 65535 for v in o.labels.values()):
            raise bad("output.labels", "label values must be in [0, 65535]")
        if self.target_spacing is not None and (len(self.target_spacing) != 3 or min(self.target_spacing) <= 0):
            raise bad("target_spacing", "must be [sz, sy, sx] > 0 mm")
        for i, step in enumerate(self.intensity):
            if step.op not in INTENSITY_OPS:
                raise bad(f"intensity[{i}].op", f"{step.op!r} is not one of {INTENSITY_OPS}")
            if step.op in ("window", "clip") and (step.range is None or len(step.range) != 2
                                                  or step.range[0] >= step.range[1]):
                raise bad(f"intensity[{i}].range", f"{step.op} needs [lo, hi] with lo < hi")
            if step.channels is not None:
                self._check_step_channels(step, bad, i)
            if step.op == "percentile_scale" and (step.percentiles is None or len(step.percentiles) != 2):
                raise bad(f"intensity[{i}].percentiles", "percentile_scale needs [lo, hi] in 0..100")
            if step.op == "normalize" and (step.mean is None or step.std is None
                                           or len(step.mean) != len(step.std) or len(step.mean) not in (1, self.channels)):
                raise bad(f"intensity[{i}]", "normalize needs mean and std with 1 or `channels` values")

    def _check_step_channels(self, step: "IntensityStep", bad, i: int) -> None:
        if step.op == "normalize":
            raise bad(f"intensity[{i}].channels", "normalize acts on every channel (give per-channel mean and std)")
        names = [n.lower() for n in self.channel_names or []]
        for c in step.channels:
            if isinstance(c, bool) or not isinstance(c, (int, str)):
                raise bad(f"intensity[{i}].channels", f"{c!r} is neither a channel name nor an index")
            if isinstance(c, int) and not 0 <= c < self.channels:
                raise bad(f"intensity[{i}].channels", f"index {c} is outside 0..{self.channels - 1}")
            if isinstance(c, str) and c.lower() not in names:
                raise bad(f"intensity[{i}].channels", f"{c!r} is not among channel_names {self.channel_names}")

    def step_channels(self, step: "IntensityStep") -> set[int] | None:
        """Model channel indices ``step`` applies to (None: all)."""
        if step.channels is None:
            return None
        names = [n.lower() for n in self.channel_names or []]
        return {c if isinstance(c, int) else names.index(c.lower()) for c in step.channels}

    def check_dataset_labels(self, dataset_labels, *, model: str | None = None) -> None:
        """Raise :class:`ModelError` if a label this model predicts is not among ``dataset_labels``;
        ``model``: the name the user gave it (default: the spec's)."""
        if self.output.kind == "case_scores":
            return
        known = {int(v) for v in dataset_labels}
        missing = sorted({v for v in self.output.labels.values() if v != 0} - known)
        if missing:
            raise ModelError(f"model {model or self.name!r}: predicts label(s) {missing} that the dataset does not "
                             f"have (dataset labels: {sorted(known)}); fix output.labels in its spec, or add "
                             f"them to dataset.labels")


_AXIS_OF = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}


def _known(data: dict, cls, where: str, prefix: str) -> None:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ModelError(f"{where}: unknown key(s) {[prefix + k for k in unknown]}; known: {sorted(names)}")


def _section(data, cls, where: str, key: str):
    if not isinstance(data, dict):
        raise ModelError(f"{where}: {key} must be a JSON object")
    _known(data, cls, where, key + ".")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ModelError(f"{where}: {key}: {exc}") from None


def spec_path_for(model_path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.spec.json`` beside it."""
    p = Path(model_path)
    return p.with_name(p.stem + ".spec.json")
