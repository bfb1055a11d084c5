"""Gaussian in ``d`` dimensions, refitted by MLE or by the unbiased covariance (P1-P3)."""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bounds import validate
from sims.model import GenerativeModel


class GaussianParams(NamedTuple):
    """``N(mean, cov)``; ``mean`` has shape ``(d,)``, ``cov`` ``(d, d)``."""

    mean: jax.Array
    cov: jax.Array


@functools.lru_cache(maxsize=None)
def gaussian(dim: int = 1, unbiased: bool = False) -> GenerativeModel:
    """A Gaussian fitted to weighted samples of shape ``(N, dim)``.

    Args:
      dim: dimension ``d >= 1``.
      unbiased: divide the scatter by ``sum(w) - 1`` (unbiased, P2/P3) instead
        of ``sum(w)`` (MLE, P1). Weights must be 0/1 for the unbiased form.
    """
    dim = validate.check_positive_int("dim", dim)
    ddof = 1.0 if unbiased else 0.0
    name = f"gaussian{dim}d-{'unbiased' if unbiased else 'mle'}"

    def fit(key, data, weights):
        del key  # deterministic estimator
        # Elementwise products and sums, not matmuls: under vmap a (1 x N)(N x 1) dot
        # becomes a batched GEMM of tiny matrices, several times slower than a fused sum.
        w = weights[:, None]
        total = weights.sum()
        mean = (w * data).sum(axis=0) / total
        centred = data - mean
        cov = (w[:, :, None] * centred[:, :, None] * centred[:, None, :]).sum(axis=0)
        return GaussianParams(mean, cov / (total - ddof))

    def sample(key, params, m):
        if params.mean.shape != (dim,) or params.cov.shape != (dim, dim):  # static shapes
            raise ValueError(f"{name} parameters need mean of shape ({dim},) and cov of shape "
                             f"({dim}, {dim}), got {params.mean.shape} and {params.cov.shape}")
        noise = jax.random.normal(key, (m, dim), params.mean.dtype)
        if dim == 1:  # a square root is much cheaper than a batched Cholesky
            return params.mean + noise * jnp.sqrt(params.cov[0, 0])
        return params.mean + noise @ jnp.linalg.cholesky(params.cov).T

    return GenerativeModel(name, fit, sample)
