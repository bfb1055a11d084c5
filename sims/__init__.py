"""Monte Carlo self-consuming training loops.

Generations run in ``lax.scan``, replicas in ``vmap``, chunks of replicas in a
compiled function reused across chunks, and the replica axis is sharded over
all visible devices. ``sims`` never imports ``verify``.
"""
import jax

# Identities are checked in float64; float32 only where a benchmark says so.
jax.config.update("jax_enable_x64", True)

from sims.model import GenerativeModel  # noqa: E402
from sims.schemes import LoopPlan, make_plan, SCHEMES  # noqa: E402
from sims.loop import run, Generation, Moments, NonFiniteError  # noqa: E402

__all__ = ["GenerativeModel", "LoopPlan", "make_plan", "SCHEMES", "run", "Generation",
           "Moments", "NonFiniteError"]
