"""Tracked Hub tasks: a name and the filters of ``HfApi.list_models``.

Built-in defaults cover common medical-imaging tasks; ``leaderboard.tasks`` in the config
replaces them, ``leaderboard.task``/``leaderboard.search`` add one task named ``config``,
and ``leaderboard.track`` (explicit model ids) adds one named ``tracked``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: ``sort`` key of a task -> the ``sort`` argument of ``HfApi.list_models``.
SORT_KEYS = {"downloads": "downloads", "likes": "likes", "last_modified": "lastModified",
             "created_at": "createdAt", "trending_score": "trendingScore"}


@dataclass(frozen=True)
class Task:
    """One tracked task. ``tags`` must all be present on a model; ``search`` is a substring of
    its id; ``ids``, when given, are looked up one by one instead of listed."""

    name: str
    description: str = ""
    pipeline_tag: str | None = None
    tags: tuple[str, ...] = ()
    search: str | None = None
    library: str | None = None
    sort: str = "downloads"
    limit: int = 50
    ids: tuple[str, ...] = field(default=())

    def filters(self) -> dict:
        """The filters as shown to users and written to reports (unset ones left out)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("name", "description") and v not in (None, (), [])}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def list_kwargs(self) -> dict:
        """Keyword arguments of ``HfApi.list_models`` (the library is a tag on the Hub)."""
        tags = [*self.tags, *([self.library] if self.library else [])]
        kwargs = {"sort": SORT_KEYS[self.sort], "limit": self.limit}  # the Hub sorts descending
        if tags:
            kwargs["filter"] = tags
        if self.pipeline_tag:
            kwargs["pipeline_tag"] = self.pipeline_tag
        if self.search:
            kwargs["search"] = self.search
        return kwargs


DEFAULT_TASKS: tuple[Task, ...] = (
    Task("ct-organ-segmentation", "Organ segmentation on CT", pipeline_tag="image-segmentation",
         tags=("medical",), search="ct"),
    Task("brain-mri-segmentation", "Brain (tumour, structure, extraction) segmentation on MRI",
         pipeline_tag="image-segmentation", search="brain"),
    Task("chest-xray-classification", "Findings on chest radiographs", pipeline_tag="image-classification",
         search="chest"),
    Task("histopathology-classification", "Whole-slide and patch histopathology classification",
         pipeline_tag="image-classification", search="patho"),
    Task("head-neck-lymph-nodes", "Head-and-neck lymph node segmentation and extranodal extension",
         search="lymph"),
)


def tasks_from_config(leaderboard) -> list[Task]:
    """The tasks of a validated config's ``leaderboard`` section (a
    :class:`~medbench_fast.config.LeaderboardConfig`, or None: the defaults when it names none)."""
    if leaderboard is None:
        return list(DEFAULT_TASKS)
    tasks = [Task(name=t.name, description=t.description or "", pipeline_tag=t.pipeline_tag,
                  tags=tuple(t.tags or ()), search=t.search, library=t.library,
                  sort=t.sort or "downloads", limit=t.limit or 50)
             for t in leaderboard.tasks or ()]
    if not tasks:
        tasks = list(DEFAULT_TASKS)
    if leaderboard.task or leaderboard.search:
        tasks.append(Task("config", "leaderboard.task / leaderboard.search of the config",
                          pipeline_tag=leaderboard.task, search=leaderboard.search))
    if leaderboard.track:
        tasks.append(Task("tracked", "Models named in leaderboard.track", ids=tuple(leaderboard.track)))
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"leaderboard.tasks: duplicate task names {dupes}")
    return tasks


def select(tasks: list[Task], name: str | None) -> list[Task]:
    """``tasks``, or only the one named ``name`` (a ``ValueError`` lists the known names)."""
    if name is None:
        return tasks
    chosen = [t for t in tasks if t.name == name]
    if not chosen:
        raise ValueError(f"--task {name!r}: unknown task; known: {', '.join(t.name for t in tasks)}")
    return chosen
