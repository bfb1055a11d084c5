"""Categorical on ``K`` symbols: the (optionally add-``alpha`` smoothed) empirical law (P7)."""
from __future__ import annotations

import functools

import jax.numpy as jnp

from bounds import validate
from sims.model import GenerativeModel
from sims.sampling import weighted_indices


@functools.lru_cache(maxsize=None)
def categorical(num_symbols: int, smoothing: float = 0.0) -> GenerativeModel:
    """Empirical distribution of integer samples in ``[0, num_symbols)``.

    Params are the probability vector ``(K,)``; data are int32 symbols ``(N,)``.

    Args:
      num_symbols: ``K >= 2``.
      smoothing: add-``alpha`` pseudo-count per symbol, ``>= 0``.
    """
    num_symbols = validate.check_positive_int("num_symbols", num_symbols)
    if num_symbols < 2:
        raise ValueError(f"num_symbols must be >= 2, got {num_symbols}")
    validate.check_nonnegative("smoothing", smoothing)

    def fit(key, data, weights):
        del key
        counts = jnp.zeros(num_symbols, weights.dtype).at[data].add(weights)
        return (counts + smoothing) / (weights.sum() + num_symbols * smoothing)

    def sample(key, probs, m):
        if probs.shape != (num_symbols,):  # static shape
            raise ValueError(f"categorical{num_symbols} probabilities need shape ({num_symbols},),"
                             f" got {probs.shape}")
        # Inverse-CDF sampling: one uniform per draw, not K Gumbels.
        return weighted_indices(key, probs, m).astype(jnp.int32)

    return GenerativeModel(f"categorical{num_symbols}", fit, sample)
