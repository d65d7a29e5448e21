"""The local Hub fixture: a real HTTP server on 127.0.0.1 at a free port, ``HF_ENDPOINT``
pointing at it, and a private ``HF_HOME``, so ``huggingface_hub`` talks to it exactly as to
the real Hub; its state lives in a temporary folder."""

from __future__ import annotations

import pytest

from hub.server import LocalHub

TOKEN = "hf_medbenchTestToken0123456789abcdefXYZ"


@pytest.fixture
def local_hub(tmp_path_factory, monkeypatch):
    server = LocalHub(tmp_path_factory.mktemp("hub-server"))
    server.add_token(TOKEN, "alice")
    url = server.start()
    home = tmp_path_factory.mktemp("hf-home")
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("MEDBENCH_HUB_TIMEOUT", "5")
    yield server
    server.stop()
