"""Linear-attention ICL loop (claim A2): closed forms against Monte Carlo, the model, the
claim on its quick grid, and negative controls (a wrong boundary, a wrong gamma*, a wrong
moment recursion, a simulator with the wrong synthetic noise) that must fail."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import digamma

import sims
from bounds import stability as st
from bounds.models import linear_attention as la
from sims.coupled import run_coupled
from sims.models import ICLData, LinearAttention, icl_real_sampler, icl_task, linear_attention
from verify.claim import control, evaluate
from verify.claims import attention

from quick_run import assert_quick_run_passes, claims_checked_in

Z = 4.5  # |z| limit for a handful of simultaneous exact checks


def _z(mean, se, value):
    return (np.asarray(mean) - np.asarray(value)) / np.asarray(se)


# --- closed forms ------------------------------------------------------------------------

def test_icl_risk_matches_monte_carlo():
    """E(w_hat.x_q - y_q)^2 with w ~ N(0, I) redrawn per prompt, against the formula."""
    gamma, N, d, sigma, R = 0.8, 7, 4, 0.7, 200_000
    kw, kx, ke, kq, kn = jax.random.split(jax.random.key(1), 5)
    w = jax.random.normal(kw, (R, d))
    x = jax.random.normal(kx, (R, N, d))
    y = jnp.einsum("rnd,rd->rn", x, w) + sigma * jax.random.normal(ke, (R, N))
    w_hat = gamma / N * jnp.einsum("rnd,rn->rd", x, y)
    xq = jax.random.normal(kq, (R, d))
    err = ((w_hat * xq).sum(1) - (xq * w).sum(1) - sigma * jax.random.normal(kn, (R,))) ** 2
    z = _z(err.mean(), err.std() / np.sqrt(R), la.icl_risk(gamma, N, d, sigma))
    assert abs(z) < Z, z


def test_gamma_star_is_the_minimiser():
    N, d, sigma = 10, 5, 0.5
    star = float(la.gamma_star(N, d, sigma))
    assert star == pytest.approx(10 / 16.25)
    slope = float(jax.grad(lambda g: la.icl_risk(g, N, d, sigma))(star))
    assert slope == pytest.approx(0, abs=1e-12)
    for g in (0.95 * star, 1.05 * star):
        assert la.icl_risk(g, N, d, sigma) > la.icl_risk(star, N, d, sigma)


def _chi2_products(gamma, lam, d, m, R=400_000, seed=0):
    """|A u|^2 for unit u, by direct matrix draws (not via the chi-square identity)."""
    N = m / (1 - lam)
    X = np.random.default_rng(seed).standard_normal((R, m, d))
    u = np.zeros(d)
    u[0] = 1.0
    Au = gamma / N * np.einsum("rmd,rm->rd", X, X @ u)
    return (Au ** 2).sum(1)


@pytest.mark.parametrize("gamma,lam,d,m", [(1.0, 0.1, 5, 9), (0.7, 0.5, 3, 4), (1.3, 0.25, 1, 6)])
def test_growth_factors_match_monte_carlo(gamma, lam, d, m):
    sq = _chi2_products(gamma, lam, d, m)
    n = sq.size
    assert abs(_z(sq.mean(), sq.std() / np.sqrt(n), la.contraction_factor(gamma, lam, d, m))) < Z
    q = sq ** 2
    assert abs(_z(q.mean(), q.std() / np.sqrt(n), la.fourth_moment_factor(gamma, lam, d, m))) < Z
    lg = 0.5 * np.log(sq)
    assert abs(_z(lg.mean(), lg.std() / np.sqrt(n), la.lyapunov_exponent(gamma, lam, d, m))) < Z


def test_theory_table_and_boundaries():
    """THEORY section 4's table and three regimes (d = 5, m = 9)."""
    for gamma, lam, value in [(1.0, 0.1, -0.0185), (1.2, 0.1, 0.1638), (0.9, 0.1, -0.1239),
                              (1.0, 0.0, 0.0868)]:
        assert float(la.lyapunov_exponent(gamma, lam, 5, 9)) == pytest.approx(value, abs=1e-4)
    assert float(la.contraction_factor(1.0, 0.1, 5, 9)) == pytest.approx(1.35)
    star = la.gamma_star(10, 5, 0.5)
    assert float(la.contraction_factor(star, 0.1, 5, 9)) == pytest.approx(0.5112, abs=1e-4)
    assert float(la.mean_square_boundary(0.1, 5, 9)) == pytest.approx(0.861, abs=1e-3)
    assert float(la.almost_sure_boundary(0.1, 5, 9)) == pytest.approx(1.019, abs=2e-3)
    lam = np.linspace(0, 0.9, 7)
    ms, a_s = la.mean_square_boundary(lam, 5, 9), la.almost_sure_boundary(lam, 5, 9)
    np.testing.assert_allclose(la.contraction_factor(ms, lam, 5, 9), 1)
    np.testing.assert_allclose(la.lyapunov_exponent(a_s, lam, 5, 9), 0, atol=1e-12)
    # d = 1: T = 0 and both digammas coincide.
    assert float(la.lyapunov_exponent(1.0, 0.0, 1, 4)) == pytest.approx(
        float(digamma(2.0)) + np.log(2.0) - np.log(4.0))


def test_r2_constant_and_bound_dominate_exact_difference():
    """c (1-lam) = sqrt(contraction factor); R2 with c bounds E|Delta_i|^2, equality at i = 0."""
    w, sigma, m = np.ones(5), 0.5, 9
    for gamma, n in [(0.6, 1), (1.0, 1), (1.3, 9), (2.2, 9)]:
        lam = n / (n + m)
        c = float(la.recursive_stability_constant(gamma, 5, m))
        factor = float(la.contraction_factor(gamma, lam, 5, m))
        assert c * (1 - lam) == pytest.approx(np.sqrt(factor))
        exact = np.asarray(la.coupled_difference_moments(gamma, n, m, w, sigma, 30).error)
        scale = float(la.recursive_stability_scale(w, sigma, m))
        r2 = np.asarray(st.recursive_stability_bound(c / (n + m), m, 30, gamma_0=c / n))
        bound = (scale * r2) ** 2
        assert exact[0] == pytest.approx(bound[0])
        assert np.all(exact <= bound * (1 + 1e-12))
        assert bool(st.is_uniformly_bounded(c, lam)) == (factor < 1)


def test_tame_rule():
    assert la.tame_generations(0.6, 0.1, 5, 9, 30).all()          # E|Au|^4 < 1
    horizon = la.tame_generations(1.0, 0.1, 5, 9, 30)
    assert horizon[:5].all() and not horizon[5:].any()             # growth 1.755 per generation


# --- the model in the engine -------------------------------------------------------------

def test_fit_and_sample():
    model = linear_attention(3, 0.0)
    x = jnp.arange(12.0).reshape(4, 3)
    y = jnp.array([1.0, -2.0, 0.5, 9.0])
    gamma = jnp.array([0.8, 0.8, 0.8, 0.0])  # an empty slot holds zeros
    weights = jnp.array([1.0, 1.0, 1.0, 0.0])  # last slot absent
    fitted = model.fit(None, ICLData(x, y, gamma), weights)
    np.testing.assert_allclose(fitted.w_hat, 0.8 * (y[:3] @ x[:3]) / 3)
    assert float(fitted.gamma) == 0.8
    w_hat = LinearAttention(jnp.array([0.3, -1.0, 2.0]), jnp.asarray(0.8))
    data = model.sample(jax.random.key(0), w_hat, 50)
    assert data.x.shape == (50, 3) and data.y.shape == (50,)
    np.testing.assert_array_equal(data.gamma, 0.8)  # the synthetic examples carry gamma
    np.testing.assert_allclose(data.y, data.x @ w_hat.w_hat)  # tau = 0: labelled by the predictor
    noisy = linear_attention(3, 0.5).sample(jax.random.key(0), w_hat, 20_000)
    residual = np.asarray(noisy.y - noisy.x @ w_hat.w_hat)
    assert abs(residual.std() - 0.5) < 0.02 and abs(residual.mean()) < 0.02
    real = icl_real_sampler(3, 0.2)(jax.random.key(1), icl_task(w_hat.w_hat, 0.3), 20_000)
    assert abs(np.asarray(real.y - real.x @ w_hat.w_hat).std() - 0.2) < 0.01
    assert abs(np.asarray(real.x).std() - 1) < 0.01
    np.testing.assert_array_equal(real.gamma, 0.3)
    assert linear_attention(3, 0.0) is model  # cached factory


def test_gamma_is_traced_one_compiled_loop_serves_every_gamma():
    """Two gammas at the same (n, m, d) share one compiled loop; rerunning the first gamma
    after the second gives the same numbers (same seed, same numbers)."""
    plan = sims.make_plan("reuse", n=2, m=6, generations=3)
    model, sampler = linear_attention(3, 0.4), icl_real_sampler(3, 0.5)
    w = jnp.array([1.0, -0.5, 0.25])

    def run(gamma):
        return sims.run(jax.random.key(5), model, icl_task(w, gamma), plan, _loop_metric,
                        replicas=64, real_sampler=sampler, batch_size=64)

    first = run(0.7)
    before = sims.loop.compile_count()
    second = run(1.3)
    assert sims.loop.compile_count() == before
    assert not np.allclose(first["error"], second["error"])
    np.testing.assert_array_equal(run(0.7)["error"], first["error"])


def test_loop_moments_match_engine():
    """sims.run (reuse) against the exact first and second moments, gamma in the tame regime."""
    gamma, n, m, d, sigma, tau, gens = 0.7, 2, 6, 3, 0.5, 0.4, 6
    w = jnp.array([1.0, -0.5, 0.25])
    plan = sims.make_plan("reuse", n=n, m=m, generations=gens)
    moments = sims.run(jax.random.key(3), linear_attention(d, tau), icl_task(w, gamma), plan,
                       _loop_metric, replicas=20_000, real_sampler=icl_real_sampler(d, sigma),
                       reduce=True, batch_size=4096)
    exact = la.moments(gamma, n, m, w, sigma, tau, gens)
    assert np.abs(_z(moments.mean["error"], moments.se["error"], exact.error)).max() < Z
    assert np.abs(_z(moments.mean["w_hat"], moments.se["w_hat"], exact.mean)).max() < Z


def _loop_metric(key, gen, truth):
    return {"error": jnp.sum((gen.params.w_hat - truth.w) ** 2), "w_hat": gen.params.w_hat}


def _fresh_metric(key, gen, gen_prime, truth):
    diff = gen.params.w_hat - gen_prime.params.w_hat
    prev = gen.previous.w_hat - gen_prime.previous.w_hat
    return {"log_ratio": 0.5 * jnp.log((diff @ diff) / (prev @ prev))}


def test_fresh_twins_differ_by_the_bare_product():
    """THEORY: loops sharing every draw but starting apart grow at the Lyapunov rate.

    With the fresh scheme the twins share all real data after generation 0, so
    Delta_i = A_i Delta_{i-1} literally and every log-increment has mean lambda."""
    gamma, n, m, d = 1.0, 1, 9, 5
    plan = sims.make_plan("fresh", n=n, m=m, generations=11)
    moments = run_coupled(jax.random.key(4), linear_attention(d, 0.5),
                          icl_task(jnp.ones(d), gamma), plan,
                          _fresh_metric, replaced_index=0, replicas=4096,
                          real_sampler=icl_real_sampler(d, 0.5), batch_size=4096)
    mean, se = moments.mean["log_ratio"][1:], moments.se["log_ratio"][1:]
    pooled, pooled_se = mean.mean(), np.sqrt((se ** 2).sum()) / mean.size
    assert abs(_z(pooled, pooled_se, la.lyapunov_exponent(gamma, 0.1, d, m))) < Z


# --- input validation --------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda: la.gamma_star(0, 5, 0.5), "N must be an integer >= 1"),
    (lambda: la.gamma_star(10, 0, 0.5), "d must be an integer >= 1"),
    (lambda: la.gamma_star(10, 5, -1.0), "sigma must be >= 0"),
    (lambda: la.icl_risk(float("nan"), 10, 5, 0.5), "gamma"),
    (lambda: la.icl_risk(1.0, 2.5, 5, 0.5), "N must be an integer >= 1"),
    (lambda: la.contraction_factor(1.0, 0.1, 5, 0), "m must be an integer >= 1"),
    (lambda: la.contraction_factor(1.0, 1.0, 5, 9), "lam must lie in"),
    (lambda: la.lyapunov_exponent(0.0, 0.1, 5, 9), "gamma must be > 0"),
    (lambda: la.lyapunov_exponent(1.0, -0.1, 5, 9), "lam must lie in"),
    (lambda: la.moments(1.0, 0, 9, np.ones(5), 0.5, 0.0, 3), "n must be an integer >= 1"),
    (lambda: la.moments(1.0, 1, 9, np.ones(5), 0.5, -1.0, 3), "tau must be >= 0"),
    (lambda: la.moments(1.0, 1, 9, np.ones(5), 0.5, 0.0, 0), "generations must be an integer >= 1"),
    (lambda: la.moments(1.0, 1, 9, np.ones((2, 2)), 0.5, 0.0, 3), "w must be a vector"),
    (lambda: la.tame_generations(1.0, 0.1, 5, 9, 3, limit=0.5), "limit must be >= 1"),
    (lambda: icl_task(np.ones(5), -1.0), "gamma must be >= 0"),
    (lambda: icl_task(np.ones((2, 2)), 1.0), "w must be a vector"),
    (lambda: linear_attention(0), "d must be an integer >= 1"),
    (lambda: icl_real_sampler(5, -0.5), "sigma must be >= 0"),
])
def test_bad_inputs_raise_naming_the_condition(call, message):
    with pytest.raises((ValueError, TypeError), match=message.replace("[", r"\[")):
        call()


# --- the claim and its negative controls -------------------------------------------------

def _wrong_contraction(gamma, lam, d, m):  # (1-lam) in place of (1-lam)^2
    return gamma ** 2 * (1 - lam) * (1 + (d + 1) / m)


def _moments_without_trace_term(gamma, n, m, w, sigma, tau, generations):
    """The loop recursion with E[W B W] = m(m+1) B (the m tr(B) I term, i.e. (d+1)/m, dropped)."""
    w = np.asarray(w, float)
    d, N = w.size, n + m
    R = n * (n + 1) * np.outer(w, w) + n * (w @ w + sigma ** 2) * np.eye(d)
    c, c0, rho = gamma / N, gamma / n, gamma * m / N
    mean, second, cross = c0 * n * w, c0 ** 2 * R, c0 * R
    errors = [np.trace(second) - 2 * mean @ w + w @ w]
    for _ in range(generations - 1):
        mean, second, cross = (c * n * w + rho * mean,
                               c ** 2 * R + c * rho * (cross + cross.T)
                               + c ** 2 * m * (m + 1) * second + c ** 2 * tau ** 2 * m * np.eye(d),
                               c * R + rho * cross)
        errors.append(np.trace(second) - 2 * mean @ w + w @ w)
    return la.LoopMoments(None, None, np.asarray(errors))


def _star_off(N, d, sigma):
    return 1.05 * la.gamma_star(N, d, sigma)


def _noisier_model(d, tau):  # the loop's synthetic noise is 2 tau, the theory's tau
    return linear_attention(d, 2 * tau)


def _wrong_lyapunov(gamma, lam, d, m):  # (1-lam)^2 in place of (1-lam): a.s. rate off by log(1-lam)
    return la.lyapunov_exponent(gamma, lam, d, m) + np.log(1 - lam)


@functools.lru_cache(maxsize=None)
def _run(variant=None):
    claim = attention.A2
    if variant == "one-minus-lam":
        claim = control(claim, contraction=_wrong_contraction)
    elif variant == "no-trace-term":
        claim = control(claim, loop_moments=_moments_without_trace_term)
    elif variant == "wrong-lyapunov":
        claim = control(claim, lyapunov=_wrong_lyapunov)
    elif variant == "gamma-star-off":  # only the gamma* cell, placed at a wrong gamma*
        claim = dataclasses.replace(
            claim, grid=lambda mode: attention.make_grid(_star_off)(mode)[:1])
    elif variant == "noisier-simulator":  # only the gamma* cell (the noise shows most there)
        claim = dataclasses.replace(control(claim, model=_noisier_model),
                                    grid=lambda mode: attention.make_grid()(mode)[:1])
    return evaluate(claim, "quick", seed=0)


def _rejected(record):
    return {r["quantity"] for r in record["rows"] if r.get("reject")}


def test_quick_run_passes_and_matches_the_baseline(tmp_path, capsys):
    """A2's part of the README's quick run (tests/quick_run.py), on the measurements above."""
    assert_quick_run_passes(claims_checked_in(__file__), tmp_path, capsys)


def test_claim_passes_quick():
    record = _run()
    assert record["status"] == "pass", record["message"]
    assert len(record["notes"]) == len(record["points"])
    kinds = {r["kind"] for r in record["rows"]}
    assert {"exact", "upper", "exceeds"} <= kinds
    # THEORY's counterexample is in the grid: gamma* converges, gamma = 1 diverges in mean square.
    gammas = [p["gamma"] for p in record["points"] if p["n"] == 1]
    assert 1.0 in gammas and round(float(la.gamma_star(10, 5, 0.5)), 6) in gammas


def test_wrong_boundary_misclassifies_and_fails():
    record = _run("one-minus-lam")
    assert record["status"] == "fail"
    assert attention.MS_GROWS in _rejected(record)  # the lam = 0.5 cell is called diverging


def test_dropped_trace_term_fails():
    record = _run("no-trace-term")
    assert record["status"] == "fail"
    assert attention.ERROR in _rejected(record)


def test_gamma_star_five_percent_off_fails():
    record = _run("gamma-star-off")
    assert record["status"] == "fail"
    assert attention.ORTHOGONALITY in _rejected(record)


def test_simulator_with_wrong_noise_fails():
    record = _run("noisier-simulator")
    assert record["status"] == "fail"
    assert attention.ERROR in _rejected(record)


def test_loop_rows_test_the_almost_sure_rate():
    """Item 7 of issue 17: E log|w_i - w|^2's late slope is tested in every cell in the a.s.
    regime (0 where lambda < 0, 2 lambda where lambda > 0), reported near the boundary."""
    rows = [r for r in _run()["rows"] if r["quantity"] == attention.LOOP_SLOPE]
    assert len(rows) == 4
    kinds = {r["x"]: r["kind"] for r in rows}
    assert kinds[1.0] == "report" and kinds[1.2] == "exact" and kinds[1.3] == "exact"
    growing = next(r for r in rows if r["x"] == 1.2)
    assert growing["theory"] > 0.3 and not growing["reject"]


def test_wrong_lyapunov_fails_the_loop_row():
    record = _run("wrong-lyapunov")
    assert record["status"] == "fail"
    assert attention.LOOP_SLOPE in _rejected(record)


def test_almost_sure_regime_rule():
    assert la.almost_sure_regime(1.2, 0.1, 5, 9, 21)
    assert not la.almost_sure_regime(1.0, 0.1, 5, 9, 21)  # |lambda| = 0.019: transient
    assert la.almost_sure_regime(1.0, 0.1, 5, 9, 10 ** 5)  # ... unless G is huge
    # the sd bound holds: a Monte Carlo sd of log|Au| is below it
    rng = np.random.default_rng(0)
    S, T = rng.chisquare(9, 200_000), rng.chisquare(4, 200_000)
    assert np.std(0.5 * np.log(S) + 0.5 * np.log(S + T)) <= la.log_increment_sd_bound(5, 9)
    with pytest.raises(ValueError, match="d"):
        la.log_increment_sd_bound(0, 9)


def test_figure_draws_from_the_record():
    import matplotlib.pyplot as plt
    fig = attention.figure(_run())
    assert len(fig.axes) == 3  # phase diagram, tested second moments, E log error
    plt.close(fig)
