"""One linear self-attention layer doing in-context linear regression (claims A2, A4).

The layer at its known optimum predicts ``y_q = gamma * (1/N) sum_j y_j x_j . x_q``
(THEORY.md section 4, "Linear-attention in-context regression"). Prompts: ``x, w ~ N(0, I_d)``,
``y = w.x + sigma xi``.
"""
from __future__ import annotations

import jax.numpy as jnp

from bounds import validate


def icl_risk(gamma, N, d, sigma):
    """``E (y_q - gamma s.x_q)^2 = d [gamma^2 (N + d + 1 + sigma^2)/N - 2 gamma + 1] + sigma^2``.

    Kind: exact (claims A2, A4). With ``s = (1/N) sum_j x_j y_j``: ``E s = w`` and
    ``E s s^T = w w^T + (||w||^2 + sigma^2) I / N + w w^T / N`` given ``w``; averaging over
    ``w ~ N(0, I_d)`` gives the form above (THEORY.md section 4).

    Args:
      gamma: the layer's scale (any real array).
      N: context length, ``>= 1``.
      d: dimension, ``>= 1``.
      sigma: label noise standard deviation, ``>= 0``.
    """
    validate.check_positive("N", N)
    validate.check_positive("d", d)
    validate.check_nonnegative("sigma", sigma)
    gamma = jnp.asarray(gamma, jnp.float64)
    return d * (gamma ** 2 * (N + d + 1 + sigma ** 2) / N - 2 * gamma + 1) + sigma ** 2


def gamma_star(N, d, sigma):
    """``gamma* = N / (N + d + 1 + sigma^2)``, the minimiser of ``icl_risk`` (exact; A2, A4)."""
    validate.check_positive("N", N)
    validate.check_positive("d", d)
    validate.check_nonnegative("sigma", sigma)
    return jnp.asarray(N, jnp.float64) / (N + d + 1 + jnp.asarray(sigma, jnp.float64) ** 2)
