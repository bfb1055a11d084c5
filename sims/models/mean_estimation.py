"""Mean estimation in the loop (THEORY section 4; claims A1, A2, A3, A5).

The generator is ``mean(S) + noise`` and the learner is ``theta = mean(S)``
(weighted mean over the present slots of the buffer). Data are float64 samples
of shape ``(N,)``; params are the scalar ``theta``. The real law ``p0`` is the
generator at ``theta = mu``, so ``model.sample(key, mu, n)`` is the real sampler.

Two noise laws:

* ``uniform``  ``U[-a, a]`` (``scale = a``): the bounded variant, in which every
  point of every generation stays in a fixed interval (docs/paper_a.md 5.3), so
  the R2/R3 constants exist;
* ``gaussian`` ``N(0, s^2)`` (``scale = s``): unbounded; R3 has no uniform
  constant for it, but its exact variance and TV are still checked.

Each noise law comes with a *maximal coupling* of two generators
(``coupler``), used by ``sims.coupled`` to measure recursive stability in the
sense of R2 (docs/paper_a.md section 3.1).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bounds import validate
from sims.model import GenerativeModel

__all__ = ["mean_estimation", "mean_estimation_coupler", "NOISES"]

NOISES = ("uniform", "gaussian")


def _noise(key, noise, scale, m):
    if noise == "uniform":
        return jax.random.uniform(key, (m,), jnp.float64, -scale, scale)
    return scale * jax.random.normal(key, (m,), jnp.float64)


@functools.lru_cache(maxsize=None)
def mean_estimation(noise: str = "uniform", scale: float = 1.0) -> GenerativeModel:
    """The mean loop's model: fit ``theta = weighted mean``, sample ``theta + noise``.

    Args:
      noise: ``"uniform"`` (``U[-scale, scale]``) or ``"gaussian"`` (``N(0, scale^2)``).
      scale: half-width ``a`` or standard deviation ``s``, ``> 0``.

    Returns:
      ``GenerativeModel`` (cached: same arguments, same object).

    Raises:
      ValueError: unknown noise or non-positive scale.
    """
    validate.check_choice("noise", noise, NOISES)
    validate.check_positive("scale", scale)
    scale = float(scale)

    def fit(key, data, weights):
        del key  # deterministic estimator
        return weights @ data / weights.sum()

    def sample(key, theta, m):
        return theta + _noise(key, noise, scale, m)

    return GenerativeModel(f"mean-{noise}{scale:g}", fit, sample)


@functools.lru_cache(maxsize=None)
def mean_estimation_coupler(noise: str = "uniform", scale: float = 1.0):
    """A maximal coupling of ``theta + noise`` and ``theta' + noise``, ``m`` pairs.

    Each pair ``(z, z')`` has the right marginals and ``P(z != z') = TV`` exactly:

    * uniform: ``z = theta + u``; ``z' = z`` if ``z`` lies in the support of the
      second law, otherwise ``z' = z + sign(d) max(2a, |d|)`` with ``d = theta' - theta``
      (a translation of ``p \\ q`` onto ``q \\ p``; both have density ``1/(2a)``);
    * gaussian: the reflection coupling: keep ``z' = z`` with probability
      ``min(1, phi_{theta'}(z) / phi_theta(z))``, else ``z' = theta + theta' - z``
      (reflection about the midpoint maps ``(p - q)_+`` onto ``(q - p)_+``).

    Proof: docs/paper_a.md section 8.1.

    Args:
      noise, scale: as ``mean_estimation``.

    Returns:
      ``coupler(key, theta, theta_prime, m) -> (z, z_prime)``.
    """
    validate.check_choice("noise", noise, NOISES)
    validate.check_positive("scale", scale)
    scale = float(scale)

    def coupler(key, theta, theta_prime, m):
        key_noise, key_accept = jax.random.split(key)
        z = theta + _noise(key_noise, noise, scale, m)
        d = theta_prime - theta
        if noise == "uniform":
            inside = jnp.abs(z - theta_prime) <= scale
            shift = jnp.sign(d) * jnp.maximum(2.0 * scale, jnp.abs(d))
            return z, jnp.where(inside, z, z + shift)
        # log phi_{theta'}(z) - log phi_theta(z)
        log_ratio = ((z - theta) ** 2 - (z - theta_prime) ** 2) / (2.0 * scale ** 2)
        keep = jnp.log(jax.random.uniform(key_accept, (m,), jnp.float64)) <= log_ratio
        return z, jnp.where(keep, z, theta + theta_prime - z)

    return coupler
