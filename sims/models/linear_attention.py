"""Linear-attention in-context regression in the loop (THEORY section 4; claims A2, A4).

One linear self-attention layer at its optimum predicts from a prompt with
``w_hat = gamma (1/N) sum x y`` (sum over the present slots, ``N`` = their
number). As a ``GenerativeModel``:

* ``fit(key, data, weights)``: ``w_hat = gamma sum_j weights_j x_j y_j / sum_j weights_j``;
* ``sample(key, w_hat, m)``: ``m`` inputs ``x ~ N(0, I_d)`` labelled ``y = w_hat.x + tau xi``.

Real data come from ``real_sampler(d, sigma)``: ``x ~ N(0, I_d)``, ``y = w.x + sigma xi``
with the task vector ``w`` as the loop's ``truth``. With the ``reuse`` scheme the
real prompt ``S0`` is reused and ``m`` synthetic examples are relabelled by the
previous predictor every generation: the loop of ``bounds.models.linear_attention``.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bounds import validate
from sims.model import GenerativeModel

__all__ = ["ICLData", "linear_attention", "icl_real_sampler"]


class ICLData(NamedTuple):
    """Labelled examples: ``x`` of shape ``(N, d)``, ``y`` of shape ``(N,)``."""

    x: jax.Array
    y: jax.Array


def _labelled(key, slope, noise_scale, d, count):
    key_x, key_noise = jax.random.split(key)
    x = jax.random.normal(key_x, (count, d), jnp.float64)
    noise = noise_scale * jax.random.normal(key_noise, (count,), jnp.float64)
    return ICLData(x, x @ slope + noise)


@functools.lru_cache(maxsize=None)
def linear_attention(gamma: float, d: int, tau: float = 0.0) -> GenerativeModel:
    """The linear-attention predictor as a generator of its own labels.

    Args:
      gamma: attention scale (the architecture knob), ``>= 0``.
      d: input dimension, integer ``>= 1``.
      tau: synthetic label-noise standard deviation, ``>= 0``.

    Returns:
      ``GenerativeModel`` (cached: same arguments, same object); params are ``w_hat``
      of shape ``(d,)``.

    Raises:
      ValueError / TypeError: a parameter outside its range, named.
    """
    validate.check_nonnegative("gamma", gamma)
    d = validate.check_positive_int("d", d)
    validate.check_nonnegative("tau", tau)
    gamma, tau = float(gamma), float(tau)

    def fit(key, data, weights):
        del key  # deterministic predictor
        return gamma * (weights * data.y) @ data.x / weights.sum()

    def sample(key, w_hat, m):
        return _labelled(key, w_hat, tau, d, m)

    return GenerativeModel(f"linear-attention-g{gamma:g}-d{d}-tau{tau:g}", fit, sample)


@functools.lru_cache(maxsize=None)
def icl_real_sampler(d: int, sigma: float):
    """Real examples ``x ~ N(0, I_d)``, ``y = w.x + sigma xi``: ``(key, w, n) -> ICLData``.

    Args:
      d: input dimension, integer ``>= 1``.
      sigma: real label-noise standard deviation, ``>= 0``.

    Returns:
      ``real_sampler(key, w, n)`` for ``sims.run`` / ``sims.coupled.run_coupled``.
    """
    d = validate.check_positive_int("d", d)
    validate.check_nonnegative("sigma", sigma)
    sigma = float(sigma)

    def real_sampler(key, w, n):
        return _labelled(key, w, sigma, d, n)

    return real_sampler
