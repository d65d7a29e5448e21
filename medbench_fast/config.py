"""``benchmark_config.yaml``: schema, validation and the commented example.

Every key is declared once in :data:`SCHEMA` with its type, default and help text; the
validator, the typed config classes, ``medbench config init`` and the README's config
reference all come from it. Errors name the file, the key path and what was expected;
unknown keys are errors with a "did you mean" hint. Relative paths are resolved against the
config file's folder.

:func:`validate` and :func:`load_config` return a :class:`Config`: frozen dataclasses, one
per section (:class:`DatasetConfig`, :class:`ModelEntry`, :class:`BenchmarkConfig`, ...),
built from :data:`SCHEMA` with :func:`dataclasses.make_dataclass`, so the code below the
command line reads attributes (``config.benchmark.providers``), never keys. Lists become
tuples and mappings read-only :class:`FrozenMap` copies; ``to_dict()`` gives back the
validated mapping (``run.json``'s ``resolved_config``), and :func:`dataclasses.replace`
builds a changed copy (command-line overrides).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medbench_fast.files import name_problem


#: Bounds of a config file: its size, and its nodes once every alias is expanded (an alias
#: bomb of a few hundred bytes expands to billions of nodes).
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_NODES = 200_000
#: Longest error message; the rest is cut (a value shown in a message is cut first).
MAX_MESSAGE_CHARS = 1000


class ConfigError(ValueError):
    """An invalid config file; the message names the file, the key path and the problem
    (cut to :data:`MAX_MESSAGE_CHARS`)."""

    def __init__(self, message: str):
        if len(message) > MAX_MESSAGE_CHARS:
            message = f"{message[:MAX_MESSAGE_CHARS]}... ({len(message) - MAX_MESSAGE_CHARS} more characters cut)"
        super().__init__(message)


def _shown(value) -> str:
    """A value as a message shows it: its repr, bounded in depth, items and length."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel = 80, 80, 8, 8, 3
    return r.repr(value)


@dataclass(frozen=True)
class Key:
    """One config key: ``kind`` is str, int, float, bool, path, list[str], list[int], map, or a section."""

    kind: str
    default: Any = None
    help: str = ""
    choices: tuple = ()
    required: bool = False
    example: Any = None
    minimum: float | None = None  # numbers (and each item of a list of numbers)
    maximum: float | None = None


MODEL_KINDS = ("onnx", "huggingface", "aiene", "torchscript", "nnunet")
#: Keys of a model entry that only ``kind: nnunet`` takes.
NNUNET_KEYS = ("configuration", "folds", "checkpoint", "mirroring", "step_size")
PROVIDERS = ("tensorrt", "cuda", "cpu")

SCHEMA: dict[str, dict[str, Key]] = {
    "dataset": {
        "image_dir": Key("path", help="Folder of images (one file or DICOM folder per case).", example="data/images"),
        "seg_dir": Key("path", help="Folder of reference label maps, paired with images by case id.", example="data/labels"),
        "manifest": Key("path", help="CSV with columns case_id,image,reference instead of the two folders "
                                     "(image: one file, or channel files separated by ';')."),
        "pattern": Key("str", "*", help="Glob pattern selecting image files in image_dir."),
        "labels": Key("list[int]", help="Labels to score (default: every non-zero label present).", minimum=1),
        "label_names": Key("map", help="Names of labels, e.g. {1: body, 5: lymph_node}.", example={1: "body"}),
        "targets_csv": Key("path", help="Case-level targets: columns case_id, object_id (leave it out, or empty, "
                                        "for targets of the whole case) and one column per target."),
        "max_cases": Key("int", help="Use only the first N cases (sorted by case id).", minimum=1),
        "dicom_labels": Key("map", help="DICOM-SEG segment / RTSTRUCT ROI to label rules {pattern: label}, first match "
                            "wins: exact name, nocase:NAME, regex:PATTERN, code:SCHEME:VALUE (default: segment / ROI "
                            "number).", example=None),
        "dicom_unmatched": Key("str", "error", choices=("error", "ignore"),
                               help="A segment or ROI matching no dicom_labels rule fails the case, or is ignored."),
        "nnunet": Key("path", help="nnU-Net v2 raw dataset folder (holds dataset.json, imagesTr/, labelsTr/, ...)."),
        "decathlon": Key("path", help="Medical Segmentation Decathlon task folder (holds dataset.json)."),
        "split": Key("str", "test", choices=("train", "test"),
                     help="nnunet/decathlon: imagesTs+labelsTs (test) or imagesTr+labelsTr / training list (train)."),
        "regions": Key("map", help="Regions scored like labels, name -> label values, e.g. {WT: [1, 2, 3], "
                                   "TC: [1, 3]} (default: from an nnU-Net dataset.json)."),
    },
    "models": {
        "name": Key("str", required=True, help="Model name used in every table.", example="baseline"),
        "kind": Key("str", "onnx", choices=MODEL_KINDS, help="How the model is given."),
        "path": Key("path", help="Model file (.onnx, .h5, .pt), Hugging Face model folder or nnU-Net v2 trained-model "
                                 "folder.", example="models/baseline.onnx"),
        "id": Key("str", help="Hugging Face Hub id (kind huggingface; fetched only when no path is given)."),
        "hub": Key("str", help="Hugging Face Hub model id owner/name (kind huggingface), downloaded at revision."),
        "revision": Key("str", "main", help="Hub revision of hub/id: branch, tag or commit sha; the commit sha it "
                                            "resolves to is recorded in run.json."),
        "task": Key("str", "semantic-segmentation", choices=("semantic-segmentation", "image-classification"),
                    help="Hugging Face task."),
        "input_shape": Key("list[int]", help="TorchScript trace shape N,C,(D,)H,W."),
        "node_label": Key("int", 1, help="AI-ENE: reference label whose connected components are the nodes.", minimum=1),
        "configuration": Key("str", help="nnU-Net: configuration of plans.json, e.g. 3d_fullres or 2d (default: the "
                                         "one the folder is named after)."),
        "folds": Key("folds", help="nnU-Net: folds to ensemble, e.g. [0, 1] or all (default: every fold_<k> with "
                                   "the checkpoint)."),
        "checkpoint": Key("str", help="nnU-Net: checkpoint file in each fold folder (default checkpoint_final.pth)."),
        "mirroring": Key("bool", help="nnU-Net: average the mirrored copies of each tile (default true, as nnU-Net)."),
        "step_size": Key("float", help="nnU-Net: tile step as a fraction of the patch (default 0.5, as nnU-Net).",
                         minimum=0.01, maximum=1),
        "spec": Key("map", help="Model spec (JSON spec fields) or overrides of the exported spec."),
        "note": Key("str", help="Free text shown beside the model in reports, e.g. 'untrained'."),
        "precision": Key("str", choices=("fp32", "fp16"),
                         help="This model's precision (set for each variant by benchmark.precision; wins over fp16)."),
    },
    "benchmark": {
        "providers": Key("list[str]", ["cpu"], choices=PROVIDERS, help="Execution providers in order of preference."),
        "threads": Key("int", help="ONNX Runtime intra-op threads (default: all cores).", minimum=1),
        "fp16": Key("bool", False, help="Run models in half precision."),
        "warmup": Key("int", 1, help="Untimed warm-up predictions per model before the timed cases."),
        "metrics": Key("list[str]", help="Metric names or groups (counts, surface); default all."),
        "tolerance_mm": Key("float", 1.0, help="NSD tolerance in mm.", minimum=0),
        "surface": Key("str", "voxel", choices=("voxel", "surfel"), help="Surface representation."),
        "hd95_mode": Key("str", "max", choices=("max", "pooled"), help="HD95 convention."),
        "empty": Key("str", "one", choices=("one", "nan"), help="Both-empty convention."),
        "workers": Key("int", 2, help="Threads reading and preprocessing upcoming cases.", minimum=1),
        "prefetch": Key("int", 2, help="Cases read ahead of the model (bounds memory).", minimum=1),
        "write_every": Key("int", 8, help="Cases per Parquet part file.", minimum=1),
        "threshold": Key("float", 0.5, help="Decision threshold of case-level scores.", minimum=0, maximum=1),
        "executor": Key("str", "local", choices=("local", "processes", "ray"),
                        help="Where cases run: this process, worker processes, or Ray actors."),
        "executor_workers": Key("int", help="CPU workers of the processes/ray executor (default 2).", minimum=1),
        "gpus": Key("str", help="GPUs the processes/ray executor pins workers to: ids such as '0,1' or 'all'."),
        "workers_per_gpu": Key("int", 1, help="Workers per GPU (ray: each gets 1/N of a GPU).", minimum=1),
        "precision": Key("list[str]", choices=("fp32", "fp16"),
                         help="Run every model at each precision, e.g. [fp32, fp16], and compare them (overrides fp16)."),
        "strict_providers": Key("bool", help="Stop before the first case unless the first provider is in use for "
                                             "every model and no node falls back to the CPU (default: on for GPU providers)."),
        "cudnn_search": Key("str", "exhaustive", choices=("exhaustive", "heuristic", "default"),
                            help="cuDNN convolution algorithm search (CUDA)."),
        "tf32": Key("bool", False, help="Allow TF32 tensor cores for float32 work (CUDA, Ampere and newer)."),
        "postprocess": Key("str", "graph", choices=("graph", "host"),
                           help="Activation, resize and argmax in the model's graph where the spec allows, or in numpy."),
    },
    "output": {
        "dir": Key("path", "runs", help="Folder that receives one sub-folder per run."),
        "formats": Key("list[str]", ["csv", "json", "html"], choices=("csv", "json", "html"), help="Reports to write."),
        "dicom_seg": Key("bool", False, help="Save each model's label maps of DICOM cases as DICOM-SEG "
                         "(RUN_DIR/dicom_seg/MODEL/CASE.dcm), referencing the source series."),
        "save_predictions": Key("bool", False, help="Save each model's label map of each case as NIfTI with the "
                                "image's geometry (RUN_DIR/predictions/MODEL/CASE.nii.gz)."),
    },
    "ray": {
        "address": Key("str", help="Ray cluster address (host:port or ray://host:port); default: RAY_ADDRESS, "
                                   "else a local Ray started for the run."),
    },
    "leaderboard": {
        "hub_repo": Key("str", help="Hub dataset repo receiving published results (medbench hub publish)."),
        "task": Key("str", help="Hub task tag tracked for new models, e.g. image-segmentation."),
        "search": Key("str", help="Hub search text for tracked models, e.g. medical."),
        "track": Key("list[str]", help="Hub model ids to track."),
        "publish": Key("bool", False, help="Publish each finished run to hub_repo (medbench hub publish)."),
        "tasks": Key("list[map]", help="Tracked Hub tasks (medbench hub tasks): name and Hub filters, see "
                                       "leaderboard.tasks[]; default: the built-in medical-imaging tasks."),
        "cache_dir": Key("path", help="Folder of the tracking history and reports (default "
                                      "$MEDBENCH_HUB_CACHE or ~/.cache/medbench-fast/hub)."),
    },
}
#: Keys of one ``leaderboard.tasks`` entry (filters of ``HfApi.list_models``).
TASK_KEYS: dict[str, Key] = {
    "name": Key("str", required=True, help="Task name, e.g. ct-organ-segmentation."),
    "description": Key("str", help="One line on what the task is."),
    "pipeline_tag": Key("str", help="Hub pipeline tag, e.g. image-segmentation."),
    "tags": Key("list[str]", help="Hub tags every model must have, e.g. [medical]."),
    "search": Key("str", help="Text the model id must contain."),
    "library": Key("str", help="Library tag, e.g. transformers or monai."),
    "sort": Key("str", "downloads", choices=("downloads", "likes", "last_modified", "created_at", "trending_score"),
                help="Ranking key (descending)."),
    "limit": Key("int", 50, help="Models kept per task."),
}
#: Sections whose value is a list of mappings.
LIST_SECTIONS = ("models",)


# -- typed config: frozen dataclasses built from SCHEMA -----------------------------------
class FrozenMap(dict):
    """A read-only ``dict`` (a config mapping such as ``label_names`` or a model's ``spec``);
    JSON writes it as an object, pickling keeps it read-only."""

    def _read_only(self, *args, **kwargs):
        raise TypeError("a config mapping is read-only; build a changed copy with dataclasses.replace")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        return FrozenMap, (dict(self),)

    def __deepcopy__(self, memo):
        return FrozenMap(copy.deepcopy(dict(self), memo))


#: Python types of the values of each key kind (``None`` is allowed wherever a key is optional).
_TYPES = {"str": "str", "path": "str", "int": "int", "float": "float", "bool": "bool", "map": "FrozenMap",
          "folds": "int | str | tuple[int | str, ...]", "list[str]": "tuple[str, ...]", "list[int]": "tuple[int, ...]"}


def _typed_value(value, item_class=None):
    """A validated value as the typed classes hold it: lists as tuples (of ``item_class``
    objects for a list of mappings), mappings as read-only copies."""
    if isinstance(value, list):
        return tuple(item_class.from_dict(v) if item_class is not None else v for v in value)
    if isinstance(value, dict):
        return FrozenMap(copy.deepcopy(value))
    return value


def _plain_value(value):
    """The inverse of :func:`_typed_value`: tuples as lists, mappings as plain ``dict`` copies."""
    if dataclasses.is_dataclass(value):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain_value(v) for v in value]
    if isinstance(value, dict):
        return copy.deepcopy(dict(value))
    return value


def _to_dict(self) -> dict:
    """The validated mapping of these values, keys in :data:`SCHEMA` order (plain lists and dicts)."""
    return {f.name: _plain_value(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _section_class(name: str, keys: dict[str, Key], doc: str, items: dict | None = None) -> type:
    """A frozen dataclass with one field per key of ``keys`` (its default the key's default);
    ``items``: key -> class of each item of a list of mappings. ``from_dict`` takes a
    validated mapping, ``to_dict`` gives it back."""
    items = items or {}

    def from_dict(cls, values: dict):
        return cls(**{k: _typed_value(v, items.get(k)) for k, v in values.items()})

    fields = [(key, f"tuple[{items[key].__name__}, ...] | None" if key in items else f"{_TYPES[spec.kind]} | None",
               dataclasses.field(default=_typed_value(spec.default))) for key, spec in keys.items()]
    cls = dataclasses.make_dataclass(name, fields, frozen=True,
                                     namespace={"from_dict": classmethod(from_dict), "to_dict": _to_dict})
    cls.__module__, cls.__doc__ = __name__, doc
    return cls


TaskEntry = _section_class("TaskEntry", TASK_KEYS, "One ``leaderboard.tasks`` entry (see :data:`TASK_KEYS`).")
DatasetConfig = _section_class("DatasetConfig", SCHEMA["dataset"], "The ``dataset`` section.")
ModelEntry = _section_class("ModelEntry", SCHEMA["models"], "One entry of the ``models`` list.")
BenchmarkConfig = _section_class("BenchmarkConfig", SCHEMA["benchmark"], "The ``benchmark`` section.")
OutputConfig = _section_class("OutputConfig", SCHEMA["output"], "The ``output`` section.")
RayConfig = _section_class("RayConfig", SCHEMA["ray"], "The ``ray`` section.")
LeaderboardConfig = _section_class("LeaderboardConfig", SCHEMA["leaderboard"], "The ``leaderboard`` section.",
                                   {"tasks": TaskEntry})
#: The class of each section of :data:`SCHEMA` (of each item, for a list section).
SECTION_CLASSES: dict[str, type] = {"dataset": DatasetConfig, "models": ModelEntry, "benchmark": BenchmarkConfig,
                                    "output": OutputConfig, "ray": RayConfig, "leaderboard": LeaderboardConfig}


@dataclass(frozen=True)
class Config:
    """A validated ``benchmark_config.yaml``: one frozen object per section, ``models`` a tuple
    of :class:`ModelEntry`. Build changed copies with :func:`dataclasses.replace`."""

    dataset: DatasetConfig
    models: tuple[ModelEntry, ...]
    benchmark: BenchmarkConfig
    output: OutputConfig
    ray: RayConfig
    leaderboard: LeaderboardConfig

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """From :func:`validate`'s checked mapping (every section present, defaults filled)."""
        return cls(**{name: tuple(SECTION_CLASSES[name].from_dict(v) for v in values[name]) if name in LIST_SECTIONS
                      else SECTION_CLASSES[name].from_dict(values[name]) for name in SCHEMA})

    def to_dict(self) -> dict:
        """The validated mapping (plain lists and dicts), as ``run.json`` records it."""
        return {name: _plain_value(getattr(self, name)) for name in SCHEMA}


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
    if kind == "folds":  # a fold number, "all", or a list of them
        items = value if isinstance(value, list) else [value]
        return bool(items) and all((isinstance(v, int) and not isinstance(v, bool) and v >= 0) or v == "all"
                                   for v in items)
    if kind.startswith("list["):
        inner = kind[5:-1]
        return isinstance(value, list) and all(_type_ok(inner, v) and v is not None for v in value)
    raise AssertionError(kind)


def _check_numbers(path: str, values: list, spec: Key) -> None:
    """Finite numbers within the key's bounds (integers are never negative)."""
    low = spec.minimum if spec.minimum is not None else 0
    for v in values:
        if not math.isfinite(v):
            raise ConfigError(f"{path}: expected a finite number, got {v}")
        if v < low or (spec.maximum is not None and v > spec.maximum):
            bound = f"between {low} and {spec.maximum}" if spec.maximum is not None else f">= {low}"
            raise ConfigError(f"{path}: expected a number {bound}, got {v}")


def _label_names(path: str, names: dict) -> dict[int, str]:
    """``{label: name}`` with integer labels >= 1 (YAML may give ``"1"``); errors name the key."""
    out = {}
    for key, name in names.items():
        text = str(key).strip()
        if isinstance(key, bool) or not text.isdigit() or int(text) < 1:
            raise ConfigError(f"{path}: key {key!r} is not a label (expected integers >= 1, e.g. {{1: liver}})")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}.{key}: expected a name, got {name!r}")
        out[int(text)] = name
    return out


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
            raise ConfigError(f"{path}: expected {spec.kind}, got {_shown(value)}")
        if spec.choices and value is not None:
            for v in value if isinstance(value, list) else [value]:
                if v not in spec.choices:
                    raise ConfigError(f"{path}: {v!r} is not one of {', '.join(map(str, spec.choices))}")
        if spec.kind in ("int", "float", "list[int]") and value is not None:
            _check_numbers(path, value if isinstance(value, list) else [value], spec)
        if key == "labels" and value is not None:
            from medbench_fast.metrics.regions import check_label

            try:
                value = [check_label(v, path) for v in value]
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if key == "label_names" and value is not None:
            value = _label_names(path, value)
        if key == "dicom_labels" and value is not None:
            from medbench_fast.data.dicom.labels import parse_rules

            try:
                parse_rules(value, where=path)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if spec.kind == "path" and value is not None:
            value = str((base / os.path.expanduser(value)).resolve()) if not os.path.isabs(value) else value
        out[key] = value
    return out


def validate(raw, *, source: str = "<config>", base: Path | None = None) -> Config:
    """Validate a parsed YAML mapping; return it typed, with defaults filled and paths resolved
    (``.to_dict()`` gives the checked mapping)."""
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
    _resolve_dataset(config["dataset"], f"{source}: dataset")
    names = [m["name"] for m in config["models"]]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: models: duplicate model names {dupes}")
    if config["leaderboard"]["publish"] and not config["leaderboard"]["hub_repo"]:
        raise ConfigError(f"{source}: leaderboard.publish: needs leaderboard.hub_repo (the dataset repo owner/name)")
    for i, task in enumerate(config["leaderboard"]["tasks"] or []):
        config["leaderboard"]["tasks"][i] = _section(task, TASK_KEYS, f"{source}: leaderboard.tasks[{i}]", base)
    for i, model in enumerate(config["models"]):
        if name_problem(model["name"]):
            raise ConfigError(f"{source}: models[{i}].name: {model['name']!r} cannot name the model's files in the "
                              f"run folder ({name_problem(model['name'])}); use a plain name such as 'unet-v2'")
        if model["hub"] is not None and (model["kind"] != "huggingface" or model["path"] or model["id"]):
            raise ConfigError(f"{source}: models[{i}].hub: only for kind 'huggingface', without path or id")
        if model["hub"] is not None and model["hub"].count("/") != 1:
            raise ConfigError(f"{source}: models[{i}].hub: expected a Hub model id owner/name, got {model['hub']!r}")
        if model["path"] is None and not (model["kind"] == "huggingface" and (model["id"] or model["hub"])):
            raise ConfigError(f"{source}: models[{i}].path: required for kind {model['kind']!r}")
        given = [k for k in NNUNET_KEYS if model[k] is not None]
        if given and model["kind"] != "nnunet":
            raise ConfigError(f"{source}: models[{i}].{given[0]}: only for kind 'nnunet'")
        if model["kind"] == "torchscript" and not model["input_shape"]:
            raise ConfigError(f"{source}: models[{i}].input_shape: required for kind 'torchscript'")
    return Config.from_dict(config)


def preflight(config: Config, *, source: str = "<config>") -> None:
    """Check what exists on disk before anything runs: the dataset folders and files, and
    each model's file or folder. Errors name the file and the key (``config check`` runs it)."""
    data = config.dataset
    if not any(getattr(data, k) for k in ("image_dir", "manifest", "nnunet", "decathlon")):
        raise ConfigError(f"{source}: dataset.image_dir: required (or dataset.manifest, nnunet or decathlon)")
    for key, want_dir in (("image_dir", True), ("seg_dir", True), ("manifest", False), ("targets_csv", False),
                          ("nnunet", None), ("decathlon", None)):
        value = getattr(data, key)
        if value is None:
            continue
        p = Path(value)
        if not p.exists():
            raise ConfigError(f"{source}: dataset.{key}: {p} does not exist")
        if want_dir is None:  # a dataset folder or its dataset.json
            continue
        if want_dir and not p.is_dir():
            raise ConfigError(f"{source}: dataset.{key}: {p} is not a folder")
        if not want_dir and not p.is_file():
            raise ConfigError(f"{source}: dataset.{key}: {p} is not a file")
    for i, model in enumerate(config.models):
        if model.path and not Path(model.path).exists():
            raise ConfigError(f"{source}: models[{i}].path: {model.path} does not exist (model {model.name!r})")


def _resolve_dataset(dataset: dict, where: str) -> None:
    """Fill labels, label names and regions from an nnU-Net / Decathlon ``dataset.json`` (of
    ``nnunet`` / ``decathlon``, or beside ``image_dir``; values given in the config win) and
    check the regions against the labels."""
    from medbench_fast.data.layouts import LayoutError, find_dataset_json, read_layout
    from medbench_fast.metrics.regions import make_regions

    kinds = [k for k in ("image_dir", "manifest", "nnunet", "decathlon") if dataset.get(k)]
    if len(kinds) > 1 and {"nnunet", "decathlon"} & set(kinds):
        raise ConfigError(f"{where}: give one of {', '.join(kinds)}, not several")
    source = dataset[kinds[0]] if kinds and kinds[0] in ("nnunet", "decathlon") else None
    try:
        if kinds and kinds[0] == "image_dir":  # e.g. image_dir: Dataset001_BraTS/imagesTs
            source = find_dataset_json(Path(dataset["image_dir"]).parent)
        layout = None if source is None else read_layout(source, kinds[0] if kinds[0] != "image_dir" else None)
    except LayoutError as exc:
        raise ConfigError(f"{where}.{kinds[0]}: {exc}") from None
    if layout is not None:
        for key, value in layout.scoring().items():
            if dataset[key] is None:
                dataset[key] = value
    if dataset["regions"]:
        try:
            make_regions(dataset["regions"], known_labels=dataset["labels"])
        except ValueError as exc:
            raise ConfigError(f"{where}.{exc}") from None


def load_config(path: str | os.PathLike) -> tuple[Config, str]:
    """Read and validate a YAML config; return ``(config, file text)``."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    data = p.read_bytes()
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: {len(data)} bytes; a config file holds at most {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start} is {data[exc.start:exc.start + 1]!r}); "
                          f"save the config as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_bounded_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    except _TooLarge as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deep") from None
    return validate(raw, source=str(p), base=p.resolve().parent), text


class _TooLarge(Exception):
    """A YAML document that expands past :data:`MAX_CONFIG_NODES` (an alias bomb) or is nested too deep."""


def _bounded_loader():
    """``yaml.SafeLoader`` that counts the document's nodes with every alias expanded before
    building it, and refuses more than :data:`MAX_CONFIG_NODES` (or an alias of itself)."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        def get_single_data(self):
            node = self.get_single_node()
            if node is None:
                return None
            try:
                total = _expanded_nodes(node, {})
            except RecursionError:
                raise _TooLarge("nested too deep") from None
            if total == math.inf:
                raise _TooLarge("an alias refers to a node that holds it (a recursive alias)")
            if total > MAX_CONFIG_NODES:
                raise _TooLarge(f"its aliases expand to more than {MAX_CONFIG_NODES} nodes (an alias bomb?)")
            return self.construct_document(node)

        def construct_mapping(self, node, deep=False):
            """Refuse a key given twice in one mapping (YAML would keep the last silently);
            a merge key (``<<``) may still be overridden."""
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                            f"found duplicate key {key!r}", key_node.start_mark)
            return super().construct_mapping(node, deep)

        def construct_yaml_int(self, node):
            try:
                return super().construct_yaml_int(node)
            except ValueError:  # past Python's digit limit for int()
                raise yaml.constructor.ConstructorError(
                    None, None, f"an integer of {len(node.value)} digits is too long", node.start_mark) from None

    BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
    return BoundedLoader


def _expanded_nodes(node, memo: dict) -> float:
    """Nodes of ``node`` with aliases expanded (a node reached twice counts twice); inf when
    an alias refers to a node that holds it. ``memo``: id -> count (None while counting)."""
    key = id(node)
    if key in memo:
        return math.inf if memo[key] is None else memo[key]
    memo[key] = None
    total = 1
    if isinstance(node.value, list):
        for item in node.value:
            for child in item if isinstance(item, tuple) else (item,):
                total += _expanded_nodes(child, memo)
                if total > MAX_CONFIG_NODES:
                    break
    memo[key] = total
    return total


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
