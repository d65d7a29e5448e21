"""The local Hub fixture: a real HTTP server on 127.0.0.1 at a free port, ``HF_ENDPOINT``
pointing at it, and a private ``HF_HOME``, so ``huggingface_hub`` talks to it exactly as to
the real Hub; its state lives in a temporary folder. Nothing can leave the machine: the
client's endpoint constants are those of a process started with ``HF_ENDPOINT`` set."""

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
    # uploads over the Git LFS protocol, as a client without hf_xet sends them (the server speaks no xet)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    # huggingface_hub reads HF_ENDPOINT once, at import: set what a process started with it would hold
    from huggingface_hub import constants, file_download

    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    if hasattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE"):  # a copy of the constant before huggingface_hub 1.0
        monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))  # the login store, never the user's
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    yield server
    server.stop()


def model_card(**meta) -> str:
    import yaml

    return f"---\n{yaml.safe_dump(meta, sort_keys=True)}---\n# model\n"


@pytest.fixture
def make_model(local_hub, tmp_path_factory):
    """``make_model(repo_id, token=TOKEN, files=None, **card)``: create a model repo on the local
    Hub through the real client and commit a card (plus ``files``); returns the commit sha."""
    from huggingface_hub import HfApi

    def make(repo_id: str, *, token: str = TOKEN, files: dict | None = None, **card) -> str:
        api = HfApi(endpoint=local_hub.url, token=token)
        api.create_repo(repo_id, exist_ok=True)
        folder = tmp_path_factory.mktemp("model")
        (folder / "README.md").write_text(model_card(**card))
        for name, data in (files or {}).items():
            (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
        return api.upload_folder(folder_path=folder, repo_id=repo_id).oid

    return make
