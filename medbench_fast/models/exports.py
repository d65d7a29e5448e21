"""The export cache: converted models keyed by the hash of their source file(s) and options.

An entry is a folder ``<cache>/<key>/`` holding ``model.onnx`` and ``model.spec.json``;
it is built in a temporary folder, its IR version and opsets lowered to what the oldest
supported onnxruntime loads (:mod:`~medbench_fast.models.onnx_floor`), and renamed into place. An export holds an exclusive
lock on its key (``<cache>/.<key>.lock``, :class:`~medbench_fast.files.FileLock`) from the cache lookup to the copy
of the result, so two processes exporting one model never break each other: the second
waits and reuses the first one's entry. The copies at ``out`` are written atomically.
The cache folder is ``$MEDBENCH_EXPORT_CACHE`` or ``~/.cache/medbench-fast/exports``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from medbench_fast import __version__
from medbench_fast.files import FileLock, atomic_folder, atomic_write
from medbench_fast.models.onnx_floor import MAX_IR_VERSION, MAX_OPSETS, lower_file
from medbench_fast.models.spec import ModelSpec, spec_path_for

def export_cache_dir() -> Path:
    return Path(os.environ.get("MEDBENCH_EXPORT_CACHE", Path.home() / ".cache" / "medbench-fast" / "exports"))


def _hash_path(digest, path: Path) -> None:
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            _hash_path(digest, child)
        return
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)


def cache_key(kind: str, sources: list[Path], options: dict) -> str:
    """sha256 over the exporter kind, medbench version, the ONNX floor (entries written for
    another one are rebuilt), options (as sorted JSON) and source bytes."""
    digest = hashlib.sha256()
    digest.update(f"{kind}\0{__version__}\0ir{MAX_IR_VERSION}-opset{MAX_OPSETS['']}\0".encode())
    digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    for source in sources:
        _hash_path(digest, Path(source))
    return digest.hexdigest()


def output_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """``out`` ending in ``.onnx`` -> (that file, its spec); otherwise a folder with ``model.onnx``."""
    p = Path(out)
    onnx_path = p if p.suffix == ".onnx" else p / "model.onnx"
    return onnx_path, spec_path_for(onnx_path)


def cached_export(kind: str, sources: list[Path], options: dict, out: str | os.PathLike,
                  build: Callable[[Path], ModelSpec], *, cache_dir: str | os.PathLike | None = None,
                  force: bool = False) -> tuple[Path, ModelSpec, bool]:
    """Export through the cache: ``build(onnx_path) -> ModelSpec`` runs only on a miss.

    Returns ``(onnx path at out, spec, cache hit)``; the spec is written beside the ONNX file.
    Safe for concurrent processes (see the module docstring).
    """
    root = Path(cache_dir) if cache_dir is not None else export_cache_dir()
    key = cache_key(kind, sources, options)
    entry = root / key
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / f".{key}.lock"):
        hit = (entry / "model.onnx").is_file() and (entry / "model.spec.json").is_file() and not force
        if not hit:
            with atomic_folder(entry) as tmp:  # an older entry (force) is replaced
                spec = build(tmp / "model.onnx")
                lower_file(tmp / "model.onnx")
                spec.to_json(tmp / "model.spec.json")
        spec = ModelSpec.from_json(entry / "model.spec.json")
        onnx_path, spec_path = output_paths(out)
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(onnx_path, lambda t: shutil.copyfile(entry / "model.onnx", t))
        atomic_write(spec_path, spec.to_json)
    return onnx_path, spec, hit
