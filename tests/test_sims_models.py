"""Each model's fit and sample against plain NumPy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sims.models import GaussianParams, Mixture, categorical, gaussian, kde, ols_fixed_design
from sims.models import ols_fresh_design
from sims.models.ols import OLSData

KEY = jax.random.key(0)


def test_factories_are_cached_so_compiled_loops_are_reused():
    assert gaussian(2, True) is gaussian(2, True)
    assert kde(0.3) is kde(0.3)
    X = np.random.default_rng(0).standard_normal((6, 2))
    assert ols_fixed_design(X, 1.0) is ols_fixed_design(X.copy(), 1.0)


@pytest.mark.parametrize("unbiased", [False, True])
def test_gaussian_weighted_fit_ignores_empty_slots(unbiased):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 2))
    w = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0], float)
    params = gaussian(2, unbiased).fit(KEY, jnp.asarray(x), jnp.asarray(w))
    np.testing.assert_allclose(params.mean, x[:6].mean(0))
    np.testing.assert_allclose(params.cov, np.cov(x[:6].T, ddof=int(unbiased)))


def test_gaussian_sample_moments():
    params = GaussianParams(jnp.array([1.0, -2.0]), jnp.array([[2.0, 0.6], [0.6, 1.0]]))
    x = np.asarray(gaussian(2).sample(KEY, params, 200_000))
    np.testing.assert_allclose(x.mean(0), params.mean, atol=0.02)
    np.testing.assert_allclose(np.cov(x.T), params.cov, atol=0.03)


def test_categorical_fit_and_sample():
    model = categorical(4, smoothing=0.5)
    probs = model.fit(KEY, jnp.array([0, 0, 1, 3, 2]), jnp.array([1.0, 1, 1, 1, 0]))
    np.testing.assert_allclose(probs, (np.array([2, 1, 0, 1]) + 0.5) / (4 + 2))
    draws = np.asarray(categorical(3).sample(KEY, jnp.array([0.2, 0.5, 0.3]), 100_000))
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 1e5, [0.2, 0.5, 0.3], atol=0.01)
    with pytest.raises(ValueError, match="num_symbols must be >= 2"):
        categorical(1)


def test_ols_fit_is_weighted_least_squares():
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((12, 3)), rng.standard_normal(12)
    w = np.r_[np.ones(8), np.zeros(4)]
    model = ols_fresh_design(3, 1.0)
    np.testing.assert_allclose(model.fit(KEY, OLSData(jnp.asarray(X), jnp.asarray(y)),
                                         jnp.asarray(w)),
                               np.linalg.lstsq(X[:8], y[:8], rcond=None)[0], rtol=1e-10)


@pytest.mark.parametrize("dim", [1, 2, 5, 8, 9])
def test_ols_fit_matches_lapack_for_small_and_large_dimensions(dim):
    """The unrolled Cholesky (d <= 8) and LAPACK's solve (d > 8) agree with NumPy's lstsq, also
    for a badly conditioned design (columns nearly collinear) and a vmapped batch."""
    rng = np.random.default_rng(dim)
    base = rng.standard_normal((4, 40, dim))
    base[1, :, -1] = base[1, :, 0] + 1e-4 * rng.standard_normal(40)  # condition ~1e8
    y = rng.standard_normal((4, 40))
    weights = (rng.random((4, 40)) < 0.8).astype(float)
    fit = jax.vmap(lambda x, yy, w: ols_fresh_design(dim, 1.0).fit(KEY, OLSData(x, yy), w))
    got = np.asarray(fit(jnp.asarray(base), jnp.asarray(y), jnp.asarray(weights)))
    for b in range(4):
        root = np.sqrt(weights[b])
        want = np.linalg.lstsq(base[b] * root[:, None], y[b] * root, rcond=None)[0]
        tolerance = 1e-4 if b == 1 and dim > 1 else 1e-10
        np.testing.assert_allclose(got[b], want, rtol=tolerance, atol=tolerance)


def test_ols_fixed_design_tiles_and_rejects_bad_sizes():
    X = np.random.default_rng(3).standard_normal((5, 2))
    model = ols_fixed_design(X, 0.1, noise_bias=1.0)
    data = model.sample(KEY, jnp.zeros(2), 10)
    np.testing.assert_array_equal(data.x, np.tile(X, (2, 1)))
    assert abs(float(data.y.mean()) - 1.0) < 0.2  # the bias is there
    with pytest.raises(ValueError, match="multiple of the design"):
        model.sample(KEY, jnp.zeros(2), 7)
    with pytest.raises(ValueError, match="T must be >= d"):
        ols_fixed_design(np.ones((2, 3)), 1.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        ols_fixed_design(X, 0.0)


def test_kde_is_a_mixture_and_samples_it_exactly():
    model = kde(0.5)
    data = jnp.array([-1.0, 0.0, 3.0, 9.0])
    mix = model.fit(KEY, data, jnp.array([1.0, 1, 1, 0]))
    np.testing.assert_allclose(mix.weight, [1 / 3, 1 / 3, 1 / 3, 0])
    draws = np.asarray(model.sample(KEY, mix, 200_000))
    assert abs(draws.mean() - 2 / 3) < 0.02
    assert abs(draws.var() - (np.var([-1, 0, 3]) + 0.25)) < 0.05
    shrinking = kde(1.0, "shrinking").fit(KEY, data, jnp.ones(4))
    np.testing.assert_allclose(shrinking.scale, 4 ** -0.2)
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        kde(0.0)
    with pytest.raises(ValueError, match="rule must be one of"):
        kde(1.0, "silverman")


def test_two_dimensional_mixture_sampling():
    truth = Mixture(jnp.array([[0.0, 0.0], [4.0, 4.0]]), jnp.array([0.5, 0.5]),
                    jnp.array([1.0, 1.0]))
    draws = np.asarray(kde(1.0).sample(KEY, truth, 100_000))
    assert draws.shape == (100_000, 2)
    np.testing.assert_allclose(draws.mean(0), [2.0, 2.0], atol=0.05)


def test_weighted_indices_follow_the_weights_and_skip_empty_slots():
    from sims.sampling import weighted_indices
    weights = jnp.array([0.0, 2.0, 0.0, 1.0, 1.0, 0.0])
    draws = np.asarray(weighted_indices(KEY, weights, 200_000))
    freq = np.bincount(draws, minlength=6) / draws.size
    np.testing.assert_allclose(freq, [0, 0.5, 0, 0.25, 0.25, 0], atol=0.005)
    assert set(np.unique(draws)) == {1, 3, 4}
