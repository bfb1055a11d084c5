"""Compile once, ever: JAX's persistent compilation cache, and counts of what compiled.

The CLI, the tests and the benchmark call ``enable_compilation_cache()`` before
anything compiles, so a loop compiled by one run is loaded from disk by the next.
The cache lives in ``$XDG_CACHE_HOME/stl-verify/jax`` (default
``~/.cache/stl-verify/jax``); ``STL_VERIFY_CACHE_DIR`` moves it, and a value of
``0``, ``off``, ``false`` or ``no`` turns it off.

``compile_stats()`` counts the executables this process needed, how many were
compiled and how many loaded from the cache, and the seconds spent on them, from
``jax.monitoring`` events.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

__all__ = ["ENV_VAR", "cache_dir", "enable_compilation_cache", "compile_stats"]

ENV_VAR = "STL_VERIFY_CACHE_DIR"
_OFF = ("0", "off", "false", "no", "none")
# Durations reported by jax.monitoring. The backend-compile event spans a compilation
# *or* a persistent-cache load, so its total is the time the run waited for executables.
_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"
_STATS = {"executables": 0, "loaded_from_cache": 0, "compile_seconds": 0.0}


def cache_dir() -> Path | None:
    """Where the persistent cache lives, or ``None`` when ``STL_VERIFY_CACHE_DIR`` turns it off."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value:  # empty counts as unset, never as the current directory
        return None if value.lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stl-verify" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on the persistent cache (at ``path``, default ``cache_dir()``); return its path.

    Every executable is cached, however small or fast to compile: the suite's loops are
    many small programs. An unusable directory only costs the cache (a warning), never
    the run. Call it before the first computation; it resets JAX's cache state so that
    a later call still takes effect.
    """
    path = Path(path).expanduser() if path is not None else cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as err:
        warnings.warn(f"persistent compilation cache disabled: {err}", RuntimeWarning,
                      stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no size limit
    compilation_cache.reset_cache()  # JAX decides once per process whether a cache is used
    return path


def compile_stats() -> dict:
    """Executables needed so far: ``compiled``, ``loaded_from_cache``, and ``compile_seconds``."""
    return {"executables": _STATS["executables"],
            "compiled": _STATS["executables"] - _STATS["loaded_from_cache"],
            "loaded_from_cache": _STATS["loaded_from_cache"],
            "compile_seconds": round(_STATS["compile_seconds"], 3)}


def _on_duration(event: str, seconds: float, **_) -> None:
    if event == _BACKEND_COMPILE:
        _STATS["executables"] += 1
        _STATS["compile_seconds"] += seconds


def _on_event(event: str, **_) -> None:
    if event == _CACHE_HIT:
        _STATS["loaded_from_cache"] += 1


jax.monitoring.register_event_duration_secs_listener(_on_duration)
jax.monitoring.register_event_listener(_on_event)
