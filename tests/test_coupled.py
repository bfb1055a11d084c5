"""Coupled twin loops (sims.coupled), the maximal couplers, and the ridge model's exact formulas."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sims
from sims import loop
from sims.coupled import maximal_categorical, run_coupled, shared_keys, twin_keys
from sims.models import categorical, mean_estimation, mean_estimation_coupler
from sims.models.ridge import clipped_normal_moments, clipped_normal_tv, ridge, ridge_pool

Z = 4.5  # |z| limit for single MC comparisons at fixed keys


def _tv_metric(key, gen, gen_prime, truth):
    del key, truth
    return {"theta": gen.params, "theta_prime": gen_prime.params,
            "delta": gen_prime.params - gen.params}


def _plain_metric(key, gen, truth):
    del key, truth
    return {"theta": gen.params}


def test_first_twin_is_an_ordinary_loop():
    model = mean_estimation("uniform", 1.0)
    plan = sims.make_plan("reuse", n=6, lam=0.5, generations=5)
    key = jax.random.key(3)
    out = run_coupled(key, model, jnp.asarray(0.0), plan, _tv_metric, replaced_index=2,
                      replicas=3, batch_size=4, reduce=False)
    for r in range(3):
        loop_key, _ = twin_keys(jax.random.fold_in(key, r))
        plain = loop.trajectory(loop_key, model, jnp.asarray(0.0), plan, _plain_metric)
        np.testing.assert_allclose(out["theta"][r], plain["theta"], rtol=0, atol=1e-12)


def test_shared_keys_mean_loop_shifts_by_delta_over_n_forever():
    """Synchronous coupling of the mean loop: theta'_i - theta_i = delta/n for every i."""
    model = mean_estimation("uniform", 1.0)
    for lam in (0.2, 1.0):
        plan = sims.make_plan("reuse", n=5, lam=lam, generations=8)
        out = run_coupled(jax.random.key(0), model, jnp.asarray(0.0), plan, _tv_metric,
                          replaced_index=4, replicas=16, batch_size=16, reduce=False,
                          coupler=shared_keys(model))
        np.testing.assert_allclose(out["delta"], out["delta"][:, :1] * np.ones((1, 8)),
                                   atol=1e-12)


@pytest.mark.parametrize("index", [-1, 6, 100])
def test_invalid_replaced_index_raises(index):
    plan = sims.make_plan("reuse", n=6, lam=0.5, generations=2)
    with pytest.raises(ValueError, match="replaced_index"):
        run_coupled(jax.random.key(0), mean_estimation(), jnp.asarray(0.0), plan, _tv_metric,
                    replaced_index=index, replicas=2)


def test_non_integer_index_and_bad_lam_raise():
    plan = sims.make_plan("reuse", n=6, lam=0.5, generations=2)
    with pytest.raises(TypeError, match="replaced_index"):
        run_coupled(jax.random.key(0), mean_estimation(), jnp.asarray(0.0), plan, _tv_metric,
                    replaced_index=1.5, replicas=2)
    for lam in (-0.1, 1.5):
        with pytest.raises(ValueError, match="lam"):
            sims.make_plan("reuse", n=6, lam=lam, generations=2)


def test_maximal_categorical_marginals_and_disagreement():
    p = jnp.asarray([0.5, 0.3, 0.2, 0.0])
    q = jnp.asarray([0.2, 0.3, 0.1, 0.4])
    m = 200_000
    x, y = maximal_categorical(4)(jax.random.key(1), p, q, m)
    tv = 0.5 * float(jnp.abs(p - q).sum())
    for draws, law in ((x, p), (y, q)):
        freq = np.bincount(np.asarray(draws), minlength=4) / m
        se = np.sqrt(np.asarray(law) * (1 - np.asarray(law)) / m) + 1e-12
        assert np.all(np.abs(freq - np.asarray(law)) <= Z * se + 1e-12), (freq, law)
    differ = float(np.mean(np.asarray(x) != np.asarray(y)))
    assert abs(differ - tv) <= Z * math.sqrt(tv * (1 - tv) / m)


@pytest.mark.parametrize("noise", ["uniform", "gaussian"])
def test_mean_coupler_is_maximal(noise):
    theta, theta_prime, m = 0.1, 0.7, 200_000
    z, z_prime = mean_estimation_coupler(noise, 1.0)(jax.random.key(2), theta, theta_prime, m)
    z, z_prime = np.asarray(z), np.asarray(z_prime)
    var = 1 / 3 if noise == "uniform" else 1.0
    for draws, centre in ((z, theta), (z_prime, theta_prime)):
        assert abs(draws.mean() - centre) <= Z * math.sqrt(var / m)
        assert abs(draws.var() - var) <= 0.02
    if noise == "uniform":
        assert np.all(np.abs(z_prime - theta_prime) <= 1.0 + 1e-12)
        tv = abs(theta_prime - theta) / 2
    else:
        tv = math.erf(abs(theta_prime - theta) / 2 / math.sqrt(2))
    differ = float(np.mean(z != z_prime))
    assert abs(differ - tv) <= Z * math.sqrt(tv * (1 - tv) / m)


def test_categorical_maximal_coupling_gamma_is_exact():
    """Under the maximal coupling, E TV(G_i, G'_i) = (1 - sum p0^2)/n for every i (docs 8.2)."""
    probs = jnp.asarray([0.1, 0.2, 0.3, 0.4])
    plan = sims.make_plan("reuse", n=10, lam=0.5, generations=6)

    def metric(key, gen, gen_prime, truth):
        return {"tv": 0.5 * jnp.sum(jnp.abs(gen.params - gen_prime.params))}

    moments = run_coupled(jax.random.key(5), categorical(4), probs, plan, metric,
                          replaced_index=0, replicas=8192, batch_size=4096,
                          coupler=maximal_categorical(4))
    want = (1 - float(jnp.sum(probs ** 2))) / 10
    z = (moments.mean["tv"] - want) / moments.se["tv"]
    assert np.all(np.abs(z) < Z), z


def test_clipped_normal_moments_and_tv():
    rng = np.random.default_rng(0)
    mean, scale, bound = 0.7, 0.5, 1.0
    y = np.clip(mean + scale * rng.standard_normal(400_000), -bound, bound)
    first, second = (float(v) for v in clipped_normal_moments(mean, scale, bound))
    assert abs(y.mean() - first) <= Z * y.std() / math.sqrt(y.size)
    assert abs((y ** 2).mean() - second) <= Z * (y ** 2).std() / math.sqrt(y.size)
    # TV of clipped laws by brute force on a fine grid plus the two atoms.
    from scipy.stats import norm
    for a, b in ((0.2, 0.5), (0.9, 1.6), (-1.4, -0.8), (-0.3, 2.0)):
        grid = np.linspace(-bound, bound, 200_001)
        dens = np.abs(norm.pdf(grid, a, scale) - norm.pdf(grid, b, scale))
        inside = 0.5 * np.trapezoid(dens, grid)
        atoms = 0.5 * (abs(norm.cdf(-bound, a, scale) - norm.cdf(-bound, b, scale))
                       + abs(norm.sf(bound, a, scale) - norm.sf(bound, b, scale)))
        assert float(clipped_normal_tv(a, b, scale, bound)) == pytest.approx(inside + atoms,
                                                                               abs=1e-7)


def test_ridge_labels_are_clipped_and_fit_is_ridge():
    pool = ridge_pool(8, 2)
    model = ridge(pool, 0.5, 2.0, 1.0)
    data = model.sample(jax.random.key(0), jnp.asarray([3.0, -3.0]), 500)
    assert float(jnp.max(jnp.abs(data.y))) <= 1.0
    weights = jnp.ones(500)
    w = model.fit(None, data, weights)
    X, y = np.asarray(data.x), np.asarray(data.y)
    want = np.linalg.solve(X.T @ X / 500 + 0.5 * np.eye(2), X.T @ y / 500)
    np.testing.assert_allclose(np.asarray(w), want, rtol=1e-10)
    with pytest.raises(ValueError, match="rho"):
        ridge(pool, 0.0, 1.0, 1.0)
