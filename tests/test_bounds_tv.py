"""Tests for bounds/tv.py: R0, R1 (B1), R4 (B3/A5). Proofs: docs/paper_b.md."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from bounds import tv, validate


# ---------------------------------------------------------------- R0


def test_mixture_identity_value_and_against_direct_tv():
    assert float(tv.tv_of_mixture_with_p0(0.25, 0.4)) == pytest.approx(0.3, abs=1e-15)
    # Direct check on random categorical distributions: TV = half the L1 distance.
    rng = np.random.default_rng(0)
    for lam in (0.0, 0.1, 0.7, 1.0):
        p0, q = rng.dirichlet(np.ones(12)), rng.dirichlet(np.ones(12))
        direct = 0.5 * np.abs(lam * p0 + (1 - lam) * q - p0).sum()
        assert float(tv.tv_of_mixture_with_p0(lam, 0.5 * np.abs(q - p0).sum())) == pytest.approx(direct, abs=1e-14)


def test_pinsker_triangle_bounded_function_values():
    assert float(tv.pinsker_tv_bound(0.08)) == pytest.approx(0.2, abs=1e-15)
    assert float(tv.triangle_tv_bound(0.1, 0.25)) == pytest.approx(0.35, abs=1e-15)
    assert float(tv.bounded_function_gap_bound(3.0, 0.1)) == pytest.approx(0.3, abs=1e-15)
    # Pinsker holds on Bernoulli pairs (a bound that can fail if sqrt(kl/2) were mistyped).
    for a, b in [(0.5, 0.3), (0.9, 0.2), (0.01, 0.02)]:
        kl = a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))
        assert abs(a - b) <= float(tv.pinsker_tv_bound(kl)) + 1e-15


def test_bounded_function_gap_holds_on_random_categoricals():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(8)), rng.dirichlet(np.ones(8))
        f = rng.uniform(0, 2.5, size=8)
        gap = abs(p @ f - q @ f)
        assert gap <= float(tv.bounded_function_gap_bound(2.5, 0.5 * np.abs(p - q).sum())) + 1e-14


# ---------------------------------------------------------------- R1


def test_recursion_hand_computed():
    # b0 = 0.1; b1 = 0.2 + 0.5 * 0.1 = 0.25; b2 = 0.3 + 0.75 * 0.25 = 0.4875.
    got = tv.tv_recursion_bound([0.1, 0.2, 0.3], [1.0, 0.5, 0.25])
    np.testing.assert_allclose(got, [0.1, 0.25, 0.4875], rtol=0, atol=1e-15)


def test_recursion_equals_unrolled_double_sum_and_batches():
    rng = np.random.default_rng(2)
    eps = rng.uniform(0, 0.2, size=(3, 7))
    lam = rng.uniform(0, 1, size=(3, 7))
    lam[:, 0] = 1.0
    got = np.asarray(tv.tv_recursion_bound(eps, lam))
    for b in range(3):
        for i in range(7):
            want = sum(np.prod(1 - lam[b, j + 1:i + 1]) * eps[b, j] for j in range(i + 1))
            assert got[b, i] == pytest.approx(want, rel=1e-13)


@pytest.mark.parametrize("lam", [1e-3, 0.05, 0.3, 0.9, 1.0])
def test_constant_lam_closed_form_equals_general_schedule(lam):
    eps_n, eps_N, G = 0.12, 0.04, 40
    eps = np.r_[eps_n, np.full(G - 1, eps_N)]
    lams = np.r_[1.0, np.full(G - 1, lam)]
    general = tv.tv_recursion_bound(eps, lams)
    closed = tv.constant_lam_tv_bound(eps_n, eps_N, lam, jnp.arange(G))
    np.testing.assert_allclose(closed, general, rtol=1e-12)
    # Bounded uniformly in i (A3): never above max(eps(n), eps(N)/lam).
    assert np.all(np.asarray(closed) <= max(eps_n, float(tv.constant_lam_tv_limit(eps_N, lam))) + 1e-15)


def test_fully_synthetic_is_linear_and_equals_general():
    G = 10
    got = tv.fully_synthetic_tv_bound(0.1, 0.03, jnp.arange(G))
    np.testing.assert_allclose(got, 0.1 + 0.03 * np.arange(G), atol=1e-15)
    general = tv.tv_recursion_bound(np.r_[0.1, np.full(G - 1, 0.03)], np.r_[1.0, np.zeros(G - 1)])
    np.testing.assert_allclose(got, general, atol=1e-15)


def test_accumulate_sizes_indexing():
    np.testing.assert_array_equal(tv.accumulate_sizes(10, [5, 7, 0]), [10, 15, 22, 22])


def test_accumulate_harmonic_numbers():
    # m_j = n and constant eps: b_i = eps * H_{i+1} (docs/paper_b.md §2.5).
    G, eps = 12, 0.05
    got = tv.accumulate_tv_bound(np.full(G, eps), 100, np.full(G - 1, 100.0))
    harmonic = np.cumsum(1.0 / np.arange(1, G + 1))
    np.testing.assert_allclose(got, eps * harmonic, rtol=1e-13)


def test_accumulate_hand_computed_and_against_double_sum():
    # n=4, m=[4, 8]: N = [4, 8, 16]; b0 = .1, b1 = .2 + (4/8)(.1) = .25, b2 = .3 + (4*.1 + 8*.25)/16 = .45.
    np.testing.assert_allclose(tv.accumulate_tv_bound([0.1, 0.2, 0.3], 4, [4, 8]), [0.1, 0.25, 0.45], atol=1e-15)
    rng = np.random.default_rng(3)
    n, m = 20.0, rng.integers(0, 50, size=6).astype(float)
    sizes = n + np.r_[0.0, np.cumsum(m)]
    eps = 0.3 * sizes ** -0.4
    want = []
    for i in range(7):
        want.append(eps[i] + sum(m[j] / sizes[i] * want[j] for j in range(i)))
    np.testing.assert_allclose(tv.accumulate_tv_bound(eps, n, m), want, rtol=1e-13)


def test_accumulate_equals_closed_unrolled_form():
    # b_i = eps_i + sum_{j<i} (m_j / N_{j+1}) eps_j (docs/paper_b.md §2.5).
    rng = np.random.default_rng(4)
    n, m = 15.0, rng.integers(0, 80, size=9).astype(float)
    sizes = np.asarray(tv.accumulate_sizes(n, m))
    eps = rng.uniform(0, 0.3, size=10)
    want = eps + np.r_[0.0, np.cumsum(m / sizes[1:] * eps[:-1])]
    np.testing.assert_allclose(tv.accumulate_tv_bound(eps, n, m), want, rtol=1e-13)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 10.0])
def test_accumulate_rate_stays_below_uniform_bound(ratio):
    n, C, alpha, G = 50.0, 1.0, 0.4, 400
    m = np.full(G - 1, ratio * n)
    bound = np.asarray(tv.accumulate_tv_bound(tv.eps_rate(tv.accumulate_sizes(n, m), C, alpha), n, m))
    uniform = float(tv.accumulate_rate_uniform_bound(n, C, alpha, 1 + ratio))
    assert np.all(bound <= uniform)
    assert bound.max() > float(tv.eps_rate(n, C, alpha))  # the uniform bound is not vacuous here


def test_accumulate_with_no_synthetic_is_just_eps():
    eps = [0.1, 0.2, 0.05]
    np.testing.assert_allclose(tv.accumulate_tv_bound(eps, 10, [0, 0]), eps, atol=1e-15)


def test_eps_rate_value():
    assert float(tv.eps_rate(32.0, 2.0, 0.2)) == pytest.approx(1.0, rel=1e-14)


# ---------------------------------------------------------------- R4


@pytest.mark.parametrize("alpha", [0.2, 0.4, 0.5, 0.8])
@pytest.mark.parametrize("i", [0, 1, 3, 10])
def test_template_endpoints_and_excess(alpha, i):
    n, C = 50.0, 0.7
    eps_n = C * n ** -alpha
    assert float(tv.phase_transition_bound(0.0, n, C, alpha, i)) == pytest.approx(eps_n, rel=1e-14)
    # B_i(m)/eps(n) - 1 ~ i (m/n)^-alpha for large m: 1e40 n puts it below 1e-7.
    assert float(tv.phase_transition_bound(1e40 * n, n, C, alpha, i)) == pytest.approx(eps_n, rel=1e-6)
    inner = np.asarray(tv.phase_transition_bound(n * np.logspace(-3, 4, 50), n, C, alpha, i))
    if i == 0:
        np.testing.assert_allclose(inner, eps_n, rtol=1e-14)
    else:
        assert np.all(inner > eps_n)


def test_template_equals_constant_lam_bound_at_rate():
    n, C, alpha = 40.0, 1.3, 0.3
    m = np.array([1.0, 40.0, 400.0, 1e5])
    for i in (1, 2, 7):
        N = n + m
        want = tv.constant_lam_tv_bound(tv.eps_rate(n, C, alpha), tv.eps_rate(N, C, alpha), n / N, i)
        np.testing.assert_allclose(tv.phase_transition_bound(m, n, C, alpha, i), want, rtol=1e-12)


def test_threshold_closed_form_numbers():
    # THEORY R4: 6.48 n at alpha = 1/5, 3 n at alpha = 1/2 (and 3.6 n at the KDE rate 2/5).
    assert float(tv.threshold_m_star_one_generation(1.0, 0.2)) == pytest.approx(5 ** 1.25 - 1, rel=1e-14)
    assert float(tv.threshold_m_star_one_generation(1.0, 0.2)) == pytest.approx(6.48, abs=5e-3)
    assert float(tv.threshold_m_star_one_generation(100.0, 0.5)) == pytest.approx(300.0, rel=1e-14)
    assert float(tv.threshold_m_star_one_generation(1.0, 0.4)) == pytest.approx(3.6, abs=1e-2)


def test_numeric_threshold_matches_closed_form_at_one_generation():
    alphas = np.array([0.05, 0.2, 0.4, 0.5, 0.7, 0.95])
    peak = tv.threshold_m_star(17.0, alphas, 1)
    np.testing.assert_allclose(peak.m_star, tv.threshold_m_star_one_generation(17.0, alphas), rtol=1e-9)
    # Peak value: B_1(m*)/eps(n) = 1 - 1/t + t^-alpha at t = alpha^(-1/(1-alpha)).
    t = alphas ** (-1 / (1 - alphas))
    np.testing.assert_allclose(peak.peak_over_eps_n, 1 - 1 / t + t ** -alphas, rtol=1e-12)


def test_threshold_ratio_independent_of_n_brute_force():
    # Raw grids in m (not scaled by n), so this does not just re-use the code's n = 1 scaling.
    alpha, i = 0.3, 4
    ratios = []
    for n in (10.0, 1000.0, 1e5):
        m = np.linspace(0, 60 * n, 600001)
        b = np.asarray(tv.phase_transition_bound(m, n, 2.0, alpha, i))
        ratios.append(m[np.argmax(b)] / n)
    numeric = float(tv.threshold_m_star(123.0, alpha, i).m_star_over_n)
    np.testing.assert_allclose(ratios, numeric, atol=2e-4)
    peaks = tv.threshold_m_star(np.array([1.0, 10.0, 1e3, 1e6]), alpha, i)
    np.testing.assert_allclose(peaks.m_star_over_n, numeric, rtol=1e-10)


def test_threshold_ratio_grows_about_linearly():
    # For large i, m*/n = (i / s)(1 + O(i^-(1-alpha))) where (e^s - 1)(1 - alpha) = s
    # (docs/paper_b.md §3.4); the correction is slow, so test at large i.
    alpha = 0.4
    ratio = np.asarray(tv.threshold_m_star(1.0, alpha, np.arange(1, 201)).m_star_over_n)
    assert np.all(np.diff(ratio) > 0)
    s = optimize.brentq(lambda s: np.expm1(s) * (1 - alpha) - s, 1e-6, 50)
    far = np.asarray(tv.threshold_m_star(1.0, alpha, np.array([1e5, 2e5])).m_star_over_n)
    assert (far[1] - far[0]) / 1e5 == pytest.approx(1 / s, rel=0.01)


# ---------------------------------------------------------------- validation


def test_bad_inputs_raise_with_parameter_name():
    with pytest.raises(ValueError, match="lam"):
        tv.tv_of_mixture_with_p0(1.5, 0.1)
    with pytest.raises(ValueError, match="lam"):
        tv.tv_recursion_bound([0.1, 0.1], [1.0, -0.1])
    with pytest.raises(ValueError, match=r"lam\[0\]"):
        tv.tv_recursion_bound([0.1, 0.1], [0.5, 0.5])
    with pytest.raises(ValueError, match="same number of generations"):
        tv.tv_recursion_bound([0.1, 0.1, 0.1], [1.0, 0.5])
    with pytest.raises(ValueError, match="lam must lie in \\(0.0"):
        tv.constant_lam_tv_bound(0.1, 0.1, 0.0, 3)
    with pytest.raises(ValueError, match="lam"):
        tv.constant_lam_tv_limit(0.1, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        tv.phase_transition_bound(1.0, 10.0, 1.0, 1.0, 1)
    with pytest.raises(ValueError, match="alpha"):
        tv.threshold_m_star_one_generation(10.0, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        tv.eps_rate(10.0, 1.0, -0.2)
    with pytest.raises(ValueError, match="n must be > 0"):
        tv.phase_transition_bound(1.0, 0.0, 1.0, 0.5, 1)
    with pytest.raises(ValueError, match="N must be > 0"):
        tv.eps_rate(0.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="m must be >= 0"):
        tv.accumulate_sizes(10, [5, -1])
    with pytest.raises(ValueError, match="generations_i"):
        tv.phase_transition_bound(1.0, 10.0, 1.0, 0.5, 1.5)
    with pytest.raises(ValueError, match="generations_i"):
        tv.threshold_m_star(10.0, 0.5, 0)
    with pytest.raises(ValueError, match="growth"):
        tv.accumulate_rate_uniform_bound(10.0, 1.0, 0.5, 0.9)
    with pytest.raises(ValueError, match="kl"):
        tv.pinsker_tv_bound(-0.1)
    with pytest.raises(ValueError, match="eps"):
        tv.accumulate_tv_bound([0.1, 0.2], 10, [5, 5])


@pytest.mark.parametrize("alpha", [0.05, 0.2, 0.4, 0.7, 0.95])
@pytest.mark.parametrize("i", [1, 2, 5, 30])
def test_template_has_one_interior_peak(alpha, i):
    # threshold_m_star assumes unimodality in m; check it on a fine log grid.
    u = np.logspace(-4, 6, 20001)
    b = np.asarray(tv.phase_transition_bound(u, 1.0, 1.0, alpha, i))
    sign_changes = np.count_nonzero(np.diff(np.sign(np.diff(b))))
    assert sign_changes == 1
    peak = float(tv.threshold_m_star(1.0, alpha, i).m_star_over_n)
    assert u[np.argmax(b)] == pytest.approx(peak, rel=2e-3)


@pytest.mark.parametrize("lam", [0.0, 1e-12, 1e-3, 0.3, 1.0])
@pytest.mark.parametrize("i", [0, 1, 7, 1000])
def test_one_minus_power_against_exact_rationals(lam, i):
    """``1 - (1-lam)^i`` against exact rational arithmetic (an independent computation):
    the naive float form loses every digit at lam = 1e-12, the expm1/log1p form must not."""
    from fractions import Fraction
    exact = 1 - (1 - Fraction(lam)) ** i
    value = float(tv.one_minus_power(lam, i))
    assert value == pytest.approx(float(exact), rel=1e-12, abs=1e-300)


def test_lam_schedule_must_start_at_one():
    with pytest.raises(ValueError, match=r"lam\[0\] must be 1"):
        validate.check_lam_schedule("lam", [0.5, 0.5])
    with pytest.raises(ValueError, match="lam"):
        validate.check_lam_schedule("lam", [1.0, 1.5])
