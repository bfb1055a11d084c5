"""Verification harness: claims, statistics, reports and figures.

The only package that joins ``bounds`` (closed forms) and ``sims`` (Monte Carlo).

Importing a package of this project never changes JAX's global settings. The claims'
tolerances are calibrated in float64: call ``verify.enable_float64()`` once, before
creating arrays (the CLI and the tests do). Everything else here is imported lazily
(``verify.evaluate`` loads ``verify.claim`` on first use), so ``import verify`` is cheap.
"""
from __future__ import annotations

import importlib
import os

__all__ = ["enable_float64", "Claim", "Measured", "Measurement", "Theory", "REGISTRY",
           "register", "evaluate", "measured", "claim_key", "control", "parts", "load_claims"]

# Public name -> the module that defines it (imported on first access).
_LAZY = {"Claim": "verify.claim", "Measured": "verify.claim", "Measurement": "verify.claim",
         "Theory": "verify.claim", "REGISTRY": "verify.claim", "register": "verify.claim",
         "evaluate": "verify.claim", "measured": "verify.claim", "claim_key": "verify.claim",
         "control": "verify.claim", "parts": "verify.claim", "load_claims": "verify.plugins"}
_RENAMED = {"load_claims": "load_all"}


# XLA:CPU's multi-threaded Eigen pool has been reported to wedge on vmapped programs; the
# suite's own hang was two batched eigh kernels waiting on the pool (fixed in
# sims.models.diffusion, docs/engine.md §4). Single-threaded Eigen kernels cost little here:
# the suite's parallelism is across worker processes (--jobs) and test workers.
# An empty YNNPACK fusion list sends dots to XLA's own kernels: the suite's dots are small
# (A4's network is 16 wide), and the library call per dot cost A4's quick loop 40% of its
# running time, and every load of a cached executable its YNN set-up (docs/engine.md §6).
CPU_RUNTIME_FLAGS = "--xla_cpu_multi_thread_eigen=false --xla_cpu_experimental_ynn_fusion_type="


def configure_cpu_runtime() -> None:
    """Add ``CPU_RUNTIME_FLAGS`` to ``XLA_FLAGS`` for this process and the workers it starts.

    It takes effect only before JAX creates its CPU backend (the CLI and the tests call it
    first thing). A flag that ``XLA_FLAGS`` already sets, to any value, is kept as it is.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    missing = [flag for flag in CPU_RUNTIME_FLAGS.split() if flag.split("=")[0] not in flags]
    if missing:
        os.environ["XLA_FLAGS"] = " ".join([flags, *missing]).strip()


def enable_float64() -> None:
    """Switch JAX to 64-bit floats and integers for this process (``jax_enable_x64``).

    Call it once, before any array is created: arrays made earlier stay 32-bit. The
    closed forms of ``bounds`` and the loops of ``sims`` run in either precision, but
    the exact identities checked by ``verify`` (and its tolerances) assume float64.
    ``python -m verify.all`` / ``stl-verify`` and the test suite call it for you.
    """
    import jax

    jax.config.update("jax_enable_x64", True)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
        globals()[name] = value  # next access is a plain attribute
        return value
    raise AttributeError(f"module 'verify' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
