"""Gaussian kernel density estimation in the loop (paper B: B3, B4; peer check P8).

Setting (THEORY §1, §4): generation ``i``'s KDE is fit to ``n`` real samples
plus ``m_i`` synthetic samples drawn from the KDE of generation ``i-1``, with a
Gaussian kernel of bandwidth ``h_i``; ``lam_i = n / (n + m_i)`` and ``lam_0 = 1``
(``G_0`` sees real data only). The expectation of the KDE density is the same
for ``reuse`` and ``fresh`` (each real point is marginally ``p0``), so the
formulas here hold for both. For ``accumulate`` the exact second moment is
``bounds.peers.kde_accumulate_second_moment`` (docs/peers.md §P8).

Proofs: docs/paper_b.md §4 (expected density, P8) and §5 (rate heuristic).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from bounds import validate
from bounds.tv import eps_rate, one_minus_power

__all__ = [
    "KdeMixture",
    "expected_density_components",
    "constant_lam_components",
    "expected_density",
    "expected_density_2d",
    "excess_variance",
    "bias_amplification_factor",
    "kde_bandwidth",
    "kde_tv_exponent",
    "kde_tv_rate",
]


class KdeMixture(NamedTuple):
    """``E p_hat_i = sum_j weights[j] (p0 * N(0, variances[j]))``.

    Entry ``j`` is the part of the data whose ancestry reaches ``p0`` at
    generation ``j`` (a real sample used by ``G_j``) and which has since
    passed through the kernels of generations ``j..i``.
    """

    weights: jax.Array    # shape (i+1,), sums to 1
    variances: jax.Array  # shape (i+1,), sum_{k=j..i} h_k^2


def _check_lam_and_h(lam: Any, h: Any) -> tuple[jax.Array, jax.Array]:
    validate.check_lam_schedule("lam", lam)
    validate.check_positive("h", h)
    lam = jnp.asarray(lam, jnp.float64)
    h = jnp.asarray(h, jnp.float64)
    if lam.ndim != 1 or h.shape != lam.shape:
        raise ValueError(f"lam and h must be 1-D schedules of the same length (indexed by "
                         f"generation 0..i), got shapes {lam.shape} and {h.shape}")
    return lam, h


def _survival(lam: jax.Array) -> jax.Array:
    """``S_j = prod_{k=j+1..i} (1 - lam_k)``: no real data re-enters after generation ``j``."""
    through = jnp.cumprod((1.0 - lam)[::-1])[::-1]  # prod_{k=j..i}
    return jnp.concatenate([through[1:], jnp.ones(1)])


def expected_density_components(lam: ArrayLike, h: ArrayLike) -> KdeMixture:
    """Mixture weights and kernel variances of ``E p_hat_i`` for any ``lam``/``h`` schedules.

    Claim: P8 generalised (B4). Kind: exact. ``weights[j] = lam_j prod_{k=j+1..i} (1-lam_k)``,
    ``variances[j] = sum_{k=j..i} h_k^2``. With constant ``lam`` and ``h`` this
    is THEORY's P8 with ``k = i - j + 1`` (see ``constant_lam_components``).
    Assumptions: Gaussian kernels, synthetic samples drawn exactly from the
    previous KDE, ``reuse`` or ``fresh`` real data. Proof: docs/paper_b.md §4.1.

    Args:
      lam: real proportions ``lam[0..i]``, ``lam[0] = 1``.
      h: bandwidths ``h[0..i] > 0``.

    Returns:
      ``KdeMixture`` indexed by origin generation ``j = 0..i``.
    """
    lam, h = _check_lam_and_h(lam, h)
    weights = lam * _survival(lam)
    variances = jnp.cumsum((h ** 2)[::-1])[::-1]
    return KdeMixture(weights=weights, variances=variances)


def constant_lam_components(lam: ArrayLike, h: ArrayLike, generation: int) -> KdeMixture:
    """THEORY's P8 form: ``w_k = lam (1-lam)^(k-1)`` (``k <= g``), ``w_{g+1} = (1-lam)^g``, variance ``k h^2``.

    Claim: P8 (indexing: ``g = i``, the generation of THEORY §1). Kind: exact.
    Entries are ordered by ``k = 1..g+1``. Proof: docs/paper_b.md §4.1.
    """
    validate.check_proportion("lam", lam)
    validate.check_positive("h", h)
    g = validate.check_nonnegative_int("generation", generation)
    lam = jnp.asarray(lam, jnp.float64)
    k = jnp.arange(1, g + 2, dtype=jnp.float64)
    weights = jnp.where(k <= g, lam * (1.0 - lam) ** (k - 1), (1.0 - lam) ** g)
    return KdeMixture(weights=weights, variances=k * jnp.asarray(h, jnp.float64) ** 2)


def _check_p0(p0_loc: Any, p0_weight: Any, p0_scale: Any, dim: int):
    validate.check_nonnegative("p0_weight", p0_weight)
    validate.check_positive("p0_scale", p0_scale)
    loc = jnp.asarray(p0_loc, jnp.float64)
    weight = jnp.asarray(p0_weight, jnp.float64)
    scale = jnp.asarray(p0_scale, jnp.float64)
    loc_shape = weight.shape + ((dim,) if dim > 1 else ())
    if weight.ndim != 1 or scale.shape != weight.shape or loc.shape != loc_shape:
        raise ValueError(f"p0_loc, p0_weight, p0_scale must have shapes {('C',) + loc_shape[1:]}, "
                         f"(C,), (C,); got {loc.shape}, {weight.shape}, {scale.shape}")
    if validate.is_concrete(p0_weight) and not np.isclose(np.sum(np.asarray(p0_weight)), 1.0, atol=1e-12):
        raise ValueError(f"p0_weight must sum to 1, got sum {np.sum(np.asarray(p0_weight))}")
    return loc, weight, scale


def expected_density(x: ArrayLike, p0_loc: ArrayLike, p0_weight: ArrayLike, p0_scale: ArrayLike,
                     lam: ArrayLike, h: ArrayLike) -> jax.Array:
    """``E p_hat_i(x)`` for a 1-D Gaussian-mixture ``p0 = sum_c pi_c N(mu_c, sigma_c^2)``.

    Claim: P8 generalised (B4). Kind: exact: ``N(mu, s^2) * N(0, v) = N(mu, s^2 + v)``,
    so ``E p_hat_i = sum_{j,c} w_j pi_c N(x; mu_c, sigma_c^2 + V_j)``.
    Proof: docs/paper_b.md §4.1-4.2.

    Args:
      x: evaluation points, any shape.
      p0_loc, p0_weight, p0_scale: component means, weights (sum 1), std devs; shape ``(C,)``.
      lam: real proportions ``lam[0..i]``, ``lam[0] = 1``.
      h: bandwidths ``h[0..i] > 0``.

    Returns:
      Density values, shape of ``x``.
    """
    loc, weight, scale = _check_p0(p0_loc, p0_weight, p0_scale, dim=1)
    mixture = expected_density_components(lam, h)
    x = jnp.asarray(x, jnp.float64)[..., None, None]  # (..., origin j, component c)
    variance = scale ** 2 + mixture.variances[:, None]
    coef = mixture.weights[:, None] * weight
    normal = jnp.exp(-0.5 * (x - loc) ** 2 / variance) / jnp.sqrt(2.0 * jnp.pi * variance)
    return jnp.sum(coef * normal, axis=(-2, -1))


def expected_density_2d(x: ArrayLike, p0_loc: ArrayLike, p0_weight: ArrayLike,
                        p0_scale: ArrayLike, lam: ArrayLike, h: ArrayLike) -> jax.Array:
    """``E p_hat_i(x)`` in 2-D: isotropic Gaussian kernels, isotropic Gaussian-mixture ``p0``.

    Claim: P8 generalised to 2-D (B4). Kind: exact; as the 1-D case with
    ``N(x; mu_c, (sigma_c^2 + V_j) I_2)``. Proof: docs/paper_b.md §4.3.

    Args:
      x: points of shape ``(..., 2)``.
      p0_loc: component means ``(C, 2)``; p0_weight ``(C,)`` summing to 1;
        p0_scale ``(C,)`` per-coordinate std devs.
      lam, h: schedules as in ``expected_density``.

    Returns:
      Density values of shape ``x.shape[:-1]``.
    """
    loc, weight, scale = _check_p0(p0_loc, p0_weight, p0_scale, dim=2)
    x = jnp.asarray(x, jnp.float64)
    if x.shape[-1:] != (2,):
        raise ValueError(f"x must have shape (..., 2), got {x.shape}")
    mixture = expected_density_components(lam, h)
    squared_distance = jnp.sum((x[..., None, :] - loc) ** 2, axis=-1)[..., None, :]  # (..., 1, C)
    variance = scale ** 2 + mixture.variances[:, None]                              # (J, C)
    coef = mixture.weights[:, None] * weight
    normal = jnp.exp(-0.5 * squared_distance / variance) / (2.0 * jnp.pi * variance)
    return jnp.sum(coef * normal, axis=(-2, -1))


def excess_variance(lam: ArrayLike, h: ArrayLike) -> jax.Array:
    """``Var(E p_hat_i) - Var(p0) = sum_{k=0..i} h_k^2 prod_{l=k+1..i} (1 - lam_l)``.

    Claim: P8/B4 (bias of the expected KDE). Kind: exact. Kernel ``k`` acts
    on the part of the data whose origin is at or before ``k``, a fraction
    ``prod_{l>k} (1-lam_l)``; the mean is unchanged (zero-mean kernels).
    Computed without the mixture components, so it cross-checks them.
    Constant schedules give ``h^2 * bias_amplification_factor(lam, i)``.
    Proof: docs/paper_b.md §4.2.
    """
    lam, h = _check_lam_and_h(lam, h)
    return jnp.sum(h ** 2 * _survival(lam))


def bias_amplification_factor(lam: ArrayLike, generation: ArrayLike) -> jax.Array:
    """``(1 - (1-lam)^(i+1)) / lam``, with its ``lam = 0`` limit ``i + 1``.

    Claim: P8/B4. Kind: exact: excess variance ``= h^2`` times this, for
    constant ``lam`` and ``h``. It is ``E min(K, i+1)`` with ``K ~ Geometric(lam)``,
    increasing in ``i``, bounded by ``1/lam`` for ``lam > 0`` and linear in
    ``i`` at ``lam = 0``. ``lam = 0`` is handled without dividing by zero, and
    small ``lam`` without cancellation. Proof: docs/paper_b.md §4.2.

    Args:
      lam: real proportion in [0, 1].
      generation: generation index ``i >= 0``.
    """
    validate.check_proportion("lam", lam)
    validate.check_nonnegative("generation", generation)
    lam = jnp.asarray(lam, jnp.float64)
    steps = jnp.asarray(generation, jnp.float64) + 1.0
    positive = lam > 0
    ratio = one_minus_power(lam, steps) / jnp.where(positive, lam, 1.0)
    return jnp.where(positive, ratio, steps)


def kde_bandwidth(N: ArrayLike, c: ArrayLike = 1.0, dim: int = 1) -> jax.Array:
    """Rate-optimal bandwidth shape ``h = c N^(-1/(4+d))``.

    Claim: B3/B4 (bandwidth rule of THEORY §4). Kind: rate (``c`` is a choice
    or a fit). Proof sketch: docs/paper_b.md §5.
    """
    validate.check_positive("N", N)
    validate.check_positive("c", c)
    d = validate.check_positive_int("dim", dim)
    return jnp.asarray(c, jnp.float64) * jnp.asarray(N, jnp.float64) ** (-1.0 / (4.0 + d))


def kde_tv_exponent(dim: int = 1) -> float:
    """Heuristic TV-rate exponent ``2 / (4 + d)`` of a KDE with ``h ~ N^(-1/(4+d))``: 2/5 in 1-D, 1/3 in 2-D.

    Claims B1/B3. Kind: rate (exponent of a heuristic; verify by fitting). docs/paper_b.md §5.
    """
    d = validate.check_positive_int("dim", dim)
    return 2.0 / (4.0 + d)


def kde_tv_rate(N: ArrayLike, C: ArrayLike, alpha: ArrayLike = 0.4) -> jax.Array:
    """Single-step KDE error ``E TV(p_hat, p) ~ C N^(-alpha)``.

    Claim: B3/B4 input to R4. Kind: rate: ``C`` (and, for a check, ``alpha``)
    are fitted from one-generation runs, never assumed. The default
    ``alpha = 2/5`` is the 1-D bias-variance heuristic with ``h ~ N^(-1/5)``;
    use ``kde_tv_exponent(2) = 1/3`` in 2-D with ``h ~ N^(-1/6)``.
    Assumptions: smooth density (bounded second derivatives, enough tails for
    ``int sqrt(p) < inf``). Heuristic: docs/paper_b.md §5.
    """
    return eps_rate(N, C, alpha)
