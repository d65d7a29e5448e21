"""The memory-mapped volume cache: hits, invalidation, concurrency, read-only arrays."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from disk_full import enospc, fill, small_disk

from medbench_fast.data.cache import MAX_DECODE_RATE, MIN_BYTES, STALE_TEMP_S, VolumeCache, default_cache_dir
from medbench_fast.data.reader import Volume, write_volume


#: Stores every volume: these tests use small volumes, which the default rule never stores.
STORE_ALL = dict(min_bytes=0, max_decode_rate=None)


def _cache(root) -> VolumeCache:
    return VolumeCache(root, **STORE_ALL)


@pytest.fixture
def source(tmp_path, rng):
    path = tmp_path / "img.nii.gz"
    write_volume(Volume(rng.integers(0, 5, (6, 7, 8)).astype(np.uint8), spacing=(3.0, 0.8, 0.8)), path)
    return path


def test_first_read_decodes_then_memory_maps(tmp_path, source):
    cache = _cache(tmp_path / "c")
    first = cache.load(source)
    second = cache.load(source)
    assert first.meta["cache"] == "miss" and second.meta["cache"] == "hit"
    assert not second.array.flags.writeable and not second.array.flags.owndata  # a read-only file mapping
    np.testing.assert_array_equal(first.array, second.array)
    assert second.spacing == pytest.approx((3.0, 0.8, 0.8))
    assert second.meta["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert cache.info()["entries"] == 1


def test_changed_source_invalidates(tmp_path, source, rng):
    cache = _cache(tmp_path / "c")
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
    cache = _cache(tmp_path / "c")
    cache.load(source)
    npy = next((tmp_path / "c").glob("*.npy"))
    npy.write_bytes(b"garbage")
    assert cache.load(source).meta["cache"] == "miss"
    assert cache.load(source).meta["cache"] == "hit"


def _load_in_process(args):
    root, path = args
    return np.asarray(_cache(root).load(path).array).sum()


def test_concurrent_writers_and_readers(tmp_path, source):
    root = tmp_path / "c"
    expected = int(_cache(tmp_path / "other").load(source).array.sum())
    with ProcessPoolExecutor(2) as pool:
        sums = list(pool.map(_load_in_process, [(root, source)] * 8))
    assert set(sums) == {expected}
    results, errors = [], []

    def worker():
        try:
            for _ in range(20):
                results.append(int(np.asarray(_cache(root).load(source).array).sum()))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a write that fell back to reading without the cache fails here
        for t in threads:
            t.start()
        for _ in range(10):
            _cache(root).clear()  # racing the readers and writers
        for t in threads:
            t.join()
    assert not errors and set(results) == {expected}
    assert not list(root.glob(".*tmp")) if root.exists() else True


def test_clear_and_location(tmp_path, source, monkeypatch):
    monkeypatch.setenv("MEDBENCH_CACHE_DIR", str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    cache = VolumeCache(**STORE_ALL)
    cache.load(source)
    assert cache.clear() == 1
    assert cache.info()["entries"] == 0


def _sources(tmp_path, rng, n=3):
    out = []
    for i in range(n):
        path = tmp_path / f"src{i}.nii.gz"
        array = rng.integers(0, 5, (6, 7, 8)).astype(np.uint8)
        write_volume(Volume(array, spacing=(3.0, 0.8, 0.8)), path)
        out.append((path, array))
    return out


def _load_all_warns_once(cache, sources):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path, array in sources:
            got = cache.load(path)
            np.testing.assert_array_equal(got.array, array)
            assert got.meta["cache"] == "miss"
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and str(cache.root) in messages[0], messages
    return messages[0]


def test_full_cache_disk_falls_back_to_reading(tmp_path, rng, monkeypatch):
    sources = _sources(tmp_path, rng)
    with small_disk(tmp_path / "disk", 64) as real:
        if real:
            fill(tmp_path / "disk", 2048)  # room for a header, not for a volume
        else:
            monkeypatch.setattr(np, "save", enospc)
        message = _load_all_warns_once(_cache(tmp_path / "disk" / "cache"), sources)
        assert "No space left on device" in message
        assert not list((tmp_path / "disk" / "cache").glob(".*.tmp"))


def test_cache_folder_that_cannot_be_created_falls_back(tmp_path, rng):
    (tmp_path / "not-a-folder").write_text("x")
    _load_all_warns_once(_cache(tmp_path / "not-a-folder" / "cache"), _sources(tmp_path, rng))


def test_read_only_cache_folder_falls_back(tmp_path, rng):
    sources = _sources(tmp_path, rng)
    root = tmp_path / "ro"
    with small_disk(root, 64) as real:
        if real:
            subprocess.run(["mount", "-o", "remount,ro", str(root)], check=True)
        elif os.geteuid() == 0:
            pytest.skip("root ignores file modes and cannot mount here")
        else:
            root.chmod(0o555)
        _load_all_warns_once(_cache(root), sources)


def test_vanishing_cache_folder_never_fails_a_read(tmp_path, source):
    cache = _cache(tmp_path / "c")
    cache.load(source)
    for p in (tmp_path / "c").iterdir():
        p.unlink()
    (tmp_path / "c").rmdir()
    assert cache.load(source).meta["cache"] == "miss"
    assert cache.load(source).meta["cache"] == "hit"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temp_files_of_killed_writers_are_removed(tmp_path, source):
    root = tmp_path / "c"
    cache = _cache(root)
    cache.load(source)
    before = cache.info()
    other_source = tmp_path / "other.nii.gz"
    other_source.write_bytes(source.read_bytes())
    # a writer killed with kill -9 while writing
    killed = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, numpy as np\n"
        "from medbench_fast.data import cache\n"
        "def slow(fh, a):\n"
        "    fh.write(b'x' * 100000); fh.flush(); print('writing', flush=True); time.sleep(60)\n"
        "np.save = slow\n"
        f"cache.VolumeCache({str(root)!r}, min_bytes=0, max_decode_rate=None).load({str(other_source)!r})\n")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    other = root / f".abc.npy.{_dead_pid()}.{'0' * 32}.tmp"
    old = root / f".def.npy.{os.getpid()}.{'1' * 32}.tmp"
    live = root / f".ghi.npy.{os.getpid()}.{'2' * 32}.tmp"
    try:
        assert killed.stdout.readline().strip() == "writing"
    finally:
        killed.kill()
        killed.wait()
        killed.stdout.close()
    orphans = [p for p in root.glob(".*.tmp")]
    assert len(orphans) == 1 and orphans[0].stat().st_size >= 100000
    for p in (other, old, live):
        p.write_bytes(b"y" * 1000)
    os.utime(old, (time.time() - 2 * STALE_TEMP_S,) * 2)
    after = cache.info()  # removes the stale ones before counting
    assert after["entries"] == before["entries"] == 1
    assert after["bytes"] == before["bytes"] + 1000
    assert sorted(root.glob(".*.tmp")) == [live]


def test_source_replaced_with_same_size_and_mtime_is_decoded_again(tmp_path, rng):
    path = tmp_path / "img.nii"  # uncompressed: equal shapes give equal sizes
    first = rng.integers(0, 5, (6, 7, 8)).astype(np.uint8)
    write_volume(Volume(first, spacing=(1.0, 1.0, 1.0)), path)
    cache = _cache(tmp_path / "c")
    np.testing.assert_array_equal(cache.load(path).array, first)
    st = path.stat()
    second = (first + 1) % 5
    write_volume(Volume(second, spacing=(1.0, 1.0, 1.0)), tmp_path / "new.nii")
    os.replace(tmp_path / "new.nii", path)  # replaced by rename (a new inode) ...
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... with the old mtime
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    got = cache.load(path)
    assert got.meta["cache"] == "miss"
    np.testing.assert_array_equal(got.array, second)
    with open(path, "r+b") as fh:  # rewritten in place (same inode), mtime set back
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([int(second.ravel()[-1] + 1) % 5]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    got = cache.load(path)
    assert got.meta["cache"] == "miss" and int(got.array.ravel()[-1]) == (int(second.ravel()[-1]) + 1) % 5


def test_default_rule_stores_only_volumes_that_decode_slower_than_a_write(tmp_path, rng):
    cache = VolumeCache(tmp_path / "c")
    assert (cache.min_bytes, cache.max_decode_rate) == (MIN_BYTES, MAX_DECODE_RATE)
    assert not cache.worth_storing(MIN_BYTES - 1, decode_s=10.0)  # small: decoding again is cheaper
    assert not cache.worth_storing(10 * MIN_BYTES, decode_s=0.001)  # 10 GB/s: faster than writing it
    assert cache.worth_storing(10 * MIN_BYTES, decode_s=0.1)  # 100 MB/s: a slow decode
    assert VolumeCache(tmp_path / "d", min_bytes=0, max_decode_rate=None).worth_storing(1, decode_s=0.0)


def test_small_volume_is_decoded_on_every_read(tmp_path, source):
    cache = VolumeCache(tmp_path / "c")
    assert [cache.load(source).meta["cache"] for _ in range(2)] == ["miss", "miss"]
    assert cache.info()["entries"] == 0


def test_fast_decoding_volume_is_not_stored_and_slow_one_is(tmp_path):
    path = tmp_path / "labels.nii.gz"  # a 2 MiB label map
    array = np.zeros((32, 256, 256), np.uint8)
    array[10:20, 100:150, 50:60] = 3
    write_volume(Volume(array, spacing=(1.0, 1.0, 1.0)), path)
    fast = VolumeCache(tmp_path / "fast", max_decode_rate=1e3)  # every decode is faster than 1 kB/s
    assert [fast.load(path).meta["cache"] for _ in range(2)] == ["miss", "miss"]
    slow = VolumeCache(tmp_path / "slow", max_decode_rate=1e15)  # every decode is slower than 1 PB/s
    assert [slow.load(path).meta["cache"] for _ in range(2)] == ["miss", "hit"]
    np.testing.assert_array_equal(slow.load(path).array, array)

    def decode():  # 2 MiB in 50 ms of CPU time: 40 MB/s, slower than the default rate
        start = time.thread_time()
        while time.thread_time() - start < 0.05:
            pass
        return Volume(array, (1.0, 1.0, 1.0))

    def waits():  # 2 MiB in a 50 ms wait: no CPU time spent, nothing the cache would save
        time.sleep(0.05)
        return Volume(array, (1.0, 1.0, 1.0))

    default = VolumeCache(tmp_path / "derived")
    got = [default.load_derived("k", [path], decode, label="x").meta["cache"] for _ in range(2)]
    assert got == ["miss", "hit"]
    assert [default.load_derived("w", [path], waits, label="x").meta["cache"] for _ in range(2)] == ["miss", "miss"]


def test_entries_are_keyed_by_the_real_path(tmp_path, source, monkeypatch):
    """A file read through a link to it, through a linked folder or by a relative path shares
    the entry of its real path."""
    cache = _cache(tmp_path / "c")
    (tmp_path / "link.nii.gz").symlink_to(source)
    (tmp_path / "folder").symlink_to(tmp_path, target_is_directory=True)
    assert cache.load(tmp_path / "link.nii.gz").meta["cache"] == "miss"
    for path in (source, tmp_path / "folder" / "img.nii.gz", str(tmp_path / "folder" / "link.nii.gz")):
        hit = cache.load(path)
        assert hit.meta["cache"] == "hit" and hit.path == str(source.resolve())
    monkeypatch.chdir(tmp_path / "folder")
    assert cache.load("img.nii.gz").meta["cache"] == "hit"
    assert cache.info()["entries"] == 1


def test_linked_folder_pointed_elsewhere_reads_the_new_files(tmp_path, rng):
    """Each folder's real path is worked out once; a link re-pointed meanwhile still gives the
    voxels of the file it now names (an entry is used only with that file's fingerprint)."""
    arrays = {}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        arrays[name] = rng.integers(0, 5, (4, 5, 6)).astype(np.uint8) + (10 if name == "b" else 0)
        write_volume(Volume(arrays[name], spacing=(1.0, 1.0, 1.0)), tmp_path / name / "img.nii.gz")
    link = tmp_path / "now"
    link.symlink_to(tmp_path / "a", target_is_directory=True)
    cache = _cache(tmp_path / "c")
    np.testing.assert_array_equal(cache.load(link / "img.nii.gz").array, arrays["a"])
    assert cache.load(link / "img.nii.gz").meta["cache"] == "hit"
    link.unlink()
    link.symlink_to(tmp_path / "b", target_is_directory=True)
    for _ in range(2):
        np.testing.assert_array_equal(cache.load(link / "img.nii.gz").array, arrays["b"])
    for name in ("a", "b"):
        np.testing.assert_array_equal(cache.load(tmp_path / name / "img.nii.gz").array, arrays[name])
        np.testing.assert_array_equal(VolumeCache(tmp_path / "c", **STORE_ALL).load(link.parent / name / "img.nii.gz").array,
                                      arrays[name])
