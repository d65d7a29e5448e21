"""The plan of a run: its models, metric options, cases, targets, shard, and what remains.

A plan is resolved once from the validated config; executors never read the config.
Shards split the cases by a stable hash of the case id (never by listing order), so every
shard of a batch job selects the same cases wherever and whenever it runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from medbench_fast.config import Config, ConfigError, ModelEntry
from medbench_fast.metrics.options import MetricOptions
from medbench_fast.metrics.selection import resolve_metrics
from medbench_fast.runner.cases import RunCase, discover_cases, read_targets
from medbench_fast.store.parts import dedupe_last, read_parts
from medbench_fast.store.schema import CASES_SCHEMA


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (1-based) of ``count`` subsets of a run's cases."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` with 1 <= K <= N; errors say what was expected."""
        k, sep, n = text.partition("/")
        if not sep or not k.strip().isdigit() or not n.strip().isdigit():
            raise ConfigError(f"--shard {text!r}: expected K/N, e.g. 1/4 (K counts from 1)")
        shard = cls(int(k), int(n))
        if shard.count < 1 or not 1 <= shard.index <= shard.count:
            raise ConfigError(f"--shard {text!r}: K must be between 1 and N (shards are numbered from 1)")
        return shard

    @property
    def namespace(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, case_id: str) -> bool:
        return shard_of(case_id, self.count) == self.index


def shard_of(case_id: str, count: int) -> int:
    """The 1-based shard of ``case_id`` among ``count``: sha256 of the id, so stable everywhere."""
    return int(hashlib.sha256(case_id.encode()).hexdigest()[:16], 16) % count + 1


def options_from_config(config: Config) -> MetricOptions:
    bench, data = config.benchmark, config.dataset
    names = data.label_names or None
    return MetricOptions(
        labels=tuple(data.labels) if data.labels else None,
        metrics=resolve_metrics(bench.metrics), nsd_tolerance_mm=bench.tolerance_mm,
        surface=bench.surface, hd95_mode=bench.hd95_mode, empty=bench.empty,
        label_names={int(k): str(v) for k, v in names.items()} if names else None,
        regions=data.regions,
    )


def select_models(config: Config, models: list[str] | None) -> list[ModelEntry]:
    """The config's model entries, or those named in ``models`` (unknown names are an error)."""
    entries = [m for m in config.models if models is None or m.name in models]
    if models is not None:
        unknown = sorted(set(models) - {m.name for m in config.models})
        if unknown:
            raise ConfigError(f"--models: unknown model(s) {unknown}; the config has "
                              f"{[m.name for m in config.models]}")
    if not entries:
        raise ConfigError("no models to run: the config's models list is empty")
    return entries


@dataclass(frozen=True)
class EngineSettings:
    """How the engine works through a plan; none of them changes a number of the results.

    ``readers``: threads reading (and preparing) upcoming cases; ``prefetch``: cases read ahead
    (bounds memory); ``write_every``: cases per Parquet part; ``warmup``: untimed model runs;
    ``threads``: intra-op threads (split between worker processes); ``formats``: the reports;
    ``threshold``: decision threshold of case-level scores; ``worst_distance``: summary only;
    ``write_age_s``: also write a part once its oldest case waited this long (None: by count only);
    ``scorers``: threads computing metrics (one beside a model's inference; an evaluation,
    which has no inference, scores on as many threads as it reads)."""

    readers: int = 2
    prefetch: int = 2
    write_every: int = 8
    warmup: int = 1
    threads: int | None = None
    formats: tuple[str, ...] = ("csv", "json", "html")
    threshold: float = 0.5
    worst_distance: str = "inf"
    scorers: int = 1
    write_age_s: float | None = None  # a part is also written once its oldest case is this old

    @classmethod
    def from_config(cls, config: Config) -> EngineSettings:
        bench = config.benchmark
        return cls(readers=bench.workers, prefetch=bench.prefetch, write_every=bench.write_every,
                   warmup=bench.warmup, threads=bench.threads, formats=tuple(config.output.formats),
                   threshold=bench.threshold)


def shard_cases(cases: list[RunCase], shard: Shard | None) -> list[RunCase]:
    """The cases of ``shard`` (all when None); more shards than cases is an error."""
    if shard is None:
        return cases
    if shard.count > len(cases):
        raise ConfigError(f"--shard '{shard}': {shard.count} is more shards than the dataset's "
                          f"{len(cases)} cases; use at most {len(cases)}")
    return [c for c in cases if shard.holds(c.case_id)]


@dataclass
class RunPlan:
    """What a run does: its models on ``cases`` (the shard's, sorted by id).

    A ``medbench run`` plan holds the config and its model ``entries``; an evaluation's plan
    holds no config and one "model", the folder of saved predictions ``predictions`` (each
    case carries its ``pred_path``). Executors, the sink and finalize do not tell them apart."""

    config: Config | None
    entries: list[ModelEntry]
    options: MetricOptions
    cases: list[RunCase]
    targets: dict
    shard: Shard | None = None
    case_ids: tuple[str, ...] = ()  # every case of the dataset (all shards): part of the run's identity
    settings: EngineSettings = field(default_factory=EngineSettings)
    predictions: str | None = None  # an evaluation: the prediction folder
    evaluated: str | None = None  # an evaluation: the model name of its predictions

    @classmethod
    def from_config(cls, config: Config, *, models: list[str] | None = None, shard: Shard | None = None) -> RunPlan:
        cases = discover_cases(config.dataset)
        case_ids = tuple(c.case_id for c in cases)
        return cls(config, select_models(config, models), options_from_config(config), shard_cases(cases, shard),
                   read_targets(config.dataset.targets_csv), shard, case_ids,
                   EngineSettings.from_config(config))

    @classmethod
    def for_evaluation(cls, cases: list[RunCase], *, model: str, pred_dir: str, options: MetricOptions,
                       settings: EngineSettings, shard: Shard | None = None) -> RunPlan:
        """An evaluation of the predictions in ``pred_dir`` (named ``model``) on ``cases``."""
        cases = sorted(cases, key=lambda c: c.case_id)
        return cls(None, [], options, shard_cases(cases, shard), {}, shard, tuple(c.case_id for c in cases),
                   settings, predictions=str(pred_dir), evaluated=model)

    @property
    def model_names(self) -> list[str]:
        return [self.evaluated] if self.evaluated is not None else [m.name for m in self.entries]

    def todo(self, done: set[tuple[str, str]]) -> list[tuple[RunCase, tuple[str, ...]]]:
        """Each case with a model that has not finished it, and those models (config order)."""
        out = []
        for case in self.cases:
            names = tuple(n for n in self.model_names if (n, case.case_id) not in done)
            if names:
                out.append((case, names))
        return out


def done_pairs(run_dir: Path, fingerprint: str) -> set[tuple[str, str]]:
    """(model, case) pairs that finished successfully in any part namespace of the run."""
    cases = dedupe_last(read_parts(run_dir, "cases", CASES_SCHEMA, fingerprint=fingerprint), ["model", "case_id"])
    return {(m, c) for m, c, ok in zip(*(cases.column(k).to_pylist() for k in ("model", "case_id", "success"))) if ok}
