"""The runtime package holds runtime code only: test and benchmark helpers live in ``tests/``
and ``bench/``, and nothing in ``medbench_fast`` imports them."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "medbench_fast"
#: Generators and fetchers only tests and benchmarks use; they moved to ``tests/``.
MOVED = {"medbench_fast.data.dicom.synthetic": "dicom_synthetic", "medbench_fast.data.registry": "package_registry",
         "medbench_fast.models.nnunet.synthetic": "nnunet_synthetic"}


def _helper_modules() -> set[str]:
    """Top-level names that ``tests/`` and ``bench/`` make importable (modules and packages)."""
    names = {"tests", "bench", "conftest"}
    for folder in (ROOT / "tests", ROOT / "bench"):
        for path in folder.iterdir():
            if path.suffix == ".py":
                names.add(path.stem)
            elif path.is_dir() and any(path.glob("*.py")):
                names.add(path.name)
    return names


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in a source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def test_helpers_are_not_in_the_runtime_package():
    for module, helper in MOVED.items():
        assert not (ROOT / (module.replace(".", "/") + ".py")).exists(), module
        assert importlib.util.find_spec(module) is None, module
        assert (ROOT / "tests" / f"{helper}.py").is_file(), helper


def test_runtime_package_imports_nothing_from_tests_or_bench():
    helpers = _helper_modules()
    assert {"dicom_synthetic", "package_registry", "reference", "common", "report"} <= helpers
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, module in _imports(path):
            if module.split(".")[0] in helpers or module in MOVED:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {module}")
        text = path.read_text(encoding="utf-8")
        if "sys.path" in text and ("tests" in text or "bench" in text):
            offenders.append(f"{path.relative_to(ROOT)}: edits sys.path")
    assert offenders == []


def test_importing_the_runtime_loads_no_helper(tmp_path):
    """In a fresh interpreter started outside the repository, the package and its command line
    import without ``tests/`` or ``bench/`` reachable and load none of their modules."""
    helpers = sorted(_helper_modules() - {"report"})  # ``report`` is also medbench_fast.report's last part
    code = (
        "import sys\n"
        "import medbench_fast, medbench_fast.cli.main, medbench_fast.data.dicom, medbench_fast.report.html\n"
        f"bad = sorted(set(sys.modules) & set({helpers!r}))\n"
        "bad += [m for m in sys.modules if m.split('.')[0] == 'report']\n"
        "assert not bad, bad\n"
        "print('ok')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
