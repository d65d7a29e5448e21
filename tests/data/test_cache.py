"""The memory-mapped volume cache: hits, invalidation, concurrency, read-only arrays."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from medbench_fast.data.cache import VolumeCache, default_cache_dir
from medbench_fast.data.reader import Volume, write_volume


@pytest.fixture
def source(tmp_path, rng):
    path = tmp_path / "img.nii.gz"
    write_volume(Volume(rng.integers(0, 5, (6, 7, 8)).astype(np.uint8), spacing=(3.0, 0.8, 0.8)), path)
    return path


def test_first_read_decodes_then_memory_maps(tmp_path, source):
    cache = VolumeCache(tmp_path / "c")
    first = cache.load(source)
    second = cache.load(source)
    assert first.meta["cache"] == "miss" and second.meta["cache"] == "hit"
    assert not second.array.flags.writeable and not second.array.flags.owndata  # a read-only file mapping
    np.testing.assert_array_equal(first.array, second.array)
    assert second.spacing == pytest.approx((3.0, 0.8, 0.8))
    assert len(second.meta["sha256"]) == 64
    assert cache.info()["entries"] == 1


def test_changed_source_invalidates(tmp_path, source, rng):
    cache = VolumeCache(tmp_path / "c")
    cache.load(source)
    new = rng.integers(5, 9, (6, 7, 8)).astype(np.uint8)
    write_volume(Volume(new, spacing=(1.0, 1.0, 1.0)), source)
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    got = cache.load(source)
    assert got.meta["cache"] == "miss"
    np.testing.assert_array_equal(got.array, new)
    assert cache.load(source).spacing == (1.0, 1.0, 1.0)


def test_corrupt_entry_is_rebuilt(tmp_path, source):
    cache = VolumeCache(tmp_path / "c")
    cache.load(source)
    npy = next((tmp_path / "c").glob("*.npy"))
    npy.write_bytes(b"garbage")
    assert cache.load(source).meta["cache"] == "miss"
    assert cache.load(source).meta["cache"] == "hit"


def _load_in_process(args):
    root, path = args
    return np.asarray(VolumeCache(root).load(path).array).sum()


def test_concurrent_writers_and_readers(tmp_path, source):
    root = tmp_path / "c"
    expected = int(VolumeCache(tmp_path / "other").load(source).array.sum())
    with ProcessPoolExecutor(2) as pool:
        sums = list(pool.map(_load_in_process, [(root, source)] * 8))
    assert set(sums) == {expected}
    results, errors = [], []

    def worker():
        try:
            for _ in range(20):
                results.append(int(np.asarray(VolumeCache(root).load(source).array).sum()))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    VolumeCache(root).clear()  # a writer racing the readers
    for t in threads:
        t.join()
    assert not errors and set(results) == {expected}
    assert not list(root.glob(".*tmp")) if root.exists() else True


def test_clear_and_location(tmp_path, source, monkeypatch):
    monkeypatch.setenv("MEDBENCH_CACHE_DIR", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    cache = VolumeCache()
    cache.load(source)
    assert cache.clear() == 1
    assert cache.info()["entries"] == 0
