"""Mean estimation in the loop: per-model constants and exact forms (paper A, THEORY section 4).

Mirrors ``sims/models/mean_estimation.py``. Claims A1, A2-gamma, A3-mean, A5. Proofs:
``docs/paper_a.md`` section 5; the generic R2/R3 they instantiate live in ``bounds.stability``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from bounds import validate
from bounds.stability import GapBound, expected_gap_bound, recursive_stability_closed_form
from bounds.validate import (check_positive, check_positive_int, check_proportion,
                             check_support_bound, is_concrete)

__all__ = [
    "gaussian_shift_tv",
    "uniform_shift_tv",
    "mean_estimation_generator_constant",
    "mean_estimation_loop_width",
    "mean_estimation_exact_variance",
    "mean_estimation_variance_plateau",
    "MeanEstimationConstants",
    "mean_estimation_uniform_constants",
    "mean_estimation_gap_bound",
    "OptimalSyntheticSize",
    "mean_estimation_optimal_m",
]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------- #
# Mean estimation (THEORY section 4).
# --------------------------------------------------------------------------- #
def gaussian_shift_tv(shift: ArrayLike, scale: ArrayLike) -> jax.Array:
    """``TV(N(a, s^2), N(b, s^2)) = 2 Phi(|a-b| / (2 s)) - 1`` with ``shift = a - b``.

    Claim A1/A2 (mean-estimation generator). Kind: exact; it is
    ``<= |a-b| / (s sqrt(2 pi))``. Proof: docs/paper_a.md section 5.1.

    Args:
      shift: difference of means (any real, array ok).
      scale: common standard deviation ``s > 0``.

    Returns:
      float64 array in ``[0, 1)``.
    """
    check_positive("scale", scale)
    if is_concrete(shift):
        validate.check_in_range("shift", shift, -math.inf, math.inf)
    z = jnp.abs(jnp.asarray(shift, jnp.float64)) / (2.0 * jnp.asarray(scale, jnp.float64))
    return jax.scipy.special.erf(z / math.sqrt(2.0))  # = 2 Phi(z) - 1


def uniform_shift_tv(shift: ArrayLike, half_width: ArrayLike) -> jax.Array:
    """``TV(U[a-h, a+h], U[b-h, b+h]) = min(1, |a-b| / (2h))`` with ``shift = a - b``.

    Claim A1/A2 (bounded-noise mean-estimation generator). Kind: exact.
    Proof: docs/paper_a.md section 5.1.

    Args:
      shift: difference of centres (any real, array ok).
      half_width: ``h > 0``.

    Returns:
      float64 array in ``[0, 1]``.
    """
    check_positive("half_width", half_width)
    if is_concrete(shift):
        validate.check_in_range("shift", shift, -math.inf, math.inf)
    ratio = jnp.abs(jnp.asarray(shift, jnp.float64)) / (2.0 * jnp.asarray(half_width, jnp.float64))
    return jnp.minimum(1.0, ratio)


def mean_estimation_generator_constant(data_width: ArrayLike, noise_scale: ArrayLike,
                                       noise: str = "gaussian") -> jax.Array:
    """Constant ``c`` with ``eps_N <= c / N`` for the generator ``mean(S) + noise``.

    Claim A2 (the model's ``c``), result R2 input. Kind: upper.
    Replacing one of ``N`` points in an interval of width ``D`` moves the mean
    by at most ``D / N``; then
    gaussian (std ``s``): ``eps_N <= D / (N s sqrt(2 pi))``, ``c = D / (s sqrt(2 pi))``;
    uniform (``U[-a, a]``, ``noise_scale = a``): ``eps_N <= D / (2 a N)``, ``c = D / (2a)``.
    For unbounded (e.g. Gaussian) data there is no such uniform constant: a
    replaced point can move the mean arbitrarily far, so ``data_width`` must be
    finite. Proof: docs/paper_a.md section 5.2.

    Args:
      data_width: width ``D`` of an interval holding every data point, finite ``> 0``.
      noise_scale: ``s`` (gaussian) or half-width ``a`` (uniform), ``> 0``.
      noise: ``"gaussian"`` or ``"uniform"``.

    Returns:
      float64 array ``c``.
    """
    check_support_bound("data_width", data_width, "width of an interval holding all data")
    check_positive("noise_scale", noise_scale)
    validate.check_choice("noise", noise, {"gaussian", "uniform"})
    width = jnp.asarray(data_width, jnp.float64)
    scale = jnp.asarray(noise_scale, jnp.float64)
    return width / (scale * _SQRT_2PI) if noise == "gaussian" else width / (2.0 * scale)


def mean_estimation_loop_width(half_width: ArrayLike, lam: ArrayLike) -> jax.Array:
    """Width of an interval holding every point of the uniform-noise mean loop.

    Claim A1/A3 (bounded-noise mean estimation). Kind: upper, pathwise, for all
    generations at once. Real data ``mu + U[-a, a]``, generator
    ``mean(S) + U[-a, a]``, ``theta_i = lam mean(S0) + (1-lam) mean(Z_i)``. Then
    ``|theta_i - mu| <= a / lam`` and every point lies in
    ``[mu - a (1 + 1/lam), mu + a (1 + 1/lam)]``: width ``2 a (1 + 1/lam)``.
    Needs ``lam > 0`` (with ``lam = 0`` the range grows like ``a (i + 1)``).
    Proof: docs/paper_a.md section 5.3.

    Args:
      half_width: ``a > 0``, half-width of the uniform noise.
      lam: real proportion in ``(0, 1]``.

    Returns:
      float64 array ``2 a (1 + 1/lam)``.
    """
    check_positive("half_width", half_width)
    check_proportion("lam", lam, allow_zero=False)
    lam = jnp.asarray(lam, jnp.float64)
    return 2.0 * jnp.asarray(half_width, jnp.float64) * (1.0 + 1.0 / lam)


def _default_lam(n, m, lam):
    if lam is None:
        return jnp.asarray(n, jnp.float64) / (jnp.asarray(n, jnp.float64) + jnp.asarray(m, jnp.float64))
    check_proportion("lam", lam)
    return jnp.asarray(lam, jnp.float64)


def mean_estimation_exact_variance(variance: ArrayLike, n: ArrayLike, m: ArrayLike,
                                   generation: ArrayLike,
                                   lam: ArrayLike | None = None) -> jax.Array:
    """``E (theta_i - mu)^2 = s^2/n + (s^2/m) r (1 - r^i)/(1 - r)``, ``r = (1-lam)^2``.

    Claim A1/A3/A5, mean estimation. Kind: exact (it is also the excess risk
    ``R_p0(theta_i) - R_p0(mu)`` under squared loss).

    Convention: ``theta_0 = mean(S0)`` on the ``n`` real points (``i = 0``
    gives ``s^2/n``); for ``i >= 1``,
    ``theta_i = lam mean(S0) + (1-lam) mean(Z_i)``, ``Z_i`` = ``m`` draws of
    ``theta_{i-1} + noise``. ``lam = None`` means ``n / (n + m)``, i.e.
    ``theta_i = mean(S_i)`` (``reuse``); ``lam = 0`` is the fully synthetic
    chain (``theta_0`` still on ``n`` real points), where the formula is
    ``s^2/n + i s^2/m`` (a random walk). Data noise and generator noise share
    the variance ``s^2`` and have mean zero; any law works (Gaussian, or
    uniform with ``s^2 = a^2/3``). Proof: docs/paper_a.md section 5.4.

    Args:
      variance: ``s^2 > 0``.
      n: real samples, integer ``>= 1``.
      m: synthetic samples per generation, integer ``>= 1``.
      generation: ``i >= 0`` (int or integer array).
      lam: optional mixing weight in ``[0, 1]`` (default ``n / (n + m)``).

    Returns:
      float64 array.
    """
    check_positive("variance", variance)
    validate.check_integer_at_least("n", n, 1)
    validate.check_integer_at_least("m", m, 1)
    validate.check_integer_at_least("generation", generation, 0)
    lam = _default_lam(n, m, lam)
    s2 = jnp.asarray(variance, jnp.float64)
    i = jnp.asarray(generation, jnp.float64)
    r = (1.0 - lam) ** 2
    one_minus_r = lam * (2.0 - lam)  # = 1 - r without cancellation
    safe = jnp.where(lam == 0, 1.0, one_minus_r)
    # sum_{k=1}^{i} r^k; -expm1(i log r) keeps accuracy for r near 1.
    ratio_sum = jnp.where(lam == 0, i, r * -jnp.expm1(i * jnp.log(jnp.where(r > 0, r, 1.0))) / safe)
    return s2 / jnp.asarray(n, jnp.float64) + s2 / jnp.asarray(m, jnp.float64) * ratio_sum


def mean_estimation_variance_plateau(variance: ArrayLike, n: ArrayLike, m: ArrayLike,
                                     lam: ArrayLike | None = None) -> jax.Array:
    """Limit ``i -> inf`` of ``mean_estimation_exact_variance``: ``s^2/n + (s^2/m) r/(1-r)``.

    Claim A3, mean estimation. Kind: exact (limit). Needs ``lam > 0``. For the
    default ``lam = n/N`` it simplifies to ``(s^2/n) (n + 3m)/(n + 2m) < 1.5 s^2/n``.
    Proof: docs/paper_a.md section 5.4.

    Args:
      variance: ``s^2 > 0``.
      n: real samples, integer ``>= 1``.
      m: synthetic samples per generation, integer ``>= 1``.
      lam: optional mixing weight in ``(0, 1]`` (default ``n / (n + m)``).

    Returns:
      float64 array.
    """
    check_positive("variance", variance)
    validate.check_integer_at_least("n", n, 1)
    validate.check_integer_at_least("m", m, 1)
    if lam is not None:
        check_proportion("lam", lam, allow_zero=False)
    lam = _default_lam(n, m, lam)
    s2 = jnp.asarray(variance, jnp.float64)
    r = (1.0 - lam) ** 2
    return s2 / jnp.asarray(n, jnp.float64) + s2 / jnp.asarray(m, jnp.float64) * r / (lam * (2.0 - lam))


class MeanEstimationConstants(NamedTuple):
    """Constants of the uniform-noise mean loop (docs/paper_a.md section 5.5)."""
    lam: jax.Array          # n / N
    data_width: jax.Array   # D = 2a(1 + 1/lam): all points of all generations
    generator_c: jax.Array  # c = D / (2a) = 1 + 1/lam, eps_N <= c/N
    eps_N: jax.Array        # c / N
    gamma_0: jax.Array      # 1/n: G_0 is fit on the n real points (width 2a)
    beta_N: jax.Array       # 2 D^2 / N, squared loss
    loss_bound: jax.Array   # M = D^2


def mean_estimation_uniform_constants(half_width: ArrayLike, n: ArrayLike,
                                      m: ArrayLike) -> MeanEstimationConstants:
    """All R2/R3 constants of the mean loop with uniform noise ``U[-a, a]``.

    Claim A1/A2/A5, mean estimation (bounded variant). Kind: upper (each
    constant is a worst case over the loop's pathwise range).
    Real data ``mu + U[-a, a]``, generator ``mean(S) + U[-a, a]``, learner
    ``theta = mean(S)``, squared loss. Proof: docs/paper_a.md section 5.5.

    Args:
      half_width: ``a > 0``.
      n: real samples, integer ``>= 1``.
      m: synthetic samples, integer ``>= 0`` (array ok).

    Returns:
      ``MeanEstimationConstants``.
    """
    check_positive("half_width", half_width)
    validate.check_integer_at_least("n", n, 1)
    validate.check_integer_at_least("m", m, 0)
    n_f = jnp.asarray(n, jnp.float64)
    N = n_f + jnp.asarray(m, jnp.float64)
    lam = n_f / N
    width = 2.0 * jnp.asarray(half_width, jnp.float64) * (1.0 + 1.0 / lam)  # section 5.3
    c = width / (2.0 * jnp.asarray(half_width, jnp.float64))
    return MeanEstimationConstants(
        lam=lam, data_width=width, generator_c=c, eps_N=c / N, gamma_0=1.0 / n_f,
        beta_N=2.0 * width ** 2 / N, loss_bound=width ** 2)


def mean_estimation_gap_bound(half_width: ArrayLike, n: int, m: ArrayLike,
                              generation: ArrayLike) -> GapBound:
    """R3 instantiated for the uniform-noise mean loop at generation ``i >= 1``.

    Claim A1/A5, result R3. Kind: upper. Uses the constants of
    ``mean_estimation_uniform_constants``, ``gamma_{i-1}`` from the R2
    recursion with base ``gamma_0 = 1/n``, capped at 1 (it bounds a TV, so
    ``min(1, R2)`` is a bound too; docs/paper_a.md section 5.6), and
    ``E TV(p0, G_{i-1}) <= min(1, sqrt(E (theta_{i-1} - mu)^2) / (2a))``
    (exact TV of shifted uniforms, Jensen, exact variance with ``s^2 = a^2/3``).
    Proof: docs/paper_a.md section 5.6.

    Args:
      half_width: ``a > 0``.
      n: real samples, integer ``>= 1``.
      m: synthetic samples, integer ``>= 0`` (array ok: a grid over m).
      generation: ``i``, integer ``>= 1`` (array ok, broadcast against ``m``).

    Returns:
      ``GapBound`` broadcast over ``m`` and ``generation``.
    """
    check_positive("half_width", half_width)
    n = check_positive_int("n", n)
    validate.check_integer_at_least("m", m, 0)
    validate.check_integer_at_least("generation", generation, 1)
    generation = np.asarray(generation)
    const = mean_estimation_uniform_constants(half_width, n, m)
    m_f = jnp.asarray(m, jnp.float64)
    gamma_prev = jnp.minimum(1.0, recursive_stability_closed_form(
        const.eps_N, m_f, generation - 1, gamma_0=const.gamma_0))
    a = jnp.asarray(half_width, jnp.float64)
    # The variance formula needs m >= 1; at m = 0 theta_{i-1} = mean(S0).
    m_safe = np.maximum(np.asarray(m), 1)
    var_prev = jnp.where(m_f == 0, a ** 2 / 3.0 / n,
                         mean_estimation_exact_variance(a ** 2 / 3.0, n, m_safe, generation - 1))
    tv_prev = jnp.minimum(1.0, jnp.sqrt(var_prev) / (2.0 * a))
    return expected_gap_bound(const.beta_N, m_f, gamma_prev, const.lam, const.loss_bound, tv_prev)


class OptimalSyntheticSize(NamedTuple):
    """Grid minimiser of a bound over the synthetic size ``m`` (A5)."""
    m_star: int              # argmin over the grid (first one on ties)
    bound_at_m_star: float   # the bound there
    m_grid: np.ndarray       # the grid, as given
    bounds: jax.Array        # the bound at every grid point


def mean_estimation_optimal_m(half_width: ArrayLike, n: int, m_grid: ArrayLike,
                              generation: int) -> OptimalSyntheticSize:
    """A5: the R3 bound of the mean loop over ``m`` at fixed ``n``, and its grid argmin.

    Claim A5. Kind: upper (the bound) and its minimiser over the given grid;
    not the argmin of the true error. For this model the true error (exact
    variance) is ``>= s^2/n`` for every ``m``, with equality only at ``m = 0``
    and in the limit ``m -> inf``: synthetic data never helps, yet the error
    is not monotone in ``m`` (docs/paper_a.md section 5.7).

    Args:
      half_width: ``a > 0``.
      n: real samples, integer ``>= 1``.
      m_grid: 1-D integer array of synthetic sizes ``>= 0``.
      generation: ``i``, integer ``>= 1``.

    Returns:
      ``OptimalSyntheticSize``.
    """
    grid = np.asarray(m_grid)
    if grid.ndim != 1 or grid.size == 0:
        raise ValueError(f"m_grid must be a non-empty 1-D array, got shape {grid.shape}")
    bounds = mean_estimation_gap_bound(half_width, n, grid, generation).total
    best = int(jnp.argmin(bounds))
    return OptimalSyntheticSize(m_star=int(grid[best]), bound_at_m_star=float(bounds[best]),
                                m_grid=grid, bounds=bounds)
