"""Gaussian kernel density estimation, and the Gaussian mixtures it produces (P8, B3, B4).

A KDE *is* a Gaussian mixture (one component per training point), so one
parameter type serves both the model and the real distribution ``p0``, and one
sampler draws from either: pick a component, add its Gaussian noise.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bounds import validate
from sims.model import GenerativeModel
from sims.sampling import weighted_indices


class Mixture(NamedTuple):
    """``sum_k weight_k N(loc_k, scale_k^2 I)``; ``loc`` is ``(K,)`` in 1-D or ``(K, dim)``."""

    loc: jax.Array
    weight: jax.Array
    scale: jax.Array


def sample_mixture(key, mixture: Mixture, m: int) -> jax.Array:
    """``m`` exact draws from a Gaussian mixture (``(m,)`` or ``(m, dim)``)."""
    key_pick, key_noise = jax.random.split(key)
    pick = weighted_indices(key_pick, mixture.weight, m)
    noise = jax.random.normal(key_noise, (m,) + mixture.loc.shape[1:], mixture.loc.dtype)
    scale = mixture.scale[pick].reshape((m,) + (1,) * (mixture.loc.ndim - 1))
    return mixture.loc[pick] + scale * noise


def gaussian_mixture_sampler(key, truth: Mixture, n: int) -> jax.Array:
    """Real data from a Gaussian-mixture ``p0`` (the ``real_sampler`` for KDE loops)."""
    return sample_mixture(key, truth, n)


def shrinking_exponent(dim: int) -> float:
    """``1/(4+d)``: the rate-optimal bandwidth exponent, ``h = c N^(-1/(4+d))`` (1/5 in 1-D)."""
    return 1.0 / (4.0 + validate.check_positive_int("dim", dim))


@functools.lru_cache(maxsize=None)
def kde(bandwidth: float, rule: str = "fixed", dim: int = 1) -> GenerativeModel:
    """Gaussian KDE on weighted samples (1-D data ``(N,)`` or ``(N, dim)``, isotropic kernel).

    Args:
      bandwidth: ``h > 0`` for ``rule="fixed"``; the constant ``c`` in
        ``h = c * N^(-1/(4+dim))`` for ``rule="shrinking"`` (``N^(-1/5)`` in 1-D),
        with ``N = sum(weights)`` the training-set size of that generation.
      rule: ``"fixed"`` or ``"shrinking"``.
      dim: data dimension; only changes the shrinking exponent.
    """
    validate.check_positive("bandwidth", bandwidth)
    validate.check_choice("rule", rule, ("fixed", "shrinking"))
    exponent = shrinking_exponent(dim)

    def fit(key, data, weights):
        del key
        total = weights.sum()
        h = bandwidth if rule == "fixed" else bandwidth * total ** (-exponent)
        return Mixture(data, weights / total, jnp.full(weights.shape, h, data.dtype))

    suffix = "" if dim == 1 else f"-{dim}d"
    return GenerativeModel(f"kde-{rule}{bandwidth:g}{suffix}", fit, sample_mixture)


def bandwidth_schedule(bandwidth: float, rule: str, sizes, dim: int = 1) -> np.ndarray:
    """Bandwidths ``h_i`` that ``kde(bandwidth, rule, dim)`` uses on training sizes ``N_i``."""
    validate.check_positive("bandwidth", bandwidth)
    validate.check_choice("rule", rule, ("fixed", "shrinking"))
    validate.check_positive("sizes", sizes)
    sizes = np.asarray(sizes, np.float64)
    if rule == "fixed":
        return np.full(sizes.shape, float(bandwidth))
    return bandwidth * sizes ** (-shrinking_exponent(dim))
