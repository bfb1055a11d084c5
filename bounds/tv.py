"""Total-variation bounds across generations (paper B: B1, B3; results R0, R1, R4).

Indexing (THEORY §1): generation ``i = 0, 1, 2, ...``. ``G_0`` is fit on the
``n`` real samples only, so the real-proportion schedule starts with
``lam[0] = 1`` by convention; ``G_i`` (``i >= 1``) is fit to
``q_i = lam_i p0 + (1 - lam_i) G_{i-1}`` with error ``eps_i = TV(G_i, q_i)``.
Every schedule array below is indexed by this ``i`` on its last axis.

Proofs: docs/paper_b.md. Nothing here is "the paper's constant": each bound is
derived in the project's docs with every constant explicit, or is a ``rate``
whose constants are fitted from data.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from bounds import validate

__all__ = [
    "one_minus_power",
    "tv_of_mixture_with_p0",
    "triangle_tv_bound",
    "pinsker_tv_bound",
    "bounded_function_gap_bound",
    "tv_recursion_bound",
    "fully_synthetic_tv_bound",
    "constant_lam_tv_bound",
    "constant_lam_tv_limit",
    "accumulate_sizes",
    "accumulate_tv_bound",
    "accumulate_rate_uniform_bound",
    "eps_rate",
    "phase_transition_bound",
    "threshold_m_star_one_generation",
    "PhaseTransitionPeak",
    "threshold_m_star",
]


# ---------------------------------------------------------------- helpers


def _check_generations(name: str, value: Any) -> None:
    """Raise unless every entry of ``value`` is a non-negative integer (may be float-typed)."""
    validate.check_nonnegative(name, value)
    if validate.is_concrete(value):
        arr = np.asarray(value)
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integers >= 0, got {value!r}")


def _check_schedule_length(eps_name: str, eps: Any, lam_name: str, lam: Any) -> None:
    if validate.is_concrete(eps) and validate.is_concrete(lam):
        if np.shape(eps)[-1:] != np.shape(lam)[-1:]:
            raise ValueError(f"{eps_name} and {lam_name} must have the same number of "
                             f"generations, got shapes {np.shape(eps)} and {np.shape(lam)}")


def one_minus_power(lam: ArrayLike, i: ArrayLike) -> jax.Array:
    """``1 - (1 - lam)^i``, accurate for small ``lam`` (via ``expm1``/``log1p``).

    The naive form loses all digits when ``lam`` is tiny, which is exactly the
    regime of large ``m`` in R4. ``lam = 1`` gives ``0`` at ``i = 0`` else ``1``.
    """
    lam = jnp.asarray(lam, dtype=jnp.float64)
    i = jnp.asarray(i, dtype=jnp.float64)
    below_one = lam < 1.0
    safe_lam = jnp.where(below_one, lam, 0.5)  # keeps log1p(-lam) finite in the unused branch
    stable = -jnp.expm1(i * jnp.log1p(-safe_lam))
    return jnp.where(below_one, stable, jnp.where(i == 0, 0.0, 1.0))


# ---------------------------------------------------------------- R0


def tv_of_mixture_with_p0(lam: ArrayLike, tv_q_p0: ArrayLike) -> jax.Array:
    """``TV(lam p0 + (1-lam) q, p0) = (1-lam) TV(q, p0)``.

    Claim: R0 (used by B1/R1). Kind: exact. Assumptions: none beyond ``q``,
    ``p0`` being probability measures on one space. Proof: docs/paper_b.md §1.1.

    Args:
      lam: real proportion in [0, 1].
      tv_q_p0: ``TV(q, p0)`` in [0, 1].

    Returns:
      ``(1 - lam) * tv_q_p0``, broadcast.
    """
    validate.check_proportion("lam", lam)
    validate.check_proportion("tv_q_p0", tv_q_p0)
    return (1.0 - jnp.asarray(lam, jnp.float64)) * jnp.asarray(tv_q_p0, jnp.float64)


def triangle_tv_bound(tv_p_q: ArrayLike, tv_q_r: ArrayLike) -> jax.Array:
    """``TV(p, r) <= TV(p, q) + TV(q, r)``.

    Claim: R0. Kind: upper (TV is a metric). Proof: docs/paper_b.md §1.2.
    """
    validate.check_proportion("tv_p_q", tv_p_q)
    validate.check_proportion("tv_q_r", tv_q_r)
    return jnp.asarray(tv_p_q, jnp.float64) + jnp.asarray(tv_q_r, jnp.float64)


def pinsker_tv_bound(kl: ArrayLike) -> jax.Array:
    """Pinsker: ``TV(p, q) <= sqrt(KL(p || q) / 2)``.

    Claim: R0 (used by B2). Kind: upper. Assumptions: ``KL`` in nats. The
    bound exceeds the trivial ``TV <= 1`` once ``KL > 2``; it is returned
    unclipped so callers can see that. Proof: docs/paper_b.md §1.3.
    """
    validate.check_nonnegative("kl", kl)
    return jnp.sqrt(jnp.asarray(kl, jnp.float64) / 2.0)


def bounded_function_gap_bound(sup_f: ArrayLike, tv: ArrayLike) -> jax.Array:
    """``|E_p f - E_q f| <= M TV(p, q)`` for ``0 <= f <= M``.

    Claim: R0 (used by R3). Kind: upper. Assumptions: ``f`` measurable with
    range in an interval of length ``M = sup_f``. Proof: docs/paper_b.md §1.4.
    """
    validate.check_nonnegative("sup_f", sup_f)
    validate.check_proportion("tv", tv)
    return jnp.asarray(sup_f, jnp.float64) * jnp.asarray(tv, jnp.float64)


# ---------------------------------------------------------------- R1


def tv_recursion_bound(eps: ArrayLike, lam: ArrayLike) -> jax.Array:
    """Unrolled R1 bound ``TV(G_i, p0) <= sum_{j<=i} prod_{k=j+1..i} (1-lam_k) eps_j``.

    Claim: B1 via R1, any per-generation schedule (covers ``reuse``/``fresh``
    with any ``lam_i``, and fully synthetic with ``lam_i = 0``). Kind: upper.
    Assumptions: ``eps_i >= TV(G_i, q_i)`` with ``q_i = lam_i p0 + (1-lam_i) G_{i-1}``
    (for random models, apply it to expectations: every step is linear with
    non-negative coefficients). Proof: docs/paper_b.md §2.1-2.2.

    Computed as the one-step recursion ``b_i = eps_i + (1-lam_i) b_{i-1}``,
    ``b_{-1} = 0``, in a ``lax.scan`` (no division, so ``lam_k = 1`` is fine).

    Args:
      eps: per-generation learning errors, shape ``(..., G)``; ``eps[..., 0]`` is
        the first fit's error on real data.
      lam: real proportions, same last-axis length, ``lam[..., 0] = 1``.

    Returns:
      Bounds on ``TV(G_i, p0)`` for ``i = 0..G-1``, shape ``broadcast(eps, lam)``.
    """
    validate.check_nonnegative("eps", eps)
    validate.check_lam_schedule("lam", lam)
    _check_schedule_length("eps", eps, "lam", lam)
    eps, lam = jnp.broadcast_arrays(jnp.asarray(eps, jnp.float64), jnp.asarray(lam, jnp.float64))

    def step(prev, eps_lam):
        eps_i, lam_i = eps_lam
        bound = eps_i + (1.0 - lam_i) * prev
        return bound, bound

    init = jnp.zeros(eps.shape[:-1], jnp.float64)
    _, bounds = jax.lax.scan(step, init, (jnp.moveaxis(eps, -1, 0), jnp.moveaxis(lam, -1, 0)))
    return jnp.moveaxis(bounds, 0, -1)


def fully_synthetic_tv_bound(eps_real: ArrayLike, eps_synthetic: ArrayLike,
                             generations: ArrayLike) -> jax.Array:
    """Fully synthetic (``lam_i = 0`` for ``i >= 1``): ``TV(G_i, p0) <= eps(n) + i eps(m)``.

    Claim: B1 (collapse side of A3), R1. Kind: upper, growing linearly in
    ``i``. Proof: docs/paper_b.md §2.3.

    Args:
      eps_real: error of the first fit on ``n`` real samples, ``eps(n)``.
      eps_synthetic: error of each later fit on ``m`` synthetic samples, ``eps(m)``.
      generations: generation indices ``i >= 0``.
    """
    validate.check_nonnegative("eps_real", eps_real)
    validate.check_nonnegative("eps_synthetic", eps_synthetic)
    _check_generations("generations", generations)
    return (jnp.asarray(eps_real, jnp.float64)
            + jnp.asarray(generations, jnp.float64) * jnp.asarray(eps_synthetic, jnp.float64))


def constant_lam_tv_bound(eps_real: ArrayLike, eps_mixed: ArrayLike, lam: ArrayLike,
                          generations: ArrayLike) -> jax.Array:
    """Constant ``lam``: ``TV(G_i, p0) <= (1-lam)^i eps(n) + eps(N) (1-(1-lam)^i) / lam``.

    Claim: B1 and A3 (bounded uniformly in ``i``, tending to ``eps(N)/lam``), R1.
    Kind: upper. Assumptions: ``eps_0 <= eps(n)`` and ``eps_i <= eps(N)`` for
    ``i >= 1``; ``0 < lam <= 1`` (divides by ``lam``: use
    ``fully_synthetic_tv_bound`` for ``lam = 0``). Equals ``tv_recursion_bound``
    with that schedule. Proof: docs/paper_b.md §2.4.

    Args:
      eps_real: ``eps(n)``, the first fit's error.
      eps_mixed: ``eps(N)``, the error of each later fit on ``N = n + m`` samples.
      lam: real proportion ``n / N`` in (0, 1].
      generations: generation indices ``i >= 0``.
    """
    validate.check_nonnegative("eps_real", eps_real)
    validate.check_nonnegative("eps_mixed", eps_mixed)
    validate.check_proportion("lam", lam, allow_zero=False)
    _check_generations("generations", generations)
    lam = jnp.asarray(lam, jnp.float64)
    i = jnp.asarray(generations, jnp.float64)
    grown = one_minus_power(lam, i)  # 1 - (1-lam)^i
    return (1.0 - grown) * jnp.asarray(eps_real, jnp.float64) + jnp.asarray(eps_mixed, jnp.float64) * grown / lam


def constant_lam_tv_limit(eps_mixed: ArrayLike, lam: ArrayLike) -> jax.Array:
    """``lim_i`` of the constant-``lam`` bound: ``eps(N) / lam``.

    Claim: A3/B1, R1. Kind: upper (uniform in ``i`` when ``eps(n) <= eps(N)/lam``,
    otherwise ``max(eps(n), eps(N)/lam)`` is). Needs ``lam > 0``.
    Proof: docs/paper_b.md §2.4.
    """
    validate.check_nonnegative("eps_mixed", eps_mixed)
    validate.check_proportion("lam", lam, allow_zero=False)
    return jnp.asarray(eps_mixed, jnp.float64) / jnp.asarray(lam, jnp.float64)


def accumulate_sizes(n: ArrayLike, m: ArrayLike) -> jax.Array:
    """Training-set sizes of the ``accumulate`` scheme (R1, B1): ``N_i = n + sum_{j<i} m_j``.

    Indexing: ``m[j]`` is the number of synthetic samples drawn from ``G_j``
    (``j = 0..G-2``); ``G_i`` is fit on the ``n`` real samples plus all the
    synthetic sets drawn from ``G_0..G_{i-1}``. So ``N_0 = n`` and the result
    has ``len(m) + 1`` entries. Kind: exact (bookkeeping). docs/paper_b.md §2.5.
    """
    validate.check_positive("n", n)
    validate.check_nonnegative("m", m)
    if np.ndim(n) != 0:
        raise ValueError(f"n must be a scalar, got shape {np.shape(n)}")
    m = jnp.atleast_1d(jnp.asarray(m, jnp.float64))
    n = jnp.asarray(n, jnp.float64)
    drawn_before = jnp.concatenate([jnp.zeros(m.shape[:-1] + (1,)), jnp.cumsum(m, axis=-1)], axis=-1)
    return n + drawn_before


def accumulate_tv_bound(eps: ArrayLike, n: ArrayLike, m: ArrayLike) -> jax.Array:
    """``accumulate``: ``TV(G_i, p0) <= eps_i + sum_{j<i} (m_j / N_i) TV(G_j, p0)``, unrolled.

    Claim: B1 (accumulate scheme), R1. Kind: upper. The right-hand side uses
    the bound itself for ``TV(G_j, p0)``, so ``b_i = eps_i + (1/N_i) sum_{j<i} m_j b_j``.
    Assumptions: ``eps_i >= TV(G_i, q_i)`` where
    ``q_i = (n/N_i) p0 + sum_{j<i} (m_j/N_i) G_j`` is the distribution ``G_i``
    is fit to; for a rate, ``eps_i = eps(N_i)`` (see ``accumulate_sizes``).
    Unrolled: ``b_i = eps_i + sum_{j<i} (m_j / N_{j+1}) eps_j``. Example:
    ``m_j = n`` and constant ``eps`` give ``b_i = eps H_{i+1}`` (harmonic
    number): unbounded, but only logarithmically; a decreasing rate keeps it
    bounded (``accumulate_rate_uniform_bound``).
    Proof: docs/paper_b.md §2.5.

    Args:
      eps: per-generation errors, shape ``(G,)``.
      n: number of real samples.
      m: ``m[j]`` synthetic samples drawn from ``G_j``, shape ``(G-1,)``.

    Returns:
      Bounds on ``TV(G_i, p0)``, ``i = 0..G-1``, shape ``(G,)``.
    """
    validate.check_nonnegative("eps", eps)
    sizes = accumulate_sizes(n, m)
    eps = jnp.atleast_1d(jnp.asarray(eps, jnp.float64))
    if eps.ndim != 1 or sizes.ndim != 1 or eps.shape != sizes.shape:
        raise ValueError(f"eps must have shape (len(m)+1,) = {sizes.shape}, got {eps.shape} "
                         "(m[j] is drawn from G_j, j = 0..G-2)")
    # The last generation's synthetic draw is never used by a later fit: pad with 0.
    m_padded = jnp.concatenate([jnp.atleast_1d(jnp.asarray(m, jnp.float64)), jnp.zeros(1)])

    def step(weighted_sum, inputs):
        eps_i, size_i, m_i = inputs
        bound = eps_i + weighted_sum / size_i
        return weighted_sum + m_i * bound, bound

    _, bounds = jax.lax.scan(step, jnp.float64(0.0), (eps, sizes, m_padded))
    return bounds


def accumulate_rate_uniform_bound(n: ArrayLike, C: ArrayLike, alpha: ArrayLike,
                                  growth: ArrayLike) -> jax.Array:
    """Uniform-in-``i`` bound for ``accumulate`` at the rate ``eps(N) = C N^-alpha``.

    ``sup_i TV(G_i, p0) <= eps(n) (1 + growth^alpha / alpha)`` whenever every
    step grows the training set by at most a factor ``growth >= N_{j+1}/N_j``
    (e.g. ``growth = 1 + m/n`` for constant ``m_j = m``).
    Claim: B1 (accumulate stays controlled; A3's accumulate analogue). Kind:
    upper on the unrolled R1 accumulate bound, so on TV under its assumptions.
    Proof: docs/paper_b.md §2.5.
    """
    validate.check_positive("n", n)
    validate.check_positive("C", C)
    validate.check_in_range("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    validate.check_in_range("growth", growth, 1.0, np.inf)
    alpha = jnp.asarray(alpha, jnp.float64)
    return eps_rate(n, C, alpha) * (1.0 + jnp.asarray(growth, jnp.float64) ** alpha / alpha)


def eps_rate(N: ArrayLike, C: ArrayLike, alpha: ArrayLike) -> jax.Array:
    """Learning-error rate ``eps(N) = C N^(-alpha)``.

    Claim: R4 template input (B2/B3, A5). Kind: rate: ``C`` and ``alpha`` are
    fitted from one-generation runs, never assumed. ``0 < alpha < 1``.
    docs/paper_b.md §3.
    """
    validate.check_positive("N", N)
    validate.check_positive("C", C)
    validate.check_in_range("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    return jnp.asarray(C, jnp.float64) * jnp.asarray(N, jnp.float64) ** (-jnp.asarray(alpha, jnp.float64))


# ---------------------------------------------------------------- R4


def _phase_transition_bound(m, n, C, alpha, i):
    # B_i(m) = (1-lam)^i eps(n) + eps(N) (1-(1-lam)^i)/lam with lam = n/N.
    N = n + m
    lam = n / N
    grown = one_minus_power(lam, i)
    return C * n ** (-alpha) * (1.0 - grown) + C * N ** (1.0 - alpha) * grown / n


def phase_transition_bound(m: ArrayLike, n: ArrayLike, C: ArrayLike, alpha: ArrayLike,
                           generations_i: ArrayLike) -> jax.Array:
    """R4 template ``B_i(m) = C n^-a (m/N)^i + C N^(1-a) (1 - (m/N)^i) / n``, ``N = n + m``.

    Claim: B3 and A5 (R4). Kind: upper, given the rate ``eps(N) = C N^-a``
    (it is the constant-``lam`` R1 bound at ``lam = n/N``); its constants are
    those of the fitted rate. ``B_i(0) = B_i(inf) = eps(n)``, and ``B_i(m) > eps(n)``
    for ``0 < m < inf`` and ``i >= 1``. Proof: docs/paper_b.md §3.

    Args:
      m: synthetic sample counts ``>= 0`` (may be real-valued for a grid).
      n: real sample count ``> 0``.
      C, alpha: rate constants, ``C > 0``, ``0 < alpha < 1``.
      generations_i: generation index ``i >= 0``.

    Returns:
      ``B_i(m)``, broadcast over all arguments.
    """
    validate.check_nonnegative("m", m)
    validate.check_positive("n", n)
    validate.check_positive("C", C)
    validate.check_in_range("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    _check_generations("generations_i", generations_i)
    as_float = lambda v: jnp.asarray(v, jnp.float64)  # noqa: E731
    return _phase_transition_bound(as_float(m), as_float(n), as_float(C), as_float(alpha),
                                   as_float(generations_i))


def threshold_m_star_one_generation(n: ArrayLike, alpha: ArrayLike) -> jax.Array:
    """Peak of ``B_1(m)``: ``m* = n (alpha^(-1/(1-alpha)) - 1)``.

    Claim: B3/A5 (R4). Kind: exact (the argmax of the template, not of the true
    TV). E.g. ``6.4767 n`` at ``alpha = 1/5``, ``3 n`` at ``1/2``, ``3.605 n`` at
    ``2/5``. Proof: docs/paper_b.md §3.3.
    """
    validate.check_positive("n", n)
    validate.check_in_range("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    alpha = jnp.asarray(alpha, jnp.float64)
    return jnp.asarray(n, jnp.float64) * jnp.expm1(-jnp.log(alpha) / (1.0 - alpha))


class PhaseTransitionPeak(NamedTuple):
    """Argmax of the R4 template over ``m`` (all fields broadcast over the inputs)."""

    m_star: jax.Array         # argmax of B_i(m); nan if the peak is outside the search grid
    m_star_over_n: jax.Array  # depends only on alpha and i
    peak_over_eps_n: jax.Array  # B_i(m*) / eps(n) >= 1, also a function of alpha and i only


# Search range for u = m/n: m*/n is about 1.72 (alpha -> 1) up to ~ i/(2 alpha) (small alpha).
_U_GRID = np.logspace(-6.0, 10.0, 4001)


@functools.partial(jax.jit, static_argnames="iterations")
def _peak_of_template(alpha, i, iterations):
    """``(m*/n, B_i(m*)/eps(n))`` by grid argmax then bisection; jit so repeated calls are cheap."""
    log_u_grid = jnp.log(jnp.asarray(_U_GRID))

    def objective(log_u):
        # B_i(n u) / eps(n): m*/n does not depend on n, so search with n = 1.
        return _phase_transition_bound(jnp.exp(log_u), 1.0, 1.0, alpha[..., None], i[..., None])

    values = objective(jnp.broadcast_to(log_u_grid, alpha.shape + log_u_grid.shape))
    k = jnp.argmax(values, axis=-1)
    on_edge = (k == 0) | (k == log_u_grid.size - 1)
    lo = log_u_grid[jnp.clip(k - 1, 0, log_u_grid.size - 1)]
    hi = log_u_grid[jnp.clip(k + 1, 0, log_u_grid.size - 1)]

    def slope(log_u):
        # dB_i/d(log u) elementwise; a sign change brackets the peak far more
        # sharply than comparing values, which are flat (to second order) there.
        grad = jax.grad(lambda lu, a, g: _phase_transition_bound(jnp.exp(lu), 1.0, 1.0, a, g))
        return jnp.vectorize(grad)(log_u, alpha, i)

    def bisection_step(_, bracket):
        lo, hi = bracket
        mid = 0.5 * (lo + hi)
        rising = slope(mid) > 0
        return jnp.where(rising, mid, lo), jnp.where(rising, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iterations, bisection_step, (lo, hi))
    log_u_star = 0.5 * (lo + hi)
    ratio = jnp.where(on_edge, jnp.nan, jnp.exp(log_u_star))
    return ratio, _phase_transition_bound(ratio, 1.0, 1.0, alpha, i)


def threshold_m_star(n: ArrayLike, alpha: ArrayLike, generations_i: ArrayLike, *,
                     iterations: int = 60) -> PhaseTransitionPeak:
    """Numerical peak of ``B_i(m)`` over ``m`` for any ``i >= 1``.

    Claim: B3/A5 (R4). Kind: exact up to the search tolerance (about 1e-12
    relative in ``m*``). Method: argmax of ``B_i`` on a fine log grid of
    ``u = m/n`` in ``[1e-6, 1e10]``, then bisection on the sign of
    ``dB_i/d log u`` (autodiff) between the grid neighbours of that argmax
    (vectorised; fixed iterations).
    Assumes one interior peak (checked numerically in the tests and docs).
    ``C`` is irrelevant to the argmax and set to 1. Proof: docs/paper_b.md §3.4.

    Args:
      n: real sample count ``> 0``.
      alpha: rate exponent in (0, 1).
      generations_i: generation index ``i >= 1``.
      iterations: bisection steps (the bracket starts ~0.02 wide in log u).

    Returns:
      ``PhaseTransitionPeak``.
    """
    validate.check_positive("n", n)
    validate.check_in_range("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    _check_generations("generations_i", generations_i)
    validate.check_positive("generations_i", generations_i)
    validate.check_positive_int("iterations", iterations)
    n, alpha, i = jnp.broadcast_arrays(*(jnp.asarray(v, jnp.float64) for v in (n, alpha, generations_i)))
    ratio, peak = _peak_of_template(alpha, i, iterations)
    return PhaseTransitionPeak(m_star=n * ratio, m_star_over_n=ratio, peak_over_eps_n=peak)
