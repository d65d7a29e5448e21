"""The ONNX versions every file the project writes is stamped with: the one place.

Every ONNX file medbench writes (demo models, AI-ENE conversions, Hugging Face and
TorchScript exports, derived fp16 / post-processed graphs) goes through
:func:`save_onnx` or :func:`lower_file`, so it loads in the oldest onnxruntime and
onnxruntime-gpu the project declares (:data:`MIN_ONNXRUNTIME`, pyproject's ``cpu`` and
``gpu`` extras). ``onnx.helper.make_model`` stamps the newest IR version of the installed
``onnx`` (1.23: IR 14), which older runtimes refuse ("Unsupported model IR version"); an
IR version above :data:`MAX_IR_VERSION` is lowered to it (never below what the opsets
need). A default-domain opset above :data:`MAX_OPSETS` is converted down
with ``onnx.version_converter``; where that fails the file is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from medbench_fast.models.spec import ModelError

#: The oldest onnxruntime / onnxruntime-gpu the project supports (pyproject's extras say the same).
MIN_ONNXRUNTIME = "1.17"
#: What that onnxruntime loads: ONNX 1.15's IR version and opsets.
MAX_IR_VERSION = 9
MAX_OPSETS = {"": 20, "ai.onnx.ml": 4, "com.microsoft": 1}


def _default_opset(model) -> int:
    return next((op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 0)


def problems(model) -> list[str]:
    """What in ``model`` (``onnx.ModelProto``) the oldest supported onnxruntime would refuse."""
    out = []
    if model.ir_version > MAX_IR_VERSION:
        out.append(f"IR version {model.ir_version} > {MAX_IR_VERSION}")
    for op in model.opset_import:
        domain = "" if op.domain == "ai.onnx" else op.domain
        limit = MAX_OPSETS.get(domain)
        if limit is not None and op.version > limit:
            out.append(f"opset {domain or 'ai.onnx'} {op.version} > {limit}")
    return out


def lower(model, where: str = "model"):
    """``model`` with its opsets and IR version within onnxruntime :data:`MIN_ONNXRUNTIME`'s
    (returned; may be a new ModelProto when the opset is converted)."""
    from onnx import helper, version_converter

    if _default_opset(model) > MAX_OPSETS[""]:
        try:
            model = version_converter.convert_version(model, MAX_OPSETS[""])
        except Exception as exc:  # the converter raises plain RuntimeErrors/onnx errors
            raise ModelError(f"{where}: opset {_default_opset(model)} cannot be converted to opset {MAX_OPSETS['']} "
                             f"(the newest onnxruntime {MIN_ONNXRUNTIME} loads): {str(exc).strip()[:200]}") from None
    ops = [op for op in model.opset_import if (op.domain or "") in ("", "ai.onnx", "ai.onnx.ml")]
    needed = helper.find_min_ir_version_for(ops, ignore_unknown=True) if ops else 3
    model.ir_version = min(MAX_IR_VERSION, max(needed, min(model.ir_version, MAX_IR_VERSION)))
    left = problems(model)
    if left:
        raise ModelError(f"{where}: does not load in onnxruntime {MIN_ONNXRUNTIME}: {'; '.join(left)}")
    return model


def save_onnx(model, path: str | os.PathLike, **save_options) -> Path:
    """Write ``model`` to ``path`` (``onnx.save_model`` options pass through) after :func:`lower`."""
    import onnx

    out = Path(path)
    onnx.save_model(lower(model, str(out)), str(out), **save_options)
    return out


def lower_file(path: str | os.PathLike) -> Path:
    """Rewrite the ONNX file ``path`` in place where :func:`lower` changes it (external data stays)."""
    import onnx

    p = Path(path)
    model = onnx.load(str(p), load_external_data=False)
    before = (model.ir_version, [(op.domain, op.version) for op in model.opset_import])
    if not problems(model) and model.ir_version <= MAX_IR_VERSION:
        return p
    lowered = lower(model, str(p))
    if (lowered.ir_version, [(op.domain, op.version) for op in lowered.opset_import]) != before:
        onnx.save_model(lowered, str(p))
    return p
