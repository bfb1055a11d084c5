"""Tests for bounds/kde.py: P8 generalised (B4), bias amplification, KDE rate. Proofs: docs/paper_b.md §4-5."""
import numpy as np
import pytest

from bounds import kde

P0_LOC = np.array([-2.0, 2.0])
P0_WEIGHT = np.array([0.5, 0.5])
P0_SCALE = np.array([1.0, 1.0])
P0_VAR = 5.0  # sum pi (sigma^2 + mu^2) - (sum pi mu)^2


def test_components_hand_computed():
    # lam = [1, 1/2, 1/4], h = [1, 2, 3]: weights lam_j prod_{k>j} (1-lam_k).
    got = kde.expected_density_components([1.0, 0.5, 0.25], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(got.weights, [0.5 * 0.75, 0.5 * 0.75, 0.25], atol=1e-15)
    np.testing.assert_allclose(got.variances, [14.0, 13.0, 9.0], atol=1e-15)


@pytest.mark.parametrize("lam", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("g", [0, 1, 4])
def test_general_schedule_reduces_to_theory_p8(lam, g):
    h = 0.3
    general = kde.expected_density_components(np.r_[1.0, np.full(g, lam)], np.full(g + 1, h))
    p8 = kde.constant_lam_components(lam, h, g)
    # Origin generation j corresponds to P8's k = g - j + 1: reverse the order.
    np.testing.assert_allclose(general.weights[::-1], p8.weights, atol=1e-15)
    np.testing.assert_allclose(general.variances[::-1], p8.variances, atol=1e-15)
    assert float(np.sum(p8.weights)) == pytest.approx(1.0, abs=1e-15)


def test_bias_amplification_factor_values_and_lam_zero():
    assert float(kde.bias_amplification_factor(0.5, 1)) == pytest.approx(1.5, abs=1e-15)
    assert float(kde.bias_amplification_factor(0.5, 3)) == pytest.approx(1.875, abs=1e-15)
    assert float(kde.bias_amplification_factor(1.0, 7)) == pytest.approx(1.0, abs=1e-15)
    got = np.asarray(kde.bias_amplification_factor(np.array([0.0, 1e-15, 0.0]), np.array([4, 4, 0])))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [5.0, 5.0, 1.0], rtol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.1, 0.6])
def test_excess_variance_constant_schedule_is_h2_times_factor(lam):
    g, h = 6, 0.4
    lam_schedule, h_schedule = np.r_[1.0, np.full(g, lam)], np.full(g + 1, h)
    want = h ** 2 * float(kde.bias_amplification_factor(lam, g))
    assert float(kde.excess_variance(lam_schedule, h_schedule)) == pytest.approx(want, rel=1e-13)
    mixture = kde.expected_density_components(lam_schedule, h_schedule)
    assert float(np.sum(mixture.weights * mixture.variances)) == pytest.approx(want, rel=1e-13)


def test_density_integrates_to_one_with_variance_by_quadrature():
    lam = np.array([1.0, 0.5, 0.2, 0.8])
    h = np.array([0.5, 0.3, 0.9, 0.4])
    x = np.linspace(-25.0, 25.0, 50001)
    dx = x[1] - x[0]
    p = np.asarray(kde.expected_density(x, P0_LOC, P0_WEIGHT, P0_SCALE, lam, h))
    mass = p.sum() * dx
    mean = (x * p).sum() * dx
    variance = (x ** 2 * p).sum() * dx - mean ** 2
    assert mass == pytest.approx(1.0, abs=1e-10)
    assert mean == pytest.approx(0.0, abs=1e-10)
    assert variance == pytest.approx(P0_VAR + float(kde.excess_variance(lam, h)), abs=1e-9)
    # And the general excess variance agrees with the component form.
    mixture = kde.expected_density_components(lam, h)
    assert float(np.sum(mixture.weights * mixture.variances)) == pytest.approx(
        float(kde.excess_variance(lam, h)), rel=1e-13)


def test_density_2d_integrates_to_one_and_matches_1d_product_for_one_component():
    lam, h = np.array([1.0, 0.3, 0.3]), np.array([0.4, 0.4, 0.4])
    loc = np.array([[-1.5, 0.5], [2.0, -1.0]])
    weight, scale = np.array([0.3, 0.7]), np.array([0.8, 1.2])
    grid = np.linspace(-14.0, 14.0, 561)
    xx, yy = np.meshgrid(grid, grid, indexing="ij")
    points = np.stack([xx, yy], axis=-1)
    p = np.asarray(kde.expected_density_2d(points, loc, weight, scale, lam, h))
    assert p.shape == xx.shape
    assert p.sum() * (grid[1] - grid[0]) ** 2 == pytest.approx(1.0, abs=1e-8)
    # One component centred at the origin: the density is a product of 1-D ones per origin j.
    mixture = kde.expected_density_components(lam, h)
    point = np.array([0.7, -0.4])
    weights, s2 = np.asarray(mixture.weights), 1.0 + np.asarray(mixture.variances)
    want = np.sum(weights * np.exp(-0.5 * point @ point / s2) / (2 * np.pi * s2))
    got = float(kde.expected_density_2d(point, np.zeros((1, 2)), [1.0], [1.0], lam, h))
    assert got == pytest.approx(want, rel=1e-13)


def _monte_carlo_kde(rng, n, m_schedule, h, x, replicas):
    """Mean and SE over replicas of p_hat_i(x), ``reuse`` scheme, exact KDE sampling."""
    real = np.where(rng.random((replicas, n)) < 0.5, -2.0, 2.0) + rng.standard_normal((replicas, n))
    data, means, ses = real, [], []
    for i, h_i in enumerate(h):
        if i > 0:
            # Sample m_i points from the previous KDE: pick a data point, add kernel noise.
            picks = rng.integers(0, data.shape[1], size=(replicas, m_schedule[i]))
            synthetic = np.take_along_axis(data, picks, axis=1) + h[i - 1] * rng.standard_normal(picks.shape)
            data = np.concatenate([real, synthetic], axis=1)
        z = (x[None, :, None] - data[:, None, :]) / h_i
        density = np.exp(-0.5 * z ** 2).mean(axis=-1) / (h_i * np.sqrt(2 * np.pi))
        means.append(density.mean(axis=0))
        ses.append(density.std(axis=0, ddof=1) / np.sqrt(replicas))
    return np.array(means), np.array(ses)


def test_monte_carlo_expected_density_matches_formula():
    rng = np.random.default_rng(20240611)
    n, m_schedule = 20, [0, 20, 60, 10]
    lam = n / (n + np.array(m_schedule, dtype=float))  # lam_0 = 1
    h = np.array([0.5, 0.4, 0.8, 0.3])
    x = np.array([-3.0, -1.0, 0.0, 1.5, 4.0])
    mc_mean, mc_se = _monte_carlo_kde(rng, n, m_schedule, h, x, replicas=20000)
    for i in range(len(h)):
        want = np.asarray(kde.expected_density(x, P0_LOC, P0_WEIGHT, P0_SCALE, lam[:i + 1], h[:i + 1]))
        z = (mc_mean[i] - want) / mc_se[i]
        assert np.all(np.abs(z) < 4), (
            f"generation {i}: z={z}, MC={mc_mean[i]}, formula={want}, abs err={mc_mean[i] - want}")
    # Negative control: the same MC rejects a wrong schedule (bandwidths in reverse order).
    wrong = np.asarray(kde.expected_density(x, P0_LOC, P0_WEIGHT, P0_SCALE, lam, h[::-1]))
    assert np.max(np.abs((mc_mean[-1] - wrong) / mc_se[-1])) > 4


def test_kde_rate_and_bandwidth_values():
    assert float(kde.kde_tv_rate(32.0, 2.0, 0.4)) == pytest.approx(2.0 / 4.0, rel=1e-14)
    assert float(kde.kde_tv_rate(1e5, 1.0)) == pytest.approx(1e-2, rel=1e-12)  # default alpha = 2/5
    assert kde.kde_tv_exponent(1) == pytest.approx(0.4)
    assert kde.kde_tv_exponent(2) == pytest.approx(1 / 3)
    assert float(kde.kde_bandwidth(1e5, 1.0, 1)) == pytest.approx(0.1, rel=1e-12)
    assert float(kde.kde_bandwidth(64.0, 2.0, 2)) == pytest.approx(1.0, rel=1e-12)


def test_bad_inputs_raise_with_parameter_name():
    with pytest.raises(ValueError, match="lam"):
        kde.expected_density_components([1.0, 1.2], [0.1, 0.1])
    with pytest.raises(ValueError, match=r"lam\[0\]"):
        kde.expected_density_components([0.5, 0.5], [0.1, 0.1])
    with pytest.raises(ValueError, match="h must be > 0"):
        kde.expected_density_components([1.0, 0.5], [0.1, 0.0])
    with pytest.raises(ValueError, match="same length"):
        kde.excess_variance([1.0, 0.5], [0.1, 0.1, 0.1])
    with pytest.raises(ValueError, match="p0_weight must sum to 1"):
        kde.expected_density(0.0, P0_LOC, [0.5, 0.6], P0_SCALE, [1.0], [0.1])
    with pytest.raises(ValueError, match="p0_scale"):
        kde.expected_density(0.0, P0_LOC, P0_WEIGHT, [1.0, -1.0], [1.0], [0.1])
    with pytest.raises(ValueError, match="x must have shape"):
        kde.expected_density_2d(np.zeros(3), np.zeros((1, 2)), [1.0], [1.0], [1.0], [0.1])
    with pytest.raises(ValueError, match="lam"):
        kde.bias_amplification_factor(-0.1, 2)
    with pytest.raises(ValueError, match="alpha"):
        kde.kde_tv_rate(100.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="N must be > 0"):
        kde.kde_tv_rate(0.0, 1.0)
