"""Executors within bounds: a Ray address whose port accepts connections and never answers
fails within the connect deadline with nothing written; worker processes are never more
than the run's cases."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.config import ConfigError
from medbench_fast.runner.executors.ray import CONNECT_TIMEOUT_S, check_address
from medbench_fast.runner.scale import ScaleOptions, process_slots, ray_slots


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte; stops itself after ``life_s``."""

    def __init__(self, life_s: float = 30.0):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stop_at = time.monotonic() + life_s
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while time.monotonic() < self.stop_at:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.held.append(conn)  # read nothing, answer nothing
        self.close()

    def close(self):
        self.stop_at = 0
        for conn in self.held:
            conn.close()
        self.sock.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_at = 0
        self.thread.join(5)


def test_ray_address_that_accepts_and_never_answers_fails_within_the_deadline(tmp_path, bench_assets, write_config,
                                                                              monkeypatch):
    config = write_config(tmp_path, bench_assets, max_cases=2)
    out = tmp_path / "r"
    with SilentServer() as server:
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{server.port}")
        t0 = time.perf_counter()
        result = CliRunner().invoke(cli, ["run", "--config", str(config), "--out", str(out), "--executor", "ray"],
                                    catch_exceptions=False)
        elapsed = time.perf_counter() - t0
        assert server.held, "the server never saw the connection"
    assert result.exit_code == 2, result.output
    assert f"ray address '127.0.0.1:{server.port}' accepted the connection but did not answer within 5 s" \
        in result.output
    assert CONNECT_TIMEOUT_S - 0.5 < elapsed < CONNECT_TIMEOUT_S + 30  # the rest is importing Ray
    assert not out.exists()


def test_the_ray_address_check_has_one_total_deadline():
    with SilentServer() as server:
        t0 = time.perf_counter()
        with pytest.raises(ConfigError, match="accepted the connection but did not answer within 1 s"):
            check_address(f"ray://127.0.0.1:{server.port}", timeout_s=1.0)
        assert 0.9 < time.perf_counter() - t0 < 3


def test_workers_are_capped_at_the_number_of_cases(tmp_path, bench_assets, write_config):
    config = write_config(tmp_path, bench_assets, max_cases=1)
    out = tmp_path / "one"
    result = CliRunner().invoke(cli, ["run", "--config", str(config), "--out", str(out), "--executor", "processes",
                                      "--workers", "4", "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(json.loads((out / "run.json").read_text())["workers"]) == 1


def test_slots_never_outnumber_cases():
    assert len(process_slots(ScaleOptions("processes", workers=4), threads=8, cases=1)) == 1
    assert process_slots(ScaleOptions("processes", workers=4), threads=8, cases=2)[0].threads == 4
    assert len(process_slots(ScaleOptions("processes", workers=4), threads=8, cases=0)) == 1
    assert len(ray_slots(ScaleOptions("ray", workers=3), threads=3, cases=2)) == 2
    assert len(ray_slots(ScaleOptions("ray", gpus="0,1", workers_per_gpu=2), threads=1, cases=3)) == 3
