"""Linear-attention in-context regression in the loop (THEORY section 4; claims A2, A4).

One linear self-attention layer at its optimum predicts from a prompt with
``w_hat = gamma (1/N) sum x y`` (sum over the present slots, ``N`` = their
number). As a ``GenerativeModel``:

* ``fit(key, data, weights)``: ``w_hat = gamma sum_j weights_j x_j y_j / sum_j weights_j``;
* ``sample(key, params, m)``: ``m`` inputs ``x ~ N(0, I_d)`` labelled ``y = w_hat.x + tau xi``.

Real data come from ``real_sampler(d, sigma)``: ``x ~ N(0, I_d)``, ``y = w.x + sigma xi``
with the loop's ``truth`` an ``ICLTask(w, gamma)``. With the ``reuse`` scheme the
real prompt ``S0`` is reused and ``m`` synthetic examples are relabelled by the
previous predictor every generation: the loop of ``bounds.models.linear_attention``.

**gamma is traced data, not a compile-time constant.** The engine compiles one loop
per model object and traces only ``truth`` and the sizes, so the architecture's
``gamma`` enters through the truth (``ICLTask.gamma``) and travels with every example
(``ICLData.gamma``, written by the real and the synthetic sampler) and with the
parameters (``LinearAttention.gamma``). A grid over ``gamma`` at fixed ``(n, m, d)`` then
runs one compiled loop.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from bounds import validate
from sims.model import GenerativeModel

__all__ = ["ICLData", "ICLTask", "LinearAttention", "icl_task", "linear_attention",
           "icl_real_sampler"]


class ICLData(NamedTuple):
    """Labelled examples: ``x`` ``(N, d)``, ``y`` ``(N,)``, and the attention scale
    ``gamma`` ``(N,)`` every example is read with (one value per loop)."""

    x: jax.Array
    y: jax.Array
    gamma: jax.Array


class ICLTask(NamedTuple):
    """The loop's traced inputs: the task vector ``w`` ``(d,)`` and ``gamma`` (scalar)."""

    w: jax.Array
    gamma: jax.Array


class LinearAttention(NamedTuple):
    """The fitted predictor: ``w_hat`` ``(d,)`` and the ``gamma`` it was fitted with."""

    w_hat: jax.Array
    gamma: jax.Array


def icl_task(w, gamma: float) -> ICLTask:
    """A validated ``ICLTask`` (float64): ``gamma >= 0`` and ``w`` a vector."""
    validate.check_nonnegative("gamma", gamma)
    w = jnp.asarray(w, jnp.float64)
    if w.ndim != 1:
        raise ValueError(f"w must be a vector, got shape {w.shape}")
    return ICLTask(w, jnp.asarray(gamma, jnp.float64))


def _labelled(key, slope, gamma, noise_scale, d, count):
    key_x, key_noise = jax.random.split(key)
    x = jax.random.normal(key_x, (count, d), jnp.float64)
    noise = noise_scale * jax.random.normal(key_noise, (count,), jnp.float64)
    return ICLData(x, x @ slope + noise, jnp.full((count,), gamma, jnp.float64))


@functools.lru_cache(maxsize=None)
def linear_attention(d: int, tau: float = 0.0) -> GenerativeModel:
    """The linear-attention predictor as a generator of its own labels (``gamma`` traced).

    Args:
      d: input dimension, integer ``>= 1``.
      tau: synthetic label-noise standard deviation, ``>= 0``.

    Returns:
      ``GenerativeModel`` (cached: same arguments, same object); params are
      ``LinearAttention(w_hat, gamma)``; ``gamma`` comes from the data (``icl_task``).

    Raises:
      ValueError / TypeError: a parameter outside its range, named.
    """
    d = validate.check_positive_int("d", d)
    validate.check_nonnegative("tau", tau)
    tau = float(tau)

    def fit(key, data, weights):
        del key  # deterministic predictor
        # Every present example carries the loop's gamma; empty slots hold 0 and gamma >= 0.
        gamma = jnp.max(jnp.where(weights > 0, data.gamma, 0.0))
        return LinearAttention(gamma * (weights * data.y) @ data.x / weights.sum(), gamma)

    def sample(key, params, m):
        return _labelled(key, params.w_hat, params.gamma, tau, d, m)

    return GenerativeModel(f"linear-attention-d{d}-tau{tau:g}", fit, sample)


@functools.lru_cache(maxsize=None)
def icl_real_sampler(d: int, sigma: float):
    """Real examples ``x ~ N(0, I_d)``, ``y = w.x + sigma xi``: ``(key, task, n) -> ICLData``.

    Args:
      d: input dimension, integer ``>= 1``.
      sigma: real label-noise standard deviation, ``>= 0``.

    Returns:
      ``real_sampler(key, task, n)`` for ``sims.run`` / ``sims.coupled.run_coupled``, with
      ``task`` an ``ICLTask`` (its ``gamma`` is written into every example).
    """
    d = validate.check_positive_int("d", d)
    validate.check_nonnegative("sigma", sigma)
    sigma = float(sigma)

    def real_sampler(key, task, n):
        return _labelled(key, task.w, task.gamma, sigma, d, n)

    return real_sampler
