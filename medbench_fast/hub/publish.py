"""``medbench hub publish``: a run folder -> a Hub dataset repo, in one commit.

The files are prepared in memory: the Parquet tables (``cases.parquet`` with its path
columns made relative to the run folder), ``summary.json``, ``leaderboard.html``, ``run.json``
(absolute paths, in the config text too, made relative to the run folder; the home folder
replaced by ``~`` elsewhere) and the
dataset card. A file holding the token is refused. The repo is created when missing and
everything goes up in one ``create_commit``; ``huggingface_hub`` leaves out files whose
content the repo already has, so publishing the same run again makes no new commit.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.hub.card import TABLES, dataset_card
from medbench_fast.hub.client import (
    HubError,
    HubSettings,
    HubUnreachable,
    connection,
    explain,
    token,
)

PATH_COLUMNS = ("image_path", "ref_path", "pred_path")
COPIED = ("summary.json", "leaderboard.html")


class Redactor:
    """Makes absolute paths relative to the run folder and hides the home folder."""

    def __init__(self, run_dir: Path):
        self.run_dir = str(Path(run_dir).resolve())
        self.home = str(Path.home())

    def path(self, value: str) -> str:
        if os.path.isabs(value) and "\n" not in value:
            return os.path.relpath(value, self.run_dir)
        return self.text(value)

    def text(self, value: str) -> str:
        value = value.replace(self.run_dir + os.sep, "").replace(self.run_dir, ".")
        return value.replace(self.home, "~") if len(self.home) > 1 else value

    def yaml_text(self, text: str) -> str:
        """A YAML document with its path values made relative (its ``sha256`` stays the original's)."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            return self.text(text)
        return yaml.safe_dump(self.json(data), sort_keys=False)

    def json(self, value):
        if isinstance(value, str):
            return self.path(value)
        if isinstance(value, dict):
            return {k: self.json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.json(v) for v in value]
        return value


def _parquet_bytes(path: Path, redactor: Redactor) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    changed = False
    for name in PATH_COLUMNS:
        if name in table.column_names:
            before = table.column(name).to_pylist()
            values = [None if v is None else redactor.path(v) for v in before]
            changed = changed or values != before
            table = table.set_column(table.column_names.index(name), table.schema.field(name),
                                     pa.array(values, type=table.schema.field(name).type))
    if not changed:
        return path.read_bytes()
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@dataclass
class PublishResult:
    repo_id: str
    files: dict[str, bytes]
    card: str
    commit: str | None = None
    url: str | None = None
    changed: bool = False


def prepare(run_dir: str | os.PathLike, *, license_: str = "other") -> tuple[dict[str, bytes], str]:
    """``({path in repo: bytes}, card)`` for a run folder; :class:`HubError` if it is not a finished run."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").is_file() or not (run_dir / "metrics.parquet").is_file():
        raise HubError(f"{run_dir}: not a finished run folder (run.json and metrics.parquet are needed)")
    redactor = Redactor(run_dir)
    files: dict[str, bytes] = {}
    for table in TABLES:
        path = run_dir / f"{table}.parquet"
        if path.is_file():
            files[path.name] = _parquet_bytes(path, redactor) if table == "cases" else path.read_bytes()
    for name in COPIED:
        path = run_dir / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            files[name] = (json.dumps(redactor.json(json.loads(text)), indent=2, sort_keys=True) + "\n"
                           if name.endswith(".json") else redactor.text(text)).encode("utf-8")
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    config = run.get("config")
    if isinstance(config, dict) and isinstance(config.get("text"), str):
        run["config"] = {**config, "text": redactor.yaml_text(config["text"])}
    run = redactor.json(run)
    files["run.json"] = (json.dumps(run, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
    summary = json.loads(files["summary.json"]) if "summary.json" in files else {}
    card = dataset_card(run, summary, [*files, "README.md"], license_=license_)
    files["README.md"] = card.encode("utf-8")
    secret = token()
    if secret:
        leaking = [name for name, data in files.items() if secret.encode() in data]
        if leaking:
            raise HubError(f"refusing to publish: the Hub token appears in {', '.join(leaking)}")
    return files, card


def publish(run_dir: str | os.PathLike, repo_id: str, *, hub: HubSettings, private: bool = False,
            license_: str = "other", dry_run: bool = False) -> PublishResult:
    """Publish a run folder to the dataset repo ``repo_id`` (see the module docstring)."""
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    files, card = prepare(run_dir, license_=license_)
    result = PublishResult(repo_id, files, card)
    if dry_run:
        return result
    if hub.offline:
        raise HubError("cannot publish in offline mode (HF_HUB_OFFLINE=1)")
    run_id = json.loads(files["run.json"]).get("run_id", Path(run_dir).name)
    api = hub.api()
    try:
        with connection(hub):
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            before = api.dataset_info(repo_id).sha
            commit = api.create_commit(repo_id, repo_type="dataset",
                                       operations=[CommitOperationAdd(name, data)
                                                   for name, data in files.items()],
                                       commit_message=f"medbench-fast run {run_id}")
    except (HfHubHTTPError, HubUnreachable) as exc:
        raise explain(exc, f"publishing to dataset {repo_id}") from None
    result.commit, result.url, result.changed = commit.oid, commit.commit_url, commit.oid != before
    return result
