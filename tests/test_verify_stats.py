"""Statistics: z-scores, Holm, tightness and slope fits."""
import numpy as np
import pytest

from verify import stats


def test_z_scores_and_deterministic_rows():
    np.testing.assert_allclose(stats.z_scores([1.2, 0.9], [0.1, 0.05], [1.0, 1.0]), [2.0, -2.0])
    assert stats.z_scores(1.0, 0.0, 1.0) == 0.0           # exact agreement, no noise
    assert stats.z_scores(1.1, 0.0, 1.0) == np.inf        # any disagreement without noise


def test_holm_is_step_down():
    # thresholds for 4 hypotheses at alpha=0.04: 0.01, 0.0133, 0.02, 0.04
    reject = stats.holm([0.005, 0.012, 0.03, 0.019], alpha=0.04)
    np.testing.assert_array_equal(reject, [True, True, True, True])
    reject = stats.holm([0.005, 0.014, 0.03, 0.019], alpha=0.04)
    np.testing.assert_array_equal(reject, [True, False, False, False])


def test_holm_controls_family_wise_error_under_the_null():
    rng = np.random.default_rng(0)
    false_alarms = sum(stats.holm(rng.uniform(size=50), alpha=0.05).any() for _ in range(2000))
    assert false_alarms / 2000 < 0.07


def test_tightness_and_violation_test():
    t = stats.tightness(0.5, 0.01, 1.0)
    assert t.ratio == pytest.approx(0.5) and t.low < 0.5 < t.high and t.p_violation > 1 - 1e-6
    t = stats.tightness(1.1, 0.01, 1.0)
    assert t.p_violation < 1e-6  # a clear violation
    assert stats.tightness(1.5, 0.01, 1.0, upper=False).p_violation > 1 - 1e-6  # above: fine
    assert stats.tightness(0.5, 0.01, 1.0, upper=False).p_violation < 1e-6  # below: violated


def test_fit_slope_recovers_a_rate_with_a_ci():
    rng = np.random.default_rng(1)
    x = np.geomspace(10, 10_000, 12)
    y = 3.0 * x ** -0.4 * np.exp(0.02 * rng.standard_normal(12))
    fit = stats.fit_slope(x, y)
    assert fit.low < -0.4 < fit.high and fit.high - fit.low < 0.05
    with pytest.raises(ValueError, match="at least 3 points"):
        stats.fit_slope([1, 2], [1, 2])


def test_normal_tails_match_an_independent_computation():
    import math
    from statistics import NormalDist
    for z in (-3.0, 0.0, 1.5, 8.0, 30.0):  # far tails too (erfc stays accurate there)
        assert stats.normal_sf(z) == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-12)
    for p in (0.3, 1e-3, 1e-9):
        assert stats.normal_isf(p) == pytest.approx(-NormalDist().inv_cdf(p), rel=1e-9)
    # one wrong row among k = 10 at alpha = 1e-3 must reach z_{1 - 5e-5} two-sided
    assert stats.critical_z(1e-3, 10, two_sided=True) == pytest.approx(
        NormalDist().inv_cdf(1 - 5e-5), rel=1e-9)
    assert stats.critical_z(1e-3, 10, two_sided=False) == pytest.approx(
        NormalDist().inv_cdf(1 - 1e-4), rel=1e-9)


def test_fit_slope_interval_uses_student_t():
    # exact line plus alternating noise: 4 points, 2 degrees of freedom, t_{0.975,2} = 4.3027
    x = np.array([1.0, 2.0, 4.0, 8.0])
    y = x ** 0.5 * np.exp(0.01 * np.array([1, -1, 1, -1]))
    fit = stats.fit_slope(x, y)
    assert (fit.high - fit.low) / 2 == pytest.approx(4.302652729911275 * fit.slope_se, rel=1e-9)


def test_power_law_fit_recovers_an_exact_power_law_and_its_band_covers_it():
    N = np.array([25.0, 50, 100, 200, 400, 800])
    mean = 0.8 * N ** -0.4
    fit = stats.power_law_fit(N, mean, 0.01 * mean)
    assert fit["C"] == pytest.approx(0.8, rel=1e-9) and fit["alpha"] == pytest.approx(0.4, rel=1e-9)
    assert fit["alpha_low"] < 0.4 < fit["alpha_high"]
    upper = stats.power_law_upper(fit, N)
    assert np.all(upper > mean) and np.all(upper < 1.1 * mean)
