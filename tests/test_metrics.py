"""Tests for sims/metrics.py and sims/sweeps.py: grid TV, binned KDE densities, eps_i, sweeps."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sims
from sims import metrics, sweeps
from sims.models.kde import Mixture, gaussian_mixture_sampler, kde, sample_mixture

P0 = Mixture(jnp.array([-2.0, 2.0]), jnp.array([0.5, 0.5]), jnp.array([1.0, 1.0]))
GRID = metrics.make_grid(-9.0, 9.0, 1024)


def _normal(mu, s=1.0, dim=1):
    loc = jnp.array([mu]) if dim == 1 else jnp.array([[mu, 0.0]])
    return Mixture(loc, jnp.ones(1), jnp.full(1, s))


@pytest.mark.parametrize("dim", [1, 2])
def test_grid_tv_of_shifted_gaussians_matches_closed_form_within_budget(dim):
    # TV(N(0, I), N(d e1, I)) = 2 Phi(d/2) - 1 in any dimension.
    grid = metrics.make_grid(-8.0, 8.0, 256 if dim == 2 else 512, dim=dim)
    p, q = (metrics.mixture_density(grid, _normal(mu, dim=dim)) for mu in (0.0, 1.0))
    tv, quad = metrics.tv_on_grid(grid, p, q)
    exact = math.erf(0.5 / math.sqrt(2.0))
    tail = 0.5 * float(metrics.mixture_tail_mass(grid, _normal(0.0, dim=dim))
                       + metrics.mixture_tail_mass(grid, _normal(1.0, dim=dim)))
    assert abs(float(tv) - exact) <= float(quad) + tail + 1e-12
    assert float(quad) < 1e-3


def test_coarse_grid_shows_a_large_error_budget():
    # Kinks of |p - q| are caught by the quadrature estimate ...
    grid = metrics.make_grid(-8.0, 8.0, 32)
    p, q = (metrics.mixture_density(grid, _normal(mu, s=0.5)) for mu in (0.0, 0.3))
    tv, quad = metrics.tv_on_grid(grid, p, q)
    exact = math.erf(0.3 / 0.5 / 2 / math.sqrt(2.0))
    assert float(quad) >= abs(float(tv) - exact)
    # ... and a KDE whose bandwidth the grid cannot resolve gets a binning bound > its TV.
    data = sample_mixture(jax.random.key(0), P0, 100)
    coarse = metrics.make_grid(-9.0, 9.0, 16)
    _, error = metrics.kde_density_binned(coarse, Mixture(data, jnp.full(100, 0.01), jnp.full(100, 0.3)))
    assert float(error) > 0.5  # far above any TV the claims check


def test_binned_kde_density_is_within_its_binning_bound():
    data = sample_mixture(jax.random.key(0), P0, 400)
    for h in (0.15, 0.4):
        kde_mix = Mixture(data, jnp.full(400, 1 / 400), jnp.full(400, h))
        binned, error = metrics.kde_density_binned(GRID, kde_mix)
        exact = metrics.mixture_density(GRID, kde_mix)
        tv_change = 0.5 * GRID.step * float(jnp.sum(jnp.abs(binned - exact)))
        assert tv_change <= float(metrics.binning_tv_error(GRID, h))
        assert float(error) >= float(metrics.binning_tv_error(GRID, h))
        assert float(jnp.sum(binned)) * GRID.step == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="lo < hi"):
        metrics.make_grid(1.0, 1.0, 64)
    with pytest.raises(ValueError, match="even"):
        metrics.make_grid(0.0, 1.0, 63)
    with pytest.raises(ValueError, match="outside"):
        metrics.check_grid_covers(metrics.make_grid(-3.0, 3.0, 64), P0, 1e-6)
    with pytest.raises(ValueError, match="bandwidth"):
        kde(0.0)
    with pytest.raises(ValueError, match="bandwidth"):
        kde(-1.0, "shrinking")
    with pytest.raises(ValueError, match="lam"):
        metrics.kde_tv_metric(GRID, lam=(1.0, 1.5))
    with pytest.raises(ValueError, match="outside"):
        sweeps.kde_reuse_tv_sweep(jax.random.key(0), P0, n=10, m_grid=(0, 10), generations=2,
                                   bandwidth=0.3, rule="fixed",
                                   grid=metrics.make_grid(-4.0, 4.0, 64), replicas=2)
    with pytest.raises(ValueError, match="bandwidth"):
        sweeps.kde_one_generation_tv(jax.random.key(0), P0, (10, 20), 0.0, "fixed", GRID,
                                      replicas=2)


@pytest.mark.parametrize("scheme", ["reuse", "accumulate"])
def test_r1_one_step_holds_pathwise_on_the_grid(scheme):
    """TV_i <= eps_i + (mixing) TV_{<i}, replica by replica: checks q_i (incl. accumulate's)."""
    n, m, G = 30, 30, 5
    plan = sims.make_plan(scheme, n=n, m=m, generations=G)
    if scheme == "accumulate":
        sizes = n + m * np.arange(G)
        layout = metrics.AccumulateLayout(n, plan.block, plan.m, tuple([0.5] * G))
        metric = metrics.kde_tv_metric(GRID, layout=layout)
    else:
        metric = metrics.kde_tv_metric(GRID, lam=tuple(plan.real_proportion().tolist()))
    out = sims.run(jax.random.key(3), kde(0.5), P0, plan, metric, replicas=16, batch_size=16,
                   real_sampler=gaussian_mixture_sampler)
    tv, eps = out["tv"], out["eps"]
    np.testing.assert_allclose(tv[:, 0], eps[:, 0], atol=1e-12)   # q_0 = p0
    for i in range(1, G):
        if scheme == "accumulate":
            rhs = eps[:, i] + (m / sizes[i]) * tv[:, :i].sum(axis=1)
        else:
            rhs = eps[:, i] + (1 - n / (n + m)) * tv[:, i - 1]
        assert np.all(tv[:, i] <= rhs + 1e-12)
    assert np.all(out["eps_error"] < 2e-3) and np.all(out["tv_error"] < 2e-3)


def test_reuse_sweep_matches_the_engine():
    """The masked sweep (one compile for all m) and sims.run agree in distribution (z-test)."""
    n, m, R = 50, 100, 400
    sweep = sweeps.kde_reuse_tv_sweep(jax.random.key(1), P0, n=n, m_grid=(0, m, 4 * m),
                                       generations=3, bandwidth=1.0, rule="shrinking", grid=GRID,
                                       replicas=R)
    plan = sims.make_plan("reuse", n=n, m=m, generations=3)
    engine = sims.run(jax.random.key(2), kde(1.0, "shrinking"), P0, plan,
                      metrics.kde_tv_metric(GRID), replicas=R, batch_size=200,
                      real_sampler=gaussian_mixture_sampler, reduce=True)
    for i in range(3):
        a = sweep.tv[:, 1, i]
        z = (a.mean() - engine.mean["tv"][i]) / math.hypot(a.std(ddof=1) / math.sqrt(R),
                                                          engine.se["tv"][i])
        assert abs(z) < 4, (i, a.mean(), engine.mean["tv"][i])
    # m = 0 leaves G_i = G_0 in reuse.
    np.testing.assert_allclose(sweep.tv[:, 0, 2], sweep.tv[:, 0, 0], atol=1e-12)
