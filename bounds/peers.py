"""Peers' closed forms P1-P8: exact expectations of simple self-consuming chains.

These are external cross-checks of the simulator (THEORY §2, "Peers' closed
forms"); proofs are in ``docs/peers.md``.

Indexing: in P1-P7, ``g`` counts *fits* (the first fit is on real data), so
``g = fits_after_generation(i) = i + 1`` for generation ``i`` of THEORY §1. P8
uses the generation index ``i`` itself. Every function accepts ``g`` as a scalar
or an array and broadcasts.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jax.scipy.special import digamma, gammaln, polygamma

from bounds import validate

__all__ = [
    "fits_after_generation", "c4", "mle_variance_chain", "mle_log_variance_chain",
    "moment_ratio_horizon", "unbiased_variance_chain",
    "unbiased_sd_chain", "unbiased_log_variance_chain", "w2_squared_unbiased_chain",
    "gaussian_design_trace", "ols_replace_error", "ols_accumulate_error", "ols_accumulate_bound",
    "ols_fresh_design_test_error", "categorical_collision_chain", "kde_excess_variance",
    "kde_accumulate_excess_variance", "kde_accumulate_second_moment",
]

PI_SQUARED_OVER_6 = math.pi ** 2 / 6


def fits_after_generation(i: ArrayLike) -> jax.Array:
    """Number of fits ``g`` after generation ``i`` (``G_0`` is the first fit): ``g = i + 1``.

    The single place where the P1-P7 convention is pinned (see docs/peers.md §0).
    """
    validate.check_nonnegative("i", i)
    return jnp.asarray(i) + 1


def c4(M: ArrayLike) -> jax.Array:
    """``c4(M) = sqrt(2/(M-1)) Gamma(M/2) / Gamma((M-1)/2)`` = ``E[S] / sigma`` for ``M`` samples.

    The exact constant of P2 and P3 (docs/peers.md §0). Computed through ``gammaln`` so that large ``M`` does not overflow. Needs ``M >= 2``.
    """
    validate.check_in_range("M", M, 2, math.inf)
    M = jnp.asarray(M, jnp.float64)
    return jnp.sqrt(2.0 / (M - 1)) * jnp.exp(gammaln(M / 2) - gammaln((M - 1) / 2))


def _check_chain(g, M, min_M=1):
    validate.check_nonnegative("g", g)
    validate.check_whole("M", M, min_M)


def mle_variance_chain(g: ArrayLike, M: ArrayLike, sigma0_sq: ArrayLike = 1.0) -> jax.Array:
    """P1 (exact): ``E[sigma_g^2] = ((M-1)/M)^g sigma0^2`` for the MLE-variance chain.

    Assumptions: Gaussian, fully synthetic, ``M >= 1`` samples per fit, ``g`` fits
    (docs/peers.md §P1). In ``d`` dimensions it holds entrywise for the covariance.
    """
    _check_chain(g, M)
    validate.check_positive("sigma0_sq", sigma0_sq)
    return ((M - 1.0) / M) ** jnp.asarray(g, jnp.float64) * sigma0_sq


def mle_log_variance_chain(g: ArrayLike, M: ArrayLike, sigma0_sq: ArrayLike = 1.0) -> jax.Array:
    """P1 (exact): ``E[log sigma_g^2] = log sigma0^2 + g (digamma((M-1)/2) + log(2/M))``.

    Each MLE refit multiplies the variance by ``chi2_{M-1} / M``; the log turns the
    product into a random walk whose drift is ``E log(chi2_{M-1}/M)``. Checked
    beside P1 because ``E sigma_g^2`` is heavy-tailed at large ``g``. ``M >= 2``
    (docs/peers.md §P1).
    """
    _check_chain(g, M, min_M=2)
    validate.check_positive("sigma0_sq", sigma0_sq)
    M = jnp.asarray(M, jnp.float64)
    drift = digamma((M - 1) / 2) + jnp.log(2.0 / M)
    return jnp.log(sigma0_sq) + jnp.asarray(g, jnp.float64) * drift


def moment_ratio_horizon(M: float, max_ratio: float = 10.0) -> int:
    """Largest ``g`` with ``((M+1)/(M-1))^g <= max_ratio``: how far ``E sigma_g^2`` is tame (P1, P2).

    ``E sigma_g^4 / (E sigma_g^2)^2 = ((M+1)/(M-1))^g`` for both chains (exact), so
    beyond this horizon the sample mean of ``sigma_g^2`` is dominated by rare large
    values and a z-test on it is unreliable (THEORY §5: use log-moments instead).
    """
    validate.check_in_range("M", M, 2, math.inf, low_open=True)
    return int(math.floor(math.log(max_ratio) / math.log((M + 1.0) / (M - 1.0))))


def unbiased_variance_chain(g: ArrayLike, M: ArrayLike, sigma0_sq: ArrayLike = 1.0) -> jax.Array:
    """P2 (exact): ``E[sigma_g^2] = sigma0^2``: the unbiased chain is a martingale.

    Assumptions: Gaussian, fully synthetic, ``M >= 2`` (docs/peers.md §P2). Checking
    this alone passes while the chain collapses; see ``unbiased_sd_chain``.
    """
    _check_chain(g, M, min_M=2)
    validate.check_positive("sigma0_sq", sigma0_sq)
    return jnp.zeros_like(jnp.asarray(g, jnp.float64)) + sigma0_sq


def unbiased_sd_chain(g: ArrayLike, M: ArrayLike, sigma0: ArrayLike = 1.0) -> jax.Array:
    """P2 (exact): ``E[sigma_g] = c4(M)^g sigma0 -> 0`` (collapse despite the martingale).

    Assumptions: as ``unbiased_variance_chain`` (docs/peers.md §P2).
    """
    _check_chain(g, M, min_M=2)
    validate.check_positive("sigma0", sigma0)
    return c4(M) ** jnp.asarray(g, jnp.float64) * sigma0


def unbiased_log_variance_chain(g: ArrayLike, M: ArrayLike,
                                sigma0_sq: ArrayLike = 1.0) -> jax.Array:
    """P2 (exact): ``E[log sigma_g^2] = log sigma0^2 + g (digamma((M-1)/2) + log(2/(M-1)))``.

    The drift is negative for every ``M >= 2``: the log-variance is a random walk
    drifting to ``-inf``. Assumptions as P2 (docs/peers.md §P2).
    """
    _check_chain(g, M, min_M=2)
    validate.check_positive("sigma0_sq", sigma0_sq)
    M = jnp.asarray(M, jnp.float64)
    drift = digamma((M - 1) / 2) + jnp.log(2.0 / (M - 1))
    return jnp.log(sigma0_sq) + jnp.asarray(g, jnp.float64) * drift


def w2_squared_unbiased_chain(sizes: ArrayLike, sigma0_sq: ArrayLike = 1.0) -> jax.Array:
    """P3 (exact): ``E[W2^2(G_g, p0)]`` for ``g = 1 .. len(sizes)`` fits of the unbiased chain.

    ``E W2^2 = sigma0^2 [sum_{k<g} 1/M_k + 2 (1 - prod_{k<g} c4(M_k))]`` with ``M_k``
    the sample size of fit ``k`` (``sizes[0]`` is the real fit). 1-D Gaussian,
    ``M_k >= 2`` (docs/peers.md §P3).

    Returns:
      Array of length ``len(sizes)``; entry ``g - 1`` is the value after ``g`` fits.
    """
    sizes = jnp.asarray(sizes, jnp.float64)
    validate.check_whole("sizes", sizes, 2)
    validate.check_positive("sigma0_sq", sigma0_sq)
    return sigma0_sq * (jnp.cumsum(1.0 / sizes) + 2.0 * (1.0 - jnp.cumprod(c4(sizes))))


def gaussian_design_trace(T: ArrayLike, d: ArrayLike) -> float | jax.Array:
    """``E tr((X^T X)^{-1}) = d / (T - d - 1)`` for ``X`` with i.i.d. ``N(0, 1)`` entries (exact).

    The inverse-Wishart mean; finite only for ``T >= d + 2`` (docs/peers.md §P4).
    """
    validate.check_ols_rows(T, d)
    return d / (T - d - 1.0)


def ols_replace_error(g: ArrayLike, sigma: ArrayLike, trace_inv_gram: ArrayLike) -> jax.Array:
    """P4 (exact): ``E||w_g - w*||^2 = g sigma^2 tr((X^T X)^{-1})``.

    Assumptions: fixed design ``X`` (``T >= d``, full rank), each fit on labels
    ``X w_{g-1} + sigma * N(0, I)`` with ``w_0 = w*`` (docs/peers.md §P4). For a
    Gaussian design pass ``gaussian_design_trace(T, d)`` (needs ``T >= d + 2``).
    """
    validate.check_nonnegative("g", g)
    validate.check_positive("sigma", sigma)
    validate.check_positive("trace_inv_gram", trace_inv_gram)
    return jnp.asarray(g, jnp.float64) * sigma ** 2 * trace_inv_gram


def ols_accumulate_error(g: ArrayLike, sigma: ArrayLike, trace_inv_gram: ArrayLike) -> jax.Array:
    """P5 (exact): ``E||w_g - w*||^2 = sigma^2 tr((X^T X)^{-1}) sum_{k=1}^g 1/k^2``.

    Assumptions: fixed design, fit ``g`` on all label sets so far (accumulate),
    zero-mean noise (docs/peers.md §P5).
    """
    validate.check_nonnegative("g", g)
    validate.check_positive("sigma", sigma)
    validate.check_positive("trace_inv_gram", trace_inv_gram)
    # sum_{k<=g} 1/k^2 = pi^2/6 - trigamma(g + 1): no loop, jit-safe, exact at g = 0.
    partial_sum = PI_SQUARED_OVER_6 - polygamma(1, jnp.asarray(g, jnp.float64) + 1.0)
    return sigma ** 2 * trace_inv_gram * partial_sum


def ols_accumulate_bound(sigma: ArrayLike, trace_inv_gram: ArrayLike,
                         constant: ArrayLike = PI_SQUARED_OVER_6) -> jax.Array:
    """P5 (upper): ``E||w_g - w*||^2 <= (pi^2/6) sigma^2 tr((X^T X)^{-1})`` for every ``g``.

    ``constant`` exists so that negative controls can perturb it (e.g. 1.5);
    with the default it is the proven bound (docs/peers.md §P5).
    """
    validate.check_positive("sigma", sigma)
    validate.check_positive("trace_inv_gram", trace_inv_gram)
    validate.check_positive("constant", constant)
    return jnp.asarray(constant * sigma ** 2 * trace_inv_gram, jnp.float64)


def ols_fresh_design_test_error(g: ArrayLike, sigma: ArrayLike, T: ArrayLike, sigma0: ArrayLike,
                                T0: ArrayLike, d: ArrayLike) -> jax.Array:
    """P6 (exact): ``E_test = sigma^2 d/(T-d-1) + g sigma0^2 d/(T0-d-1)``.

    ``E_test = E||w_hat - w*||^2`` (excess risk for isotropic inputs) of a downstream
    OLS fit on ``T`` fresh Gaussian rows labelled by the chain's ``g``-th model
    with noise ``sigma``; the chain fits ``T0`` fresh rows with noise ``sigma0``
    each time. Needs ``T, T0 >= d + 2`` (docs/peers.md §P6).
    """
    validate.check_nonnegative("g", g)
    validate.check_positive("sigma", sigma)
    validate.check_positive("sigma0", sigma0)
    downstream = sigma ** 2 * _design_trace("T", T, d)
    chain = sigma0 ** 2 * _design_trace("T0", T0, d)
    return downstream + jnp.asarray(g, jnp.float64) * chain


def _design_trace(name, rows, d):
    validate.check_ols_rows(rows, d, name_rows=name)
    return d / (rows - d - 1.0)


def categorical_collision_chain(g: ArrayLike, n: ArrayLike, collision0: ArrayLike) -> jax.Array:
    """P7 (exact): ``E S_g = 1 - (1 - 1/n)^g (1 - S_0)`` with ``S = sum_k p_k^2``.

    Assumptions: categorical, fully synthetic, ``n`` draws per fit, ``S_0`` the
    collision probability of ``p0`` (docs/peers.md §P7).
    """
    validate.check_nonnegative("g", g)
    validate.check_positive_int("n", n)
    validate.check_in_range("collision0", collision0, 0.0, 1.0, low_open=True)
    return 1.0 - (1.0 - 1.0 / n) ** jnp.asarray(g, jnp.float64) * (1.0 - collision0)


def kde_excess_variance(i: ArrayLike, lam: ArrayLike, h: ArrayLike) -> jax.Array:
    """P8 (exact): excess variance ``h^2 (1 - (1-lam)^(i+1)) / lam`` of ``E p_hat_i`` over ``p0``.

    Generation index ``i`` (``G_0`` = KDE of real data), constant real proportion
    ``lam`` in ``[0, 1]`` (``lam = 0``: ``(i + 1) h^2``), fixed bandwidth ``h``
    (docs/peers.md §P8).
    """
    validate.check_nonnegative("i", i)
    validate.check_proportion("lam", lam)
    validate.check_positive("h", h)
    i = jnp.asarray(i, jnp.float64)
    # sum_{k=0}^{i} (1-lam)^k, written so that lam = 0 needs no division.
    factor = jnp.where(lam > 0, (1.0 - (1.0 - lam) ** (i + 1)) / jnp.where(lam > 0, lam, 1.0),
                       i + 1.0)
    return h ** 2 * factor


def kde_accumulate_excess_variance(n: ArrayLike, m: ArrayLike, h: ArrayLike) -> jax.Array:
    """P8 for ``accumulate`` (exact): ``E int x^2 p_hat_i - int x^2 p0 = h^2 H_i``.

    ``H_i = 1 + sum_{k<i} m_k / N_{k+1}`` with ``N_i = n + sum_{j<i} m_j``: the
    weight the kernels of generations ``0..i`` put on the data, each kernel
    acting on the fraction of ``G_i``'s data that has already passed through
    ``G_k``. With ``m_j = n`` it is the harmonic number ``1 + 1/2 + ... + 1/(i+1)``:
    unbounded, but only logarithmically (``lam = 0`` grows linearly, constant
    ``lam > 0`` saturates at ``1/lam``). Generation index ``i``; fixed bandwidth
    ``h``; ``m[j]`` synthetic samples drawn from ``G_j`` (``j = 0..G-2``).
    Proof: docs/peers.md §P8 (accumulate).

    Args:
      n: real samples, ``>= 1``.
      m: synthetic sizes ``m[0..G-2]`` (``m[j]`` drawn from ``G_j``), each ``>= 0``.
      h: bandwidth ``> 0``.

    Returns:
      Excess second moments for generations ``0..G-1``, shape ``(G,)``.
    """
    validate.check_positive_int("n", n)
    validate.check_nonnegative("m", m)
    validate.check_positive("h", h)
    m = jnp.atleast_1d(jnp.asarray(m, jnp.float64))
    if m.ndim != 1:
        raise ValueError(f"m must be a 1-D schedule m[0..G-2], got shape {m.shape}")
    sizes = n + jnp.cumsum(m)                                   # N_1..N_{G-1}
    H = 1.0 + jnp.concatenate([jnp.zeros(1), jnp.cumsum(m / sizes)])
    return jnp.asarray(h, jnp.float64) ** 2 * H


def kde_accumulate_second_moment(n: ArrayLike, m: ArrayLike, h: ArrayLike,
                                 p0_second_moment: ArrayLike) -> jax.Array:
    """P8 for ``accumulate`` (exact): ``E int x^2 p_hat_i = int x^2 p0 + h^2 H_i``.

    See ``kde_accumulate_excess_variance``; docs/peers.md §P8 (accumulate).
    """
    validate.check_positive("p0_second_moment", p0_second_moment)
    return p0_second_moment + kde_accumulate_excess_variance(n, m, h)
