"""The config loader's bounds: alias bombs, huge or non-UTF-8 files and long messages are
refused (exit 2) with one short line naming the file, quickly, never an internal error."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from medbench_fast.cli.main import cli
from medbench_fast.config import MAX_MESSAGE_CHARS, ConfigError


def _bomb(depth: int) -> str:
    """``leaderboard.tasks[].tags`` holding ``9 ** depth`` strings through nested anchors."""
    lines = ["leaderboard:", "  tasks:", '    - name: t0', '      tags: &a0 ["lol", "lol", "lol", "lol", "lol", '
             '"lol", "lol", "lol", "lol"]']
    for i in range(1, depth + 1):
        lines += [f"    - name: t{i}", f"      tags: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]"]
    return "\n".join(lines) + "\n"


def _check(tmp_path, text: str | bytes, *, code: int = 2):
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    t0 = time.perf_counter()
    result = CliRunner().invoke(cli, ["config", "check", str(path)], catch_exceptions=False)
    assert time.perf_counter() - t0 < 10
    assert result.exit_code == code, result.output[:2000]
    assert str(path) in result.output and "internal error" not in result.output
    assert len(result.output) < MAX_MESSAGE_CHARS + 200
    return result.output


@pytest.mark.parametrize("depth", [8, 9, 12])
def test_alias_bomb_is_refused_quickly(tmp_path, depth):
    out = _check(tmp_path, _bomb(depth))
    assert "its aliases expand to more than 200000 nodes (an alias bomb?)" in out


def test_recursive_alias_is_refused(tmp_path):
    out = _check(tmp_path, "dataset: &d\n  regions: *d\n")
    assert "an alias refers to a node that holds it (a recursive alias)" in out


def test_many_aliases_below_the_bound_still_load(tmp_path):
    out = _check(tmp_path, "benchmark: &b\n  warmup: 1\nx: *b\n")
    assert "unknown key 'x'" in out


def test_utf16_config_names_the_file(tmp_path):
    out = _check(tmp_path, "dataset:\n  image_dir: data\n".encode("utf-16"))
    assert "not UTF-8 text" in out and "save the config as UTF-8" in out


def test_huge_config_is_refused(tmp_path):
    out = _check(tmp_path, "# " + "x" * (1 << 20) + "\n")
    assert "a config file holds at most" in out


def test_long_values_are_cut_in_messages(tmp_path):
    out = _check(tmp_path, "benchmark:\n  warmup: [" + ", ".join(["1"] * 5000) + "]\n")
    assert "benchmark.warmup: expected int, got [1, 1, 1" in out and "..." in out
    assert len(str(ConfigError("x" * 10_000))) < MAX_MESSAGE_CHARS + 60


@pytest.mark.parametrize("text", ["dataset:\n  image_dir: a\ndataset:\n  image_dir: b\n",
                                  "benchmark:\n  warmup: 1\n  warmup: 2\n"])
def test_a_key_given_twice_is_refused(tmp_path, text):
    """YAML would silently keep the last value; a config that says two things is a mistake."""
    out = _check(tmp_path, text)
    assert "not valid YAML" in out and "found duplicate key" in out and "line " in out


def test_a_merge_key_may_still_override_what_it_merges(tmp_path):
    out = _check(tmp_path, "x: &b\n  warmup: 1\nbenchmark:\n  <<: *b\n  warmup: 2\n")
    assert "unknown key 'x'" in out


def test_an_integer_too_long_to_convert_is_a_config_error(tmp_path):
    out = _check(tmp_path, "dataset:\n  max_cases: 1" + "0" * 5000 + "\n")
    assert "not valid YAML" in out and "integer of 5001 digits" in out and "set_int_max_str_digits" not in out
