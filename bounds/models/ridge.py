"""Clipped ridge regression in the loop: per-model constants and bounds (paper A).

Mirrors ``sims/models/ridge.py``. Claims A1, A2-gamma, A3-ridge, A5. Proofs:
``docs/paper_a.md`` section 7.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from bounds import validate
from bounds.stability import (GapBound, expected_gap_bound, real_proportion,
                              recursive_stability_closed_form)
from bounds.validate import (check_nonnegative, check_positive, check_positive_int,
                             check_support_bound)

__all__ = [
    "ridge_weight_norm_bound",
    "ridge_loss_bound",
    "ridge_prediction_lipschitz",
    "ridge_uniform_stability",
    "ridge_generator_constant",
    "ridge_gap_bound",
    "ridge_weight_l2_bound",
    "ridge_error_plateau_bound",
]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------- #
# Ridge regression (THEORY section 4).
# Objective: F_S(w) = (1/N) sum_k (y_k - <w, x_k>)^2 + rho ||w||^2,
# ||x|| <= kappa (feature_bound), |y| <= B (label_bound).
# --------------------------------------------------------------------------- #
def _check_ridge(feature_bound, label_bound, rho):
    check_support_bound("feature_bound", feature_bound, "features must satisfy ||x|| <= feature_bound")
    check_support_bound("label_bound", label_bound, "labels must be clipped to [-label_bound, label_bound]")
    check_positive("rho", rho)


def _ridge_max_residual(feature_bound, label_bound, rho):
    """``B (1 + kappa/sqrt(rho))``: the largest ``|y - <w_S, x>|`` (docs/paper_a.md section 7.1).

    Both the loss range (its square) and the loss's Lipschitz constant (twice it) derive from it.
    """
    _check_ridge(feature_bound, label_bound, rho)
    kappa, B, rho = (jnp.asarray(v, jnp.float64) for v in (feature_bound, label_bound, rho))
    return B * (1.0 + kappa / jnp.sqrt(rho))


def ridge_weight_norm_bound(label_bound: ArrayLike, rho: ArrayLike) -> jax.Array:
    """``||w_S|| <= B / sqrt(rho)`` for the ridge minimiser.

    Claim A1, ridge. Kind: upper. From ``F_S(w_S) <= F_S(0) <= B^2``.
    Proof: docs/paper_a.md section 7.1.

    Args:
      label_bound: ``B``, finite ``> 0`` (labels clipped to ``[-B, B]``).
      rho: penalty ``> 0``.

    Returns:
      float64 array.
    """
    check_support_bound("label_bound", label_bound, "labels must be clipped to [-label_bound, label_bound]")
    check_positive("rho", rho)
    return jnp.asarray(label_bound, jnp.float64) / jnp.sqrt(jnp.asarray(rho, jnp.float64))


def ridge_loss_bound(feature_bound: ArrayLike, label_bound: ArrayLike, rho: ArrayLike) -> jax.Array:
    """Loss range ``M = B^2 (1 + kappa/sqrt(rho))^2`` of ridge under squared loss.

    Claim A1, ridge. Kind: upper (``0 <= (y - <w_S, x>)^2 <= M`` for every
    minimiser ``w_S`` and every ``(x, y)`` in the domain). Agrees with THEORY.
    Proof: docs/paper_a.md section 7.1.

    Args:
      feature_bound: ``kappa``, finite ``> 0``.
      label_bound: ``B``, finite ``> 0``.
      rho: penalty ``> 0``.

    Returns:
      float64 array.
    """
    return _ridge_max_residual(feature_bound, label_bound, rho) ** 2


def ridge_prediction_lipschitz(feature_bound: ArrayLike, label_bound: ArrayLike,
                               rho: ArrayLike) -> jax.Array:
    """``sigma = 2 B (1 + kappa/sqrt(rho))``: ``|l(a, y) - l(a', y)| <= sigma |a - a'|``.

    Claim A1, ridge. Kind: upper (sigma-admissibility of the squared loss on
    predictions ``|a| <= kappa B / sqrt(rho)``). Proof: docs/paper_a.md section 7.2.

    Args:
      feature_bound: ``kappa``, finite ``> 0``.
      label_bound: ``B``, finite ``> 0``.
      rho: penalty ``> 0``.

    Returns:
      float64 array.
    """
    return 2.0 * _ridge_max_residual(feature_bound, label_bound, rho)


def ridge_uniform_stability(feature_bound: ArrayLike, label_bound: ArrayLike, rho: ArrayLike,
                            N: ArrayLike) -> jax.Array:
    """Replace-one uniform stability ``beta_N = 4 kappa^2 B^2 (1 + kappa/sqrt(rho))^2 / (rho N)``.

    Claim A1, ridge. Kind: upper. Derived here (docs/paper_a.md section 7.2)
    as ``sigma^2 kappa^2 / (rho N)``. THEORY quotes ``2 kappa^2 B^2 (...)^2 /
    (rho N)``, which is Bousquet & Elisseeff's constant for *removing* one point;
    replacing one point costs the factor 2 encoded here (section 7.3).

    Args:
      feature_bound: ``kappa``, finite ``> 0`` (``||x|| <= kappa``).
      label_bound: ``B``, finite ``> 0`` (labels clipped to ``[-B, B]``).
      rho: penalty ``> 0``.
      N: training-set size, integer ``>= 1`` (array ok).

    Returns:
      float64 array.
    """
    _check_ridge(feature_bound, label_bound, rho)
    validate.check_integer_at_least("N", N, 1)
    sigma = ridge_prediction_lipschitz(feature_bound, label_bound, rho)
    kappa = jnp.asarray(feature_bound, jnp.float64)
    return sigma ** 2 * kappa ** 2 / (jnp.asarray(rho, jnp.float64) * jnp.asarray(N, jnp.float64))


def ridge_generator_constant(feature_bound: ArrayLike, label_bound: ArrayLike, rho: ArrayLike,
                             noise_scale: ArrayLike) -> jax.Array:
    """``c`` with ``eps_N <= c/N`` for the generator ``y | x ~ N(<w_S, x>, tau^2)``.

    Claim A2 (``c`` depends on the penalty ``rho``: the architecture knob),
    result R2 input. Kind: upper:
    ``c = sigma kappa^2 / (rho tau sqrt(2 pi))``, ``sigma = 2B(1 + kappa/sqrt(rho))``.
    Assumptions: the generator draws ``x`` from a fixed law on ``||x|| <= kappa``
    that does not depend on S, and may clip labels to ``[-B, B]`` (clipping
    never increases TV). Proof: docs/paper_a.md section 7.4.

    Args:
      feature_bound: ``kappa``, finite ``> 0``.
      label_bound: ``B``, finite ``> 0``.
      rho: penalty ``> 0``.
      noise_scale: ``tau > 0``.

    Returns:
      float64 array.
    """
    _check_ridge(feature_bound, label_bound, rho)
    check_positive("noise_scale", noise_scale)
    sigma = ridge_prediction_lipschitz(feature_bound, label_bound, rho)
    kappa, rho, tau = (jnp.asarray(v, jnp.float64) for v in (feature_bound, rho, noise_scale))
    return sigma * kappa ** 2 / (rho * tau * _SQRT_2PI)



def ridge_gap_bound(feature_bound: ArrayLike, label_bound: ArrayLike, rho: ArrayLike,
                    noise_scale: ArrayLike,
                    n: int, m: int, generation: ArrayLike, tv_prev: ArrayLike) -> GapBound:
    """R3 for ridge regression trained in its own loop (``reuse``), generation ``i >= 1``.

    Claim A1, result R3. Kind: upper, given ``tv_prev >= E TV(p0, G_{i-1})``.
    Constants: ``beta_N`` from ``ridge_uniform_stability`` on ``N`` points,
    ``M`` from ``ridge_loss_bound``, and ``gamma_{i-1} <= min(1, R2)`` with
    ``eps_N = c/N`` (``ridge_generator_constant``) and base case
    ``gamma_0 <= c/n`` (``G_0`` fit on ``n`` points). Needs clipped labels
    (finite ``label_bound``) and ``p0`` inside the generator family's domain.
    Proof: docs/paper_a.md section 7.5.

    Args:
      feature_bound: ``kappa``, finite ``> 0``.
      label_bound: ``B``, finite ``> 0``: labels clipped to ``[-B, B]``.
      rho: penalty ``> 0``.
      noise_scale: generator label noise ``tau > 0``.
      n: real samples, integer ``>= 1``.
      m: synthetic samples, integer ``>= 0``.
      generation: ``i >= 1`` (int or integer array).
      tv_prev: ``E TV(p0, G_{i-1})`` or an upper bound, in ``[0, 1]``, broadcast
        against ``generation``.

    Returns:
      ``GapBound``.
    """
    c = ridge_generator_constant(feature_bound, label_bound, rho, noise_scale)
    n = check_positive_int("n", n)
    m = validate.check_nonnegative_int("m", m)
    validate.check_integer_at_least("generation", generation, 1)
    N = n + m
    gamma_prev = jnp.minimum(1.0, recursive_stability_closed_form(
        c / N, m, np.asarray(generation) - 1, gamma_0=jnp.minimum(1.0, c / n)))
    return expected_gap_bound(ridge_uniform_stability(feature_bound, label_bound, rho, N), m,
                              gamma_prev, n / N, ridge_loss_bound(feature_bound, label_bound, rho),
                              tv_prev)


# --------------------------------------------------------------------------- #
# A3 for the ridge loop: a uniform-in-i bound on the error (docs/paper_a.md 7.7).
# --------------------------------------------------------------------------- #
def _ridge_weight_map(feature_bound, second_moment, label_bound, rho, noise_scale, n, m, lam,
                      w_star_norm):
    """``u -> (lam r0 + (1-lam) s(u)) / rho`` and ``r0``: one step of the L2 recursion."""
    kappa, lam_c, B, rho, tau = (float(v) for v in (feature_bound, second_moment, label_bound,
                                                     rho, noise_scale))

    def label_moment(norm):  # E y^2 <= min(B^2, lam_C ||w||^2 + tau^2)
        return np.minimum(B ** 2, lam_c * norm ** 2 + tau ** 2)

    r0 = math.sqrt(lam_c ** 2 * w_star_norm ** 2 + kappa ** 2 * label_moment(w_star_norm) / n)

    def step(u):
        if m == 0:
            return r0 / rho
        s = np.sqrt(lam_c ** 2 * u ** 2 + kappa ** 2 * label_moment(u) / m)
        return (lam * r0 + (1.0 - lam) * s) / rho

    return step, r0


def _check_ridge_plateau(feature_bound, second_moment, label_bound, rho, noise_scale, n, m,
                         lam, w_star_norm):
    _check_ridge(feature_bound, label_bound, rho)
    check_positive("noise_scale", noise_scale)
    check_nonnegative("w_star_norm", w_star_norm)
    validate.check_in_range("second_moment", second_moment, 0.0,
                            float(feature_bound) ** 2 * (1 + 1e-12))
    n = check_positive_int("n", n)
    m = validate.check_nonnegative_int("m", m)
    lam = float(real_proportion(n, m, lam)) if (m > 0 or lam is not None) else 1.0
    if m == 0 and lam != 1.0:
        raise ValueError(f"m must be >= 1 when lam < 1, got m=0, lam={lam}")
    return n, m, lam


def ridge_weight_l2_bound(feature_bound: ArrayLike, second_moment: ArrayLike,
                          label_bound: ArrayLike, rho: ArrayLike,
                          noise_scale: ArrayLike, n: int, m: int, generation: ArrayLike,
                          w_star_norm: ArrayLike, lam: ArrayLike | None = None) -> np.ndarray:
    """``u_i >= sqrt(E ||w_i||^2)`` for the clipped ridge loop, by an L2 recursion.

    Claim A3, ridge. Kind: upper (every generation ``i``). Loop: ``x`` from a fixed
    law with ``||x|| <= kappa`` and ``lam_C = ||E x x^T||`` (``second_moment``),
    labels ``clip(<w, x> + tau xi, -B, B)`` (``w = w*`` for ``p0``, ``w_{i-1}`` for
    the generator), ``w_i = (C_hat + rho I)^{-1} b_hat`` on ``lam``-weighted real and
    synthetic parts (``reuse``; ``lam = 0``: fully synthetic). With
    ``r0^2 = lam_C^2 ||w*||^2 + kappa^2 min(B^2, lam_C ||w*||^2 + tau^2) / n`` and
    ``s(u)^2 = lam_C^2 u^2 + kappa^2 min(B^2, lam_C u^2 + tau^2) / m``:
    ``u_0 = r0 / rho``, ``u_i = (lam r0 + (1-lam) s(u_{i-1})) / rho``.
    Proof: docs/paper_a.md section 7.7.

    Args:
      feature_bound: ``kappa``, finite ``> 0``.
      second_moment: ``lam_C``, the largest eigenvalue of ``E x x^T``, in ``[0, kappa^2]``.
      label_bound: ``B``, finite ``> 0``.
      rho: penalty ``> 0``.
      noise_scale: ``tau > 0``.
      n: real samples, integer ``>= 1``.
      m: synthetic samples, integer ``>= 0``.
      generation: ``i >= 0`` (int or integer array).
      w_star_norm: ``||w*|| >= 0``.
      lam: optional real weight in ``[0, 1]`` (default ``n / (n + m)``).

    Returns:
      float64 array shaped like ``generation``.
    """
    n, m, lam = _check_ridge_plateau(feature_bound, second_moment, label_bound, rho,
                                     noise_scale, n, m, lam, w_star_norm)
    validate.check_integer_at_least("generation", generation, 0)
    step, r0 = _ridge_weight_map(feature_bound, second_moment, label_bound, rho, noise_scale,
                                 n, m, lam, float(w_star_norm))
    i = np.asarray(generation)
    values = [float(r0) / float(rho)]
    for _ in range(int(i.max(initial=0))):
        values.append(float(step(values[-1])))
    return np.asarray(values)[i]


def ridge_error_plateau_bound(feature_bound: ArrayLike, second_moment: ArrayLike,
                              label_bound: ArrayLike, rho: ArrayLike,
                              noise_scale: ArrayLike, n: int, m: int, w_star_norm: ArrayLike,
                              lam: ArrayLike | None = None) -> float:
    """``sup_i E ||w_i - w*||^2 <= (||w*|| + max(u_0, u_inf))^2`` for the clipped ridge loop.

    Claim A3, ridge. Kind: upper, uniform in the generation ``i``. ``u_i`` is
    ``ridge_weight_l2_bound``; its map is increasing, so ``u_i`` is monotone and
    ``sup_i u_i = max(u_0, u_inf)`` with ``u_inf`` its fixed point, which exists when
    ``(1-lam) sqrt(lam_C^2 + kappa^2 lam_C / m) < rho`` (else ``inf``). Minkowski in
    L2 gives ``sqrt(E ||w_i - w*||^2) <= ||w*|| + u_i``. Proof: docs/paper_a.md section 7.7.

    Args:
      as ``ridge_weight_l2_bound`` (no ``generation``).

    Returns:
      float (``inf`` when the recursion does not contract).
    """
    n, m, lam = _check_ridge_plateau(feature_bound, second_moment, label_bound, rho,
                                     noise_scale, n, m, lam, w_star_norm)
    step, r0 = _ridge_weight_map(feature_bound, second_moment, label_bound, rho, noise_scale,
                                 n, m, lam, float(w_star_norm))
    lam_c, kappa = float(second_moment), float(feature_bound)
    lipschitz = (1.0 - lam) * math.sqrt(lam_c ** 2 + (kappa ** 2 * lam_c / m if m else 0.0))
    if lipschitz >= float(rho):
        return math.inf
    u = float(r0) / float(rho)
    start = u
    for _ in range(10_000):  # a contraction: converges geometrically
        new = float(step(u))
        if abs(new - u) <= 1e-15 * max(1.0, new):
            break
        u = new
    return (float(w_star_norm) + max(start, u)) ** 2
