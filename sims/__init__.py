"""Monte Carlo self-consuming training loops.

Generations run in ``lax.scan``, replicas in ``vmap``, chunks of replicas in a
compiled function reused across chunks, and the replica axis is sharded over
all visible devices. ``sims`` never imports ``verify``.

Loops run in JAX's current precision. Importing ``sims`` never changes JAX's settings:
the exact identities are checked in float64, switched on by ``verify.enable_float64()``
(the CLI and the tests call it) before any array is created.
"""
from sims.model import GenerativeModel
from sims.schemes import LoopPlan, make_plan, SCHEMES
from sims.loop import run, diverged, Generation, Moments, NonFiniteError

import importlib

__all__ = ["GenerativeModel", "LoopPlan", "make_plan", "SCHEMES", "run", "diverged", "Generation",
           "Moments", "NonFiniteError", "coupled", "gap_metrics", "metrics", "models", "sampling",
           "sweeps"]
_SUBMODULES = ("coupled", "gap_metrics", "metrics", "models", "sampling", "sweeps")


def __getattr__(name: str):
    if name in _SUBMODULES:  # imported on first access: ``sims.models.gaussian(1)``
        return importlib.import_module(f"sims.{name}")
    raise AttributeError(f"module 'sims' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
