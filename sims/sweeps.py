"""KDE loops swept over a size axis: many ``N`` or ``m`` in one compiled loop (B1, B3, R4).

The engine (``sims.run``) runs one ``LoopPlan`` per call. A sweep over ``m`` (B3) or over
``N`` (the one-generation rate fit of B1/R4) would pay one loop per value; these sweeps
instead hold a buffer of ``n + max(m)`` slots and mask the unused ones with zero weight,
so ``m`` is data, and all values share common random numbers (nested prefixes of one
draw), which sharpens the comparison between neighbouring ``m``. The KDE here is exactly
``sims.models.kde``: sampling picks a present slot uniformly and adds ``N(0, h²)`` noise.

A sweep is a *loop plan over sizes*, not a metric: its replicas go through the engine's
driver ``sims.loop.run_replicas`` (replica ``r`` uses ``fold_in(key, r)``; chunked,
sharded over devices, compiled once per configuration, a NaN located by generation and
replica). tests/test_metrics.py checks the reuse sweep against the engine.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bounds import validate
from sims.loop import run_replicas
from sims.metrics import (Grid, check_grid_covers, kde_density_binned, mixture_density,
                          mixture_tail_mass, tv_on_grid)
from sims.models.kde import Mixture, sample_mixture

__all__ = ["SweepResult", "kde_one_generation_tv", "kde_reuse_tv_sweep"]


class SweepResult(NamedTuple):
    """Per-replica grid TVs, shape ``(replicas, len(sizes)[, generations])``."""

    tv: np.ndarray
    tv_error: np.ndarray


def _bandwidth(bandwidth, rule, size):
    return bandwidth if rule == "fixed" else bandwidth * size ** (-0.2)


def _check_sweep(grid, bandwidth, rule, truth, tail_mass):
    if grid.dim != 1:
        raise ValueError("the KDE sweeps are 1-D")
    validate.check_positive("bandwidth", bandwidth)
    validate.check_choice("rule", rule, ("fixed", "shrinking"))
    check_grid_covers(grid, truth, tail_mass)


@functools.lru_cache(maxsize=None)
def _one_generation_fn(grid: Grid, sizes: tuple, bandwidth: float, rule: str):
    """One replica of the one-generation sweep: ``(tv, tv_error)``, each ``(1, len(sizes))``
    (a generation axis of length 1 in front, so a NaN is located as the engine locates it)."""
    n_max = max(sizes)
    sizes_arr = jnp.asarray(sizes, jnp.float64)

    def one(key, truth):
        data = sample_mixture(key, truth, n_max)
        p0_density = mixture_density(grid, truth)
        p0_tail = 0.5 * mixture_tail_mass(grid, truth)

        def at_size(size):
            weights = (jnp.arange(n_max) < size) / size
            h = _bandwidth(bandwidth, rule, size)
            density, error = kde_density_binned(grid, Mixture(data, weights, jnp.full(n_max, h)))
            tv, quad = tv_on_grid(grid, density, p0_density)
            return tv, quad + error + p0_tail

        return jax.tree.map(lambda a: a[None], jax.vmap(at_size)(sizes_arr))

    return one


def kde_one_generation_tv(key, truth: Mixture, sizes, bandwidth: float, rule: str, grid: Grid, *,
                          replicas: int, batch_size: int = 256, tail_mass: float = 1e-6,
                          devices=None) -> SweepResult:
    """``TV(KDE of N iid samples from p0, p0)`` for every ``N`` in ``sizes`` (one generation).

    The input of R4's rate fit ``eps(N) = C N^-alpha`` (B1, B3): the KDEs at the
    different ``N`` are fit on nested prefixes of one iid draw (common random
    numbers; each is exactly iid of its size). Bandwidth ``h`` (``fixed``) or
    ``c N^(-1/5)`` (``shrinking``). Replica ``r`` uses ``fold_in(key, r)``; ``devices``
    as in ``sims.run``. Returns ``(replicas, len(sizes))`` arrays.
    """
    sizes = tuple(int(s) for s in validate.check_whole("sizes", np.asarray(sizes), 1))
    validate.check_positive_int("replicas", replicas)
    _check_sweep(grid, bandwidth, rule, truth, tail_mass)
    static = ("kde_one_generation_tv", grid, sizes, float(bandwidth), rule)
    out = run_replicas(key, _one_generation_fn(*static[1:]), static, truth, replicas=replicas,
                       batch_size=min(batch_size, replicas), devices=devices,
                       description="KDE one generation")
    return SweepResult(*(np.asarray(a)[:, 0] for a in out))


@functools.lru_cache(maxsize=None)
def _reuse_sweep_fn(grid, n, m_grid, generations, bandwidth, rule, wanted, synthetic_shift=0.0):
    """One replica of the reuse sweep: ``(tv, tv_error)``, each ``(generations, len(m_grid))``."""
    m_max = max(m_grid)
    slots = n + m_max
    m_arr = jnp.asarray(m_grid, jnp.float64)
    wanted_arr = jnp.asarray(wanted)

    def one(key, truth):
        key_real, key_loop = jax.random.split(key)
        real = sample_mixture(key_real, truth, n)
        p0_density = mixture_density(grid, truth)
        p0_tail = 0.5 * mixture_tail_mass(grid, truth)

        def tv_of(loc, weights, h):
            density, error = kde_density_binned(grid, Mixture(loc, weights, jnp.full(slots, h)))
            tv, quad = tv_on_grid(grid, density, p0_density)
            return tv, quad + error + p0_tail

        def chain(m):
            size = n + m
            present = jnp.arange(slots) < size
            loc0 = jnp.concatenate([real, jnp.zeros(m_max)])
            h0 = _bandwidth(bandwidth, rule, float(n))
            h = _bandwidth(bandwidth, rule, size)

            def measure(i, loc, weights, h_i):
                zero = (jnp.zeros(()), jnp.zeros(()))
                return jax.lax.cond(wanted_arr[i], lambda: tv_of(loc, weights, h_i), lambda: zero)

            first = measure(0, loc0, (jnp.arange(slots) < n) / n, h0)

            def step(carry, i):
                loc, prev_size, prev_h = carry
                # Generation-keyed draws, shared by every m (common random numbers).
                k_pick, k_noise = jax.random.split(jax.random.fold_in(key_loop, i))
                pick = jnp.floor(jax.random.uniform(k_pick, (m_max,)) * prev_size).astype(jnp.int32)
                synthetic = (loc[pick] + prev_h * jax.random.normal(k_noise, (m_max,))
                             + synthetic_shift)
                loc = jnp.concatenate([real, synthetic])
                out = measure(i, loc, present / size, h)
                return (loc, size, h), out

            _, rest = jax.lax.scan(step, (loc0, jnp.float64(n), jnp.float64(h0)),
                                   jnp.arange(1, generations))
            return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)

        # (len(m_grid), generations) -> generations first, as the engine expects
        return jax.tree.map(lambda a: a.T, jax.vmap(chain)(m_arr))

    return one


def kde_reuse_tv_sweep(key, truth: Mixture, *, n: int, m_grid, generations: int,
                       bandwidth: float, rule: str, grid: Grid, replicas: int,
                       wanted=None, batch_size: int = 128, tail_mass: float = 1e-6,
                       synthetic_shift: float = 0.0, devices=None) -> SweepResult:
    """``TV(G_i, p0)`` of the 1-D KDE ``reuse`` loop for every ``m`` in ``m_grid`` (B3).

    Same loop as ``sims.run(..., kde(bandwidth, rule), make_plan("reuse", n=n, m=m))``
    with real data from ``truth``, but ``m`` is masked data, so one compilation
    serves the whole grid, and all ``m`` share the real set and the random
    numbers of each generation (differences between ``m`` are sharper).
    ``wanted[i]`` False skips the TV of generation ``i`` (zeros). Returns
    arrays of shape ``(replicas, len(m_grid), generations)``. ``synthetic_shift``
    (default 0) adds a constant to every synthetic sample: a deliberately broken
    sampler, which a claim's negative control swaps in (``verify.control``).
    """
    n = validate.check_positive_int("n", n)
    m_grid = tuple(int(m) for m in validate.check_whole("m_grid", np.asarray(m_grid), 0))
    generations = validate.check_positive_int("generations", generations)
    validate.check_positive_int("replicas", replicas)
    _check_sweep(grid, bandwidth, rule, truth, tail_mass)
    wanted = (True,) * generations if wanted is None else tuple(bool(w) for w in wanted)
    if len(wanted) != generations:
        raise ValueError(f"wanted must have {generations} entries, got {len(wanted)}")
    static = ("kde_reuse_tv_sweep", grid, n, m_grid, generations, float(bandwidth), rule, wanted,
              float(synthetic_shift))
    out = run_replicas(key, _reuse_sweep_fn(*static[1:]), static, truth, replicas=replicas,
                       batch_size=min(batch_size, replicas), devices=devices,
                       description="KDE reuse sweep")
    return SweepResult(*(np.swapaxes(np.asarray(a), 1, 2) for a in out))
