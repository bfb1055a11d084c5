"""OU diffusion of a Gaussian mixture (1-D or 2-D): exact marginals and scores, and the Girsanov bound (B2).

For the OU process ``dX = −X dt + √2 dB`` started at a Gaussian mixture
``p0 = Σ_k π_k N(μ_k, s_k² I)``, every marginal is a Gaussian mixture,
``p_t = Σ_k π_k N(μ_k e^{-t}, (s_k² e^{-2t} + 1 − e^{-2t}) I)``, so ``∇log p_t`` is exact.
``loc`` is ``(K,)`` for 1-D data (points ``x`` of any shape) or ``(K, d)`` for ``d``-D
data (points ``(..., d)``); the mixture is isotropic (``scale`` is ``(K,)``).

What is proven and what is fitted (docs/diffusion.md):

* ``ou_marginal``, ``mixture_score``: exact.
* ``girsanov_kl_bound``: upper, no fitted constant. ``KL(p0 ‖ q) ≤ KL(p_T ‖ N(0,1)) +
  ∫_0^T E_{p_t}(s − ∇log p_t)² dt`` for the law ``q`` of the reverse SDE driven by ``s``
  and integrated exactly from ``N(0,1)`` at ``T`` (Girsanov + data processing;
  docs/diffusion.md §2). Evaluated by quadrature (``x``: midpoint on a grid; ``t``:
  Gauss–Legendre): exact up to quadrature.
* ``oneshot_error_shape``: rate. The shape ``a τ⁴/(W n) + b τ³/W² + c/τ + d`` of the
  one-shot error of the early-stopped random-feature model; ``a, b, c, d`` are fitted,
  never derived here.
* ``optimal_training_time``: exact argmin of that shape (given fitted constants).

Never imports ``sims``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from bounds import validate

__all__ = ["ou_marginal", "mixture_log_density", "mixture_score", "GirsanovBound",
           "girsanov_kl_bound", "oneshot_error_shape",
           "optimal_training_time"]


def ou_marginal(loc: ArrayLike, weight: ArrayLike, scale: ArrayLike, t: ArrayLike
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``p_t`` of the OU process from ``p0 = Σ π_k N(μ_k, s_k²)``: ``(loc_t, weight, scale_t)``.

    Claim: B2. Kind: exact. ``loc_t = μ e^{-t}``, ``scale_t² = s² e^{-2t} + 1 − e^{-2t}``
    (``t`` broadcasts on a new leading axis when it is an array).
    """
    t = jnp.asarray(t, jnp.float64)[..., None]
    loc, scale = jnp.asarray(loc, jnp.float64), jnp.asarray(scale, jnp.float64)
    decay = jnp.exp(-t)
    loc_t = loc * (decay if loc.ndim == 1 else decay[..., None])
    return loc_t, jnp.asarray(weight, jnp.float64), jnp.sqrt(
        scale ** 2 * decay ** 2 - jnp.expm1(-2.0 * t))


def _component_log_pdf(x, loc, weight, scale):
    """``log π_k N(x; μ_k, s_k² I)``, shape ``batch + (K,)``; ``loc`` may carry batch axes."""
    loc, scale = jnp.asarray(loc), jnp.asarray(scale)
    if loc.ndim == scale.ndim:                                  # 1-D: loc (..., K)
        square, dim = ((x[..., None] - loc) / scale) ** 2, 1
    else:                                                       # d-D: loc (..., K, d)
        dim = loc.shape[-1]
        square = jnp.sum((x[..., None, :] - loc) ** 2, axis=-1) / scale ** 2
    return (jnp.log(weight) - 0.5 * square - dim * jnp.log(scale)
            - 0.5 * dim * math.log(2.0 * math.pi))


def mixture_log_density(x: ArrayLike, loc: ArrayLike, weight: ArrayLike,
                        scale: ArrayLike) -> jax.Array:
    """``log Σ_k π_k N(x; μ_k, s_k² I)`` (logsumexp; ``x`` any shape in 1-D, ``(..., d)`` in d-D).

    Claim: B2 (the data law p0 and every OU marginal p_t). Kind: exact. Proof: none needed
    (definition); docs/diffusion.md §2.1 uses it for the exact scores.
    """
    x = jnp.asarray(x, jnp.float64)
    return jax.scipy.special.logsumexp(_component_log_pdf(x, loc, weight, scale), axis=-1)


def mixture_score(x: ArrayLike, loc: ArrayLike, weight: ArrayLike, scale: ArrayLike,
                  t: ArrayLike) -> jax.Array:
    """``∇log p_t(x)`` for the OU marginal of a Gaussian mixture.

    Claim: B2. Kind: exact. ``Σ_k r_k(x) (μ_k e^{-t} − x)/scale_k(t)²`` with
    responsibilities ``r_k`` from a softmax (no underflow far from the modes).
    ``x`` and ``t`` broadcast (in d-D, ``t`` against ``x.shape[:-1]``; the score is ``(..., d)``).
    """
    x, t = jnp.asarray(x, jnp.float64), jnp.asarray(t, jnp.float64)
    if jnp.ndim(loc) == 1:
        x, t = jnp.broadcast_arrays(x, t)
        loc_t, w, scale_t = ou_marginal(loc, weight, scale, t)
        resp = jax.nn.softmax(_component_log_pdf(x, loc_t, w, scale_t), axis=-1)
        return jnp.sum(resp * (loc_t - x[..., None]) / scale_t ** 2, axis=-1)
    t = jnp.broadcast_to(t, x.shape[:-1])
    loc_t, w, scale_t = ou_marginal(loc, weight, scale, t)
    resp = jax.nn.softmax(_component_log_pdf(x, loc_t, w, scale_t), axis=-1)
    pull = (loc_t - x[..., None, :]) / scale_t[..., None] ** 2           # (..., K, d)
    return jnp.sum(resp[..., None] * pull, axis=-2)


def _check_nodes(nodes):
    nodes = np.asarray(nodes, np.float64)
    if nodes.ndim != 1 or nodes.size < 8 or not np.allclose(np.diff(nodes), nodes[1] - nodes[0]):
        raise ValueError("nodes must be an equally spaced 1-D grid of at least 8 points")
    return nodes


def _dim(loc) -> int:
    return 1 if np.ndim(loc) == 1 else int(np.shape(loc)[-1])


def _points(nodes, dim):
    """Quadrature points and cell volume: ``nodes`` (1-D) or the product grid ``(G^d, d)``."""
    x = jnp.asarray(nodes)
    if dim > 1:
        x = jnp.stack(jnp.meshgrid(*([x] * dim), indexing="ij"), -1).reshape(-1, dim)
    return x, (nodes[1] - nodes[0]) ** dim


def _squared_norm(v, dim):
    return v ** 2 if dim == 1 else jnp.sum(v ** 2, axis=-1)


def _prior_kl(loc: Any, weight: Any, scale: Any, horizon: Any, nodes: Any) -> jax.Array:
    """``KL(p_T ‖ N(0, I))`` by the midpoint rule on equally spaced ``nodes`` (per axis).

    Claim: B2 (first term of the Girsanov bound). Kind: exact up to quadrature
    (the integrand is smooth and Gaussian-tailed; the grid must cover ``p_T``).
    """
    validate.check_positive("horizon", horizon)
    nodes = _check_nodes(nodes)
    dim = _dim(loc)
    loc_t, w, scale_t = ou_marginal(loc, weight, scale, horizon)
    x, cell = _points(nodes, dim)
    log_p = mixture_log_density(x, loc_t, w, scale_t)
    log_prior = -0.5 * _squared_norm(x, dim) - 0.5 * dim * math.log(2.0 * math.pi)
    return jnp.maximum(cell * jnp.sum(jnp.exp(log_p) * (log_p - log_prior)), 0.0)


class GirsanovBound(NamedTuple):
    """Terms of the Girsanov bound (nats): ``kl = prior + score``; ``integrand`` at ``times``."""

    prior: jax.Array
    score: jax.Array
    kl: jax.Array
    times: jax.Array
    integrand: jax.Array


def _gauss_legendre(horizon, time_nodes, t_split):
    """Composite Gauss–Legendre nodes on ``[0, t_split]`` and ``[t_split, T]`` (numpy)."""
    x, w = np.polynomial.legendre.leggauss(time_nodes)
    pieces = [(0.0, t_split), (t_split, horizon)] if 0 < t_split < horizon else [(0.0, horizon)]
    times, weights = [], []
    for a, b in pieces:
        times.append(0.5 * (b - a) * x + 0.5 * (a + b))
        weights.append(0.5 * (b - a) * w)
    return np.concatenate(times), np.concatenate(weights)


def girsanov_kl_bound(score_fn: Callable, loc: ArrayLike, weight: ArrayLike, scale: ArrayLike,
                      horizon: float,
                      nodes: ArrayLike, *, time_nodes: int = 48,
                      t_split: float = 0.25) -> GirsanovBound:
    """``KL(p0 ‖ q) ≤ KL(p_T ‖ N(0,1)) + ∫_0^T E_{p_t}(s(x,t) − ∇log p_t(x))² dt``.

    Claim: B2. Kind: upper, no fitted constant, for ``q`` the law at time 0 of the
    reverse SDE ``dY = [Y + 2 s(Y, t)] d(−t) + √2 dB`` run *exactly* from ``N(0,1)``
    at ``T``. Assumptions: OU forward process ``dX = −X dt + √2 dB`` (so the factor
    is ``g²/2 = 1``), ``s`` Lipschitz in ``x`` (a relu random-feature score is),
    ``KL(p0‖·)`` finite. Proof: docs/diffusion.md §2 (Song et al. 2021, Thm 1).
    A discretised sampler is not covered: its error is budgeted separately.
    In ``d`` dimensions (``loc`` ``(K, d)``) the same bound holds with ``N(0, I)`` and
    ``‖s − ∇log p_t‖²`` (the Girsanov argument is coordinate-free); the expectation is
    the midpoint rule on the product grid ``nodes^d``.

    Args:
      score_fn: ``(x, t) -> s(x, t)``, broadcasting (``x`` of shape (G,) in 1-D or
        ``(G^d, d)``, ``t`` scalar).
      loc, weight, scale: the mixture ``p0``.
      horizon: ``T > 0``.
      nodes: equally spaced grid (per axis) covering every ``p_t`` (midpoint rule).
      time_nodes: Gauss–Legendre nodes per piece; ``t_split`` splits ``[0, T]``
        where the integrand changes fastest (small ``t``).

    Returns:
      ``GirsanovBound`` (``kl`` = the bound on ``KL(p0 ‖ q)``).
    """
    validate.check_positive("horizon", horizon)
    validate.check_positive_int("time_nodes", time_nodes)
    nodes = _check_nodes(nodes)
    times, t_weights = _gauss_legendre(float(horizon), time_nodes, t_split)
    dim = _dim(loc)
    x, cell = _points(nodes, dim)

    def integrand(t):
        loc_t, w, scale_t = ou_marginal(loc, weight, scale, t)
        density = jnp.exp(mixture_log_density(x, loc_t, w, scale_t))
        error = score_fn(x, t) - mixture_score(x, loc, weight, scale, t)
        return cell * jnp.sum(density * _squared_norm(error, dim))

    values = jax.vmap(integrand)(jnp.asarray(times))
    score_term = jnp.sum(jnp.asarray(t_weights) * values)
    prior = _prior_kl(loc, weight, scale, horizon, nodes)
    return GirsanovBound(prior, score_term, prior + score_term, jnp.asarray(times), values)


def oneshot_error_shape(tau: ArrayLike, n: ArrayLike, width: ArrayLike,
                        coef: ArrayLike) -> jax.Array:
    """``a τ⁴/(W n) + b τ³/W² + c/τ + d``: the one-shot error's shape in ``τ, n, W``.

    Claim: B2. Kind: rate. The terms are: the data (estimation) error growing with
    training time, the finite-width error growing with it, the optimisation error
    ``1/τ`` of early stopping, and an approximation floor ``d``. ``coef = (a, b, c, d)``
    are fitted from one-generation runs (never derived here); the shape is the one
    quoted for the early-stopped random-feature model (Li et al. 2023, THEORY §4).
    """
    tau, n, width = (jnp.asarray(v, jnp.float64) for v in (tau, n, width))
    a, b, c, d = (jnp.asarray(v, jnp.float64) for v in coef)
    return a * tau ** 4 / (width * n) + b * tau ** 3 / width ** 2 + c / tau + d


def optimal_training_time(n: ArrayLike, width: ArrayLike, coef: ArrayLike, *, lo: float = 1e-3,
                          hi: float = 1e4, points: int = 4001) -> jax.Array:
    """Argmin over ``τ`` of ``oneshot_error_shape`` (log grid). Claim: B2. Kind: exact for the shape.

    With only the ``τ⁴/(Wn)`` and ``1/τ`` terms, ``τ* = (c W n / (4a))^(1/5)``
    (docs/diffusion.md §4).
    """
    taus = jnp.logspace(math.log10(lo), math.log10(hi), points)
    n, width = jnp.asarray(n, jnp.float64), jnp.asarray(width, jnp.float64)
    values = oneshot_error_shape(taus, n[..., None], width[..., None], coef)
    return taus[jnp.argmin(values, axis=-1)]
