"""Shared fixtures. ``tests/`` is put on ``sys.path`` so ``reference`` (the slow, obvious
implementations every kernel is checked against) imports from any test folder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own volume, export and compiled-template cache folders, never the user's."""
    monkeypatch.setenv("MEDBENCH_CACHE_DIR", str(tmp_path / "volume-cache"))
    monkeypatch.setenv("MEDBENCH_EXPORT_CACHE", str(tmp_path / "export-cache"))
    monkeypatch.setenv("MEDBENCH_TEMPLATE_CACHE", str(tmp_path / "template-cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
