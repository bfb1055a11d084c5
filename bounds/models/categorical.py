"""The empirical categorical law in the loop: per-model constants and exact forms (paper A).

Mirrors ``sims/models/categorical.py``. Claims A1, A2-gamma, A3-categorical, A5 (the peers'
P7 formula lives in ``bounds.peers``). Proofs: ``docs/paper_a.md`` section 6.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from bounds import validate
from bounds.stability import (GapBound, expected_gap_bound, real_proportion,
                              recursive_stability_sup)
from bounds.validate import check_nonnegative, check_positive_int

__all__ = [
    "categorical_replace_one_tv",
    "categorical_recursive_stability_sup",
    "categorical_loop_mse",
    "categorical_gap_bound",
]


# --------------------------------------------------------------------------- #
# Categorical (THEORY section 4).
# --------------------------------------------------------------------------- #
def categorical_replace_one_tv(N: ArrayLike, num_symbols: ArrayLike,
                               alpha: ArrayLike = 0.0) -> jax.Array:
    """TV moved by replacing one of ``N`` points in the add-alpha empirical law.

    Claim A1/A2, categorical. Kind: exact (for a replacement by a different
    symbol; ``0`` otherwise): ``1 / (N + K alpha)``. So ``eps_N <= c/N`` with
    ``c = N / (N + K alpha) <= 1``. Proof: docs/paper_a.md section 6.

    Args:
      N: points in the fitted set, integer ``>= 1``.
      num_symbols: ``K``, integer ``>= 1``.
      alpha: additive smoothing ``>= 0``.

    Returns:
      float64 array.
    """
    validate.check_integer_at_least("N", N, 1)
    validate.check_integer_at_least("num_symbols", num_symbols, 1)
    check_nonnegative("alpha", alpha)
    return 1.0 / (jnp.asarray(N, jnp.float64)
                  + jnp.asarray(num_symbols, jnp.float64) * jnp.asarray(alpha, jnp.float64))


def categorical_recursive_stability_sup(n: ArrayLike, m: ArrayLike, num_symbols: ArrayLike,
                                        alpha: ArrayLike = 0.0) -> jax.Array:
    """Uniform-in-i R2 bound for the categorical loop: ``gamma_i <= 1/(n + K alpha)``.

    Claim A2/A3, categorical. Kind: upper. With ``eps_N = 1/(N + K alpha)`` and
    base ``gamma_0 = 1/(n + K alpha)`` (``G_0`` on the ``n`` real points), the
    base case is the recursion's fixed point, so the bound is constant in i;
    at ``alpha = 0`` it is ``1/n = 1/(lam N)``. Proof: docs/paper_a.md section 6.

    Args:
      n: real samples, integer ``>= 1``.
      m: synthetic samples, integer ``>= 0``.
      num_symbols: ``K``, integer ``>= 1``.
      alpha: additive smoothing ``>= 0``.

    Returns:
      float64 array.
    """
    validate.check_integer_at_least("n", n, 1)
    validate.check_integer_at_least("m", m, 0)
    eps_N = categorical_replace_one_tv(jnp.asarray(n) + jnp.asarray(m), num_symbols, alpha)
    gamma_0 = categorical_replace_one_tv(n, num_symbols, alpha)
    return recursive_stability_sup(eps_N, m, gamma_0)



def categorical_loop_mse(probs: ArrayLike, n: int, m: int, generation: ArrayLike,
                         lam: ArrayLike | None = None) -> jax.Array:
    """Per-symbol ``E (p_hat_i(k) - p0(k))^2`` of the empirical categorical loop.

    Claim A1/A3/A5, categorical (``alpha = 0``). Kind: exact. With
    ``q = p0 (1 - p0)``, ``rho = (1-lam)^2 (1 - 1/m)`` and
    ``beta = (1 - (1-lam)^2) q/n + (1-lam)^2 q/m``:
    ``v_i = rho^i q/n + beta (1 - rho^i)/(1 - rho)`` (``v_0 = q/n``).
    ``p_hat_0`` is the empirical law of the ``n`` real points; for ``i >= 1``
    ``p_hat_i = lam p_hat(S0) + (1-lam) p_hat(Z_i)``, ``Z_i`` = ``m`` draws from
    ``p_hat_{i-1}`` (``lam = n/N`` is the ``reuse`` loop; ``lam = 0`` the fully
    synthetic one, whose limit is ``q``: collapse to a point mass).
    Proof: docs/paper_a.md section 6.1.

    Args:
      probs: ``p0``, shape ``(K,)``, a probability vector.
      n: real samples, integer ``>= 1``.
      m: synthetic samples per generation, integer ``>= 1`` (``>= 0`` if ``lam = 1``).
      generation: ``i >= 0`` (int or integer array).
      lam: optional weight in ``[0, 1]`` (default ``n / (n + m)``).

    Returns:
      float64 array of shape ``generation.shape + (K,)``.
    """
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 1 or np.any(probs < 0) or abs(probs.sum() - 1.0) > 1e-9:
        raise ValueError(f"probs must be a probability vector, got {probs!r}")
    n = check_positive_int("n", n)
    m = validate.check_nonnegative_int("m", m)
    validate.check_integer_at_least("generation", generation, 0)
    lam = real_proportion(n, m, lam)
    if m == 0 and lam != 1.0:
        raise ValueError(f"m must be >= 1 when lam < 1, got m=0, lam={lam}")
    q = jnp.asarray(probs * (1.0 - probs))
    i = jnp.asarray(generation, jnp.float64)[..., None]
    keep = (1.0 - lam) ** 2
    rho = keep * (1.0 - 1.0 / m) if m > 0 else 0.0
    beta = (1.0 - keep) * q / n + (keep * q / m if m > 0 else 0.0)
    powered = rho ** i
    return powered * q / n + beta * (1.0 - powered) / (1.0 - rho)


def _categorical_expected_tv_bound(probs: Any, n: int, m: int, generation: Any,
                                  lam: Any = None) -> jax.Array:
    """``E TV(p0, p_hat_i) <= min(1, (1/2) sum_k sqrt(v_i(k)))``.

    Claim A1 (distribution-shift term), categorical. Kind: upper (Jensen per
    symbol on the exact ``categorical_loop_mse``). Proof: docs/paper_a.md section 6.2.

    Args:
      probs, n, m, generation, lam: as ``categorical_loop_mse``.

    Returns:
      float64 array of shape ``generation.shape``.
    """
    mse = categorical_loop_mse(probs, n, m, generation, lam)
    return jnp.minimum(1.0, 0.5 * jnp.sqrt(mse).sum(axis=-1))


def categorical_gap_bound(probs: ArrayLike, n: int, m: int, generation: ArrayLike) -> GapBound:
    """R3 for the empirical categorical loop under the loss ``l(p, x) = 1 - p(x)``.

    Claim A1/A5, result R3. Kind: upper, generation ``i >= 1`` of the ``reuse``
    loop (``alpha = 0``, ``lam = n/N``). Constants: loss in ``[0, 1]`` (``M = 1``);
    replace-one learner stability ``beta_N = 1/N`` (one point moves ``p_hat(x)``
    by at most ``1/N``); ``gamma_{i-1} <= 1/n`` (R2, section 6); and
    ``E TV(p0, G_{i-1})`` from ``_categorical_expected_tv_bound``.
    Proof: docs/paper_a.md section 6.3.

    Args:
      probs: ``p0``, shape ``(K,)``.
      n: real samples, integer ``>= 1``.
      m: synthetic samples, integer ``>= 0``.
      generation: ``i >= 1`` (int or integer array).

    Returns:
      ``GapBound`` broadcast over ``generation``.
    """
    n = check_positive_int("n", n)
    m = validate.check_nonnegative_int("m", m)
    validate.check_integer_at_least("generation", generation, 1)
    num_symbols = len(np.asarray(probs))
    N = n + m
    lam = n / N
    gamma_prev = categorical_recursive_stability_sup(n, m, num_symbols)
    previous = np.asarray(generation) - 1
    tv_prev = _categorical_expected_tv_bound(probs, n, m, previous) if m > 0 else 0.0 * previous
    return expected_gap_bound(1.0 / N, m, gamma_prev, lam, 1.0, tv_prev)
