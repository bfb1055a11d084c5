"""P1-P8 closed forms: hand-computed values, identities, conventions and input checks."""
import math

import numpy as np
import pytest
from scipy import special, stats

from bounds import peers


def test_indexing_convention_counts_fits():
    # Generation 0 is the first fit: g = i + 1 (P1-P7), and it refuses negative generations.
    np.testing.assert_array_equal(peers.fits_after_generation(np.arange(4)), [1, 2, 3, 4])
    with pytest.raises(ValueError, match="i must be >= 0"):
        peers.fits_after_generation(-1)


@pytest.mark.parametrize("M", [2, 3, 10, 200, 5000])
def test_c4_matches_gamma_functions_and_sample_sd(M):
    exact = math.sqrt(2 / (M - 1)) * math.exp(special.gammaln(M / 2) - special.gammaln((M - 1) / 2))
    assert float(peers.c4(M)) == pytest.approx(exact, rel=1e-12)
    # E[S]/sigma for S the unbiased sample SD: chi distribution mean.
    assert float(peers.c4(M)) == pytest.approx(stats.chi(M - 1).mean() / math.sqrt(M - 1), rel=1e-9)


def test_p1_p2_values():
    assert float(peers.mle_variance_chain(2, 10, 2.0)) == pytest.approx(2.0 * 0.81)
    np.testing.assert_allclose(peers.unbiased_variance_chain(np.arange(5), 7, 3.0), 3.0)
    assert float(peers.unbiased_sd_chain(3, 4, 2.0)) == pytest.approx(2.0 * float(peers.c4(4)) ** 3)
    # E log(chi2_k / k) = digamma(k/2) + log(2/k)
    k = 9
    drift = special.digamma(k / 2) + math.log(2 / k)
    assert float(peers.unbiased_log_variance_chain(4, k + 1, 1.0)) == pytest.approx(4 * drift)
    assert float(peers.mle_log_variance_chain(1, 10, 1.0)) == pytest.approx(
        special.digamma(4.5) + math.log(2 / 10))


def test_moment_ratio_horizon_is_the_last_tame_generation():
    M = 20
    g = peers.moment_ratio_horizon(M, 10.0)
    assert ((M + 1) / (M - 1)) ** g <= 10 < ((M + 1) / (M - 1)) ** (g + 1)


def test_p3_single_fit_and_cumulative_structure():
    sizes = [10, 40, 20]
    got = np.asarray(peers.w2_squared_unbiased_chain(sizes, 2.0))
    c4s = [float(peers.c4(s)) for s in sizes]
    want = [2.0 * (sum(1 / s for s in sizes[:g]) + 2 * (1 - np.prod(c4s[:g]))) for g in (1, 2, 3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_p4_p5_p6_values():
    assert float(peers.ols_replace_error(3, 2.0, 0.5)) == pytest.approx(6.0)
    np.testing.assert_allclose(peers.ols_accumulate_error([0, 1, 2, 3], 1.0, 1.0),
                               [0, 1, 1.25, 1.25 + 1 / 9], rtol=1e-12)
    assert float(peers.ols_accumulate_error(10 ** 6, 1.0, 1.0)) < math.pi ** 2 / 6
    assert float(peers.ols_accumulate_bound(2.0, 0.5)) == pytest.approx(2 * math.pi ** 2 / 6)
    assert float(peers.gaussian_design_trace(20, 5)) == pytest.approx(5 / 14)
    assert float(peers.ols_fresh_design_test_error(2, 0.5, 40, 1.0, 20, 5)) == pytest.approx(
        0.25 * 5 / 34 + 2 * 5 / 14)


def test_p7_p8_values():
    assert float(peers.categorical_collision_chain(1, 4, 0.25)) == pytest.approx(1 - 0.75 * 0.75)
    np.testing.assert_allclose(peers.kde_excess_variance([0, 1, 2], 0.5, 2.0),
                               4 * np.array([1, 1.5, 1.75]))
    # lam = 0: linear growth (i + 1) h^2, no division by zero.
    np.testing.assert_allclose(peers.kde_excess_variance([0, 4], 0.0, 1.0), [1, 5])
    # lam = 1: every generation is a KDE of real data only.
    np.testing.assert_allclose(peers.kde_excess_variance([0, 9], 1.0, 1.0), [1, 1])


def test_p8_accumulate_harmonic_numbers_and_recursion():
    # m_j = n: H_i is the harmonic number 1 + 1/2 + ... + 1/(i+1).
    harmonic = np.cumsum(1.0 / np.arange(1, 7))
    np.testing.assert_allclose(peers.kde_accumulate_excess_variance(40, [40] * 5, 0.5),
                               0.25 * harmonic, rtol=1e-14)
    # Any schedule: the expectation recursion E_i = h^2 + (1/N_i) sum_{j<i} m_j E_j (E = excess).
    n, m, h = 7, np.array([3.0, 0.0, 11.0, 2.0]), 0.3
    excess = []
    for i in range(len(m) + 1):
        N_i = n + m[:i].sum()
        excess.append(h ** 2 + sum(m[j] * excess[j] for j in range(i)) / N_i)
    np.testing.assert_allclose(peers.kde_accumulate_excess_variance(n, m, h), excess, rtol=1e-13)
    # No synthetic data: every generation is the KDE of the real set.
    np.testing.assert_allclose(peers.kde_accumulate_excess_variance(5, [0, 0], 1.0), [1, 1, 1])
    assert float(peers.kde_accumulate_second_moment(5, [], 2.0, 5.0)[0]) == pytest.approx(9.0)
    # Accumulate lies between constant lam = n/N_1 (saturates) and fully synthetic (linear).
    acc = np.asarray(peers.kde_accumulate_excess_variance(10, [10] * 20, 1.0))
    assert np.all(np.diff(acc) > 0) and acc[-1] < 21 and acc[-1] > float(
        peers.kde_excess_variance(20, 0.5, 1.0))


@pytest.mark.parametrize("call, name", [
    (lambda: peers.kde_accumulate_excess_variance(0, [1], 1.0), "n must be an integer >= 1"),
    (lambda: peers.kde_accumulate_excess_variance(3, [1, -1], 1.0), "m must be >= 0"),
    (lambda: peers.kde_accumulate_excess_variance(3, [1], 0.0), "h must be > 0"),
    (lambda: peers.kde_accumulate_excess_variance(3, [[1]], 1.0), "m must be a 1-D schedule"),
    (lambda: peers.gaussian_design_trace(6, 5), "T must be >= d \\+ 2"),
    (lambda: peers.ols_fresh_design_test_error(1, 1.0, 40, 1.0, 6, 5), "T0 must be >= d \\+ 2"),
    (lambda: peers.kde_excess_variance(1, 1.5, 1.0), "lam must lie in \\[0"),
    (lambda: peers.kde_excess_variance(1, -0.1, 1.0), "lam must lie in \\[0"),
    (lambda: peers.kde_excess_variance(1, 0.5, 0.0), "h must be > 0"),
    (lambda: peers.mle_variance_chain(1, 0), "M must lie in"),
    (lambda: peers.unbiased_sd_chain(1, 1), "M must lie in"),
    (lambda: peers.categorical_collision_chain(1, 0, 0.3), "n must be an integer >= 1"),
    (lambda: peers.ols_replace_error(1, -1.0, 1.0), "sigma must be > 0"),
    (lambda: peers.mle_variance_chain(-1, 5), "g must be >= 0"),
    (lambda: peers.w2_squared_unbiased_chain([10, 1]), "sizes must lie in"),
])
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()
