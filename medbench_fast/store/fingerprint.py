"""The run fingerprint: everything that changes a number, hashed.

A fingerprint is built from a flat mapping of *components* (dotted key -> JSON value):
resolved absolute dataset paths, labels and their names, the metric set and every
convention (surface mode, HD95 mode, NSD tolerance, both-empty policy, threshold), and
for each model its config entry, source file hash, resolved spec, providers and fp16.
Its digest is the sha256 of the canonical JSON of the components. It is stored in
``run.json`` and in the key-value metadata of every Parquet part, and consolidation
refuses parts of another digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

#: Parquet key-value metadata keys of every part and final table.
FINGERPRINT_KEY = "medbench.fingerprint"
RUN_ID_KEY = "medbench.run_id"
SPEC_KEY = "resolved_spec_sha256"


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Fingerprint:
    """``components``: dotted key -> value; ``digest``: sha256 hex of their canonical JSON."""

    components: dict

    @property
    def digest(self) -> str:
        return hashlib.sha256(_canonical(self.components).encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"sha256": self.digest, "components": self.components}

    @classmethod
    def from_dict(cls, record: dict | None) -> Fingerprint | None:
        if not record or not isinstance(record.get("components"), dict):
            return None
        return cls(dict(record["components"]))

    def with_specs(self, specs: dict[str, dict]) -> Fingerprint:
        """This fingerprint plus each opened model's resolved spec (``models.<name>.resolved_spec_sha256``)."""
        extra = {f"models.{name}.{SPEC_KEY}": hashlib.sha256(_canonical(spec).encode()).hexdigest()
                 for name, spec in specs.items()}
        return Fingerprint({**self.components, **extra})

    def differences(self, other: Fingerprint) -> list[str]:
        """``key: recorded -> given`` lines for every component that differs (self is the recorded one).

        Resolved specs are compared only where both have them (they are known once models are open).
        """
        both = set(self.components) & set(other.components)
        keys = sorted(k for k in set(self.components) | set(other.components) if not k.endswith(SPEC_KEY) or k in both)
        out = []
        for key in keys:
            a, b = self.components.get(key, "<absent>"), other.components.get(key, "<absent>")
            if _canonical(a) != _canonical(b):
                out.append(f"{key}: {_short(a)} -> {_short(b)}")
        return out


def _short(value, limit: int = 80) -> str:
    text = _canonical(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def file_sha256(path: str | os.PathLike, *, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes, sorted)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0")
            h.update(bytes.fromhex(file_sha256(f)))
        return h.hexdigest()
    with open(p, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def flatten(prefix: str, mapping: dict) -> dict:
    """``{"a": {"b": 1}}`` -> ``{"prefix.a.b": 1}`` (lists and scalars are leaves)."""
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(name, value))
        else:
            out[name] = value
    return out
