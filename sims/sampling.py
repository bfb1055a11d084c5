"""Shared sampling primitives for models."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def weighted_indices(key: jax.Array, weights: jax.Array, m: int) -> jax.Array:
    """``m`` i.i.d. indices with ``P(j) ∝ weights[j]`` (inverse CDF; zero weights never drawn).

    ``jax.random.choice(p=...)`` searches the CDF with a sequential scan, which under
    ``vmap`` costs one loop iteration per bisection step for every replica; comparing
    each uniform with the whole CDF is branch-free and vectorises (``O(m N)`` work,
    cheap for the buffer sizes used here). Larger problems sort instead.
    """
    cdf = jnp.cumsum(weights)
    u = jax.random.uniform(key, (m,), cdf.dtype) * cdf[-1]
    method = "compare_all" if m * weights.shape[0] <= 1 << 16 else "sort"
    # side="right": u in [cdf[j-1], cdf[j]) -> j, so a zero-weight slot has an empty interval.
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right", method=method),
                       weights.shape[0] - 1)
