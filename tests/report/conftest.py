"""Fixtures of the report tests: one realistic multi-model run folder per session."""

from __future__ import annotations

import pytest
from report.run_builder import build_run


@pytest.fixture(scope="session")
def bench_run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("bench"))
