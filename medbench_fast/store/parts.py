"""Append-only Parquet part files, consolidated into one file per table.

Each batch of finished rows becomes ``RUN_DIR/parts/<table>/part-<namespace>-<n>-<uuid>.parquet``
(written under a temporary name, then renamed), so a killed run loses at most the batch in
flight. Every part carries the run's fingerprint and run id in its key-value metadata;
:func:`read_parts` refuses a part of another fingerprint, and names a corrupt one.
Consolidation keeps the newest row of each key, so a resumed run never duplicates rows.
A namespace (``main`` for a single process) lets several writers of one run, each holding
its own lock, append parts without ever writing the same file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medbench_fast.files import atomic_write, path_inside
from medbench_fast.store.fingerprint import FINGERPRINT_KEY, RUN_ID_KEY


def skip_pandas_detection() -> None:
    """Tell pyarrow that pandas is absent, unless it is already imported.

    pyarrow imports pandas (0.4 s or more) the first time it converts Python values, only
    to check whether they are DataFrames; the project never hands it one. Commands whose
    process never does either (``medbench evaluate``) call this first. An explicit
    ``to_pandas()`` later still imports pandas (pyarrow retries then)."""
    import sys

    if "pandas" in sys.modules:
        return
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow's one attempt to import pandas for type checks fails here
    finally:
        sys.meta_path.remove(finder)


class _NoPandas:
    """An import finder that makes ``import pandas`` fail (see :func:`skip_pandas_detection`)."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError(f"{name} is not used by this command")
        return None


class StoreError(RuntimeError):
    """A run folder whose files cannot be trusted (corrupt, or of another run); names the file."""


def _atomic_write_table(table: pa.Table, target: Path) -> None:
    atomic_write(target, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def _stamp(schema: pa.Schema, fingerprint: str, run_id: str) -> pa.Schema:
    meta = dict(schema.metadata or {})
    meta.update({FINGERPRINT_KEY.encode(): fingerprint.encode(), RUN_ID_KEY.encode(): run_id.encode()})
    return schema.with_metadata(meta)


class PartWriter:
    """Writes batches of rows of one table as Parquet part files of one namespace.

    The caller holds the namespace's :class:`~medbench_fast.store.lock.RunLock`.
    """

    def __init__(self, run_dir: str | os.PathLike, table: str, schema: pa.Schema, *, fingerprint: str,
                 run_id: str, namespace: str = "main"):
        self.folder = path_inside(run_dir, "parts", table)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prefix = f"part-{namespace}-"
        for stale in self.folder.glob(f".{self.prefix}*.tmp"):  # left by a killed writer of this namespace
            stale.unlink(missing_ok=True)
        self.schema = _stamp(schema, fingerprint, run_id)
        # pyarrow imports pandas (when installed) on its first from_pylist: pay it here, not in a timed loop
        pa.Table.from_pylist([], schema=self.schema)
        self._seq = len(list(self.folder.glob(f"{self.prefix}*.parquet")))

    def write(self, rows: list[dict]) -> Path | None:
        """Write ``rows`` (dicts keyed by schema field names) as one part; None when empty."""
        if not rows:
            return None
        table = pa.Table.from_pylist(rows, schema=self.schema)
        target = path_inside(self.folder, f"{self.prefix}{self._seq:06d}-{uuid.uuid4().hex[:8]}.parquet")
        self._seq += 1
        _atomic_write_table(table, target)
        return target


def read_table_file(path: Path, schema: pa.Schema | None = None, *, fingerprint: str | None = None) -> pa.Table:
    """Read one Parquet file; a corrupt, empty or truncated one raises :class:`StoreError` naming it.

    With ``schema``, the table gets that schema (and its metadata). Files are read with
    ``ParquetFile``, which does not import ``pyarrow.dataset`` (0.05-0.3 s of a short run);
    a file whose columns differ from ``schema`` goes through ``pq.read_table``, which
    reconciles them as before. With ``fingerprint``, a file carrying another fingerprint (or
    none) raises :class:`StoreError` before its rows are read.
    """
    try:
        parquet = pq.ParquetFile(path)
        if fingerprint is not None:
            found = (parquet.schema_arrow.metadata or {}).get(FINGERPRINT_KEY.encode(), b"").decode() or "none"
            if found != fingerprint:
                raise StoreError(f"{path}: a part of another run (fingerprint {found[:12]}, this run's is "
                                 f"{fingerprint[:12]}); refusing to merge it")
        table = parquet.read()
        if schema is None:
            return table
        if table.schema.equals(schema, check_metadata=False):
            return pa.Table.from_arrays(table.columns, schema=schema)  # the same columns, with its metadata
        return pq.read_table(path, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise StoreError(f"{path}: not a readable Parquet file ({exc})") from None


def read_parts(run_dir: str | os.PathLike, table: str, schema: pa.Schema, *, fingerprint: str | None = None) -> pa.Table:
    """All rows written so far for ``table`` (empty table when none), in write order per namespace.

    With ``fingerprint``, a part carrying another fingerprint (or none) raises :class:`StoreError`.
    Each part is opened once (its footer gives the fingerprint, then its rows are read).
    """
    folder = Path(run_dir) / "parts" / table
    files = sorted(folder.glob("part-*.parquet")) if folder.exists() else []
    tables = []
    for f in files:
        try:
            tables.append(read_table_file(f, schema, fingerprint=fingerprint).replace_schema_metadata(None))
        except FileNotFoundError as exc:  # listed, then gone
            raise StoreError(f"{f}: not a readable Parquet file ({exc})") from None
    return pa.concat_tables(tables) if tables else schema.empty_table()


def dedupe_last(table: pa.Table, keys: list[str]) -> pa.Table:
    """Keep the last row of each key (rows later in the table win), in table order.

    A dict of key tuples (not Arrow's ``group_by``, whose import of ``pyarrow.compute`` and
    Acero costs more than the grouping of a run's rows)."""
    if table.num_rows == 0:
        return table
    last = {key: i for i, key in enumerate(zip(*(table.column(k).to_pylist() for k in keys)))}
    if len(last) == table.num_rows:  # no key twice (a run without resumed cases): nothing to drop
        return table
    return table.take(pa.array(sorted(last.values()), pa.int64()))


def write_table(table: pa.Table, run_dir: str | os.PathLike, name: str, metadata: dict[str, str] | None = None) -> Path:
    """Write ``table`` as ``RUN_DIR/<name>.parquet`` atomically, with key-value metadata."""
    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    target = path_inside(run_dir, f"{name}.parquet")
    _atomic_write_table(table, target)
    return target
