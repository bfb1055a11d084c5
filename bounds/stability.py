"""Paper A closed forms: recursive stability (R2), the STL gap bound (R3), and
the per-model constants of THEORY section 4 (mean estimation, categorical, ridge).

Every formula here is proved in ``docs/paper_a.md``; each docstring names the
section. None of the constants is "the paper's": the paper's full text is not
available, so each is derived from first principles for a concrete model.

Conventions (THEORY section 1): generation ``i = 0, 1, ...``; ``G_0`` is fit on
the ``n`` real samples alone; ``G_i`` (``i >= 1``) on ``n`` real plus ``m``
synthetic samples from ``G_{i-1}``; ``N = n + m``; ``lam = n / N``.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from bounds import validate
from bounds.validate import (check_nonnegative, check_positive, check_positive_int,
                             check_proportion, is_concrete)

__all__ = [
    "recursive_stability_bound",
    "recursive_stability_closed_form",
    "recursive_stability_sup",
    "stability_contraction",
    "is_uniformly_bounded",
    "GapBound",
    "expected_gap_bound",
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
    "categorical_replace_one_tv",
    "categorical_recursive_stability_sup",
    "ridge_weight_norm_bound",
    "ridge_loss_bound",
    "ridge_prediction_lipschitz",
    "ridge_uniform_stability",
    "ridge_generator_constant",
    "categorical_loop_mse",
    "categorical_gap_bound",
    "ridge_gap_bound",
    "ridge_weight_l2_bound",
    "ridge_error_plateau_bound",
]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------- #
# Input checks specific to this module (the generic ones live in validate.py).
# --------------------------------------------------------------------------- #
_check_sizes = validate.check_integer_at_least


def _check_bound(name: str, value: Any, what: str) -> Any:
    """A support bound: must be finite and > 0, else no uniform constant exists."""
    if is_concrete(value):
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.number) and not np.all(np.isfinite(arr)):
            raise ValueError(
                f"{name} must be finite and > 0 ({what}); got {value!r}: "
                "without it there is no uniform (worst-case) constant")
    return check_positive(name, value)


# --------------------------------------------------------------------------- #
# R2: recursive stability.
# --------------------------------------------------------------------------- #
def _base_case(eps_N, gamma_0):
    return eps_N if gamma_0 is None else gamma_0


def recursive_stability_bound(eps_N: ArrayLike, m: ArrayLike, generations: int,
                              gamma_0: ArrayLike | None = None) -> jax.Array:
    """R2 recursion ``gamma_i <= eps_N (1 + m gamma_{i-1})``, for i = 0..generations-1.

    Claim A1/A2, result R2. Kind: upper (each entry bounds the recursive
    stability ``gamma_i`` of docs/paper_a.md section 3.1).

    Base case: ``gamma_0 = eps_N`` by default. This is the recursion's own step
    from ``gamma_{-1} = 0`` (nothing depends on S0 before the first fit), and it
    is valid when the first fit's replace-one constant is at most ``eps_N``.
    Under THEORY section 1 (``G_0`` fit on the ``n`` real points alone) the
    honest base case is ``eps_n``; for ``eps_N = c/N`` that is
    ``c/n = eps_N / lam``: pass it as ``gamma_0`` (paper_a.md section 3.2).

    Assumptions: every fit ``A`` on ``N`` points is ``eps_N`` replace-one stable
    in TV on the whole data domain; loops share randomness through a maximal
    coupling of synthetic draws (paper_a.md section 3.1).

    Args:
      eps_N: replace-one TV constant of one fit on ``N`` points, ``>= 0``.
      m: synthetic samples per generation, ``>= 0``.
      generations: number of entries returned, integer ``>= 1``.
      gamma_0: optional base case ``>= 0`` (default ``eps_N``).

    Returns:
      float64 array of shape ``(generations,)``: ``gamma_0, ..., gamma_{generations-1}``.
    """
    check_nonnegative("eps_N", eps_N)
    check_nonnegative("m", m)
    generations = check_positive_int("generations", generations)
    if gamma_0 is not None:
        check_nonnegative("gamma_0", gamma_0)
    eps_N = jnp.asarray(eps_N, jnp.float64)
    m = jnp.asarray(m, jnp.float64)
    start = jnp.asarray(_base_case(eps_N, gamma_0), jnp.float64)

    def step(gamma_prev, _):
        gamma = eps_N * (1.0 + m * gamma_prev)
        return gamma, gamma

    _, rest = jax.lax.scan(step, start, None, length=generations - 1)
    return jnp.concatenate([start[None], rest])


def recursive_stability_closed_form(eps_N: ArrayLike, m: ArrayLike, generation: ArrayLike,
                                    gamma_0: ArrayLike | None = None) -> jax.Array:
    """Closed form of the R2 recursion at generation(s) ``generation``.

    Claim A1/A2, result R2. Kind: exact (solves the recursion of
    ``recursive_stability_bound`` exactly; the value is an upper bound on
    ``gamma_i``). With ``b = m eps_N``:
    ``gamma_i = b^i gamma_0 + eps_N (1 - b^i) / (1 - b)`` (``b != 1``) and
    ``gamma_0 + i eps_N`` (``b = 1``). Default ``gamma_0 = eps_N`` gives
    ``eps_N (1 - b^{i+1}) / (1 - b)``. Proof: docs/paper_a.md section 3.2.

    Args:
      eps_N: replace-one TV constant of one fit on ``N`` points, ``>= 0``.
      m: synthetic samples per generation, ``>= 0``.
      generation: generation index/indices ``i >= 0`` (int or integer array).
      gamma_0: optional base case ``>= 0`` (default ``eps_N``).

    Returns:
      float64 array broadcast over the inputs.
    """
    check_nonnegative("eps_N", eps_N)
    check_nonnegative("m", m)
    _check_sizes("generation", generation, 0)
    if gamma_0 is not None:
        check_nonnegative("gamma_0", gamma_0)
    eps_N = jnp.asarray(eps_N, jnp.float64)
    b = jnp.asarray(m, jnp.float64) * eps_N
    i = jnp.asarray(generation, jnp.float64)
    start = jnp.asarray(_base_case(eps_N, gamma_0), jnp.float64)
    at_one = jnp.abs(1.0 - b) < 1e-12
    safe = jnp.where(at_one, 0.5, b)  # keeps the unused branch finite
    geometric_sum = jnp.where(at_one, i, (1.0 - safe ** i) / (1.0 - safe))
    return b ** i * start + eps_N * geometric_sum


def recursive_stability_sup(eps_N: ArrayLike, m: ArrayLike,
                            gamma_0: ArrayLike | None = None) -> jax.Array:
    """Supremum over all generations of the R2 recursion bound.

    Claim A2/A3, result R2. Kind: upper. When ``b = m eps_N < 1`` the recursion
    converges monotonically to ``eps_N / (1 - b)`` from ``gamma_0``, so the
    supremum is ``max(gamma_0, eps_N / (1 - b))``; otherwise the bound is
    unbounded (``inf``; the true gamma_i is still <= 1 since it is a TV).
    With ``eps_N = c/N``: ``eps_N/(1-b) = c / (N (1 - c (1-lam)))``.
    Proof: docs/paper_a.md section 3.3.

    Args:
      eps_N: replace-one TV constant on ``N`` points, ``>= 0``.
      m: synthetic samples per generation, ``>= 0``.
      gamma_0: optional base case ``>= 0`` (default ``eps_N``).

    Returns:
      float64 array; ``inf`` where ``m eps_N >= 1`` (and ``eps_N > 0``).
    """
    check_nonnegative("eps_N", eps_N)
    check_nonnegative("m", m)
    if gamma_0 is not None:
        check_nonnegative("gamma_0", gamma_0)
    eps_N = jnp.asarray(eps_N, jnp.float64)
    b = jnp.asarray(m, jnp.float64) * eps_N
    start = jnp.asarray(_base_case(eps_N, gamma_0), jnp.float64)
    contracting = b < 1.0
    limit = eps_N / jnp.where(contracting, 1.0 - b, 1.0)
    bounded = jnp.maximum(start, limit)
    return jnp.where(contracting | (eps_N == 0), bounded, jnp.inf)


def stability_contraction(c: ArrayLike, lam: ArrayLike) -> jax.Array:
    """The R2 contraction factor ``m eps_N = c (1 - lam)`` for ``eps_N = c / N``.

    Claim A2 (the architecture enters only through ``c``), result R2.
    Kind: exact (``m c / N = c (1 - lam)`` because ``m / N = 1 - lam``).
    Proof: docs/paper_a.md section 3.3.

    Args:
      c: model constant with ``eps_N <= c / N``, ``>= 0``.
      lam: real proportion ``n / N`` in ``[0, 1]``.

    Returns:
      float64 array ``c (1 - lam)``.
    """
    check_nonnegative("c", c)
    check_proportion("lam", lam)
    return jnp.asarray(c, jnp.float64) * (1.0 - jnp.asarray(lam, jnp.float64))


def is_uniformly_bounded(c: ArrayLike, lam: ArrayLike) -> jax.Array:
    """Whether the R2 bound stays ``O(1/N)`` uniformly in i: ``c (1 - lam) < 1``.

    Claim A2/A3, result R2. Kind: exact (a dichotomy of the recursion bound:
    uniformly bounded by ``max(gamma_0, c / (N (1 - c(1-lam))))`` when true,
    growing linearly (``= 1``) or geometrically (``> 1``) otherwise).
    Proof: docs/paper_a.md section 3.3.

    Args:
      c: model constant with ``eps_N <= c / N``, ``>= 0``.
      lam: real proportion ``n / N`` in ``[0, 1]``.

    Returns:
      boolean array.
    """
    return stability_contraction(c, lam) < 1.0


# --------------------------------------------------------------------------- #
# R3: expected generalisation gap in the loop.
# --------------------------------------------------------------------------- #
class GapBound(NamedTuple):
    """The R3 bound split by cause (A1). Fields broadcast like the inputs.

    Attributes:
      real_stability: ``lam beta_N``: the learner's stability on the real part.
      recursive_stability: ``lam beta_N m gamma_{i-1}``: one replaced real point
        also changes ~``m gamma_{i-1}`` synthetic points through the generator.
      distribution_shift: ``(1-lam) M E TV(p0, G_{i-1})``: synthetic points
        are drawn from ``G_{i-1}``, not ``p0``.
      synthetic_stability: ``(1-lam) beta_N``: the learner's stability on the
        synthetic part (as an i.i.d. sample from ``G_{i-1}``).
      concentration: ``0`` for this expectation bound; a concentration term only
        appears in a high-probability version (docs/paper_a.md section 4.3).
    """
    real_stability: jax.Array
    recursive_stability: jax.Array
    distribution_shift: jax.Array
    synthetic_stability: jax.Array
    concentration: jax.Array

    @property
    def stability(self) -> jax.Array:
        """A1 cause 1, the learner's uniform stability: ``lam beta_N + (1-lam) beta_N``."""
        return self.real_stability + self.synthetic_stability

    @property
    def total(self) -> jax.Array:
        """The R3 bound: the sum of all terms."""
        return (self.real_stability + self.recursive_stability + self.distribution_shift
                + self.synthetic_stability + self.concentration)


def expected_gap_bound(beta_N: ArrayLike, m: ArrayLike, gamma_prev: ArrayLike, lam: ArrayLike,
                       loss_bound: ArrayLike, tv_prev: ArrayLike) -> GapBound:
    """R3: ``E[R_p0(h_i) - R_hat_{S_i}(h_i)]`` bounded term by term.

    Claim A1, result R3. Kind: upper, in expectation over S0 and all sampling
    randomness, for generation ``i >= 1``:
    ``lam beta_N (1 + m gamma_{i-1}) + (1-lam) M E TV(p0, G_{i-1}) + (1-lam) beta_N``.

    Assumptions: ``reuse`` scheme; ``S_i`` = the ``n`` real points of S0 plus
    ``m`` i.i.d. draws from ``G_{i-1}``; ``R_hat`` is the plain average over
    the ``N`` points, so ``lam = n / N`` (pass that value); the learner is
    replace-one ``beta_N``-uniformly stable on size-``N`` sets over the whole
    data domain; loss in ``[0, M]``; ``gamma_prev`` is the generator's recursive
    stability at ``i-1`` (maximal-coupling sense). Proof: docs/paper_a.md section 4.

    Args:
      beta_N: learner's replace-one uniform stability on ``N`` points, ``>= 0``.
      m: synthetic samples per generation, ``>= 0``.
      gamma_prev: recursive stability ``gamma_{i-1}``, ``>= 0``.
      lam: real proportion in ``[0, 1]``.
      loss_bound: ``M``, the loss lies in ``[0, M]``; ``> 0``.
      tv_prev: ``E TV(p0, G_{i-1})`` (or an upper bound on it) in ``[0, 1]``.

    Returns:
      ``GapBound`` with the five terms; ``.total`` is the bound.
    """
    check_nonnegative("beta_N", beta_N)
    check_nonnegative("m", m)
    check_nonnegative("gamma_prev", gamma_prev)
    check_proportion("lam", lam)
    check_positive("loss_bound", loss_bound)
    check_proportion("tv_prev", tv_prev)
    beta_N, m, gamma_prev, lam, loss_bound, tv_prev = (
        jnp.asarray(v, jnp.float64)
        for v in (beta_N, m, gamma_prev, lam, loss_bound, tv_prev))
    real = lam * beta_N
    return GapBound(
        real_stability=real,
        recursive_stability=real * m * gamma_prev,
        distribution_shift=(1.0 - lam) * loss_bound * tv_prev,
        synthetic_stability=(1.0 - lam) * beta_N,
        concentration=jnp.zeros_like(real),
    )


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
    _check_bound("data_width", data_width, "width of an interval holding all data")
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
    _check_sizes("n", n, 1)
    _check_sizes("m", m, 1)
    _check_sizes("generation", generation, 0)
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
    _check_sizes("n", n, 1)
    _check_sizes("m", m, 1)
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
    _check_sizes("n", n, 1)
    _check_sizes("m", m, 0)
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
    _check_sizes("m", m, 0)
    _check_sizes("generation", generation, 1)
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
    _check_sizes("N", N, 1)
    _check_sizes("num_symbols", num_symbols, 1)
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
    _check_sizes("n", n, 1)
    _check_sizes("m", m, 0)
    eps_N = categorical_replace_one_tv(jnp.asarray(n) + jnp.asarray(m), num_symbols, alpha)
    gamma_0 = categorical_replace_one_tv(n, num_symbols, alpha)
    return recursive_stability_sup(eps_N, m, gamma_0)


# --------------------------------------------------------------------------- #
# Ridge regression (THEORY section 4).
# Objective: F_S(w) = (1/N) sum_k (y_k - <w, x_k>)^2 + rho ||w||^2,
# ||x|| <= kappa (feature_bound), |y| <= B (label_bound).
# --------------------------------------------------------------------------- #
def _check_ridge(feature_bound, label_bound, rho):
    _check_bound("feature_bound", feature_bound, "features must satisfy ||x|| <= feature_bound")
    _check_bound("label_bound", label_bound, "labels must be clipped to [-label_bound, label_bound]")
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
    _check_bound("label_bound", label_bound, "labels must be clipped to [-label_bound, label_bound]")
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
    _check_sizes("N", N, 1)
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


# --------------------------------------------------------------------------- #
# Added for the A1/A3/A5 checks (docs/paper_a.md sections 6.1-6.3 and 7.5).
# --------------------------------------------------------------------------- #
def _lam_for_sizes(n, m, lam):
    if lam is None:
        return float(n) / float(n + m)
    check_proportion("lam", lam)
    return float(lam)


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
    _check_sizes("generation", generation, 0)
    lam = _lam_for_sizes(n, m, lam)
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
    _check_sizes("generation", generation, 1)
    num_symbols = len(np.asarray(probs))
    N = n + m
    lam = n / N
    gamma_prev = categorical_recursive_stability_sup(n, m, num_symbols)
    previous = np.asarray(generation) - 1
    tv_prev = _categorical_expected_tv_bound(probs, n, m, previous) if m > 0 else 0.0 * previous
    return expected_gap_bound(1.0 / N, m, gamma_prev, lam, 1.0, tv_prev)


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
    _check_sizes("generation", generation, 1)
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
    lam = float(_lam_for_sizes(n, m, lam)) if (m > 0 or lam is not None) else 1.0
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
    _check_sizes("generation", generation, 0)
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
