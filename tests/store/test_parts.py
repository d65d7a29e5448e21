"""Reading and deduplicating Parquet parts."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medbench_fast.store.parts import StoreError, dedupe_last, read_table_file


def test_dedupe_last_keeps_the_newest_row_of_each_key_in_table_order():
    table = pa.table({"case_id": ["a", "b", "a", "c", "b"], "label": [1, 1, 1, 1, 2], "v": [0, 1, 2, 3, 4]})
    got = dedupe_last(table, ["case_id", "label"])
    assert got.column("v").to_pylist() == [1, 2, 3, 4]
    assert dedupe_last(table, ["case_id"]).column("v").to_pylist() == [2, 3, 4]
    unique = table.slice(0, 2)
    assert dedupe_last(unique, ["case_id"]) is unique
    assert dedupe_last(table.slice(0, 0), ["case_id"]).num_rows == 0


def test_read_table_file_gives_the_schema_asked_for(tmp_path):
    schema = pa.schema([("case_id", pa.string()), ("v", pa.float64())]).with_metadata({"k": "asked"})
    table = pa.table({"case_id": ["a", None], "v": [1.5, None]}).replace_schema_metadata({"k": "file"})
    pq.write_table(table, tmp_path / "t.parquet")
    assert read_table_file(tmp_path / "t.parquet").schema.metadata == {b"k": b"file"}
    got = read_table_file(tmp_path / "t.parquet", schema)
    assert got.schema.equals(schema, check_metadata=True) and got.to_pylist() == table.to_pylist()
    wider = pa.schema([("case_id", pa.string()), ("v", pa.float64()), ("extra", pa.int64())])
    assert read_table_file(tmp_path / "t.parquet", wider).column("extra").to_pylist() == [None, None]


@pytest.mark.parametrize("data", [b"", b"garbage", b"PAR1garbagePAR1"])
def test_unreadable_part_is_named(tmp_path, data):
    (tmp_path / "bad.parquet").write_bytes(data)
    with pytest.raises(StoreError, match="bad.parquet: not a readable Parquet file"):
        read_table_file(tmp_path / "bad.parquet")


def test_read_parts_checks_each_parts_fingerprint_from_its_one_read(tmp_path, monkeypatch):
    """Parts of the run are read whole; one of another fingerprint, or of none, is refused by name."""
    from medbench_fast.store.fingerprint import FINGERPRINT_KEY
    from medbench_fast.store.parts import read_parts

    schema = pa.schema([("case_id", pa.string())])
    folder = tmp_path / "parts" / "cases"
    folder.mkdir(parents=True)
    for i, print_ in enumerate(["abc", "abc"]):
        table = pa.table({"case_id": [f"c{i}"]}).replace_schema_metadata({FINGERPRINT_KEY: print_})
        pq.write_table(table, folder / f"part-main-{i:06d}-x.parquet")
    opened = []
    original = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda path, *a, **k: opened.append(path) or original(path, *a, **k))
    assert read_parts(tmp_path, "cases", schema, fingerprint="abc").column("case_id").to_pylist() == ["c0", "c1"]
    assert len(opened) == 2  # once per part
    pq.write_table(pa.table({"case_id": ["z"]}), folder / "part-main-000002-none.parquet")
    with pytest.raises(StoreError, match=r"part-main-000002-none.parquet: a part of another run \(fingerprint none"):
        read_parts(tmp_path, "cases", schema, fingerprint="abc")
    with pytest.raises(StoreError, match="part-main-000000-x.parquet: a part of another run"):
        read_parts(tmp_path, "cases", schema, fingerprint="other")
