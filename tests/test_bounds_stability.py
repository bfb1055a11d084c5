"""Tests for bounds/stability.py (paper A: R2, R3) and bounds/models/{mean_estimation, categorical,
ridge}.py (the section-4 model constants)."""
import math

import numpy as np
import pytest

from bounds import stability as st
from bounds.models import categorical as categorical_bounds
from bounds.models import mean_estimation as mean_bounds
from bounds.models import ridge as ridge_bounds

Z_MAX = 4.0  # |z| threshold for Monte Carlo checks of exact formulas


# ----------------------------------------------------------------------------- R2
def test_recursion_hand_values():
    # eps=0.1, m=5: 0.1, 0.1(1+0.5)=0.15, 0.1(1+0.75)=0.175, 0.1(1+0.875)=0.1875
    got = np.asarray(st.recursive_stability_bound(0.1, 5, 4))
    np.testing.assert_allclose(got, [0.1, 0.15, 0.175, 0.1875], rtol=0, atol=1e-15)
    # explicit base case 0.2: 0.2, 0.1(1+1)=0.2 (fixed point 0.1/(1-0.5)=0.2)
    got = np.asarray(st.recursive_stability_bound(0.1, 5, 3, gamma_0=0.2))
    np.testing.assert_allclose(got, [0.2, 0.2, 0.2], atol=1e-15)


@pytest.mark.parametrize("eps_N,m,gamma_0", [
    (0.01, 50, None), (0.01, 50, 0.03), (0.02, 50, None),  # b = 0.5, 0.5, 1 (linear)
    (0.05, 30, 0.1), (0.0, 10, 0.3), (0.2, 0, None),        # b = 1.5, b = 0, m = 0
])
def test_recursion_matches_closed_form(eps_N, m, gamma_0):
    gens = 12
    rec = np.asarray(st.recursive_stability_bound(eps_N, m, gens, gamma_0=gamma_0))
    closed = np.asarray(st.recursive_stability_closed_form(eps_N, m, np.arange(gens), gamma_0=gamma_0))
    np.testing.assert_allclose(rec, closed, rtol=1e-12, atol=1e-15)


def test_closed_form_hand_values():
    # b = 1: gamma_i = gamma_0 + i eps; default base eps_N
    assert float(st.recursive_stability_closed_form(0.02, 50, 10)) == pytest.approx(0.02 * 11)
    # b = 2, eps=0.1, m=20, i=3, gamma_0=0.1: 0.1 * (2^4 - 1) = 1.5
    assert float(st.recursive_stability_closed_form(0.1, 20, 3)) == pytest.approx(1.5)


def test_dichotomy_c_one_minus_lam():
    n_total = 100
    cases = [(1.0, 0.2, True), (2.0, 0.6, True), (2.0, 0.5, False), (3.0, 0.4, False), (1.0, 0.0, False)]
    for c, lam, bounded in cases:
        assert bool(st.is_uniformly_bounded(c, lam)) is bounded, (c, lam)
        assert float(st.stability_contraction(c, lam)) == pytest.approx(c * (1 - lam))
        m = round((1 - lam) * n_total)
        eps = c / n_total
        gammas = np.asarray(st.recursive_stability_bound(eps, m, 200))
        sup = float(st.recursive_stability_sup(eps, m))
        if bounded:
            limit = c / (n_total * (1 - c * (1 - lam)))
            assert sup == pytest.approx(limit)
            assert np.all(gammas <= limit * (1 + 1e-12))
            assert gammas[-1] == pytest.approx(limit, rel=1e-9)
        else:
            assert math.isinf(sup)
            assert gammas[-1] > 100 * gammas[0]  # linear (b=1) or geometric growth


def test_sup_respects_larger_base_case():
    # b = 0.5, limit 0.2, base 0.5 above the limit: sup is the base case
    assert float(st.recursive_stability_sup(0.1, 5, gamma_0=0.5)) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- R3
def test_expected_gap_bound_terms():
    g = st.expected_gap_bound(beta_N=0.1, m=10, gamma_prev=0.05, lam=0.5, loss_bound=2.0, tv_prev=0.2)
    assert float(g.real_stability) == pytest.approx(0.05)
    assert float(g.recursive_stability) == pytest.approx(0.025)
    assert float(g.distribution_shift) == pytest.approx(0.2)
    assert float(g.synthetic_stability) == pytest.approx(0.05)
    assert float(g.concentration) == 0.0
    assert float(g.stability) == pytest.approx(0.1)
    assert float(g.total) == pytest.approx(0.325)
    # R3 as written in THEORY: lam b (1 + m g) + (1-lam) M TV + (1-lam) b
    assert float(g.total) == pytest.approx(0.5 * 0.1 * (1 + 10 * 0.05) + 0.5 * 2 * 0.2 + 0.5 * 0.1)


def test_expected_gap_bound_fully_synthetic_and_broadcast():
    g = st.expected_gap_bound(0.1, 10, 0.05, 0.0, 2.0, 0.2)
    assert float(g.total) == pytest.approx(2 * 0.2 + 0.1)
    g = st.expected_gap_bound(0.1, np.array([0, 10]), 0.05, np.array([1.0, 0.5]), 2.0, 0.2)
    np.testing.assert_allclose(np.asarray(g.total), [0.1, 0.325])


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("call,param", [
    (lambda: st.expected_gap_bound(0.1, 10, 0.05, 1.5, 2.0, 0.2), "lam"),
    (lambda: st.expected_gap_bound(0.1, 10, 0.05, 0.5, 0.0, 0.2), "loss_bound"),
    (lambda: st.expected_gap_bound(0.1, 10, 0.05, 0.5, 2.0, 1.2), "tv_prev"),
    (lambda: st.expected_gap_bound(-0.1, 10, 0.05, 0.5, 2.0, 0.2), "beta_N"),
    (lambda: st.recursive_stability_bound(-0.1, 5, 3), "eps_N"),
    (lambda: st.recursive_stability_bound(0.1, 5, 0), "generations"),
    (lambda: st.recursive_stability_closed_form(0.1, 5, -1), "generation"),
    (lambda: st.is_uniformly_bounded(1.0, -0.1), "lam"),
    (lambda: mean_bounds.mean_estimation_loop_width(1.0, 0.0), "lam"),
    (lambda: mean_bounds.mean_estimation_variance_plateau(1.0, 5, 5, lam=0.0), "lam"),
    (lambda: mean_bounds.mean_estimation_exact_variance(0.0, 5, 5, 1), "variance"),
    (lambda: mean_bounds.mean_estimation_exact_variance(1.0, 0, 5, 1), "n"),
    (lambda: mean_bounds.mean_estimation_generator_constant(np.inf, 1.0), "data_width"),
    (lambda: mean_bounds.mean_estimation_generator_constant(1.0, 1.0, noise="cauchy"), "noise"),
    (lambda: mean_bounds.mean_estimation_optimal_m(1.0, 10, np.array([], dtype=int), 1), "m_grid"),
    (lambda: ridge_bounds.ridge_uniform_stability(1.0, 1.0, 0.0, 10), "rho"),
    (lambda: ridge_bounds.ridge_uniform_stability(1.0, np.inf, 1.0, 10), "label_bound"),
    (lambda: ridge_bounds.ridge_uniform_stability(1.0, -1.0, 1.0, 10), "label_bound"),
    (lambda: ridge_bounds.ridge_loss_bound(np.inf, 1.0, 1.0), "feature_bound"),
    (lambda: ridge_bounds.ridge_generator_constant(1.0, 1.0, 1.0, 0.0), "noise_scale"),
    (lambda: categorical_bounds.categorical_replace_one_tv(10, 3, alpha=-1.0), "alpha"),
])
def test_bad_input_raises_naming_parameter(call, param):
    with pytest.raises(ValueError, match=param):
        call()


def test_label_bound_message_says_clipped():
    with pytest.raises(ValueError, match="clipped"):
        ridge_bounds.ridge_weight_norm_bound(np.inf, 1.0)


# ----------------------------------------------------------------------------- TV of location families
def test_gaussian_shift_tv_exact_and_linear_bound():
    grid = np.linspace(-30, 30, 600_001)
    dx = grid[1] - grid[0]
    for shift, s in [(0.3, 1.0), (2.0, 1.5), (5.0, 0.7)]:
        p = np.exp(-grid ** 2 / (2 * s * s)) / (s * math.sqrt(2 * math.pi))
        q = np.exp(-(grid - shift) ** 2 / (2 * s * s)) / (s * math.sqrt(2 * math.pi))
        numeric = 0.5 * np.sum(np.abs(p - q)) * dx
        exact = float(mean_bounds.gaussian_shift_tv(shift, s))
        assert exact == pytest.approx(numeric, abs=1e-6)
        assert exact <= shift / (s * math.sqrt(2 * math.pi))


def test_uniform_shift_tv():
    assert float(mean_bounds.uniform_shift_tv(0.5, 1.0)) == pytest.approx(0.25)
    assert float(mean_bounds.uniform_shift_tv(-3.0, 1.0)) == 1.0


def test_mean_generator_constants():
    # D=2, s=1: c = 2/sqrt(2 pi); uniform a=0.5: c = 2/1 = 2
    assert float(mean_bounds.mean_estimation_generator_constant(2.0, 1.0)) == pytest.approx(2 / math.sqrt(2 * math.pi))
    assert float(mean_bounds.mean_estimation_generator_constant(2.0, 0.5, noise="uniform")) == pytest.approx(2.0)
    # exact eps_N = 2 Phi(D/(2 s N)) - 1 is below c/N
    c = float(mean_bounds.mean_estimation_generator_constant(2.0, 1.0))
    assert float(mean_bounds.gaussian_shift_tv(2.0 / 10, 1.0)) <= c / 10


# ----------------------------------------------------------------------------- mean estimation: exact variance
def test_exact_variance_hand_values():
    # s2=1, n=m=10: lam=1/2, r=1/4; i=1: 0.1 + 0.1*0.25 = 0.125; i=2: 0.1 + 0.1*(0.25+0.0625)
    got = np.asarray(mean_bounds.mean_estimation_exact_variance(1.0, 10, 10, np.array([0, 1, 2])))
    np.testing.assert_allclose(got, [0.1, 0.125, 0.13125], rtol=1e-14)
    got = np.asarray(mean_bounds.mean_estimation_exact_variance(2.0, 4, 8, np.array([0, 3]), lam=0.0))
    np.testing.assert_allclose(got, [0.5, 0.5 + 3 * 2 / 8], rtol=1e-14)
    assert float(mean_bounds.mean_estimation_exact_variance(1.0, 10, 10, 5, lam=1.0)) == pytest.approx(0.1)


def test_variance_plateau():
    for n, m in [(10, 10), (5, 40), (20, 1)]:
        plateau = float(mean_bounds.mean_estimation_variance_plateau(1.0, n, m))
        assert plateau == pytest.approx((n + 3 * m) / (n * (n + 2 * m)))
        assert plateau < 1.5 / n
        assert float(mean_bounds.mean_estimation_exact_variance(1.0, n, m, 400)) == pytest.approx(plateau, rel=1e-10)


def _simulate_mean_loop(rng, n, m, generations, lam, reps, noise):
    """theta_0 = mean(S0); theta_i = lam mean(S0) + (1-lam) mean(Z_i), Z_i ~ theta_{i-1} + noise."""
    def draw(size):
        if noise == "gaussian":
            return rng.standard_normal(size)
        return rng.uniform(-1.0, 1.0, size)  # variance 1/3
    real_mean = draw((reps, n)).mean(axis=1)  # mu = 0
    theta = real_mean
    for _ in range(generations):
        synthetic = theta[:, None] + draw((reps, m))
        theta = lam * real_mean + (1 - lam) * synthetic.mean(axis=1)
    return theta


@pytest.mark.parametrize("n,m,gens,lam,noise", [
    (4, 8, 3, None, "gaussian"),   # reuse: lam = n/N = 1/3
    (4, 8, 3, 0.0, "gaussian"),    # fully synthetic random walk
    (3, 6, 2, None, "uniform"),    # bounded-noise variant, s2 = 1/3
])
def test_exact_variance_monte_carlo(n, m, gens, lam, noise):
    rng = np.random.default_rng(20250214)
    reps = 40_000
    lam_value = n / (n + m) if lam is None else lam
    theta = _simulate_mean_loop(rng, n, m, gens, lam_value, reps, noise)
    sq = theta ** 2
    s2 = 1.0 if noise == "gaussian" else 1.0 / 3.0
    predicted = float(mean_bounds.mean_estimation_exact_variance(s2, n, m, gens, lam=lam))
    se = sq.std(ddof=1) / math.sqrt(reps)
    z = (sq.mean() - predicted) / se
    assert abs(z) < Z_MAX, f"MC {sq.mean():.5f} vs exact {predicted:.5f}, SE {se:.5f}, z {z:.2f}"


# ----------------------------------------------------------------------------- A5 for mean estimation
def test_synthetic_never_helps_but_not_monotone():
    n = 10
    ms = np.arange(1, 2000)
    for i in (1, 2, 4):
        err = np.asarray(mean_bounds.mean_estimation_exact_variance(1.0, n, ms, i))
        assert np.all(err > 1.0 / n)  # never below the m = 0 error s^2/n
        assert not np.all(np.diff(err) >= 0)  # ... yet not increasing in m
    err1 = np.asarray(mean_bounds.mean_estimation_exact_variance(1.0, n, ms, 1))
    assert ms[np.argmax(err1)] == n  # i = 1 peak at m = n
    assert err1.max() == pytest.approx(1.25 / n)


def test_mean_gap_bound_and_optimal_m():
    # m = 0: lam = 1, D = 4a, bound = beta_n = 2 D^2 / n
    g = mean_bounds.mean_estimation_gap_bound(1.0, 20, 0, 1)
    assert float(g.total) == pytest.approx(2 * 16 / 20)
    res = mean_bounds.mean_estimation_optimal_m(1.0, 20, np.array([0, 5, 20, 100]), 2)
    assert res.m_star == 0
    assert res.bound_at_m_star == pytest.approx(float(np.min(np.asarray(res.bounds))))
    # hand-computed m = n = 20, i = 1: lam=1/2, D=6, c=3, eps=3/40, gamma_0=1/20
    a, n, m = 1.0, 20, 20
    D, N = 6.0, 40
    beta, M = 2 * D ** 2 / N, D ** 2
    tv0 = math.sqrt(a * a / 3 / n) / (2 * a)
    want = 0.5 * beta * (1 + m / n) + 0.5 * M * tv0 + 0.5 * beta
    assert float(mean_bounds.mean_estimation_gap_bound(a, n, m, 1).total) == pytest.approx(want)


def test_mean_gap_bound_holds_in_simulation():
    """R3 for the uniform mean loop: empirical E[R_p0 - R_hat] below the bound."""
    rng = np.random.default_rng(7)
    a, n, m, gens, reps = 1.0, 5, 5, 2, 20_000
    real = rng.uniform(-a, a, (reps, n))
    theta = real.mean(axis=1)
    for _ in range(gens):
        synthetic = theta[:, None] + rng.uniform(-a, a, (reps, m))
        sample = np.concatenate([real, synthetic], axis=1)
        theta = sample.mean(axis=1)
    true_risk = a * a / 3 + theta ** 2
    emp_risk = ((sample - theta[:, None]) ** 2).mean(axis=1)
    gap = true_risk - emp_risk
    upper_ci = gap.mean() + Z_MAX * gap.std(ddof=1) / math.sqrt(reps)
    assert upper_ci <= float(mean_bounds.mean_estimation_gap_bound(a, n, m, gens).total)


# ----------------------------------------------------------------------------- categorical
def test_categorical_replace_one_tv_exact():
    rng = np.random.default_rng(3)
    K, N = 6, 25
    for alpha in (0.0, 0.5):
        data = rng.integers(0, K, N)
        changed = data.copy()
        changed[0] = (data[0] + 1) % K
        fit = lambda d: (np.bincount(d, minlength=K) + alpha) / (N + K * alpha)
        tv = 0.5 * np.abs(fit(data) - fit(changed)).sum()
        assert float(categorical_bounds.categorical_replace_one_tv(N, K, alpha)) == pytest.approx(tv)


def test_categorical_recursive_stability():
    assert float(categorical_bounds.categorical_recursive_stability_sup(10, 30, 5)) == pytest.approx(1 / 10)  # 1/(lam N)
    assert float(categorical_bounds.categorical_recursive_stability_sup(10, 30, 5, 1.0)) == pytest.approx(1 / 15)
    eps = float(categorical_bounds.categorical_replace_one_tv(40, 5))
    gammas = np.asarray(st.recursive_stability_bound(eps, 30, 50, gamma_0=0.1))
    np.testing.assert_allclose(gammas, 0.1, rtol=1e-12)  # base case is the fixed point


# ----------------------------------------------------------------------------- ridge
def test_ridge_hand_values():
    # kappa=1, B=1, rho=1/4: 1+kappa/sqrt(rho) = 3; M = 9; sigma = 6; beta = 36/(0.25 N)
    assert float(ridge_bounds.ridge_weight_norm_bound(1.0, 0.25)) == pytest.approx(2.0)
    assert float(ridge_bounds.ridge_loss_bound(1.0, 1.0, 0.25)) == pytest.approx(9.0)
    assert float(ridge_bounds.ridge_prediction_lipschitz(1.0, 1.0, 0.25)) == pytest.approx(6.0)
    assert float(ridge_bounds.ridge_uniform_stability(1.0, 1.0, 0.25, 12)) == pytest.approx(36 / 3.0)
    theory_constant = 2 * 1 * 1 * 9 / (0.25 * 12)
    assert float(ridge_bounds.ridge_uniform_stability(1.0, 1.0, 0.25, 12)) == pytest.approx(2 * theory_constant)
    assert float(ridge_bounds.ridge_generator_constant(1.0, 1.0, 0.25, 2.0)) == pytest.approx(
        6 / (0.25 * 2 * math.sqrt(2 * math.pi)))


def _ridge_fit(x, y, rho):
    N, d = x.shape
    return np.linalg.solve(x.T @ x / N + rho * np.eye(d), x.T @ y / N)


def test_ridge_constants_hold_on_random_replacements():
    rng = np.random.default_rng(11)
    kappa, B, N, d = 1.5, 2.0, 15, 3
    for rho in (0.05, 0.5):
        beta = float(ridge_bounds.ridge_uniform_stability(kappa, B, rho, N))
        M = float(ridge_bounds.ridge_loss_bound(kappa, B, rho))
        w_max = float(ridge_bounds.ridge_weight_norm_bound(B, rho))
        worst = 0.0
        for _ in range(300):
            x = rng.normal(size=(N, d))
            x *= kappa / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), kappa)
            y = np.clip(rng.normal(scale=2 * B, size=N), -B, B)
            x2, y2 = x.copy(), y.copy()
            x2[0] = kappa * x[0] / max(np.linalg.norm(x[0]), 1e-12)
            y2[0] = -np.sign(y[0]) * B
            w, w2 = _ridge_fit(x, y, rho), _ridge_fit(x2, y2, rho)
            assert np.linalg.norm(w) <= w_max + 1e-12
            xt = rng.normal(size=(200, d))
            xt *= kappa / np.linalg.norm(xt, axis=1, keepdims=True)
            yt = rng.choice([-B, B], 200)
            loss, loss2 = (yt - xt @ w) ** 2, (yt - xt @ w2) ** 2
            assert loss.max() <= M + 1e-12
            worst = max(worst, np.abs(loss - loss2).max())
        assert worst <= beta


# ----------------------------------------------------------------------------- A3 ridge
RIDGE_ARGS = dict(feature_bound=1.0, second_moment=0.25, label_bound=1.0, rho=1.0,
                  noise_scale=0.5, n=20, w_star_norm=0.8)


def _ridge_step(u, lam, m, a=RIDGE_ARGS):
    """One step of the L2 recursion of docs/paper_a.md section 7.7, written out by hand."""
    lc, k, B, t = a["second_moment"], a["feature_bound"], a["label_bound"], a["noise_scale"]
    w = a["w_star_norm"]
    r0 = math.sqrt(lc ** 2 * w ** 2 + k ** 2 * min(B ** 2, lc * w ** 2 + t ** 2) / a["n"])
    s = math.sqrt(lc ** 2 * u ** 2 + k ** 2 * min(B ** 2, lc * u ** 2 + t ** 2) / m)
    return r0, (lam * r0 + (1 - lam) * s) / a["rho"]


def test_ridge_weight_bound_hand_values():
    r0, u1 = _ridge_step(0.0, 0.5, 20)
    u = ridge_bounds.ridge_weight_l2_bound(**RIDGE_ARGS, m=20, generation=np.array([0, 1, 2]))
    assert u[0] == pytest.approx(r0)
    assert u[1] == pytest.approx(_ridge_step(r0, 0.5, 20)[1])
    assert u[2] == pytest.approx(_ridge_step(u[1], 0.5, 20)[1])
    # m = 0 (lam = 1): every generation is the fit on the n real points
    np.testing.assert_allclose(ridge_bounds.ridge_weight_l2_bound(**RIDGE_ARGS, m=0, generation=[0, 3]),
                               [r0, r0])


@pytest.mark.parametrize("m,lam", [(20, None), (380, None), (20, 0.0)])
def test_ridge_plateau_is_sup_of_the_recursion(m, lam):
    u = ridge_bounds.ridge_weight_l2_bound(**RIDGE_ARGS, m=m, generation=np.arange(400), lam=lam)
    sup = ridge_bounds.ridge_error_plateau_bound(**RIDGE_ARGS, m=m, lam=lam)
    assert sup == pytest.approx((RIDGE_ARGS["w_star_norm"] + u.max()) ** 2, rel=1e-9)
    assert np.all(np.diff(u) <= 1e-15) or np.all(np.diff(u) >= -1e-15)  # monotone


def test_ridge_plateau_infinite_without_contraction():
    args = dict(RIDGE_ARGS, second_moment=1.0, rho=0.5)
    assert math.isinf(ridge_bounds.ridge_error_plateau_bound(**args, m=20, lam=0.0))


@pytest.mark.parametrize("change,param", [
    (dict(second_moment=1.5), "second_moment"),  # > kappa^2
    (dict(w_star_norm=-1.0), "w_star_norm"),
    (dict(n=0), "n"),
    (dict(noise_scale=0.0), "noise_scale"),
    (dict(label_bound=np.inf), "label_bound"),
])
def test_ridge_plateau_rejects_bad_inputs(change, param):
    with pytest.raises(ValueError, match=param):
        ridge_bounds.ridge_error_plateau_bound(**dict(RIDGE_ARGS, **change), m=20)


def test_ridge_plateau_needs_synthetic_data_when_lam_below_one():
    with pytest.raises(ValueError, match="m"):
        ridge_bounds.ridge_weight_l2_bound(**RIDGE_ARGS, m=0, generation=1, lam=0.5)


def test_real_proportion_is_n_over_n_plus_m_unless_given():
    assert st.real_proportion(20, 60) == pytest.approx(0.25)
    assert st.real_proportion(20, 60, 0.5) == 0.5
    with pytest.raises(ValueError, match="lam"):
        st.real_proportion(20, 60, 1.5)
