"""Linear-attention in-context regression in the loop (THEORY section 4; claims A2, A4; R2).

One linear self-attention layer at its known optimum predicts from a prompt ``P``
of ``N`` labelled examples with ``w_hat(P) = gamma (1/N) sum_{(x, y) in P} x y``;
``gamma`` is the architecture knob. Data: ``x ~ N(0, I_d)``, ``y = w.x + sigma xi``.

The loop (``reuse`` scheme, THEORY section 1): ``w_hat_0`` reads the ``n`` real
examples ``S0`` alone; ``w_hat_i`` (``i >= 1``) reads ``S0`` plus ``m`` synthetic
examples whose inputs are fresh ``N(0, I_d)`` draws labelled by the previous
predictor, ``y = w_hat_{i-1}.x + tau xi``. With ``N = n + m``, ``lam = n/N``,
``r = sum_{S0} x y``, ``X_i`` the ``m x d`` synthetic inputs and ``A_i = (gamma/N) X_i^T X_i``:

    w_hat_i = (gamma/N) r + A_i w_hat_{i-1} + (gamma tau/N) X_i^T xi_i.

Every function names its kind (exact / upper / lower / rate); the proofs are in
``docs/linear_attention.md`` (sections cited as "LA s.k").
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import digamma

from bounds.validate import check_nonnegative, check_positive, check_proportion, is_concrete

__all__ = [
    "gamma_star",
    "icl_risk",
    "LoopMoments",
    "affine_moments",
    "moments",
    "coupled_difference_moments",
    "contraction_factor",
    "fourth_moment_factor",
    "mean_square_boundary",
    "lyapunov_exponent",
    "almost_sure_boundary",
    "tame_generations",
    "recursive_stability_constant",
    "recursive_stability_scale",
    "replaced_example_second_moment",
]


# --------------------------------------------------------------------------- #
# Input checks (named parameter, stated condition).
# --------------------------------------------------------------------------- #
def _check_int(name: str, value: Any, minimum: int) -> Any:
    """Raise unless ``value`` (int or integer array) is an integer ``>= minimum``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not is_concrete(value):
        return value
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if np.any(arr < minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_lam(lam: Any) -> Any:
    # lam = 1 means no synthetic data: A_i = 0 and log|A_i u| = -inf.
    return check_proportion("lam", lam, allow_one=False)


def _f64(*values):
    return tuple(jnp.asarray(v, jnp.float64) for v in values)


# --------------------------------------------------------------------------- #
# One shot: in-context risk and its optimum (A4 uses these too).
# --------------------------------------------------------------------------- #
def gamma_star(N: Any, d: Any, sigma: Any) -> jax.Array:
    """In-context-optimal scale ``gamma* = N / (N + d + 1 + sigma^2)``.

    Claim A2/A4. Kind: exact (the unique minimiser over ``gamma`` of ``icl_risk``,
    a convex quadratic in ``gamma``). Assumptions: ``x, w ~ N(0, I_d)`` independent,
    label noise ``N(0, sigma^2)``, prompt of ``N`` i.i.d. examples. Proof: LA s.1.

    Args:
      N: prompt length, integer ``>= 1``.
      d: input dimension, integer ``>= 1``.
      sigma: label-noise standard deviation, ``>= 0``.

    Returns:
      float64 array broadcast over the inputs.
    """
    _check_int("N", N, 1)
    _check_int("d", d, 1)
    check_nonnegative("sigma", sigma)
    N, d, sigma = _f64(N, d, sigma)
    return N / (N + d + 1.0 + sigma ** 2)


def icl_risk(gamma: Any, N: Any, d: Any, sigma: Any) -> jax.Array:
    """One-shot in-context test risk ``E(w_hat.x_q - y_q)^2`` of ``w_hat = (gamma/N) sum x y``.

    ``= d [gamma^2 (N + d + 1 + sigma^2) / N - 2 gamma + 1] + sigma^2``.

    Claim A2/A4. Kind: exact. Assumptions: prompt ``(x_j, y_j)_{j<=N}`` and query
    ``(x_q, y_q)`` i.i.d. with ``x ~ N(0, I_d)``, ``y = w.x + sigma xi``, ``w ~ N(0, I_d)``
    independent of everything; the expectation is over ``w``, prompt and query.
    (For a fixed ``w`` replace ``d`` by ``|w|^2`` in the first term and add nothing: LA s.1.)
    Proof: LA s.1 (``E[W A W] = N(N+1) A + N tr(A) I`` for ``W = X^T X``).

    Args:
      gamma: the attention scale, ``>= 0``.
      N: prompt length, integer ``>= 1``.
      d: input dimension, integer ``>= 1``.
      sigma: label-noise standard deviation, ``>= 0``.

    Returns:
      float64 array broadcast over the inputs.
    """
    check_nonnegative("gamma", gamma)
    _check_int("N", N, 1)
    _check_int("d", d, 1)
    check_nonnegative("sigma", sigma)
    gamma, N, d, sigma = _f64(gamma, N, d, sigma)
    return d * (gamma ** 2 * (N + d + 1.0 + sigma ** 2) / N - 2.0 * gamma + 1.0) + sigma ** 2
