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
from jax.typing import ArrayLike
import numpy as np
from jax.scipy.special import digamma

from bounds.validate import (check_in_range, check_integer_at_least, check_nonnegative,
                             check_positive, check_proportion, is_concrete)

__all__ = [
    "gamma_star",
    "icl_risk",
    "LoopMoments",
    "moments",
    "coupled_difference_moments",
    "contraction_factor",
    "fourth_moment_factor",
    "mean_square_boundary",
    "lyapunov_exponent",
    "almost_sure_boundary",
    "tame_generations",
    "log_increment_sd_bound",
    "almost_sure_regime",
    "late_window_start",
    "recursive_stability_constant",
    "recursive_stability_scale",
]


# --------------------------------------------------------------------------- #
# Input checks (named parameter, stated condition).
# --------------------------------------------------------------------------- #
_check_int = check_integer_at_least


def _check_lam(lam: Any) -> Any:
    # lam = 1 means no synthetic data: A_i = 0 and log|A_i u| = -inf.
    return check_proportion("lam", lam, allow_one=False)


def _f64(*values):
    return tuple(jnp.asarray(v, jnp.float64) for v in values)


# --------------------------------------------------------------------------- #
# One shot: in-context risk and its optimum (A4 uses these too).
# --------------------------------------------------------------------------- #
def gamma_star(N: ArrayLike, d: ArrayLike, sigma: ArrayLike) -> jax.Array:
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


def icl_risk(gamma: ArrayLike, N: ArrayLike, d: ArrayLike, sigma: ArrayLike) -> jax.Array:
    """One-shot in-context test risk ``E(w_hat.x_q - y_q)^2`` of ``w_hat = (gamma/N) sum x y``.

    ``= d [gamma^2 (N + d + 1 + sigma^2) / N - 2 gamma + 1] + sigma^2``.

    Claim A2/A4. Kind: exact. Assumptions: prompt ``(x_j, y_j)_{j<=N}`` and query
    ``(x_q, y_q)`` i.i.d. with ``x ~ N(0, I_d)``, ``y = w.x + sigma xi``, ``w ~ N(0, I_d)``
    independent of everything; the expectation is over ``w``, prompt and query.
    (For a fixed ``w`` replace ``d`` by ``|w|^2`` in the first term and add nothing: LA s.1.)
    Proof: LA s.1 (``E[W A W] = N(N+1) A + N tr(A) I`` for ``W = X^T X``).

    Args:
      gamma: the attention scale, any finite real (a trained network's fitted scale can be < 0).
      N: prompt length, integer ``>= 1``.
      d: input dimension, integer ``>= 1``.
      sigma: label-noise standard deviation, ``>= 0``.

    Returns:
      float64 array broadcast over the inputs.
    """
    check_in_range("gamma", gamma, -np.inf, np.inf)  # the risk is a quadratic in any real gamma
    _check_int("N", N, 1)
    _check_int("d", d, 1)
    check_nonnegative("sigma", sigma)
    gamma, N, d, sigma = _f64(gamma, N, d, sigma)
    return d * (gamma ** 2 * (N + d + 1.0 + sigma ** 2) / N - 2.0 * gamma + 1.0) + sigma ** 2


# --------------------------------------------------------------------------- #
# The loop: exact first and second moments.
# --------------------------------------------------------------------------- #
class LoopMoments(NamedTuple):
    """Exact moments of the loop's predictor, one row per generation ``i = 0..G-1``.

    Attributes:
      mean: ``E w_hat_i``, shape ``(G, d)``.
      second: ``E w_hat_i w_hat_i^T``, shape ``(G, d, d)``.
      error: ``E |w_hat_i - w|^2`` (``moments``) or ``E |w_hat_i|^2`` (``_affine_moments``,
        ``coupled_difference_moments``), shape ``(G,)``.
    """

    mean: jax.Array
    second: jax.Array
    error: jax.Array


def _check_loop(gamma, n, m, generations):
    check_nonnegative("gamma", gamma)
    n = _check_int("n", n, 1)
    m = _check_int("m", m, 1)
    if not isinstance(generations, (int, np.integer)) or isinstance(generations, bool):
        raise TypeError(f"generations must be an integer >= 1, got {generations!r}")
    if generations < 1:
        raise ValueError(f"generations must be an integer >= 1, got {generations}")
    return int(n), int(m), int(generations)


def _affine_moments(gamma: Any, n: int, m: int, r_mean: Any, r_second: Any, tau: Any,
                   generations: int) -> LoopMoments:
    """Exact moments of ``v_0 = (gamma/n) r``, ``v_i = (gamma/N) r + A_i v_{i-1} + e_i``.

    ``A_i = (gamma/N) X_i^T X_i`` with ``X_i`` an ``m x d`` standard Gaussian matrix,
    ``e_i = (gamma tau/N) X_i^T xi_i``, both independent of the past and of the
    random vector ``r`` (which is drawn once and reused every generation). With
    ``c = gamma/N``, ``rho = gamma m/N = gamma (1-lam)``, ``R = E r r^T`` and
    ``C_i = E r v_i^T``:

        E v_i   = c E r + rho E v_{i-1}
        C_i     = c R + rho C_{i-1}
        E v v^T = c^2 R + c rho (C_{i-1} + C_{i-1}^T)
                  + c^2 [m(m+1) M_{i-1} + m tr(M_{i-1}) I] + c^2 tau^2 m I.

    Claim A2 (second-moment dynamics), THEORY section 4. Kind: exact, for any law
    of ``r`` with these first two moments (a fixed ``r``: ``r_second = r r^T``).
    Proof: LA s.2 (uses ``E[W B W] = m(m+1) B + m tr(B) I`` for ``W = X^T X``).

    Args:
      gamma: attention scale, ``>= 0``.
      n: real prompt examples, integer ``>= 1``.
      m: synthetic examples per generation, integer ``>= 1``.
      r_mean: ``E r``, shape ``(d,)``.
      r_second: ``E r r^T``, shape ``(d, d)``.
      tau: synthetic label-noise standard deviation, ``>= 0``.
      generations: rows returned, integer ``>= 1``.

    Returns:
      ``LoopMoments`` with ``error = E |v_i|^2``.
    """
    n, m, generations = _check_loop(gamma, n, m, generations)
    check_nonnegative("tau", tau)
    r_mean = jnp.asarray(r_mean, jnp.float64)
    r_second = jnp.asarray(r_second, jnp.float64)
    if r_mean.ndim != 1 or r_second.shape != (r_mean.shape[0],) * 2:
        raise ValueError(f"r_mean must have shape (d,) and r_second (d, d), got "
                         f"{r_mean.shape} and {r_second.shape}")
    gamma, tau = _f64(gamma, tau)
    d = r_mean.shape[0]
    eye = jnp.eye(d)
    c, c0 = gamma / (n + m), gamma / n
    rho = c * m

    def step(state, _):
        mean, second, cross = state
        new = (c * r_mean + rho * mean,
               c ** 2 * r_second + c * rho * (cross + cross.T)
               + c ** 2 * (m * (m + 1) * second + m * jnp.trace(second) * eye)
               + c ** 2 * tau ** 2 * m * eye,
               c * r_second + rho * cross)
        return new, new

    start = (c0 * r_mean, c0 ** 2 * r_second, c0 * r_second)
    _, rest = jax.lax.scan(step, start, None, length=generations - 1)
    mean, second, _ = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), start, rest)
    return LoopMoments(mean, second, jnp.trace(second, axis1=1, axis2=2))


def _check_truth(w):
    w = jnp.asarray(w, jnp.float64)
    if w.ndim != 1 or w.shape[0] < 1:
        raise ValueError(f"w must be a vector of length d >= 1, got shape {w.shape}")
    if is_concrete(w) and not np.all(np.isfinite(np.asarray(w))):
        raise ValueError(f"w must be finite, got {w!r}")
    return w


def moments(gamma: ArrayLike, n: int, m: int, w: ArrayLike, sigma: ArrayLike, tau: ArrayLike,
            generations: int) -> LoopMoments:
    """Exact ``E w_hat_i``, ``E w_hat_i w_hat_i^T`` and ``E |w_hat_i - w|^2`` of the loop.

    Conditioned on the task vector ``w`` (fixed); averaged over the real prompt
    ``S0`` (``n`` examples ``x ~ N(0, I_d)``, ``y = w.x + sigma xi``, drawn once and
    reused), the synthetic inputs and the synthetic label noise ``tau``. This is
    what one replica of the simulated loop averages over (the engine draws ``S0``
    per replica). ``_affine_moments`` with ``E r = n w`` and
    ``E r r^T = n(n+1) w w^T + n(|w|^2 + sigma^2) I``.

    Claim A2 (THEORY section 4, "first and second moments follow an exact
    recursion"). Kind: exact. Proof: LA s.2.

    Args:
      gamma: attention scale, ``>= 0``.
      n: real prompt examples (``S0``), integer ``>= 1``.
      m: synthetic examples per generation, integer ``>= 1``.
      w: the task vector, shape ``(d,)``, ``d >= 1``.
      sigma: real label-noise standard deviation, ``>= 0``.
      tau: synthetic label-noise standard deviation, ``>= 0``.
      generations: rows returned, integer ``>= 1``.

    Returns:
      ``LoopMoments``; ``error[i] = E |w_hat_i - w|^2``.
    """
    _check_loop(gamma, n, m, generations)
    check_nonnegative("sigma", sigma)
    w = _check_truth(w)
    sigma = jnp.asarray(sigma, jnp.float64)
    outer = jnp.outer(w, w)
    r_second = n * (n + 1) * outer + n * (w @ w + sigma ** 2) * jnp.eye(w.shape[0])
    loop = _affine_moments(gamma, n, m, n * w, r_second, tau, generations)
    error = loop.error - 2.0 * loop.mean @ w + w @ w
    return loop._replace(error=error)


def _replaced_example_second_moment(w: Any, sigma: Any) -> jax.Array:
    """``E u u^T`` for ``u = x y - x' y'``, two independent real examples.

    ``= 2 Cov(x y) = 2[(|w|^2 + sigma^2) I + w w^T]`` (Isserlis:
    ``E[x x^T (x.w)^2] = |w|^2 I + 2 w w^T``), and ``E u = 0``.
    Claim A2 (R2 input). Kind: exact. Proof: LA s.4.

    Args:
      w: task vector, shape ``(d,)``.
      sigma: real label-noise standard deviation, ``>= 0``.

    Returns:
      float64 ``(d, d)`` array.
    """
    check_nonnegative("sigma", sigma)
    w = _check_truth(w)
    return 2.0 * ((w @ w + jnp.asarray(sigma, jnp.float64) ** 2) * jnp.eye(w.shape[0])
                  + jnp.outer(w, w))


def coupled_difference_moments(gamma: ArrayLike, n: int, m: int, w: ArrayLike, sigma: ArrayLike,
                               generations: int) -> LoopMoments:
    """Exact ``E |w_hat_i - w_hat'_i|^2`` of two loops on ``S0`` and ``S0'`` (one example replaced).

    The twins share every synthetic input and noise draw (``sims.coupled.shared_keys``),
    so ``Delta_i = w_hat_i - w_hat'_i`` obeys ``Delta_0 = (gamma/n) u``,
    ``Delta_i = (gamma/N) u + A_i Delta_{i-1}`` with ``u = x_j y_j - x'_j y'_j``: the
    synthetic noise cancels. ``_affine_moments`` with ``E u = 0``, ``tau = 0`` and
    ``E u u^T`` from ``_replaced_example_second_moment``.

    Claim A2 (recursive stability, R2). Kind: exact (for fixed ``w``, averaged over
    ``S0``, the replacement and the shared draws). Proof: LA s.4.

    Args:
      gamma, n, m, w, sigma, generations: as ``moments``.

    Returns:
      ``LoopMoments``; ``error[i] = E |Delta_i|^2``.
    """
    _check_loop(gamma, n, m, generations)
    second = _replaced_example_second_moment(w, sigma)
    return _affine_moments(gamma, n, m, jnp.zeros(second.shape[0]), second, 0.0, generations)


# --------------------------------------------------------------------------- #
# Growth factors of the bare product A_i ... A_1: mean square, fourth moment, a.s.
# --------------------------------------------------------------------------- #
def _check_factor_args(gamma, lam, d, m, positive_gamma=False):
    (check_positive if positive_gamma else check_nonnegative)("gamma", gamma)
    _check_lam(lam)
    _check_int("d", d, 1)
    _check_int("m", m, 1)
    return _f64(gamma, lam, d, m)


def contraction_factor(gamma: ArrayLike, lam: ArrayLike, d: ArrayLike, m: ArrayLike) -> jax.Array:
    """Mean-square growth factor ``gamma^2 (1-lam)^2 (1 + (d+1)/m)`` of one generation.

    ``E |A u|^2 = (gamma/N)^2 m (m + d + 1)`` for a unit ``u``, with ``N = m/(1-lam)``.
    The second moments of the loop contract iff this is ``< 1``; the top eigenvalue
    of the linear map ``M -> E[A M A]`` is this factor (eigenvector ``I``).

    Claim A2 (THEORY section 4). Kind: exact. Proof: LA s.3.

    Args:
      gamma: attention scale, ``>= 0``.
      lam: real proportion ``n/N`` in ``[0, 1)``.
      d: input dimension, integer ``>= 1``.
      m: synthetic examples per generation, integer ``>= 1``.

    Returns:
      float64 array.
    """
    gamma, lam, d, m = _check_factor_args(gamma, lam, d, m)
    return gamma ** 2 * (1.0 - lam) ** 2 * (1.0 + (d + 1.0) / m)


def fourth_moment_factor(gamma: ArrayLike, lam: ArrayLike, d: ArrayLike, m: ArrayLike) -> jax.Array:
    """Fourth-moment growth factor ``E |A u|^4`` of one generation (unit ``u``).

    ``|A u|^2 = (gamma/N)^2 S (S + T)`` with ``S ~ chi2_m``, ``T ~ chi2_{d-1}``, so
    ``E |A u|^4 = (gamma(1-lam)/m)^4 [m(m+2)(m+4)(m+6) + 2m(m+2)(m+4)(d-1) + m(m+2)(d-1)(d+1)]``.
    Used to decide where sample second moments are trustworthy (``tame_generations``).

    Claim A2. Kind: exact. Proof: LA s.3.

    Args:
      gamma, lam, d, m: as ``contraction_factor``.

    Returns:
      float64 array.
    """
    gamma, lam, d, m = _check_factor_args(gamma, lam, d, m)
    s4 = m * (m + 2) * (m + 4) * (m + 6) + 2 * m * (m + 2) * (m + 4) * (d - 1) \
        + m * (m + 2) * (d - 1) * (d + 1)
    return (gamma * (1.0 - lam) / m) ** 4 * s4


def mean_square_boundary(lam: ArrayLike, d: ArrayLike, m: ArrayLike) -> jax.Array:
    """``gamma_ms = 1 / ((1-lam) sqrt(1 + (d+1)/m))``: ``contraction_factor = 1`` there.

    Claim A2. Kind: exact (the boundary of mean-square convergence). Proof: LA s.3.

    Args:
      lam: real proportion in ``[0, 1)``; d, m: integers ``>= 1``.

    Returns:
      float64 array.
    """
    _, lam, d, m = _check_factor_args(1.0, lam, d, m)
    return 1.0 / ((1.0 - lam) * jnp.sqrt(1.0 + (d + 1.0) / m))


def _log_norm_mean(d, m):
    """``E log |X^T X u| / m``-free part: ``½[psi(m/2) + psi((m+d-1)/2)] + log 2``."""
    return 0.5 * (digamma(m / 2.0) + digamma((m + d - 1.0) / 2.0)) + math.log(2.0)


def lyapunov_exponent(gamma: ArrayLike, lam: ArrayLike, d: ArrayLike, m: ArrayLike) -> jax.Array:
    """Top Lyapunov exponent of ``A_i ... A_1``: ``lim (1/i) log |A_i ... A_1 u|`` a.s.

    ``lam_L = log(gamma (1-lam)) + ½[psi(m/2) + psi((m+d-1)/2)] + log 2 - log m``.
    By rotation invariance, ``log |A_i ... A_1 u|`` is a sum of i.i.d. copies of
    ``log |A u| = log(gamma/N) + ½ log S + ½ log(S + T)``, so this is also the exact
    mean of *every* per-generation increment, and ``E log chi2_k = psi(k/2) + log 2``.
    The loop converges almost surely (in law) iff it is ``< 0``.

    Claim A2 (THEORY section 4, "mean square is not almost sure"). Kind: exact.
    Proof: LA s.3.

    Args:
      gamma: attention scale, ``> 0``.
      lam: real proportion in ``[0, 1)``.
      d, m: integers ``>= 1``.

    Returns:
      float64 array.
    """
    gamma, lam, d, m = _check_factor_args(gamma, lam, d, m, positive_gamma=True)
    return jnp.log(gamma * (1.0 - lam) / m) + _log_norm_mean(d, m)


def almost_sure_boundary(lam: ArrayLike, d: ArrayLike, m: ArrayLike) -> jax.Array:
    """``gamma_as``: the ``gamma`` at which ``lyapunov_exponent`` is 0.

    ``gamma_as = m exp(-½[psi(m/2) + psi((m+d-1)/2)] - log 2) / (1 - lam)``.
    Claim A2. Kind: exact. Proof: LA s.3.

    Args:
      lam: real proportion in ``[0, 1)``; d, m: integers ``>= 1``.

    Returns:
      float64 array.
    """
    _, lam, d, m = _check_factor_args(1.0, lam, d, m)
    return m * jnp.exp(-_log_norm_mean(d, m)) / (1.0 - lam)


def tame_generations(gamma: ArrayLike, lam: float, d: int, m: int, generations: int,
                     limit: float = 10.0) -> np.ndarray:
    """Generations whose sample second moment can be z-tested (conservative rule).

    The kurtosis of ``|A_i ... A_1 u|^2`` grows per generation like
    ``g4 = max(E|Au|^4, 1) / max(E|Au|^2, 1)^2`` (the fourth moment grows like
    ``E|Au|^4`` when it exceeds 1, the squared second moment like
    ``E|Au|^2`` squared when that exceeds 1). Generation ``i`` is tame iff
    ``g4^i <= limit``; all generations are tame when ``E|Au|^4 < 1`` (the
    stationary law then has a finite fourth moment).

    Claim A2 (which notion a check tests, THEORY section 4). Kind: a decision
    rule, not a bound. Rationale: LA s.5.

    Args:
      gamma, lam, d, m: as ``contraction_factor`` (concrete values).
      generations: integer ``>= 1``.
      limit: largest kurtosis growth allowed, ``>= 1``.

    Returns:
      boolean NumPy array of shape ``(generations,)``.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    second = float(contraction_factor(gamma, lam, d, m))
    fourth = float(fourth_moment_factor(gamma, lam, d, m))
    growth = max(fourth, 1.0) / max(second, 1.0) ** 2
    i = np.arange(int(generations))
    return i * math.log(growth) <= math.log(limit) + 1e-12


def log_increment_sd_bound(d: int, m: int) -> float:
    """Upper bound on the standard deviation of one increment ``log |A u|``.

    ``log |A u| = const + ½ log S + ½ log(S + T)`` (``S ~ chi2_m``, ``T ~ chi2_{d-1}``), and
    ``Var log chi2_k = psi'(k/2)``; the standard deviation of a sum is at most the sum of the
    standard deviations, so ``sd <= ½[sqrt(psi'(m/2)) + sqrt(psi'((m+d-1)/2))]``.

    Claim A2. Kind: upper. Proof: LA s.7.
    """
    from scipy.special import polygamma

    d = check_integer_at_least("d", d, 1)
    m = check_integer_at_least("m", m, 1)
    return float(0.5 * (np.sqrt(polygamma(1, m / 2.0)) + np.sqrt(polygamma(1, (m + d - 1) / 2.0))))


def late_window_start(generations: int) -> int:
    """First generation of the loop rows' late window: the last third, ``2G // 3``.

    Where ``lambda > 0`` the additive term's share of ``log |w_i - w|`` decays like
    ``exp(-lambda i)`` and biases the slope upwards (default grid, window ``i >= G/2``:
    ``+0.011 ± 0.0025`` at ``gamma = 2.2, lam = 0.5``); the last third halves the transient.
    """
    return max(2 * int(generations) // 3, 1)


def almost_sure_regime(gamma: float, lam: float, d: int, m: int, generations: int) -> bool:
    """Whether ``generations`` reach the almost-sure regime that the loop rows test.

    ``log |A_i ... A_1 u|`` is a random walk with drift ``lambda`` and increments of standard
    deviation at most ``s = log_increment_sd_bound``. The late window starts at
    ``k = late_window_start(G)``;
    the rows test the a.s. limit (late increments 0 for ``lambda < 0``, ``2 lambda`` per
    generation of ``log |w_i - w|^2`` for ``lambda > 0``) only where by then the drift has
    outgrown the walk's spread, ``|lambda| k >= s sqrt(k)``. Near the boundary (e.g.
    ``gamma = 1, lam = 0.1``: ``|lambda| = 0.019``, about 600 generations) the loop is still in
    its transient and the row is reported, not tested.

    Claim A2. Kind: a decision rule, not a bound. Rationale: LA s.7.
    """
    k = late_window_start(generations)
    rate = abs(float(lyapunov_exponent(gamma, lam, d, m)))
    return rate * math.sqrt(k) >= log_increment_sd_bound(d, m)


# --------------------------------------------------------------------------- #
# R2 in this architecture's form.
# --------------------------------------------------------------------------- #
def recursive_stability_constant(gamma: ArrayLike, d: ArrayLike, m: ArrayLike) -> jax.Array:
    """This architecture's R2 constant ``c = gamma sqrt(1 + (d+1)/m)``.

    With ``gamma_i := |Delta_i|_{L2} / s`` (``s`` from ``recursive_stability_scale``;
    ``Delta_i`` the twins' predictor difference of ``coupled_difference_moments``),
    Minkowski's inequality gives exactly R2's recursion
    ``gamma_i <= eps_N (1 + m gamma_{i-1})`` with ``eps_N = c/N`` and base case
    ``gamma_0 = c/n`` (an equality). R2's contraction ``c (1-lam)`` equals
    ``sqrt(contraction_factor)``, so R2's dichotomy ``c(1-lam) < 1`` is the
    mean-square boundary: the architecture (``gamma``) decides it (A2).

    Claim A2, result R2. Kind: upper (the R2 recursion with this ``c`` bounds
    ``gamma_i``). Assumptions: synchronous coupling (shared synthetic draws),
    ``reuse`` scheme, one real example replaced. Proof: LA s.4.

    Args:
      gamma: attention scale, ``>= 0``.
      d, m: integers ``>= 1``.

    Returns:
      float64 array.
    """
    check_nonnegative("gamma", gamma)
    _check_int("d", d, 1)
    _check_int("m", m, 1)
    gamma, d, m = _f64(gamma, d, m)
    return gamma * jnp.sqrt(1.0 + (d + 1.0) / m)


def recursive_stability_scale(w: ArrayLike, sigma: ArrayLike, m: ArrayLike) -> jax.Array:
    """``s = |u|_{L2} / sqrt(1 + (d+1)/m)`` with ``|u|_{L2}^2 = 2[(d+1)|w|^2 + d sigma^2]``.

    The unit in which the twins' RMS predictor distance follows R2's recursion
    (``recursive_stability_constant``). Claim A2, R2. Kind: exact. Proof: LA s.4.

    Args:
      w: task vector, shape ``(d,)``.
      sigma: real label-noise standard deviation, ``>= 0``.
      m: integer ``>= 1``.

    Returns:
      float64 scalar.
    """
    _check_int("m", m, 1)
    second = _replaced_example_second_moment(w, sigma)
    d = second.shape[0]
    return jnp.sqrt(jnp.trace(second) / (1.0 + (d + 1.0) / m))
