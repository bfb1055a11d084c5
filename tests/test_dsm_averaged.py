"""Li et al.'s DSM estimator (issue 18, item 1): the loss averaged over (t, ε) per data point.

Closed-form Gaussian moments of relu features against Monte Carlo, the J-draw loss converging
to the average like J^(-1/2), convergence in the time quadrature's node count, and the factory.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bounds.models import diffusion as bounds_diffusion
from sims import metrics
from sims.models import diffusion as D
from sims.models.kde import Mixture, sample_mixture

TRUTH = Mixture(jnp.array([-2.0, 2.0]), jnp.array([0.5, 0.5]), jnp.array([1.0, 1.0]))
HORIZON, T_MIN = 4.0, 1e-3


def _problem(n=32, width=16, seed=0):
    """Small data set with non-uniform weights (one empty slot) and a random first layer."""
    k_data, k_weights, k_features = jax.random.split(jax.random.key(seed), 3)
    data = sample_mixture(k_data, TRUTH, n)
    weights = jax.random.uniform(k_weights, (n,), jnp.float64).at[0].set(0.0)
    return D.random_features(k_features, width), data, weights


def _relative(x, ref):
    return float(jnp.linalg.norm(x - ref) / jnp.linalg.norm(ref))


# (a) closed forms against Monte Carlo -------------------------------------------------------

# Sign patterns of (c, d): (+, +), (+, −), (−, −), (0, +) with an active and an inactive
# constant feature; shifts chosen so each interval is a proper part of the line.
PATTERNS = [(0.3, 1.2, -0.5, 0.7), (0.4, 0.9, 0.2, -1.5), (-0.2, -1.1, 0.6, -0.4),
            (0.5, 0.0, -0.3, 0.8), (-0.5, 0.0, 0.3, 1.0)]


def test_partial_moments_at_known_values():
    m0, m1, m2 = D.gaussian_partial_moments(jnp.array([-jnp.inf, 0.0, 1.0]),
                                            jnp.array([jnp.inf, jnp.inf, 0.5]))
    phi0 = 1.0 / math.sqrt(2.0 * math.pi)
    np.testing.assert_allclose(m0, [1.0, 0.5, 0.0], atol=1e-15)      # empty when hi < lo
    np.testing.assert_allclose(m1, [0.0, phi0, 0.0], atol=1e-15)     # E[ε; ε > 0] = φ(0)
    np.testing.assert_allclose(m2, [1.0, 0.5, 0.0], atol=1e-15)


@pytest.mark.parametrize("a, c, b, d", PATTERNS)
def test_relu_moments_match_monte_carlo(a, c, b, d):
    eps = jax.random.normal(jax.random.key(5), (4_000_000,), jnp.float64)
    first, second = jax.nn.relu(a + c * eps), jax.nn.relu(b + d * eps)
    cases = [(first * second, D.relu_product_moment(a, c, b, d)),
             (first * eps, D.relu_noise_moment(a, c)), (second * eps, D.relu_noise_moment(b, d))]
    for samples, exact in cases:
        se = float(jnp.std(samples)) / math.sqrt(samples.size)
        if se == 0.0:                       # the product is 0 for every draw: exactly 0
            assert float(exact) == 0.0
        else:
            assert abs(float(exact) - float(jnp.mean(samples))) < 4.0 * se
    # Stein: E[relu(a + cε) ε] = c P(a + cε > 0), an exact check independent of the sampling.
    np.testing.assert_allclose(D.relu_noise_moment(a, c), c * float(jnp.mean(a + c * eps > 0)),
                               atol=3e-3)


def test_relu_moments_are_symmetric_and_finite_at_extreme_shifts():
    a = jnp.array([-1e3, -50.0, 0.0, 50.0, 1e3])
    c = jnp.array([1e-300, 1.0, 0.0, -1.0, 1.0])
    vals = D.relu_product_moment(a[:, None], c[:, None], a[None, :], c[None, :])
    assert bool(jnp.all(jnp.isfinite(vals)))
    np.testing.assert_array_equal(vals, vals.T)
    # relu(1e3 + ε)²: E = 1e6 + 1 exactly (never inactive at float64 resolution).
    np.testing.assert_allclose(vals[4, 4], 1e6 + 1.0, rtol=1e-14)


def _per_point_reference(params, data, weights, nodes):
    """The averaged quadratic the direct way: one ``relu_product_moment`` per point, node and
    pair (``N·nodes·W²``), against which the kink-sum assembly of ``_averaged`` is checked."""
    t, q = D.time_quadrature(HORIZON, T_MIN, nodes)
    mean, std = D.ou_mean_std(t)
    drift = D.time_embedding(t) @ params.time_weights.T
    a = data[:, None, None] * mean[:, None] * params.slope + drift           # (N, Q, W)
    c = jnp.broadcast_to(std[:, None] * params.slope, a.shape)
    pair = D.relu_product_moment(a[..., :, None], c[..., :, None], a[..., None, :],
                                 c[..., None, :])
    noise = D.relu_noise_moment(a, c) / std[:, None]
    omega = weights / weights.sum()
    return (jnp.einsum("n,q,nqab->ab", omega, q, pair),
            -jnp.einsum("n,q,nqa->a", omega, q, noise))


@pytest.mark.parametrize("where", ["mixture", "far"])
def test_averaged_quadratic_is_the_sum_of_per_point_pair_moments(where):
    """Summing partial moments at the kinks before pairing is exact, not an approximation:
    to round-off against the per-point closed form, with constant features (``w = 0``, one
    always and one never active) and, for a collapsed loop, every point at 1e150."""
    params, data, weights = _problem(n=40, width=24, seed=11)
    slope = params.slope.at[3].set(0.0).at[7].set(0.0)
    weights_u = params.time_weights.at[3, 0].set(5.0).at[7, 0].set(-5.0)  # d > 0 and d < 0
    params = params._replace(slope=slope, time_weights=weights_u)
    if where == "far":
        data = 1e150 + 1e140 * data
    gram, linear = _per_point_reference(params, data, weights, 24)
    q = D.dsm_quadratic_averaged(params, data, weights, HORIZON, T_MIN, 24)
    for got, ref in ((q.gram, gram), (q.linear, linear)):
        scale = float(jnp.abs(ref).max())                   # max norm: 1e298² would overflow
        assert float(jnp.abs(got - ref).max()) < 1e-13 * scale
    np.testing.assert_array_equal(q.gram[7], 0.0)                           # never active
    assert float(q.gram[3, 3]) > 0


# (b) the J-draw loss converges to the average ----------------------------------------------

def test_draw_estimate_converges_to_the_average_like_inverse_sqrt_draws():
    params, data, weights = _problem()
    n = data.shape[0]
    ref = D.dsm_quadratic_averaged(params, data, weights, HORIZON, T_MIN, 64)

    def rms_error(draws, seeds):
        gram, linear = [], []
        for s in range(seeds):
            t, eps = D.dsm_draws(jax.random.key(1000 * draws + s), n, draws, HORIZON, T_MIN)
            q = D.dsm_quadratic(params, data, weights, t, eps)   # same t law: uniform on [t_min, T]
            gram.append(_relative(q.gram, ref.gram) ** 2)
            linear.append(_relative(q.linear, ref.linear) ** 2)
        return math.sqrt(np.mean(gram)), math.sqrt(np.mean(linear))

    # RMS over seeds: one seed's error is dominated by a few directions (ratios 3–19 seen).
    small, large = rms_error(64, 32), rms_error(4096, 8)
    for e_small, e_large in zip(small, large):
        assert 5.0 < e_small / e_large < 13.0, (small, large)    # sqrt(4096/64) = 8


def test_draw_estimate_is_unbiased_for_the_average_within_its_standard_error():
    params, data, weights = _problem(seed=1)
    n, width, draws = data.shape[0], params.slope.shape[0], 4096
    ref = D.dsm_quadratic_averaged(params, data, weights, HORIZON, T_MIN, 64)
    t, eps = D.dsm_draws(jax.random.key(9), n, draws, HORIZON, T_MIN)
    q = D.dsm_quadratic(params, data, weights, t, eps)
    mean, std = D.ou_mean_std(t)
    phi = D.features(params, data[:, None] * mean + std * eps, t).reshape(-1, width)
    target = (-eps / std).reshape(-1)
    rows = phi.shape[0]
    rho = jnp.repeat(n * weights / weights.sum(), draws)        # row r's term: rho_r φ_a (φ_b | y)
    for est, other, exact in ((q.gram, phi, ref.gram), (q.linear, target[:, None], ref.linear)):
        first = jnp.einsum("r,ra,rb->ab", rho, phi, other) / rows
        second = jnp.einsum("r,ra,rb->ab", rho ** 2, phi ** 2, other ** 2) / rows
        first, second = first.reshape(est.shape), second.reshape(est.shape)
        np.testing.assert_allclose(first, est, rtol=1e-10, atol=1e-14)   # the same estimate
        # iid SE of the row mean: conservative, the stratified t only lowers the variance.
        se = jnp.sqrt(jnp.maximum(second - first ** 2, 0.0) / rows)
        live = se > 0                                              # never-active features: 0 = 0
        z = jnp.where(live, (est - exact) / jnp.where(live, se, 1.0), 0.0)
        assert float(jnp.max(jnp.abs(z))) < 5.0
        assert float(jnp.max(jnp.abs(jnp.where(live, 0.0, exact)))) < 1e-10
    assert abs(float(q.constant) / float(ref.constant) - 1) < 0.05


def test_averaged_gram_is_symmetric_positive_semidefinite_and_weights_drop_empty_slots():
    params, data, weights = _problem(seed=2)
    q = D.dsm_quadratic_averaged(params, data, weights, HORIZON, T_MIN, 32)
    np.testing.assert_allclose(q.gram, q.gram.T, rtol=0, atol=1e-13)
    mu = jnp.linalg.eigvalsh(q.gram)
    assert float(mu.min()) > -1e-12 * float(mu.max())
    # An empty slot (weight 0) holding any finite value changes nothing.
    moved = D.dsm_quadratic_averaged(params, data.at[0].set(37.0), weights, HORIZON, T_MIN, 32)
    np.testing.assert_allclose(moved.gram, q.gram, rtol=1e-13, atol=1e-15)
    # Blocks of the scan: 512 nodes at W = 64 give 8 points per block, so 37 points are 5
    # blocks (3 padded slots) and the halves 3 each (4 and 7 padded): the same numbers.
    params = D.random_features(jax.random.key(8), 64)
    assert D._points_per_block(512, 64) == 8
    data = sample_mixture(jax.random.key(6), TRUTH, 37)
    weights = jax.random.uniform(jax.random.key(7), (37,), jnp.float64) + 0.5
    full = D.dsm_quadratic_averaged(params, data, weights, HORIZON, T_MIN, 512)
    halves = [(weights[s].sum(), D.dsm_quadratic_averaged(params, data[s], weights[s], HORIZON,
                                                          T_MIN, 512))
              for s in (slice(0, 20), slice(20, 37))]
    for field in ("gram", "linear"):
        mix = sum(w * getattr(h, field) for w, h in halves) / weights.sum()
        np.testing.assert_allclose(getattr(full, field), mix, rtol=1e-12, atol=1e-15)


def test_trained_score_with_many_draws_is_close_to_the_averaged_fit_and_with_four_is_not():
    """The J-convergence check on the trained score (issue 18's negative control: J = 4 fails).

    Distance ``∫ E_{p_t}(s_J − s_avg)² dt`` against the averaged fit's own score error, at
    ``n = 200``, ``W = 32``, ``τ = 1e4``. Measured on 4 seeds: J = 256 at 0.03–0.13 of it,
    J = 4 at 0.6–19 (this seed: 0.06 and 0.58).
    """
    loc, weight, scale = TRUTH.loc, TRUTH.weight, TRUTH.scale
    nodes = jnp.asarray(metrics.grid_nodes(metrics.make_grid(-7.0, 7.0, 128)))
    k_data, k_features, k_draws = jax.random.split(jax.random.key(0), 3)
    n, width, tau = 200, 32, 1e4
    data, weights = sample_mixture(k_data, TRUTH, n), jnp.ones(n)
    params = D.random_features(k_features, width)
    quad = D.dsm_quadratic_averaged(params, data, weights, HORIZON, T_MIN, 32)
    avg = params._replace(readout=D.train_exact(quad, tau))

    @jax.jit
    def score_term(first, second, truth):
        """``∫ E_{p_t}(s_first − s_second − (1 − truth) ∇log p_t)² dt``: one compilation."""
        def fn(x, t):
            exact = bounds_diffusion.mixture_score(x, loc, weight, scale, t)
            return (D.score(params._replace(readout=first), x, t)
                    - D.score(params._replace(readout=second), x, t) + truth * exact)
        return bounds_diffusion.girsanov_kl_bound(fn, loc, weight, scale, HORIZON, nodes).score

    own = float(score_term(avg.readout, jnp.zeros(width), 0.0))        # the fit's score error
    distance = {}
    for draws in (4, 256):
        t, eps = D.dsm_draws(k_draws, n, draws, HORIZON, T_MIN)
        fit = D.train_exact(D.dsm_quadratic(params, data, weights, t, eps), tau)
        distance[draws] = float(score_term(fit, avg.readout, 1.0))
    assert distance[256] < 0.25 * own < distance[4], (distance, own)


# (c) convergence in the node count ---------------------------------------------------------

def test_averaged_quadratic_converges_in_the_node_count():
    params, data, weights = _problem(seed=3)
    quads = {m: D.dsm_quadratic_averaged(params, data, weights, HORIZON, T_MIN, m)
             for m in (8, 32, 128)}
    fine = quads[128]
    # Algebraic, not spectral (small-|w| features switch on quickly in t; kinks crossing):
    # measured 7e-8 at 32 nodes and 2e-4 at 8 on this problem (W = 16).
    assert _relative(quads[32].gram, fine.gram) < 1e-6
    assert _relative(quads[32].linear, fine.linear) < 1e-6
    assert _relative(quads[8].gram, fine.gram) > 1e-5          # the comparison has teeth
    t, q = D.time_quadrature(HORIZON, T_MIN, 32)
    assert abs(float(q.sum()) - 1.0) < 1e-12                  # a probability over t
    assert float(t.min()) > T_MIN and float(t.max()) < HORIZON
    exact = (math.log(math.expm1(2 * HORIZON)) - math.log(math.expm1(2 * T_MIN))) / (
        2 * (HORIZON - T_MIN))
    assert abs(float(fine.constant) - exact) < 1e-12
    # ... and the constant E_t[1/σ_t²] is what the quadrature would give at many nodes.
    t, q = D.time_quadrature(HORIZON, T_MIN, 400)
    assert abs(float(jnp.sum(q / -jnp.expm1(-2 * t))) / exact - 1) < 1e-6


# (d) the factory ---------------------------------------------------------------------------

def test_factory_averaged_estimator_fits_and_samples():
    k_data = jax.random.key(4)
    data = sample_mixture(k_data, TRUTH, 64)
    weights = jnp.ones(64)
    avg = D.diffusion(16, 1e3, steps=20, estimator="averaged", nodes=16)
    draws = D.diffusion(16, 1e3, steps=20)
    assert avg.name.endswith("-avg16") and draws.name == "rf-diffusion-W16-tau1000-fixed-sde20"
    key = jax.random.key(7)
    fit_avg, fit_draws = avg.fit(key, data, weights), draws.fit(key, data, weights)
    # Same key, same first layer: the variants differ only in the training loss.
    np.testing.assert_array_equal(fit_avg.time_weights, fit_draws.time_weights)
    assert bool(jnp.all(jnp.isfinite(fit_avg.readout)))
    assert float(jnp.abs(fit_avg.readout - fit_draws.readout).max()) > 1e-3
    quad = D.dsm_quadratic_averaged(fit_avg._replace(readout=jnp.zeros(16)), data, weights,
                                    4.0, 1e-3, 16)
    np.testing.assert_allclose(fit_avg.readout, D.train_exact(quad, 1e3), rtol=1e-12)
    samples = avg.sample(jax.random.key(8), fit_avg, 200)
    assert samples.shape == (200,) and bool(jnp.all(jnp.isfinite(samples)))
    scale = float(jnp.abs(fit_avg.readout).max())      # eigh round-off on tiny components
    jitted = jax.jit(jax.vmap(avg.fit, in_axes=(0, None, None)))(
        jax.random.split(key, 2), data, weights)                  # the loop vmaps fit
    np.testing.assert_allclose(jitted.readout[0], D.train_exact(
        D.dsm_quadratic_averaged(jax.tree.map(lambda x: x[0], jitted), data, weights, 4.0,
                                 1e-3, 16), 1e3), rtol=1e-8, atol=1e-10 * scale)


@pytest.mark.parametrize("kwargs, name", [
    (dict(estimator="exact"), "estimator"), (dict(estimator=None), "estimator"),
    (dict(estimator="averaged", nodes=0), "nodes"),
    (dict(estimator="averaged", nodes=2.5), "nodes"),
    (dict(estimator="averaged", nodes=True), "nodes"), (dict(nodes=-1), "nodes"),
    (dict(estimator="averaged", dim=2), "in 2-D use draws"),
    (dict(estimator="averaged", t_min=0.0), "t_min")])
def test_factory_rejects_bad_estimator_arguments_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        D.diffusion(16, 1e3, **kwargs)


def test_averaged_quadratic_rejects_two_dimensional_features_and_bad_nodes():
    params2d = D.random_features(jax.random.key(0), 8, dim=2)
    with pytest.raises(ValueError, match="in 2-D use draws"):
        D.dsm_quadratic_averaged(params2d, jnp.zeros((4, 2)), jnp.ones(4), HORIZON, T_MIN, 8)
    params, data, weights = _problem(n=4, width=4)
    with pytest.raises(ValueError, match="nodes"):
        D.dsm_quadratic_averaged(params, data, weights, HORIZON, T_MIN, 0)
    with pytest.raises(ValueError, match="t_min"):
        D.dsm_quadratic_averaged(params, data, weights, HORIZON, 0.0, 8)
    with pytest.raises(ValueError, match="weights"):
        D.dsm_quadratic_averaged(params, data, weights[:3], HORIZON, T_MIN, 8)
