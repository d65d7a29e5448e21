"""The configuration is typed at the edge: ``validate`` returns frozen objects built from
:data:`~medbench_fast.config.SCHEMA`, ``to_dict`` gives back exactly the mapping ``run.json``
records, changed copies come from ``dataclasses.replace``, and no module below the command
line (and ``config.py``) reads a config mapping by string key."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

import pytest

import medbench_fast
from medbench_fast.config import (
    LIST_SECTIONS, SCHEMA, SECTION_CLASSES, TASK_KEYS, Config, ConfigError, DatasetConfig, FrozenMap, ModelEntry,
    TaskEntry, example_config, validate,
)
from medbench_fast.runner.identity import run_fingerprint
from medbench_fast.runner.plan import options_from_config, select_models
from medbench_fast.runner.precision import expand_precisions, recorded_precisions

PACKAGE = Path(medbench_fast.__file__).parent

#: A config touching every kind of value: paths, lists, maps (label names with text keys),
#: regions, DICOM rules, nnU-Net folds, a spec override, Hub tasks. Paths that exist nowhere
#: keep the fingerprint the same on every machine.
RAW = {"dataset": {"image_dir": "/nonexistent/images", "seg_dir": "/nonexistent/labels", "labels": [1, 2, 3],
                   "label_names": {1: "liver", "2": "kidney"}, "max_cases": 3, "dicom_labels": {"nocase:Liver": 1},
                   "regions": {"WT": [1, 2, 3], "TC": [1, 3]}},
       "models": [{"name": "unet", "path": "/nonexistent/unet.onnx", "note": "n",
                   "spec": {"strategy": {"type": "sliding_window", "patch_size": [32, 32, 32]}}},
                  {"name": "nn", "kind": "nnunet", "path": "/nonexistent/nn", "folds": [0, "all"], "mirroring": False}],
       "benchmark": {"providers": ["cuda", "cpu"], "metrics": ["dice", "hd95"], "tf32": True, "threshold": 0.25},
       "output": {"dir": "/nonexistent/runs"}}
#: sha256 of ``json.dumps(validated mapping, indent=2, sort_keys=True)`` and the run
#: fingerprint of RAW's models at fp32 and fp16 on cases ``case_a``, ``case_b``: pinned, since
#: a change would stop recorded runs from resuming.
RECORDED_CONFIG_SHA256 = "e1e38c55cc5d57e5292f541b098f1bf2f3fe0a1239d043243970371411e071cc"
RECORDED_FINGERPRINT = "ce4c1d4aa543abc20ad2a1737129abc49aeacab8dccfa4af181a9d48000bc6d3"


def _config() -> Config:
    return validate(RAW, source="c.yaml", base=Path("/"))


def test_classes_have_exactly_the_schema_keys_and_defaults():
    assert [f.name for f in dataclasses.fields(Config)] == list(SCHEMA)
    assert set(SECTION_CLASSES) == set(SCHEMA)
    for name, keys in [*SCHEMA.items(), ("tasks", TASK_KEYS)]:
        cls = TaskEntry if name == "tasks" else SECTION_CLASSES[name]
        fields = dataclasses.fields(cls)
        assert [f.name for f in fields] == list(keys), name
        for f in fields:
            default = keys[f.name].default
            assert f.default == (tuple(default) if isinstance(default, list) else default), (name, f.name)
    # every key is declared in SCHEMA only: config init and the defaults agree
    assert validate({}).to_dict()["benchmark"]["providers"] == SCHEMA["benchmark"]["providers"].default
    assert "  # providers" not in example_config() and "providers: [cpu]" in example_config()


def test_validate_returns_frozen_typed_sections():
    config = _config()
    assert isinstance(config.dataset, DatasetConfig) and all(isinstance(m, ModelEntry) for m in config.models)
    assert config.models[1].folds == (0, "all") and config.benchmark.providers == ("cuda", "cpu")
    assert config.dataset.label_names == {1: "liver", 2: "kidney"} and isinstance(config.dataset.label_names, FrozenMap)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.benchmark.providers = ("cpu",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.models = ()
    with pytest.raises(TypeError, match="read-only"):
        config.dataset.regions["ET"] = [3]
    with pytest.raises(TypeError, match="read-only"):
        config.models[0].spec.update(name="x")
    assert config.dataset.regions == {"WT": [1, 2, 3], "TC": [1, 3]}
    board = validate({"leaderboard": {"tasks": [{"name": "liver", "tags": ["medical"]}]}}).leaderboard
    assert board.tasks == (TaskEntry(name="liver", tags=("medical",)),)


def test_to_dict_is_the_recorded_mapping_and_round_trips():
    config = _config()
    record = config.to_dict()
    text = json.dumps(record, indent=2, sort_keys=True, default=str)
    assert hashlib.sha256(text.encode()).hexdigest() == RECORDED_CONFIG_SHA256
    assert list(record) == list(SCHEMA)
    for name, keys in SCHEMA.items():
        sections = record[name] if name in LIST_SECTIONS else [record[name]]
        assert all(list(s) == list(keys) for s in sections)
    assert record["models"][1]["folds"] == [0, "all"] and type(record["dataset"]["label_names"]) is dict
    assert Config.from_dict(record) == config
    # a resumed run validates its recorded mapping again (JSON turns label keys into text)
    assert validate(json.loads(text), source="run.json", base=Path("/")) == config
    # the record is a copy: changing it leaves the config as it was
    record["models"][0]["spec"]["strategy"]["type"] = "whole"
    assert config.models[0].spec["strategy"]["type"] == "sliding_window"


def test_fingerprint_is_the_one_of_recorded_runs():
    config, _ = expand_precisions(_config(), ["fp32", "fp16"])
    fingerprint = run_fingerprint(config, select_models(config, None), options_from_config(config),
                                  ["case_b", "case_a"])
    assert fingerprint.digest == RECORDED_FINGERPRINT


def test_overrides_build_changed_copies():
    config = _config()
    changed = dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, max_cases=1),
                                  benchmark=dataclasses.replace(config.benchmark, providers=("cpu",)))
    assert changed.dataset.max_cases == 1 and changed.benchmark.providers == ("cpu",)
    assert config.dataset.max_cases == 3 and config.benchmark.providers == ("cuda", "cpu")
    assert changed.to_dict()["benchmark"]["providers"] == ["cpu"]
    expanded, pairs = expand_precisions(config, ["fp32", "fp16"])
    assert [m.name for m in expanded.models] == ["unet-fp32", "unet-fp16", "nn-fp32", "nn-fp16"]
    assert pairs == {"unet": {"fp32": "unet-fp32", "fp16": "unet-fp16"}, "nn": {"fp32": "nn-fp32", "fp16": "nn-fp16"}}
    assert [m.name for m in config.models] == ["unet", "nn"]  # the original is untouched
    again, same = expand_precisions(expanded, ["fp32", "fp16"])  # a resumed run's config: expanded already
    assert again is expanded and same == pairs == recorded_precisions(expanded)
    assert expand_precisions(config, None) == (config, {})


def test_sections_pickle_for_worker_processes():
    config = _config()
    copy = pickle.loads(pickle.dumps(config))
    assert copy == config and isinstance(copy.models[0].spec, FrozenMap)
    with pytest.raises(TypeError, match="read-only"):
        copy.models[0].spec["x"] = 1
    assert pickle.loads(pickle.dumps(config.benchmark)) == config.benchmark


def test_errors_are_unchanged():
    with pytest.raises(ConfigError, match=r"^c.yaml: benchmark.providers: 'gpu' is not one of tensorrt, cuda, cpu$"):
        validate({"benchmark": {"providers": ["gpu"]}}, source="c.yaml")
    with pytest.raises(ConfigError, match=r"^c.yaml: models\[0\].name: required"):
        validate({"models": [{"path": "m.onnx"}]}, source="c.yaml")


# -- nothing below the command line reads a config by key ---------------------------------
#: Names a config, one of its sections or a model entry travelled under as a mapping.
CONFIG_NAMES = {"config", "cfg", "conf", "raw", "bench", "benchmark", "dataset", "data", "entry", "e", "m", "model",
                "output", "out", "ray", "leaderboard", "board", "lb", "t", "task"}
#: Reads that look like config reads but read other documents: (module, name, key) -> what it reads.
OTHER_DOCUMENTS = {
    ("data/layouts.py", "raw", "labels"): "an nnU-Net / Decathlon dataset.json",
    ("models/nnunet/export.py", "dataset", "labels"): "an nnU-Net dataset.json",
    ("models/aiene/convert.py", "cfg", "threshold"): "a Keras layer's JSON config",
    ("models/spec.py", "data", "output"): "a model spec's JSON",
    ("demo/__init__.py", "data", "labels"): "the demo's written files {images, labels, targets}",
    ("hub/card.py", "entry", "kind"): "run.json's per-model record",
    ("hub/card.py", "entry", "spec"): "run.json's per-model record",
    ("hub/tracking.py", "entry", "spec"): "run.json's per-model record",
    ("report/sections.py", "m", "spec"): "run.json's per-model record",
    ("report/sections.py", "m", "kind"): "run.json's per-model record",
    # the settings a measured run recorded, read as the record of any version it is
    ("runner/estimate.py", None, "threads"): "run.json's resolved_config of a measured run",
    ("runner/estimate.py", "info", "resolved_config"): "run.json's resolved_config of a measured run",
}


def _keyed_reads(tree):
    """``(node, receiver, key)`` of every ``x["key"]`` read and ``x.get("key", ...)`` call."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            yield node, node.value, node.slice.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node, node.func.value, node.args[0].value


def _config_reads(source: str) -> list[tuple[int, str | None, str]]:
    """Keyed reads of a config: a config key or section read from a name a config travels
    under, a key read from a section read by key (``x["benchmark"]["threads"]``; not
    ``models``, which also holds the per-model records of run.json and summary.json), or a
    recorded ``resolved_config``."""
    keys = {k for section in SCHEMA.values() for k in section} | set(TASK_KEYS) | set(SCHEMA)
    sections = set(SCHEMA) - {"models"}
    found = []
    for node, receiver, key in _keyed_reads(ast.parse(source)):
        name = receiver.id if isinstance(receiver, ast.Name) else getattr(receiver, "attr", None)
        inner = next((k for _, _, k in _keyed_reads(receiver)), None)
        if (name in CONFIG_NAMES and key in keys) or inner in sections or key == "resolved_config":
            found.append((node.lineno, name, key))
    return found


def test_scan_finds_config_reads():
    """The scan flags what dict-based code did, and not attribute reads or other mappings."""
    flagged = _config_reads('bench = config["benchmark"]\nbench.get("threads")\nplan.config["output"]["dir"]\n'
                            'x = (info.get("resolved_config") or {}).get("benchmark", {}).get("threads")\n'
                            'entry["name"]\n')
    assert sorted((line, key) for line, _, key in flagged) == [(1, "benchmark"), (2, "threads"), (3, "dir"),
                                                                (3, "output"), (4, "resolved_config"), (4, "threads"),
                                                                (5, "name")]
    assert _config_reads('config.benchmark.threads\nsummary["models"]\nout["threshold"] = 1\nlayer["config"]\n') == []


def test_nothing_below_the_cli_reads_a_config_by_key():
    found, used = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module.startswith("cli/") or module == "config.py":
            continue
        for line, name, key in _config_reads(path.read_text(encoding="utf-8")):
            if (module, name, key) in OTHER_DOCUMENTS:
                used.add((module, name, key))
            else:
                found.append(f"{module}:{line}: {name}[{key!r}]")
    assert not found, "read the typed config's attributes instead:\n" + "\n".join(found)
    assert used == set(OTHER_DOCUMENTS), f"stale allow-list entries: {sorted(set(OTHER_DOCUMENTS) - used)}"
