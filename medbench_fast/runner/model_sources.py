"""From a config's model entry to a runnable model: export when needed, then load.

Each model kind is a small class with one method, ``onnx(export_dir)`` -> ``(onnx path,
spec or None)``; exports go through the export cache (keyed by the source's hash and the
options), so a second run reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medbench_fast.config import BenchmarkConfig, ModelEntry
from medbench_fast.files import path_inside
from medbench_fast.models.spec import ModelError


class ModelSource:
    """A config model entry (``name``, ``kind``, ``path``/``id``, ``spec`` ...)."""

    def __init__(self, entry: ModelEntry):
        self.entry = entry
        self.name = entry.name

    def onnx(self, export_dir: Path) -> tuple[Path, object]:
        raise NotImplementedError

    def _target(self, export_dir: Path) -> Path:
        """Where the export of this model goes: ``EXPORT_DIR/NAME.onnx``, checked to lie inside."""
        return path_inside(export_dir, f"{self.name}.onnx")

    def _spec_override(self, spec):
        """Apply the config's ``spec`` mapping on top of an exported spec (dict merge)."""
        override = self.entry.spec
        base = spec.to_dict() if spec is not None else {}
        merged = {**base, **(override or {}), "name": self.name}
        for key in ("strategy", "output"):
            if override and isinstance(override.get(key), dict) and isinstance(base.get(key), dict):
                merged[key] = {**base[key], **override[key]}
        return merged


class OnnxSource(ModelSource):
    def onnx(self, export_dir):
        path = Path(self.entry.path)
        if self.entry.spec is None:
            return path, None  # the spec JSON beside the file
        from medbench_fast.models.onnx import resolve_spec
        from medbench_fast.models.spec import spec_path_for

        beside = spec_path_for(path)
        base = resolve_spec(path, None) if beside.is_file() else None
        return path, self._spec_override(base)


class TorchScriptSource(ModelSource):
    def onnx(self, export_dir):
        from medbench_fast.models.torchscript import export_torchscript

        path, spec, _ = export_torchscript(self.entry.path, self._target(export_dir),
                                           input_shape=self.entry.input_shape, spec=self.entry.spec,
                                           name=self.name)
        return path, spec


class HuggingFaceSource(ModelSource):
    def onnx(self, export_dir):
        hub_id = self.entry.hub or (None if self.entry.path else self.entry.id)
        if hub_id:  # a Hub model at a revision: the commit sha it resolves to goes into the spec's source
            from medbench_fast.models.huggingface import export_hub

            path, spec, _ = export_hub(hub_id, self.entry.revision or "main", self._target(export_dir),
                                       task=self.entry.task, name=self.name)
            return path, self._spec_override(spec)
        from medbench_fast.models.huggingface import export_hf

        path, spec, _ = export_hf(self.entry.path or self.entry.id, self._target(export_dir),
                                  task=self.entry.task, name=self.name)
        return path, self._spec_override(spec)


class AieneSource(ModelSource):
    def onnx(self, export_dir):
        from medbench_fast.models.aiene.export import export_aiene

        path, spec, _ = export_aiene(self.entry.path, self._target(export_dir), name=self.name,
                                     node_label=self.entry.node_label)
        return path, self._spec_override(spec)


class NnunetSource(ModelSource):
    def onnx(self, export_dir):
        from medbench_fast.models.nnunet.export import export_nnunet

        e = self.entry
        path, spec, _ = export_nnunet(e.path, export_dir / f"{self.name}.onnx", configuration=e.configuration,
                                      folds=e.folds, checkpoint=e.checkpoint,
                                      mirroring=e.mirroring is not False, step_size=e.step_size,
                                      name=self.name)
        return path, self._spec_override(spec)


SOURCES = {"onnx": OnnxSource, "torchscript": TorchScriptSource, "huggingface": HuggingFaceSource,
           "aiene": AieneSource, "nnunet": NnunetSource}


def gpu_settings(benchmark: BenchmarkConfig):
    """The GPU options of a validated ``benchmark`` config section."""
    from medbench_fast.models.providers import GpuSettings

    return GpuSettings(cudnn_search=benchmark.cudnn_search or "exhaustive", tf32=bool(benchmark.tf32),
                       strict=benchmark.strict_providers)


def watch_gpus(benchmark: BenchmarkConfig):
    """This process's :class:`~medbench_fast.environment.GpuWatch`, with the baseline of the
    device a GPU run uses read before its sessions exist."""
    from medbench_fast.environment import GpuWatch

    watch = GpuWatch.of_process()
    if any(p in ("cuda", "tensorrt") for p in benchmark.providers or ()):
        watch.before_sessions([0])  # workers are pinned with CUDA_VISIBLE_DEVICES: their device is ordinal 0
    return watch


@dataclass(frozen=True)
class ResolvedModel:
    """A config model entry exported to ONNX with its resolved spec and precision (picklable:
    sent to workers). ``fp16``: the entry's ``precision`` (set by
    :func:`~medbench_fast.runner.precision.expand_precisions`) wins over ``benchmark.fp16``."""

    name: str
    path: str
    spec: dict
    fp16: bool


def resolve_model(entry: ModelEntry, *, export_dir: Path, benchmark: BenchmarkConfig) -> ResolvedModel:
    """Export (cached) the model of a config entry and resolve its spec, without opening a
    session; errors name the model."""
    from medbench_fast.models.onnx import resolve_spec
    from medbench_fast.models.session import sniff_model_file

    source = SOURCES[entry.kind](entry)
    fp16 = entry.precision == "fp16" if entry.precision else bool(benchmark.fp16)
    try:
        path, spec = source.onnx(export_dir)
        sniff_model_file(Path(path))
        resolved = resolve_spec(Path(path), spec).to_dict()
    except ModelError as exc:
        raise ModelError(f"model {entry.name!r}: {exc}") from None
    return ResolvedModel(entry.name, str(path), resolved, fp16)


def open_resolved(resolved: ResolvedModel, *, benchmark: BenchmarkConfig, threads: int | None = None):
    """Open a session for a resolved model (``threads`` overrides ``benchmark.threads``)."""
    from medbench_fast.models import load_model

    try:
        model = load_model(resolved.path, providers=tuple(benchmark.providers), spec=resolved.spec,
                           threads=threads if threads is not None else benchmark.threads, fp16=resolved.fp16,
                           spin=False, gpu=gpu_settings(benchmark), postprocess=benchmark.postprocess or "graph")
    except ModelError as exc:
        raise ModelError(f"model {resolved.name!r}: {exc}") from None
    model.name = resolved.name
    return model


def open_model(entry: ModelEntry, *, export_dir: Path, benchmark: BenchmarkConfig):
    """Export (cached) and open the model of a config entry in this process."""
    return open_resolved(resolve_model(entry, export_dir=export_dir, benchmark=benchmark), benchmark=benchmark)
