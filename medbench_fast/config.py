"""``benchmark_config.yaml``: schema, validation and the commented example.

Every key is declared once in :data:`SCHEMA` with its type, default and help text; the
validator, ``medbench config init`` and the README's config reference all come from it.
Errors name the file, the key path and what was expected; unknown keys are errors with a
"did you mean" hint. Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """An invalid config file; the message names the file, the key path and the problem."""


@dataclass(frozen=True)
class Key:
    """One config key: ``kind`` is str, int, float, bool, path, list[str], list[int], map, or a section."""

    kind: str
    default: Any = None
    help: str = ""
    choices: tuple = ()
    required: bool = False
    example: Any = None


MODEL_KINDS = ("onnx", "huggingface", "aiene", "torchscript")
PROVIDERS = ("tensorrt", "cuda", "cpu")

SCHEMA: dict[str, dict[str, Key]] = {
    "dataset": {
        "image_dir": Key("path", help="Folder of images (one file or DICOM folder per case).", example="data/images"),
        "seg_dir": Key("path", help="Folder of reference label maps, paired with images by case id.", example="data/labels"),
        "manifest": Key("path", help="CSV with columns case_id,image,reference instead of the two folders."),
        "pattern": Key("str", "*", help="Glob pattern selecting image files in image_dir."),
        "labels": Key("list[int]", help="Labels to score (default: every non-zero label present)."),
        "label_names": Key("map", help="Names of labels, e.g. {1: body, 5: lymph_node}.", example={1: "body"}),
        "targets_csv": Key("path", help="Case-level targets: columns case_id, object_id (leave it out, or empty, "
                                        "for targets of the whole case) and one column per target."),
        "max_cases": Key("int", help="Use only the first N cases (sorted by case id)."),
    },
    "models": {
        "name": Key("str", required=True, help="Model name used in every table.", example="baseline"),
        "kind": Key("str", "onnx", choices=MODEL_KINDS, help="How the model is given."),
        "path": Key("path", help="Model file (.onnx, .h5, .pt) or Hugging Face model folder.", example="models/baseline.onnx"),
        "id": Key("str", help="Hugging Face Hub id (kind huggingface; fetched only when no path is given)."),
        "task": Key("str", "semantic-segmentation", choices=("semantic-segmentation", "image-classification"),
                    help="Hugging Face task."),
        "input_shape": Key("list[int]", help="TorchScript trace shape N,C,(D,)H,W."),
        "node_label": Key("int", 1, help="AI-ENE: reference label whose connected components are the nodes."),
        "spec": Key("map", help="Model spec (JSON spec fields) or overrides of the exported spec."),
        "note": Key("str", help="Free text shown beside the model in reports, e.g. 'untrained'."),
    },
    "benchmark": {
        "providers": Key("list[str]", ["cpu"], choices=PROVIDERS, help="Execution providers in order of preference."),
        "threads": Key("int", help="ONNX Runtime intra-op threads (default: all cores)."),
        "fp16": Key("bool", False, help="Run models in half precision."),
        "warmup": Key("int", 1, help="Untimed warm-up predictions per model before the timed cases."),
        "metrics": Key("list[str]", help="Metric names or groups (counts, surface); default all."),
        "tolerance_mm": Key("float", 1.0, help="NSD tolerance in mm."),
        "surface": Key("str", "voxel", choices=("voxel", "surfel"), help="Surface representation."),
        "hd95_mode": Key("str", "max", choices=("max", "pooled"), help="HD95 convention."),
        "empty": Key("str", "one", choices=("one", "nan"), help="Both-empty convention."),
        "workers": Key("int", 2, help="Threads reading and preprocessing upcoming cases."),
        "prefetch": Key("int", 2, help="Cases read ahead of the model (bounds memory)."),
        "write_every": Key("int", 8, help="Cases per Parquet part file."),
        "threshold": Key("float", 0.5, help="Decision threshold of case-level scores."),
    },
    "output": {
        "dir": Key("path", "runs", help="Folder that receives one sub-folder per run."),
        "formats": Key("list[str]", ["csv", "json", "html"], choices=("csv", "json", "html"), help="Reports to write."),
    },
    "leaderboard": {
        "hub_repo": Key("str", help="Hub dataset repo receiving published results (medbench hub publish)."),
        "task": Key("str", help="Hub task tag tracked for new models, e.g. image-segmentation."),
        "search": Key("str", help="Hub search text for tracked models, e.g. medical."),
        "track": Key("list[str]", help="Hub model ids to track."),
        "publish": Key("bool", False, help="Publish results after each run."),
    },
}
#: Sections whose value is a list of mappings.
LIST_SECTIONS = ("models",)


def _type_ok(kind: str, value) -> bool:
    if value is None:
        return True
    if kind in ("str", "path"):
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "map":
        return isinstance(value, dict)
    if kind.startswith("list["):
        inner = kind[5:-1]
        return isinstance(value, list) and all(_type_ok(inner, v) and v is not None for v in value)
    raise AssertionError(kind)


def _unknown(where: str, key: str, known) -> ConfigError:
    hint = difflib.get_close_matches(str(key), list(known), n=1)
    suffix = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(known)}"
    return ConfigError(f"{where}: unknown key {key!r}{suffix}")


def _section(values, schema: dict[str, Key], where: str, base: Path) -> dict:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(values).__name__}")
    out = {}
    for key in values:
        if key not in schema:
            raise _unknown(where, key, schema)
    for key, spec in schema.items():
        value = values.get(key, spec.default)
        path = f"{where}.{key}"
        if value is None and spec.required:
            raise ConfigError(f"{path}: required ({spec.help})")
        if not _type_ok(spec.kind, value):
            raise ConfigError(f"{path}: expected {spec.kind}, got {value!r}")
        if spec.choices and value is not None:
            for v in value if isinstance(value, list) else [value]:
                if v not in spec.choices:
                    raise ConfigError(f"{path}: {v!r} is not one of {', '.join(map(str, spec.choices))}")
        if spec.kind == "int" and value is not None and value < 0:
            raise ConfigError(f"{path}: expected a non-negative integer, got {value}")
        if spec.kind == "path" and value is not None:
            value = str((base / os.path.expanduser(value)).resolve()) if not os.path.isabs(value) else value
        out[key] = value
    return out


def validate(raw, *, source: str = "<config>", base: Path | None = None) -> dict:
    """Validate a parsed YAML mapping; return it with defaults filled and paths resolved."""
    base = base or Path.cwd()
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections {', '.join(SCHEMA)}")
    for key in raw:
        if key not in SCHEMA:
            raise _unknown(source, key, SCHEMA)
    config = {}
    for name, schema in SCHEMA.items():
        if name in LIST_SECTIONS:
            items = raw.get(name) or []
            if not isinstance(items, list):
                raise ConfigError(f"{source}: {name}: expected a list of mappings")
            config[name] = [_section(item, schema, f"{source}: {name}[{i}]", base) for i, item in enumerate(items)]
        else:
            config[name] = _section(raw.get(name), schema, f"{source}: {name}", base)
    names = [m["name"] for m in config["models"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: models: duplicate model names {dupes}")
    for i, model in enumerate(config["models"]):
        if model["path"] is None and not (model["kind"] == "huggingface" and model["id"]):
            raise ConfigError(f"{source}: models[{i}].path: required for kind {model['kind']!r}")
        if model["kind"] == "torchscript" and not model["input_shape"]:
            raise ConfigError(f"{source}: models[{i}].input_shape: required for kind 'torchscript'")
    return config


def load_config(path: str | os.PathLike) -> tuple[dict, str]:
    """Read and validate a YAML config; return ``(config, file text)``."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    text = p.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return validate(raw, source=str(p), base=p.resolve().parent), text


def example_config() -> str:
    """A commented example config listing every key with its default."""
    import yaml

    lines = ["# medbench-fast benchmark config (medbench run --config benchmark_config.yaml)",
             "# Every key is optional unless marked required; relative paths are relative to this file.", ""]
    for name, schema in SCHEMA.items():
        lines.append(f"{name}:")
        in_list = name in LIST_SECTIONS
        for i, (key, spec) in enumerate(schema.items()):
            value = spec.example if spec.example is not None else spec.default
            choices = f" [{' | '.join(map(str, spec.choices))}]" if spec.choices else ""
            required = " (required)" if spec.required else ""
            pad = "    " if in_list else "  "
            lines.append(f"{pad}# {spec.help}{choices}{required}")
            rendered = yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip()[1:-1]
            lead = "  - " if in_list and i == 0 else pad
            lines.append(f"{pad}# {key}:" if value is None else f"{lead}{rendered}")
        lines.append("")
    return "\n".join(lines)
