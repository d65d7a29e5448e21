"""Append-only Parquet part files, consolidated into one file per table.

Each batch of finished rows becomes ``RUN_DIR/parts/<table>/part-<n>-<uuid>.parquet``
(written under a temporary name, then renamed), so a killed run loses at most the batch in
flight. ``consolidate`` merges the parts into ``RUN_DIR/<table>.parquet``, keeping the
newest row of each key, so a resumed run never duplicates rows.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _atomic_write_table(table: pa.Table, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


class PartWriter:
    """Writes batches of rows of one table as Parquet part files."""

    def __init__(self, run_dir: str | os.PathLike, table: str, schema: pa.Schema):
        self.folder = Path(run_dir) / "parts" / table
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".part-*.tmp"):  # left by a killed writer
            stale.unlink(missing_ok=True)
        self.schema = schema
        self._seq = len(list(self.folder.glob("part-*.parquet")))

    def write(self, rows: list[dict]) -> Path | None:
        """Write ``rows`` (dicts keyed by schema field names) as one part; None when empty."""
        if not rows:
            return None
        table = pa.Table.from_pylist(rows, schema=self.schema)
        target = self.folder / f"part-{self._seq:06d}-{uuid.uuid4().hex[:8]}.parquet"
        self._seq += 1
        _atomic_write_table(table, target)
        return target


def read_parts(run_dir: str | os.PathLike, table: str, schema: pa.Schema) -> pa.Table:
    """All rows written so far for ``table`` (empty table when none), in write order."""
    folder = Path(run_dir) / "parts" / table
    files = sorted(folder.glob("part-*.parquet")) if folder.exists() else []
    tables = [pq.read_table(f, schema=schema) for f in files]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def dedupe_last(table: pa.Table, keys: list[str]) -> pa.Table:
    """Keep the last row of each key (rows later in the table win)."""
    if table.num_rows == 0:
        return table
    index = pa.array(range(table.num_rows))
    grouped = table.select(keys).append_column("__i", index).group_by(keys, use_threads=False).aggregate([("__i", "max")])
    keep = sorted(grouped.column("__i_max").to_pylist())
    return table.take(pa.array(keep))


def write_table(table: pa.Table, run_dir: str | os.PathLike, name: str, metadata: dict[str, str] | None = None) -> Path:
    """Write ``table`` as ``RUN_DIR/<name>.parquet`` atomically, with key-value metadata."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    target = Path(run_dir) / f"{name}.parquet"
    _atomic_write_table(table, target)
    return target
