"""Compile once, ever: where the persistent cache lives, how it is turned off, and that it works."""
import json
import os
import subprocess
import sys

from verify import cache

from conftest import ROOT


def test_the_cache_directory_is_per_user_and_moved_or_disabled_by_the_environment(monkeypatch,
                                                                                  tmp_path):
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "stl-verify" / "jax"
    monkeypatch.setenv(cache.ENV_VAR, "")  # empty: unset, not the current directory
    assert cache.cache_dir() == tmp_path / "stl-verify" / "jax"
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "elsewhere"))
    assert cache.cache_dir() == tmp_path / "elsewhere"
    for off in ("0", "off", "OFF", "false"):
        monkeypatch.setenv(cache.ENV_VAR, off)
        assert cache.cache_dir() is None and cache.enable_compilation_cache() is None


def _toy_run(out, cache_dir, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), cache.ENV_VAR: str(cache_dir)}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "toy_sweep.py"), "--quick",
                             "--only", "TOY-sweep", "--out", str(out), "--no-figures", "--fresh",
                             *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "report.json").read_text())["run"]["compilation"]


def test_a_second_process_loads_every_executable_from_the_cache(tmp_path):
    first = _toy_run(tmp_path / "a", tmp_path / "cache")
    assert first["compiled"] > 0 and first["compiled_loops"] == 1
    second = _toy_run(tmp_path / "b", tmp_path / "cache")
    assert second["compiled"] == 0 and second["loaded_from_cache"] == first["executables"]
    off = _toy_run(tmp_path / "c", tmp_path / "cache", "--no-compile-cache")
    assert off["loaded_from_cache"] == 0 and off["compiled"] == first["compiled"]
