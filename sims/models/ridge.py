"""Ridge regression as a generator of labels, with clipped labels (claims A1, A2, A3).

Inputs come from a fixed pool of ``T`` points ``x_t`` (``||x_t|| <= kappa``),
drawn uniformly; labels are ``y = clip(<w, x> + tau xi, -B, B)`` with
``xi ~ N(0, 1)``. The real law ``p0`` is the generator at ``w = w*``, so
``model.sample(key, w_star, n)`` is the real sampler. Because ``x`` has a finite
law, the population risk and all TVs are exact finite sums over the pool
(``population_risk``, ``clipped_normal_tv``, ``ridge_tv``).

The fit minimises ``(1/N) sum_k w_k (y_k - <w, x_k>)^2 + rho ||w||^2`` with
``N = sum_k w_k`` (docs/paper_a.md section 7), whose bounds need clipped labels:
``label_bound=None`` builds an unclipped model (a broken assumption, for controls).
"""
from __future__ import annotations

import functools
import hashlib
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from bounds import validate
from sims.model import GenerativeModel

__all__ = ["RidgeData", "RidgeSpec", "ridge", "ridge_pool", "ridge_spec", "clipped_normal_moments",
           "clipped_normal_tv", "population_risk", "ridge_tv"]


class RidgeData(NamedTuple):
    x: jax.Array  # (N, d)
    y: jax.Array  # (N,)


class RidgeSpec(NamedTuple):
    """Static description of a ridge loop (hashable)."""
    pool_bytes: bytes
    pool_shape: tuple
    rho: float
    noise_scale: float
    label_bound: float | None

    @property
    def pool(self) -> np.ndarray:
        return np.frombuffer(self.pool_bytes, np.float64).reshape(self.pool_shape)

    @property
    def feature_bound(self) -> float:
        """``kappa = max_t ||x_t||``."""
        return float(np.max(np.linalg.norm(self.pool, axis=1)))


def ridge_pool(size: int, dim: int, feature_bound: float = 1.0, seed: int = 0) -> np.ndarray:
    """A reproducible input pool: random directions, radii uniform in ``[kappa/2, kappa]``."""
    size = validate.check_positive_int("size", size)
    dim = validate.check_positive_int("dim", dim)
    validate.check_positive("feature_bound", feature_bound)
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((size, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions * rng.uniform(0.5 * feature_bound, feature_bound, (size, 1))


def ridge(pool, rho: float, noise_scale: float, label_bound: float | None) -> GenerativeModel:
    """The ridge loop's model (cached on the pool's bytes and the constants).

    Args:
      pool: ``T x d`` input pool.
      rho: penalty ``> 0``.
      noise_scale: label noise ``tau > 0``.
      label_bound: ``B > 0`` (labels clipped to ``[-B, B]``), or ``None``: unclipped.

    Returns:
      ``GenerativeModel`` whose ``spec`` is available via ``ridge_spec(model)``.
    """
    pool = np.asarray(pool, np.float64)
    if pool.ndim != 2:
        raise ValueError(f"pool must be a T x d matrix, got shape {pool.shape}")
    validate.check_positive("rho", rho)
    validate.check_positive("noise_scale", noise_scale)
    if label_bound is not None:
        validate.check_positive("label_bound", label_bound)
        label_bound = float(label_bound)
    return _ridge(RidgeSpec(pool.tobytes(), pool.shape, float(rho), float(noise_scale),
                            label_bound))


_SPECS: dict = {}


def ridge_spec(model: GenerativeModel) -> RidgeSpec:
    """The ``RidgeSpec`` a ridge model was built from."""
    return _SPECS[model.name]


@functools.lru_cache(maxsize=None)
def _ridge(spec: RidgeSpec) -> GenerativeModel:
    pool = jnp.asarray(spec.pool)
    size, dim = spec.pool_shape
    rho, tau, bound = spec.rho, spec.noise_scale, spec.label_bound

    def fit(key, data, weights):
        del key
        total = weights.sum()
        gram = (data.x * weights[:, None]).T @ data.x / total + rho * jnp.eye(dim)
        return jnp.linalg.solve(gram, data.x.T @ (weights * data.y) / total)

    def sample(key, w, m):
        key_x, key_y = jax.random.split(key)
        x = pool[jax.random.randint(key_x, (m,), 0, size)]
        y = x @ w + tau * jax.random.normal(key_y, (m,), jnp.float64)
        return RidgeData(x, y if bound is None else jnp.clip(y, -bound, bound))

    digest = hashlib.sha256(spec.pool_bytes).hexdigest()[:8]
    name = f"ridge{size}x{dim}-rho{rho:g}-tau{tau:g}-B{bound}-{digest}"
    model = GenerativeModel(name, fit, sample)
    _SPECS[name] = spec
    return model


_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _phi(z):
    return jnp.exp(-0.5 * z * z) / _SQRT_2PI


def clipped_normal_moments(mean, scale, bound):
    """``E Y`` and ``E Y^2`` for ``Y = clip(N(mean, scale^2), -bound, bound)`` (exact).

    With ``lo = (-B - mu)/s``, ``hi = (B - mu)/s`` and the truncated moments
    ``E[Z 1(lo<Z<hi)] = phi(lo) - phi(hi)``,
    ``E[Z^2 1(lo<Z<hi)] = Phi(hi) - Phi(lo) + lo phi(lo) - hi phi(hi)``.
    Proof: docs/paper_a.md section 7.6.
    """
    lo, hi = (-bound - mean) / scale, (bound - mean) / scale
    inside = ndtr(hi) - ndtr(lo)
    tails = ndtr(lo) + (1.0 - ndtr(hi))
    z1 = _phi(lo) - _phi(hi)
    z2 = inside + lo * _phi(lo) - hi * _phi(hi)
    first = -bound * ndtr(lo) + bound * (1.0 - ndtr(hi)) + mean * inside + scale * z1
    second = bound ** 2 * tails + mean ** 2 * inside + 2.0 * mean * scale * z1 + scale ** 2 * z2
    return first, second


def clipped_normal_tv(mean_a, mean_b, scale, bound):
    """``TV(clip N(a, s^2), clip N(b, s^2))`` to ``[-B, B]`` (exact; ``bound=None``: no clip).

    The densities cross once, at the midpoint ``c``; clipping merges each tail into
    an atom, so the set where the lower-mean law is larger is ``{y <= clip(c)}``:
    ``TV = Phi((c' - lo)/s) - Phi((c' - hi)/s)`` with ``lo <= hi`` the means and
    ``c' = clip((a+b)/2, -B, B)``. Proof: docs/paper_a.md section 7.6.
    """
    low, high = jnp.minimum(mean_a, mean_b), jnp.maximum(mean_a, mean_b)
    mid = 0.5 * (low + high)
    if bound is not None:
        mid = jnp.clip(mid, -bound, bound)
    return ndtr((mid - low) / scale) - ndtr((mid - high) / scale)


def population_risk(spec: RidgeSpec, w, w_star):
    """``R_p0(w) = mean_t E (y_t - <w, x_t>)^2`` with ``y_t`` from ``p0`` (exact)."""
    pool = jnp.asarray(spec.pool)
    pred, truth = pool @ w, pool @ w_star
    if spec.label_bound is None:
        first, second = truth, truth ** 2 + spec.noise_scale ** 2
    else:
        first, second = clipped_normal_moments(truth, spec.noise_scale, spec.label_bound)
    return jnp.mean(second - 2.0 * pred * first + pred ** 2)


def ridge_tv(spec: RidgeSpec, w, w_prime):
    """TV between the generators at ``w`` and ``w'`` (joint law of ``(x, y)``; exact).

    ``x`` has the same law under both, so the TV is the pool average of the
    conditional label TVs.
    """
    pool = jnp.asarray(spec.pool)
    return jnp.mean(clipped_normal_tv(pool @ w, pool @ w_prime, spec.noise_scale,
                                      spec.label_bound))
