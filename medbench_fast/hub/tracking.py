"""``medbench hub track``: Hub models per task, a Parquet history of snapshots, a JSON report.

Each online call lists every task's models (``HfApi.list_models`` with the fields it needs
expanded, ``HfApi.model_info`` for any model the listing gives no commit sha), appends one
timestamped snapshot to ``hub_history.parquet`` in the cache folder (earlier snapshots are
kept), and writes ``leaderboard_report_<UTC timestamp>.json``: the tasks, then their ranked
models with metadata, each joined by model id and commit sha to the medbench runs that
benchmarked it. Offline (asked for, ``HF_HUB_OFFLINE=1``, or the Hub unreachable) the last
snapshot of each task is used and its age reported.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from medbench_fast.files import atomic_create, atomic_write
from medbench_fast.hub.client import (
    HubError,
    HubSettings,
    HubUnreachable,
    connection,
    explain,
    license_of,
    with_retries,
)
from medbench_fast.hub.tasks import Task

HISTORY = "hub_history.parquet"


class NoSnapshotError(HubError):
    """Offline, and some task has no snapshot in the history."""

#: Model fields asked of the listing (``expand``), so one request per page gives what a row needs.
EXPAND = ["sha", "pipeline_tag", "library_name", "tags", "cardData", "gated", "downloads", "likes", "createdAt",
          "lastModified", "private"]
COLUMNS = ("snapshot", "task", "rank", "id", "sha", "pipeline_tag", "library", "tags", "license", "gated",
           "downloads", "likes", "created_at", "last_modified")


def hub_cache_dir(configured: str | None = None) -> Path:
    """``configured``, else ``$MEDBENCH_HUB_CACHE``, else ``~/.cache/medbench-fast/hub``."""
    return Path(configured or os.environ.get("MEDBENCH_HUB_CACHE")
                or Path.home() / ".cache" / "medbench-fast" / "hub")


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def model_row(info, task: str, rank: int) -> dict:
    """One history row from a ``huggingface_hub`` ``ModelInfo``."""
    gated = info.gated
    return {"task": task, "rank": rank, "id": info.id, "sha": info.sha, "pipeline_tag": info.pipeline_tag,
            "library": info.library_name, "tags": list(info.tags or []), "license": license_of(info),
            "gated": "false" if gated in (None, False) else str(gated), "downloads": info.downloads,
            "likes": info.likes, "created_at": _iso(info.created_at), "last_modified": _iso(info.last_modified)}


def fetch_task(api, task: Task) -> list[dict]:
    """The ranked models of one task, from the Hub (429 and 5xx retried with backoff; recent
    huggingface_hub releases also retry each listing page themselves)."""
    if task.ids:
        infos = [with_retries(lambda i=model_id: api.model_info(i)) for model_id in task.ids]
    else:
        infos = with_retries(lambda: list(api.list_models(**task.list_kwargs(), expand=EXPAND)))
    complete = [info if info.sha else with_retries(lambda i=info.id: api.model_info(i)) for info in infos]
    return [model_row(info, task.name, rank) for rank, info in enumerate(complete, 1)]


# -- history --------------------------------------------------------------------------
def _schema():
    import pyarrow as pa

    text = pa.string()
    return pa.schema([("snapshot", text), ("task", text), ("rank", pa.int32()), ("id", text), ("sha", text),
                      ("pipeline_tag", text), ("library", text), ("tags", pa.list_(text)), ("license", text),
                      ("gated", text), ("downloads", pa.int64()), ("likes", pa.int64()), ("created_at", text),
                      ("last_modified", text)])


def read_history(cache_dir: Path) -> list[dict]:
    """Every snapshot row recorded in ``cache_dir`` (empty when there is no history)."""
    import pyarrow.parquet as pq

    path = cache_dir / HISTORY
    return pq.read_table(path).to_pylist() if path.is_file() else []


def append_history(cache_dir: Path, rows: list[dict]) -> Path:
    """Append ``rows`` to the history (written atomically: a failed write keeps the earlier history)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = cache_dir / HISTORY
    cache_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(read_history(cache_dir) + rows, schema=_schema())
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return path


def last_snapshot(history: list[dict], task: str) -> tuple[str | None, list[dict]]:
    """``(snapshot time, rows)`` of the latest snapshot of ``task`` in ``history``."""
    times = sorted({r["snapshot"] for r in history if r["task"] == task})
    if not times:
        return None, []
    rows = [r for r in history if r["task"] == task and r["snapshot"] == times[-1]]
    return times[-1], sorted(rows, key=lambda r: r["rank"])


def changes(previous: list[dict], current: list[dict]) -> dict:
    """New models, new revisions (``{id, from, to}``) and removed models between two snapshots."""
    before = {r["id"]: r["sha"] for r in previous}
    after = {r["id"]: r["sha"] for r in current}
    return {"new": sorted(set(after) - set(before)),
            "updated": [{"id": i, "from": before[i], "to": after[i]} for i in sorted(set(after) & set(before))
                        if before[i] != after[i]],
            "removed": sorted(set(before) - set(after))}


# -- results of medbench runs ---------------------------------------------------------
def _run_folders(roots: list[Path]) -> list[Path]:
    found = []
    for root in roots:
        root = Path(root)
        if (root / "run.json").is_file():
            found.append(root)
        elif root.is_dir():
            found += sorted(p for p in root.iterdir() if (p / "run.json").is_file())
    return found


def _metric_mean(summary: dict, model: str, metric: str):
    return (((summary.get("models") or {}).get(model) or {}).get(metric) or {}).get("mean")


def benchmark_results(roots: list[Path]) -> dict[str, list[dict]]:
    """Hub model id -> results of the runs under ``roots`` that benchmarked it (with the commit sha)."""
    results: dict[str, list[dict]] = {}
    for folder in _run_folders(roots):
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        summary_path = folder / "summary.json"
        summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
        for name, entry in (info.get("models") or {}).items():
            source = entry.get("source") or (entry.get("spec") or {}).get("source") or {}
            if not source.get("hub"):
                continue
            cases = (summary.get("cases") or {}).get(name) or {}
            results.setdefault(source["hub"], []).append({
                "run_id": info.get("run_id"), "run_dir": str(folder), "model": name, "sha": source.get("sha"),
                "revision": source.get("revision"), "finished": info.get("finished"),
                "cases": cases.get("cases"), "failed": cases.get("failed"),
                "dice_mean": _metric_mean(summary, name, "dice"), "hd95_mean": _metric_mean(summary, name, "hd95"),
                "nsd_mean": _metric_mean(summary, name, "nsd")})
    return results


# -- the command ----------------------------------------------------------------------
@dataclass
class TrackResult:
    report: Path
    source: str  # "hub" or "snapshot"
    snapshot: str  # time of the snapshot the report shows (the oldest one when offline)
    age_s: float
    changes: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)  # task -> rows
    reason: str | None = None  # why the snapshot was used offline


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _stamp(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds: snapshots taken within one second stay apart and sort by time."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write_report(cache_dir: Path, moment: datetime, payload: dict) -> Path:
    """Write the report under a name of its own: ``-1``, ``-2``, ... are added to the time stamp
    while a report of that name exists, and a report never replaces another one (the complete
    file appears under its name, or nothing does)."""
    base = f"leaderboard_report_{moment.astimezone(timezone.utc).strftime('%Y%m%dT%H%M%S.%fZ')}"
    text = json.dumps(payload, indent=2, default=str) + "\n"
    path, n = cache_dir / f"{base}.json", 1
    while not atomic_create(path, lambda tmp: tmp.write_text(text, encoding="utf-8")):
        path, n = cache_dir / f"{base}-{n}.json", n + 1
    return path


def _fetch_all(hub: HubSettings, tasks: list[Task], progress: bool) -> dict[str, list[dict]]:
    """Every task's models from the Hub; an answer that is not the Hub's API is a :class:`HubError`."""
    from huggingface_hub.errors import HFValidationError
    from tqdm import tqdm

    api = hub.api()
    out = {}
    with connection(hub), tqdm(tasks, desc="hub", unit="task", disable=not progress, file=sys.stderr) as bar:
        for task in bar:
            bar.set_postfix_str(task.name)
            try:
                out[task.name] = fetch_task(api, task)
            except HFValidationError as exc:
                raise HubError(f"task {task.name}: {str(exc).splitlines()[0]}") from None
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSONDecodeError is a ValueError
                raise HubError(f"task {task.name}: {hub.endpoint} answered the model listing with something that is "
                               f"not the Hugging Face Hub's API ({type(exc).__name__}); check HF_ENDPOINT") from None
    return out


def track(tasks: list[Task], *, hub: HubSettings, cache_dir: Path, offline: bool = False,
          run_roots: list[Path] = (), progress: bool | None = None, now: datetime | None = None) -> TrackResult:
    """Track ``tasks``; see the module docstring. Raises :class:`HubError` when offline with no
    snapshot of some task (nothing is written then), or on a Hub error other than unreachability."""
    from huggingface_hub.errors import HfHubHTTPError

    moment = now or utc_now()
    stamp = _stamp(moment)
    history = read_history(cache_dir)
    reason = "offline mode (--offline)" if offline else "offline mode (HF_HUB_OFFLINE=1)" if hub.offline else None
    current: dict[str, list[dict]] = {}
    if reason is None:
        try:
            current = _fetch_all(hub, tasks, sys.stderr.isatty() if progress is None else progress)
        except HubUnreachable as exc:
            reason = f"the Hub is unreachable ({exc})"
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status is None or status < 500:
                raise explain(exc, f"listing models on {hub.endpoint}") from None
            reason = f"the Hub is unavailable (HTTP {status} after retries)"
    if reason is None:
        rows = [{"snapshot": stamp, **row} for task in tasks for row in current[task.name]]
        diff = {t.name: changes(last_snapshot(history, t.name)[1], current[t.name]) for t in tasks}
        append_history(cache_dir, rows)
        shown = {t.name: [r for r in rows if r["task"] == t.name] for t in tasks}
        source, snapshot, age = "hub", stamp, 0.0
    else:
        snaps = {t.name: last_snapshot(history, t.name) for t in tasks}
        missing = [name for name, (when, _) in snaps.items() if when is None]
        if missing:
            raise NoSnapshotError(f"{reason}, and no earlier snapshot of {', '.join(missing)} in {cache_dir / HISTORY}; "
                           f"run `medbench hub track` once with the Hub reachable")
        snapshot = min(when for when, _ in snaps.values())
        age = (moment - datetime.fromisoformat(snapshot)).total_seconds()
        shown, source, diff = {name: rows for name, (_, rows) in snaps.items()}, "snapshot", {}
    results = benchmark_results(list(run_roots))
    report_tasks = []
    for task in tasks:
        models = []
        for row in shown[task.name]:
            found = sorted(results.get(row["id"], []), key=lambda r: (r["sha"] != row["sha"], str(r["run_id"])))
            models.append({**{k: row[k] for k in COLUMNS if k not in ("task", "snapshot")},
                           "results": [{**r, "at_tracked_revision": r["sha"] == row["sha"]} for r in found]})
        report_tasks.append({"name": task.name, "description": task.description, "filters": task.filters(),
                             "snapshot": shown[task.name][0]["snapshot"] if shown[task.name] else snapshot,
                             "models": models})
    payload = {"generated_at": stamp, "source": source, "snapshot": snapshot, "snapshot_age_s": age,
               "offline_reason": reason, "tasks": report_tasks, "changes": diff}
    report = _write_report(cache_dir, moment, payload)
    return TrackResult(report, source, snapshot, age, diff, shown, reason)
