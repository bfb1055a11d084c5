"""Closed-form predictions and bounds for self-consuming training loops.

Pure JAX functions; never imports ``sims``. Every function names its claim ID
(docs/claims.md), its kind (exact / upper / lower / rate), and where its proof is.

The public API is the submodules: ``bounds.peers`` (P1-P8), ``bounds.tv`` (paper B's
total-variation recursions), ``bounds.stability`` (paper A's generic R2/R3), ``bounds.kde``
(kernel density loops) and ``bounds.models`` (per-model constants, mirroring ``sims.models``:
mean_estimation, categorical, ridge, linear_attention, diffusion). They are imported on first
access. Functions compute in JAX's current precision; the exact identities are checked in
float64, which is the caller's choice: ``verify.enable_float64()`` (importing ``bounds``
never changes JAX's settings).
"""
import importlib

__all__ = ["kde", "models", "peers", "stability", "tv", "validate"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"bounds.{name}")  # also sets bounds.<name>
    raise AttributeError(f"module 'bounds' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
