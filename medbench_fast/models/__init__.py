"""Model runtime: every model is an ONNX file plus a JSON spec, run by ONNX Runtime.

Public API::

    load_model(path, *, providers=("cpu",), spec=None, threads=None, fp16=False, gpu=None,
               postprocess="graph") -> Model
    Model.predict(volume, mask=None) -> Prediction
    ModelSpec (JSON spec), ModelError, create_session (the session factory),
    GpuSettings (device, cuDNN search, TF32, strict providers, TensorRT cache folder)

Exporters (need the ``[export]`` extra; imported only when called):
``medbench_fast.models.aiene.convert.convert_h5``,
``medbench_fast.models.huggingface.export_hf``,
``medbench_fast.models.torchscript.export_torchscript``,
``medbench_fast.models.nnunet.export.export_nnunet`` (needs nnunetv2).
"""

from __future__ import annotations

from medbench_fast.models.base import Model, Prediction
from medbench_fast.models.onnx import load_model
from medbench_fast.models.providers import GpuSettings
from medbench_fast.models.session import OrtSession, create_session
from medbench_fast.models.spec import (
           IntensityStep,
           ModelError,
           ModelSpec,
           OutputSpec,
           StrategySpec,
)

__all__ = ["load_model", "Model", "Prediction", "ModelSpec", "StrategySpec", "OutputSpec", "IntensityStep",
           "ModelError", "create_session", "OrtSession", "GpuSettings"]
