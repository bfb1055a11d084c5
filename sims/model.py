"""A generative model in the loop: a pair of pure functions in a NamedTuple.

``fit(key, data, weights) -> params`` and ``sample(key, params, m) -> data``.
``data`` is a pytree whose leaves share a leading sample axis; ``weights`` is a
non-negative vector over that axis. The loop engine uses weights to mask the
unused slots of a fixed-size training buffer (``accumulate`` grows, per-generation
sizes vary), so shapes stay static under ``jit``. Mixing real and synthetic data
is the scheme's business (``sims.schemes``), never the model's.

Models are built by cached factories: the same arguments give the *same* object,
so the engine's compiled loops are reused instead of recompiled.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple


class GenerativeModel(NamedTuple):
    """A generator that can be refitted on its own output.

    Attributes:
      name: human-readable identifier, used in reports.
      fit: ``(key, data, weights) -> params``. Must treat a zero weight as an
        absent sample.
      sample: ``(key, params, m) -> data`` with ``m`` a static Python int.
    """

    name: str
    fit: Callable[[Any, Any, Any], Any]
    sample: Callable[[Any, Any, int], Any]
