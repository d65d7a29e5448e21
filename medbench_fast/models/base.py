"""The model interface every strategy implements: ``predict(volume, mask) -> Prediction``.

A :class:`Model` owns one :class:`~medbench_fast.models.session.OrtSession` and its
:class:`~medbench_fast.models.spec.ModelSpec`. Subclasses implement ``_prepare`` (volume
-> model-ready arrays; timed as ``preprocess_s``) and ``_execute`` (runs the session through
:meth:`Model._run` and builds the result). ``inference_s`` is the time spent inside
``session.run`` only; everything else in ``_execute`` is ``postprocess_s``.

Fixed shapes: strategies send batches through :meth:`Model._run_batch`, which pads the
last batch to ``strategy.batch_size`` and drops the padding from the output, so a model
sees one input shape per case grid. On a GPU, the first call of every new input shape is
run once untimed before the timed call (cuDNN's algorithm search, a TensorRT engine
build), and recorded in :attr:`Model.shape_warmups`, never in ``inference_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from medbench_fast.data.pairing import CASE_OBJECT  # noqa: F401  (part of this module's API)
from medbench_fast.data.reader import Volume
from medbench_fast.models.session import OrtSession
from medbench_fast.models.spec import ModelError, ModelSpec


@dataclass
class Prediction:
    """A model's output for one case.

    ``label_map``: segmentation in the input volume's grid and geometry, dataset label
    values (uint8, or uint16 for labels > 255); ``None`` for case-level models.
    ``scores``: case-level models, one dict per object (``object_id``, one
    ``score_<name>`` per output, ``voxels``, ``centroid_zyx`` in input voxel indices).
    ``timings``: seconds, ``preprocess_s``, ``inference_s``, ``postprocess_s``.
    ``patches``: session inputs (tiles) of a tiled model, or None.
    """

    label_map: Volume | None
    scores: list[dict] | None
    timings: dict[str, float] = field(default_factory=dict)
    patches: int | None = None


@dataclass
class Prepared:
    """A case after :meth:`Model.prepare`: the strategy's inputs, the source volume, seconds spent."""

    state: object
    volume: Volume
    preprocess_s: float


class _Clock:
    __slots__ = ("inference_s", "excluded_s")

    def __init__(self):
        self.inference_s = 0.0
        self.excluded_s = 0.0  # untimed first runs of new shapes


class Model:
    """Base class: one ONNX session plus its spec, behind ``predict`` and ``warmup``."""

    #: Number of spatial axes of each model input (2 for slice-wise models).
    spatial_rank = 3

    def __init__(self, session: OrtSession, spec: ModelSpec):
        self.session = session
        self.spec = spec
        self.name = spec.name
        self.providers_in_use = list(session.providers_in_use)
        self.output_kind = "case_scores" if spec.output.kind == "case_scores" else "label_map"
        self.post = getattr(session, "post", None)
        self._output_name = self.post.result if self.post else (spec.output.name or session.output_names[0])
        #: Run each new input shape once untimed first (on by default on a GPU).
        self.warm_new_shapes = session.device == "cuda"
        #: ``{"shapes": ..., "seconds": ...}`` per untimed first run of a new shape.
        self.shape_warmups: list[dict] = []
        self._seen_shapes: set[tuple] = set()
        if self._output_name not in session.output_names:
            raise ModelError(f"{session.path}: spec output {self._output_name!r} not among the model's outputs "
                             f"{session.output_names}")
        for name, size in zip(spec.inputs, self.expected_input_sizes()):
            self._check_input(name, size)
        fixed = spec.source.get("fixed_input_size")
        if fixed is not None and spec.strategy.input_size is not None and list(spec.strategy.input_size) != list(fixed):
            raise ModelError(f"{session.path}: the model only accepts spatial size {list(fixed)} (its axes look "
                             f"dynamic but are not); the spec feeds {list(spec.strategy.input_size)}")

    # -- validation -------------------------------------------------------------------
    def expected_input_sizes(self) -> list[list[int] | None]:
        """Spatial size each input must accept (``None`` = any), in spec input order."""
        return [None] * len(self.spec.inputs)

    def input_sizes_for(self, shape, spacing) -> list[list[int] | None]:
        """Spatial size each input gets for a volume of ``shape`` (voxels, Z, Y, X) and ``spacing`` (mm)."""
        return self.expected_input_sizes()

    def check_volume(self, shape, spacing, where: str) -> None:
        """Raise :class:`ModelError` when a volume of ``shape`` cannot be fed to the model's fixed-size
        inputs (checked on a run's first case, so the run stops before it instead of failing every case)."""
        try:
            for name, size in zip(self.spec.inputs, self.input_sizes_for(shape, spacing)):
                self._check_input(name, size)
        except ModelError as exc:
            raise ModelError(f"{where} ({'x'.join(map(str, shape))} voxels): {exc}") from None

    def _check_input(self, name: str, spatial: list[int] | None) -> None:
        path = self.session.path
        if name not in self.session.inputs:
            raise ModelError(f"{path}: spec input {name!r} not among the model's inputs {self.session.input_names}")
        shape = list(self.session.inputs[name].shape)
        rank = 2 + self.spatial_rank
        if len(shape) != rank:
            raise ModelError(f"{path}: input {name!r} has rank {len(shape)} {shape}; the {self.spec.strategy.type} "
                             f"strategy needs rank {rank} ({self.spec.layout})")
        if self.spec.layout == "channels_first":
            channels, dims = shape[1], shape[2:]
        else:
            channels, dims = shape[-1], shape[1:-1]
        if isinstance(channels, int) and channels != self.spec.channels:
            raise ModelError(f"{path}: input {name!r} takes {channels} channel(s); spec says {self.spec.channels}")
        if spatial is not None:
            for got, want in zip(dims, spatial):
                if isinstance(got, int) and got != want:
                    raise ModelError(f"{path}: input {name!r} has fixed spatial size {dims}; "
                                     f"the spec feeds {list(spatial)}")

    def _check_case(self, volume: Volume, mask: Volume | None) -> None:
        where = volume.path or "<volume>"
        multi = volume.array.ndim == 4 and self.spec.strategy.type != "object_crops"
        if volume.array.ndim != 3 and not multi:
            raise ModelError(f"{where}: model {self.name!r} needs a 3D volume, got shape {volume.array.shape}")
        if mask is not None and mask.shape != volume.shape:
            raise ModelError(f"{mask.path or '<mask>'}: mask shape {mask.shape} differs from the image's "
                             f"{volume.shape}")

    # -- running ----------------------------------------------------------------------
    def predict(self, volume: Volume, mask: Volume | None = None) -> Prediction:
        """Run the model on one case (``mask`` for models that need it, e.g. AI-ENE)."""
        return self.execute(self.prepare(volume, mask))

    def prepare(self, volume: Volume, mask: Volume | None = None) -> "Prepared":
        """Preprocess one case (timed as ``preprocess_s``); thread-safe, so a runner can
        prepare upcoming cases in other threads while :meth:`execute` runs the model."""
        self._check_case(volume, mask)
        t0 = time.perf_counter()
        state = self._prepare(volume, mask)
        return Prepared(state, volume, time.perf_counter() - t0)

    def execute(self, prepared: "Prepared") -> Prediction:
        """Run the model on a prepared case and post-process its output."""
        clock = _Clock()
        t1 = time.perf_counter()
        prediction = self._execute(prepared.state, prepared.volume, clock)
        t2 = time.perf_counter()
        prediction.timings = {"preprocess_s": prepared.preprocess_s, "inference_s": clock.inference_s,
                              "postprocess_s": max(t2 - t1 - clock.inference_s - clock.excluded_s, 0.0)}
        return prediction

    def warmup(self, volume: Volume, mask: Volume | None = None, n: int = 1) -> None:
        """Run ``predict`` ``n`` times and discard the results (first-run allocations, kernels)."""
        for _ in range(n):
            self.predict(volume, mask)

    def run_facts(self) -> dict:
        """What ``run.json`` records about this model's session beyond its providers."""
        placement = getattr(self.session, "placement", None)
        return {"precision": getattr(self.session, "precision", "fp32"),
                "provider_options": getattr(self.session, "provider_options", {}),
                "postprocess": "graph" if self.post else "host",
                "placement": placement.summary() if placement is not None else None}

    def _run(self, arrays: list[np.ndarray], clock: _Clock, extra: dict[str, np.ndarray] | None = None,
             call=None) -> np.ndarray:
        """One timed session call; ``extra``: feeds beyond the spec's inputs (e.g. the output size);
        ``call``: what runs the feeds (default ``session.run``; the IO binding's
        ``run_on_device`` leaves the output on the device)."""
        call = call or self.session.run
        feeds = dict(zip(self.spec.inputs, arrays))
        if extra:
            feeds.update(extra)
        names = [self._output_name]
        if self.warm_new_shapes:
            key = tuple((n, v.shape, v.tobytes() if v.dtype.kind in "iu" and v.size <= 8 else None)
                        for n, v in feeds.items())
            if key not in self._seen_shapes:
                t0 = time.perf_counter()
                call(feeds, names)
                seconds = time.perf_counter() - t0
                clock.excluded_s += seconds
                self._seen_shapes.add(key)
                self.shape_warmups.append({"shapes": {n: list(v.shape) for n, v in feeds.items()}, "seconds": seconds})
        t0 = time.perf_counter()
        out = call(feeds, names)[0]
        clock.inference_s += time.perf_counter() - t0
        return out

    def _run_batch(self, arrays: list[np.ndarray], clock: _Clock,
                   extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """:meth:`_run` on a batch padded with zeros to ``strategy.batch_size`` items; the
        output keeps the real items only."""
        return self._run(self._padded(arrays), clock, extra)[:arrays[0].shape[0]]

    def _padded(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """``arrays`` padded with zero items to ``strategy.batch_size``."""
        n, size = arrays[0].shape[0], self.spec.strategy.batch_size
        if n < size:
            arrays = [np.concatenate([a, np.zeros((size - n,) + a.shape[1:], a.dtype)]) for a in arrays]
        return arrays

    def _prepare(self, volume: Volume, mask: Volume | None):
        raise NotImplementedError

    def _execute(self, state, volume: Volume, clock: _Clock) -> Prediction:
        raise NotImplementedError

    # -- helpers for segmentation strategies --------------------------------------------
    def _label_volume(self, classes: np.ndarray, volume: Volume) -> Volume:
        from medbench_fast.models.transforms import map_labels

        return Volume(array=map_labels(classes, self.spec.output.labels), spacing=volume.spacing,
                      origin=volume.origin, direction=volume.direction)

    def check_dataset_labels(self, dataset_labels) -> None:
        """Raise :class:`ModelError` if this model predicts labels the dataset lacks."""
        self.spec.check_dataset_labels(dataset_labels)
