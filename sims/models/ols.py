"""Ordinary least squares as a generator of labels (P4-P6).

Data are ``OLSData(x, y)`` rows; the model's params are the coefficient vector
``w``; sampling labels ``y = x w + sigma * noise`` for inputs ``x`` that are the
fixed design (tiled) or a fresh Gaussian design. Fitting is weighted least
squares, shared by both.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bounds import validate
from sims.model import GenerativeModel


class OLSData(NamedTuple):
    x: jax.Array  # (N, d)
    y: jax.Array  # (N,)


# Up to this dimension the normal equations are solved by an unrolled Cholesky factorisation
# in elementwise jnp operations, which XLA fuses across the vmapped replicas; a vmapped
# ``jnp.linalg.solve`` is one small LAPACK call per replica (docs/engine.md §3).
_UNROLLED_MAX_DIM = 8


def _spd_solve(gram, rhs):
    """``gram^{-1} rhs`` for a small symmetric positive definite ``gram`` (unrolled Cholesky)."""
    d = gram.shape[0]
    lower = [[None] * d for _ in range(d)]
    for j in range(d):
        pivot = jnp.sqrt(gram[j, j] - sum(lower[j][k] ** 2 for k in range(j)))
        lower[j][j] = pivot
        for i in range(j + 1, d):
            lower[i][j] = (gram[i, j] - sum(lower[i][k] * lower[j][k] for k in range(j))) / pivot
    z = []
    for i in range(d):
        z.append((rhs[i] - sum(lower[i][k] * z[k] for k in range(i))) / lower[i][i])
    w = [None] * d
    for i in reversed(range(d)):
        w[i] = (z[i] - sum(lower[k][i] * w[k] for k in range(i + 1, d))) / lower[i][i]
    return jnp.stack(w)


def fit_ols(key, data, weights):
    del key
    gram = (data.x * weights[:, None]).T @ data.x
    rhs = data.x.T @ (weights * data.y)
    if gram.shape[0] <= _UNROLLED_MAX_DIM:
        return _spd_solve(gram, rhs)
    return jnp.linalg.solve(gram, rhs)


def ols_fixed_design(design, sigma: float, noise_bias: float = 0.0) -> GenerativeModel:
    """OLS whose labels are always drawn on the same design ``X`` (``T x d``).

    ``sample(key, w, m)`` needs ``m`` a multiple of ``T``: it returns ``X`` tiled
    ``m / T`` times with labels ``X w + noise_bias + sigma * N(0, 1)``.
    ``noise_bias != 0`` breaks P5's assumption (a negative control).
    """
    design = np.asarray(design, dtype=np.float64)
    if design.ndim != 2:
        raise ValueError(f"design must be a T x d matrix, got shape {design.shape}")
    validate.check_ols_rows(design.shape[0], design.shape[1], extra=0)
    validate.check_positive("sigma", sigma)
    validate.check_in_range("noise_bias", noise_bias, -np.inf, np.inf)
    return _fixed_design(design.tobytes(), design.shape, float(sigma), float(noise_bias))


@functools.lru_cache(maxsize=None)
def _fixed_design(design_bytes, shape, sigma, noise_bias) -> GenerativeModel:
    design = jnp.asarray(np.frombuffer(design_bytes, np.float64).reshape(shape))
    rows = shape[0]

    def sample(key, w, m):
        if m % rows:
            raise ValueError(f"m must be a multiple of the design's T={rows} rows, got {m}")
        x = jnp.tile(design, (m // rows, 1))
        return OLSData(x, x @ w + noise_bias + sigma * jax.random.normal(key, (m,), w.dtype))

    return GenerativeModel(f"ols-fixed{shape[0]}x{shape[1]}", fit_ols, sample)


@functools.lru_cache(maxsize=None)
def ols_fresh_design(dim: int, sigma: float) -> GenerativeModel:
    """OLS whose samples draw a fresh design ``x ~ N(0, I_d)`` with labels ``x w + sigma N(0,1)``."""
    dim = validate.check_positive_int("dim", dim)
    validate.check_positive("sigma", sigma)

    def sample(key, w, m):
        key_x, key_y = jax.random.split(key)
        x = jax.random.normal(key_x, (m, dim), w.dtype)
        return OLSData(x, x @ w + sigma * jax.random.normal(key_y, (m,), w.dtype))

    return GenerativeModel(f"ols-fresh{dim}d", fit_ols, sample)
