"""Hub models in runs: a model repo at a revision -> a local snapshot folder and its commit sha.

Online, ``HfApi.model_info`` resolves the revision (branch, tag or sha) to a commit sha and
lists the files; ``snapshot_download`` then fetches, at that sha, only what an export needs:
the JSON configs, the model card and the weights (safetensors when the repo has them, else the PyTorch
``.bin`` files). Offline (``HF_HUB_OFFLINE=1``) or with the Hub unreachable, the snapshot
comes from the local Hub cache (``HF_HOME``/``HF_HUB_CACHE``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from medbench_fast.hub.client import (
    HubError,
    HubUnreachable,
    connection,
    explain,
    license_of,
    settings,
)

SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubSnapshot:
    folder: Path
    repo_id: str
    revision: str
    sha: str
    license: str | None

    def source(self) -> dict:
        """The provenance recorded with the model (spec ``source``, run.json, the leaderboard)."""
        return {"hub": self.repo_id, "revision": self.revision, "sha": self.sha, "license": self.license}


def export_patterns(files: list[str]) -> list[str]:
    """The files an export reads: configs, and one weight format."""
    weights = ["*.safetensors"] if any(f.endswith(".safetensors") for f in files) else ["*.bin"]
    return ["*.json", "README.md", *weights]


def _cached_patterns(repo_id: str, revision: str, cache_dir: str) -> list[str] | None:
    """:func:`export_patterns` of the file listing the local cache holds for the revision
    (huggingface_hub >= 1.x keeps one and checks a cached snapshot against it); ``None`` without one."""
    import huggingface_hub

    if not hasattr(huggingface_hub, "get_cached_repo_tree"):
        return None
    try:
        files = huggingface_hub.get_cached_repo_tree(repo_id, revision=revision, cache_dir=cache_dir)
    except Exception:  # CachedRepoTreeNotFoundError (no listing cached) and unreadable cache files alike
        return None
    return export_patterns([f.path for f in files])


def fetch_model(repo_id: str, revision: str = "main") -> HubSnapshot:
    """Download (or find in the local cache) ``repo_id`` at ``revision``; :class:`HubError` says why not."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    hub = settings()
    what = f"hub model {repo_id}@{revision}"
    try:
        with connection(hub):
            if not hub.offline:
                try:
                    info = hub.api().model_info(repo_id, revision=revision)
                    patterns = export_patterns([s.rfilename for s in info.siblings or []])
                    # by revision, not info.sha: the cache then maps a branch or tag to its sha for offline runs
                    folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=hub.cache_dir,
                                                    endpoint=hub.endpoint, allow_patterns=patterns))
                    return HubSnapshot(folder, repo_id, revision, folder.name, license_of(info))
                except HubUnreachable:
                    pass  # use the local cache, as offline
            folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=hub.cache_dir, local_files_only=True,
                                            allow_patterns=_cached_patterns(repo_id, revision, hub.cache_dir)))
    except (HfHubHTTPError, LocalEntryNotFoundError, HubUnreachable) as exc:  # not one family from 1.0 on
        if isinstance(exc, LocalEntryNotFoundError):
            raise HubError(f"{what}: not in the local Hub cache ({hub.cache_dir}) and the Hub is "
                           f"{'disabled (HF_HUB_OFFLINE=1)' if hub.offline else 'unreachable'}") from None
        raise explain(exc, what) from None
    sha = folder.name
    if not SHA.match(sha):
        raise HubError(f"{what}: the cached snapshot {folder} is not named by a commit sha")
    return HubSnapshot(folder, repo_id, revision, sha, _cached_license(folder))


def _cached_license(folder: Path) -> str | None:
    """The ``license`` of the model card's YAML metadata in a cached snapshot."""
    from huggingface_hub.repocard import metadata_load

    readme = folder / "README.md"
    return (metadata_load(readme) or {}).get("license") if readme.is_file() else None
