"""Layers point down: every module imports only its own layer and the layers below it.

:data:`LAYERS` is the one definition of the order (README, Development). Two checks: each
layer's modules imported together in a fresh interpreter load nothing from a layer above
(what ``import`` really pulls in), and no import statement anywhere in a module, those
inside functions included, names a layer above (what a later call would pull in).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import medbench_fast

#: Bottom first. A module may import modules of its own layer and of the layers before it.
#: ``base`` is the package's own bottom: writing files (``files``) and machine facts
#: (``environment``); kernels are below even that.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("kernels", ("kernels",)),
    ("base", ("files", "environment")),
    ("metrics", ("metrics",)),
    ("data", ("data",)),
    ("store", ("store",)),
    ("hub", ("hub",)),
    ("models", ("models",)),
    ("config", ("config",)),
    ("report", ("report",)),
    ("runner", ("runner",)),
    ("demo", ("demo",)),
    ("cli", ("cli", "__main__")),
)
RANK = {top: rank for rank, (_, tops) in enumerate(LAYERS) for top in tops}
PACKAGE = Path(medbench_fast.__file__).parent


def layer_of(module: str) -> int | None:
    """The rank of ``medbench_fast.<top>...`` (None for the package itself, which imports
    nothing at import time)."""
    parts = module.split(".")
    return None if len(parts) == 1 else RANK[parts[1]]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_every_module_has_a_layer():
    unknown = {name for name in modules() if name != "medbench_fast" and name.split(".")[1] not in RANK}
    assert not unknown, f"add these to LAYERS: {sorted(unknown)}"


def imported_names(path: Path, module: str) -> set[str]:
    """Every ``medbench_fast`` module an import statement of ``path`` names, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(anchor + ([base] if base else []))
            names |= {f"{base}.{alias.name}" if base == "medbench_fast" and alias.name in RANK else base
                      for alias in node.names}
    return {name for name in names if name == "medbench_fast" or name.startswith("medbench_fast.")}


def upward(module: str, names) -> list[str]:
    rank = layer_of(module)
    return sorted(name for name in names if (layer_of(name) or 0) > rank)


def test_no_import_statement_points_up():
    found = {}
    for module, path in modules().items():
        if module == "medbench_fast":
            continue
        up = upward(module, imported_names(path, module))
        if up:
            found[module] = up
    assert not found, f"imports of a higher layer: {found}"


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS])
def test_a_layer_loads_nothing_above_it(layer):
    """Import every module of ``layer`` in a fresh interpreter and list what got loaded."""
    rank = next(i for i, (name, _) in enumerate(LAYERS) if name == layer)
    mine = [m for m in modules() if m != "medbench_fast" and m != "medbench_fast.__main__" and layer_of(m) == rank]
    code = ("import importlib, json, sys\n"
            f"for name in {mine!r}:\n    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('medbench_fast.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    above = sorted(name for name in loaded if layer_of(name) > rank)
    assert not above, f"importing the {layer} layer loads {above}"


def test_the_check_sees_a_lazy_upward_import(tmp_path):
    """The statement check finds an import inside a function, the kind a fresh interpreter misses."""
    path = tmp_path / "run_info.py"
    path.write_text("def visible_gpu():\n    from medbench_fast.models.providers import cuda_device_uuid\n"
                    "    from ..runner import profile\n")
    names = imported_names(path, "medbench_fast.store.run_info")
    assert upward("medbench_fast.store.run_info", names) == ["medbench_fast.models.providers",
                                                             "medbench_fast.runner"]
