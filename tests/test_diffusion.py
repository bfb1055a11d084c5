"""Random-feature score diffusion (B2, B3-diffusion): model, samplers, densities, bound, claims."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import sims
from bounds import tv as tv_bounds
from bounds.models import diffusion as bounds_diffusion
from sims import metrics
from sims.loop import NonFiniteError
from sims.models import diffusion as D
from sims.models.kde import Mixture, gaussian_mixture_sampler, sample_mixture

LOC, WEIGHT, SCALE = jnp.array([-2.0, 2.0]), jnp.array([0.5, 0.5]), jnp.array([1.0, 1.0])
TRUTH = Mixture(LOC, WEIGHT, SCALE)
GRID = metrics.make_grid(-7.0, 7.0, 128)
NODES = jnp.asarray(metrics.grid_nodes(GRID))


def _trained(key, n=200, width=32, tau=1e3, draws=4, horizon=4.0):
    k_data, k_feat, k_draw = jax.random.split(key, 3)
    data = sample_mixture(k_data, TRUTH, n)
    params = D.random_features(k_feat, width)
    t, eps = D.dsm_draws(k_draw, n, draws, horizon, 1e-3)
    quadratic = D.dsm_quadratic(params, data, jnp.ones(n), t, eps)
    return params._replace(readout=D.train_exact(quadratic, tau)), quadratic


def test_exact_training_equals_optax_gradient_descent():
    params, quadratic = _trained(jax.random.key(0), n=40, width=8, tau=3.0)
    width = 8
    lr, steps = 1e-3, 6000        # dA/dτ = −(W/2)∇L, so optax time is τ = 2·lr·steps/W
    tau = 2 * lr * steps / width
    exact = D.train_exact(quadratic, tau)
    opt = optax.sgd(lr)
    loss = lambda a: D.dsm_loss(quadratic, a)  # noqa: E731

    def step(carry, _):
        a, state = carry
        updates, state = opt.update(jax.grad(loss)(a), state)
        return (optax.apply_updates(a, updates), state), None

    a0 = jnp.zeros(width)
    (gd, _), _ = jax.lax.scan(step, (a0, opt.init(a0)), None, length=steps)
    # Euler on a linear flow: relative error O(lr · largest eigenvalue of the Hessian).
    np.testing.assert_allclose(gd, exact, rtol=2e-2, atol=1e-3 * float(jnp.abs(exact).max()))
    assert float(loss(exact)) < float(loss(a0))
    # ... and a wrong time scale (τ = lr·steps/W, i.e. without the factor 2) is far off.
    assert float(jnp.abs(D.train_exact(quadratic, tau / 2) - gd).max()) > 0.05 * float(
        jnp.abs(gd).max())


def test_train_exact_converges_to_least_squares_and_handles_zero_eigenvalues():
    params, quadratic = _trained(jax.random.key(1), n=30, width=16)
    width = 16
    lsq = width * jnp.linalg.lstsq(quadratic.gram, quadratic.linear, rcond=1e-10)[0]
    np.testing.assert_allclose(D.train_exact(quadratic, 1e9), lsq, rtol=1e-4, atol=1e-6)
    singular = quadratic._replace(gram=jnp.zeros_like(quadratic.gram))
    np.testing.assert_allclose(D.train_exact(singular, 2.5), 2.5 * quadratic.linear)


def test_train_exact_is_scale_equivariant_up_to_overflow_and_keeps_nans():
    """The Gram is normalised before eigh (a collapsed loop's samples reach |x| ~ 1e150, and
    the unnormalised eigh returned NaN at B2-loop's seed 3): G·c trained for τ equals G
    trained for cτ, divided by c, up to c = 1e300; a non-finite Gram still gives NaN."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 8))
    gram, linear = jnp.asarray(features @ features.T), jnp.asarray(rng.normal(size=8))
    for c in (1e-200, 1.0, 1e150, 1e300):
        scaled = D.train_exact(D.DsmQuadratic(gram * c, linear, 0.0), 2.0)
        reference = D.train_exact(D.DsmQuadratic(gram, linear, 0.0), 2.0 * c) / c
        np.testing.assert_allclose(scaled, reference, rtol=1e-9, err_msg=str(c))
    broken = D.train_exact(D.DsmQuadratic(gram.at[0, 0].set(jnp.inf), linear, 0.0), 2.0)
    assert not np.all(np.isfinite(broken))


def test_vmapped_eigh_decomposes_one_matrix_at_a_time_and_compiles_without_callbacks():
    """Under nested vmaps the fit's eigh must reach XLA:CPU's LAPACK kernel one matrix at a
    time (a batched kernel waits on the intra-op pool: the B3 deadlock) and without a host
    callback (JAX's persistent cache refuses programs that hold one; docs/engine.md §4)."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(3, 2, 16, 16))
    grams = jnp.asarray(features @ np.swapaxes(features, -1, -2))
    decompose = jax.jit(jax.vmap(jax.vmap(D._eigh)))
    values, vectors = decompose(grams)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(np.asarray(grams)), rtol=1e-12,
                               atol=1e-12 * float(jnp.abs(grams).max()))
    np.testing.assert_allclose(vectors @ (values[..., None] * np.swapaxes(vectors, -1, -2)),
                               grams, atol=1e-11 * float(jnp.abs(grams).max()))
    np.testing.assert_array_equal(D._eigh(grams)[0], values)     # leading axes, no vmap
    hlo = decompose.lower(grams).compile().as_text()
    if jax.default_backend() == "cpu":
        calls = [line for line in hlo.splitlines() if "custom_call_target=" in line]
        assert calls and all("syevd" in line for line in calls), calls
        assert all("custom-call(" in line and "f64[16,16]" in line.split("custom-call(")[0]
                   for line in calls), calls
        # The failure this guards against is visible the same way: plain vmap batches.
        batched = jax.jit(jax.vmap(jax.vmap(jnp.linalg.eigh))).lower(grams).compile().as_text()
        assert "f64[3,2,16,16]" in "".join(
            line.split("custom-call(")[0] for line in batched.splitlines() if "syevd" in line)
    nan_gram = grams.at[1, 0, 0, 0].set(jnp.nan)
    nan_values = np.asarray(decompose(nan_gram)[0])
    assert np.isnan(nan_values[1, 0]).any() and np.isfinite(np.delete(
        nan_values.reshape(6, 16), 2, axis=0)).all()


def test_training_times_are_data_so_a_new_law_reuses_the_compiled_sweeps():
    """B3 fits its law tau*(N) = C N^b per seed: the loop's and the eps sweep's training times
    go in as data, so a second law compiles nothing, and the times given are the ones used."""
    from sims import diffusion_sweeps as S
    from sims import loop as engine
    truth = Mixture(jnp.asarray([-2.0, 2.0]), jnp.asarray([0.5, 0.5]), jnp.asarray([1.0, 1.0]))
    model = D.diffusion(8, 50.0, steps=8, estimator="averaged", nodes=4, rule="early")
    common = dict(n=10, m_grid=(0, 10), generations=2, replicas=2, cells=32, steps=8,
                  batch_size=2)
    by_rule = S.b3_loop(jax.random.key(2), truth, model, **common)
    times = [float(D.early_stopping_time(50.0, "early", float(size))) for size in (10, 10, 20)]
    given = S.b3_loop(jax.random.key(2), truth, model, training_times=times, **common)
    np.testing.assert_allclose(given["tv"], by_rule["tv"], rtol=1e-12)
    compiled = len(engine._COMPILED)
    other = S.b3_loop(jax.random.key(2), truth, model, training_times=[5.0, 5.0, 500.0], **common)
    one = S.oneshot(jax.random.key(1), truth, sizes=(12,), taus=(1e2, 1e4), width=8, replicas=2,
                    nodes=4, steps=8, cells=32, with_bound=False, batch_size=2)
    compiled_after_first = len(engine._COMPILED)
    two = S.oneshot(jax.random.key(1), truth, sizes=(12,), taus=(1e3, 1e5), width=8, replicas=2,
                    nodes=4, steps=8, cells=32, with_bound=False, batch_size=2)
    assert compiled_after_first == compiled + 1 and len(engine._COMPILED) == compiled + 1
    assert not np.allclose(other["tv"][:, 1:], given["tv"][:, 1:])    # the times are used
    assert not np.allclose(one["tv"], two["tv"])
    with pytest.raises(ValueError, match="training_times"):
        S.b3_loop(jax.random.key(2), truth, model, training_times=[5.0, 5.0], **common)


def test_exact_mixture_score_matches_autodiff():
    x = jnp.linspace(-6, 6, 41)
    for t in (0.0, 0.05, 0.7, 3.0):
        loc_t, w, scale_t = bounds_diffusion.ou_marginal(LOC, WEIGHT, SCALE, t)
        auto = jax.vmap(jax.grad(lambda y: bounds_diffusion.mixture_log_density(
            y, loc_t, w, scale_t)))(x)
        np.testing.assert_allclose(bounds_diffusion.mixture_score(x, LOC, WEIGHT, SCALE, t), auto,
                                   rtol=1e-10, atol=1e-12)


def test_ou_marginal_is_the_law_of_the_forward_process():
    x0 = sample_mixture(jax.random.key(2), TRUTH, 200_000)
    t = 0.6
    mean, std = D.ou_mean_std(t)
    xt = x0 * mean + std * jax.random.normal(jax.random.key(3), x0.shape)
    loc_t, w, scale_t = bounds_diffusion.ou_marginal(LOC, WEIGHT, SCALE, t)
    second = jnp.sum(w * (loc_t ** 2 + scale_t ** 2))
    z = (jnp.mean(xt ** 2) - second) / (jnp.std(xt ** 2) / math.sqrt(xt.size))
    assert abs(float(z)) < 4


def _histogram_tv(samples, density):
    counts, _ = np.histogram(np.asarray(samples), bins=GRID.size, range=(GRID.lo, GRID.hi))
    return 0.5 * np.sum(np.abs(counts / (len(samples) * GRID.step) - np.asarray(density))) * GRID.step


def test_sde_grid_density_is_the_law_of_the_sde_sampler():
    params, _ = _trained(jax.random.key(4))
    density, lost = D.sde_density_on_grid(params, NODES, 4.0, 50)
    samples = D.sample_sde(jax.random.key(5), params, 100_000, 4.0, 50)
    tv = _histogram_tv(samples, density)
    # Histogram noise ~ sqrt(cells / samples) / 2 ≈ 0.02 with 128 cells; a sampler off by
    # a step (50 vs 25 steps) moves TV by ~0.03 more.
    assert abs(float(lost)) < 1e-2
    assert tv < 0.03, tv
    wrong = D.sample_sde(jax.random.key(5), params, 100_000, 4.0, 10)
    assert _histogram_tv(wrong, density) > tv + 0.02


def test_ode_density_by_change_of_variables_matches_ode_samples():
    params, _ = _trained(jax.random.key(6))
    log_q = D.ode_log_density(params, NODES, 4.0, 200)
    density = jnp.exp(log_q)
    assert abs(float(jnp.sum(density) * GRID.step) - 1.0) < 0.02
    samples = D.sample_ode(jax.random.key(7), params, 100_000, 4.0, 200)
    assert _histogram_tv(samples, density) < 0.03


def test_sde_sampler_converges_in_step_count():
    exact = lambda x, t: bounds_diffusion.mixture_score(x, LOC, WEIGHT, SCALE, t)  # noqa: E731
    p0 = metrics.mixture_density(GRID, TRUTH)
    tvs = [float(metrics.tv_on_grid(GRID, D.sde_density_for_score(exact, NODES, 4.0, k)[0], p0)[0])
           for k in (25, 50, 100, 200)]
    assert all(a > b for a, b in zip(tvs, tvs[1:]))
    ratios = np.asarray(tvs[:-1]) / np.asarray(tvs[1:])
    assert np.all(np.abs(ratios - 2.0) < 0.1), ratios    # first order: TV ∝ 1/steps
    assert tvs[-1] < 0.01


def _gaussian_case(score_fn, s0=0.8, horizon=5.0, steps=800):
    """KL(p0 ‖ q) with q the reverse SDE's law on a fine grid, and the Girsanov bound."""
    nodes = jnp.asarray(metrics.grid_nodes(metrics.make_grid(-8.0, 8.0, 512)))
    delta = float(nodes[1] - nodes[0])
    q, _ = D.sde_density_for_score(score_fn, nodes, horizon, steps)
    p0 = jnp.exp(-0.5 * (nodes / s0) ** 2) / (math.sqrt(2 * math.pi) * s0)
    kl = float(delta * jnp.sum(p0 * jnp.log(p0 / q)))
    bound = bounds_diffusion.girsanov_kl_bound(score_fn, jnp.zeros(1), jnp.ones(1),
                                               jnp.array([s0]), horizon, nodes)
    return kl, bound


def _ou_variance(s, t):
    return s ** 2 * jnp.exp(-2 * t) - jnp.expm1(-2 * t)


def test_girsanov_bound_is_attained_by_a_consistent_gaussian_score():
    """p0 = N(0, s0²), score of the OU diffusion of N(0, s1²): the reverse SDE returns
    N(0, s1²) (up to the prior mismatch), and path KL = marginal KL, so the bound is
    attained: it checks the factor 1 in front of the integral (a factor 2 or ½ fails)."""
    s0 = 0.8
    for s1 in (0.6, 1.0):
        kl, bound = _gaussian_case(lambda x, t: -x / _ou_variance(s1, t), s0)
        exact = 0.5 * (s0 ** 2 / s1 ** 2 - 1 + math.log(s1 ** 2 / s0 ** 2))
        assert abs(float(bound.kl) / exact - 1) < 1e-3, (float(bound.kl), exact)
        assert abs(kl / exact - 1) < 0.1, (kl, exact)    # first-order discretisation (800 steps)


def test_girsanov_bound_exceeds_kl_in_a_gaussian_case():
    """Score −x / (c v(t)) with the true OU variance v scaled by c (not a diffusion's score):
    KL(p0‖q) = 0.119 and 0.078 by the variance ODE, bounds 0.959 and 0.278."""
    s0 = 0.8
    for c, kl_ode, bound_quad in ((0.7, 0.11905, 0.95935), (1.3, 0.07837, 0.27816)):
        kl, bound = _gaussian_case(lambda x, t: -x / (c * _ou_variance(s0, t)), s0)
        assert abs(float(bound.kl) / bound_quad - 1) < 1e-3
        assert abs(kl / kl_ode - 1) < 0.05
        assert kl < float(bound.kl)
        assert float(bound.prior) < kl          # the prior term alone is not a bound


@pytest.mark.parametrize("kwargs, name", [
    (dict(width=0, tau=1.0), "width W"), (dict(width=8, tau=0.0), "training time tau"),
    (dict(width=8, tau=1.0, horizon=-1.0), "time horizon T"),
    (dict(width=8, tau=1.0, steps=0), "steps"), (dict(width=8, tau=float("nan")), "tau")])
def test_invalid_parameters_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        D.diffusion(**kwargs)


def test_nan_sampler_output_is_reported_with_generation_and_replica():
    model = D.diffusion(16, 100.0, steps=20)

    def bad_sample(key, params, m):
        out = model.sample(key, params, m)
        return jnp.where(jax.random.uniform(key) < 0.3, jnp.nan, out)

    broken = model._replace(name="broken", sample=bad_sample)
    plan = sims.make_plan("reuse", n=20, m=20, generations=4)
    with pytest.raises(NonFiniteError) as err:
        sims.run(jax.random.key(0), broken, TRUTH, plan, D.diffusion_tv_metric(GRID, 4.0, 20),
                 replicas=8, batch_size=8, real_sampler=gaussian_mixture_sampler)
    assert err.value.generation >= 1 and 0 <= err.value.replica < 8


# --- claims (quick grids) and negative controls -------------------------------------------

from verify import claim as claim_lib, stats  # noqa: E402
from verify.claim import Theory  # noqa: E402
from verify.claims import diffusion as claims_diffusion  # noqa: E402

from quick_run import assert_quick_run_passes, claims_checked_in  # noqa: E402


def _evaluate(claim, theories, seed=0, only=None):
    """Measure the quick grid once (``only``: those point indices; the measurements the quick
    run uses, shared with it) and compare with each theory: list of summaries."""
    points = claim.grid("quick")
    if only is not None:   # keep each point's index (its key) but measure the chosen ones
        points = [p if k in only else None for k, p in enumerate(points)]
    measured = [p and claim_lib.measure_point(claim, seed, k, p) for k, p in enumerate(points)]
    summaries = []
    for theory in theories:
        rows = []
        for k, (point, m) in enumerate(zip(points, measured)):
            if point is not None:
                rows += claim_lib.rows_for_point(k, point, m.quantities, theory(point, m.context))
        summaries.append((claim_lib.compare(rows, claim.alpha), rows))
    return summaries, measured


def _rows(claim, point, key=jax.random.key(0), seed_index=None):
    """Measure one (small) point with the claim's parts and compare: (summary, rows, measured).
    ``seed_index``: measure as ``evaluate`` does at that seed and grid index (shared)."""
    measured = (claim.measure(key, point) if seed_index is None
                else claim_lib.measure_point(claim, *seed_index, point))
    rows = claim_lib.rows_for_point(0, point, measured.quantities,
                                    claim.theory(point, measured.context))
    return claim_lib.compare(rows, claim.alpha), rows, measured


def test_b2_oneshot_passes_and_a_bound_without_its_score_term_fails():
    claim = claims_diffusion.B2_ONESHOT
    no_score = claim_lib.control(claim, score_term=False)
    steep = claim_lib.control(claim, kl_rate=-3.0)     # a stated KL rate far steeper than the data
    # Point 0 (the (n, tau) grid); the tau* search point has its own tests
    # (tests/test_diffusion_early_stopping.py).
    (good, rows), (bad, _), (steep, _) = _evaluate(claim, [claim.theory, no_score.theory,
                                                          steep.theory], only={0})[0]
    assert good["rejected"] == 0 and good["bound_rows"] >= 9
    assert all(np.isfinite(r["measured"]) for r in rows)
    # Quick has no separate shape-fit run: the fitted shape is a diagnostic (default/full).
    assert not [r for r in rows if "3-term shape" in r["quantity"]]
    rates = {r["quantity"]: r for r in rows if r["kind"] == "rate"}
    assert set(rates) == {claims_diffusion.KL_RATE, claims_diffusion.TV_RATE}
    assert all(r["dof"] == r["replicas"] - 1 and r["se"] > 0 for r in rates.values())
    assert bad["violations"] > 0
    assert steep["rejected"] > 0
    assert claim.grid("quick")[0]["estimator"] == "averaged"      # Li et al.'s estimator


def test_a_rate_row_fails_for_a_shallower_simulated_exponent_and_passes_at_the_stated_one():
    """Simulated exponents (issue 18): measured -0.3 against the stated -0.4 with an SE from
    48 replicas fails the one-sided rate row; -0.4 and a steeper -0.5 pass."""
    x = np.array([100.0, 200.0, 400.0, 800.0, 1600.0])
    for exponent, fails in ((-0.3, True), (-0.4, False), (-0.5, False)):
        mean = 0.5 * x ** exponent
        measured = claim_lib.measured_rate(x, mean, 0.01 * mean, np.full(5, 48))
        rows = claim_lib.rows_for_point(0, {}, {"rate": measured},
                                        {"rate": Theory("rate", -0.4, "O(n^-2/5)")})
        summary = claim_lib.compare(rows, 0.05)
        assert (summary["rejected"] > 0) == fails, (exponent, rows)


# Small points (tests only): the claims' parts on fewer generations and replicas.
def _reuse_point(**kw):
    point = dict(claims_diffusion.B2_LOOP.grid("quick")[1], generations=3, replicas=8,
                 eps_replicas=16)
    return dict(point, **kw)


def test_b2_loop_passes_and_wrong_theories_fail():
    """On the quick grid (the measurements the quick run uses, shared with it)."""
    claim = claims_diffusion.B2_LOOP
    points = claim.grid("quick")
    results = [_rows(claim, p, seed_index=(0, k)) for k, p in enumerate(points)]
    assert all(good["rejected"] == 0 for good, _, _ in results)
    assert results[0][0].get("effect_rows", 0) > 0         # the collapse row (lam = 0)
    measured = [m for _, _, m in results]
    # eps counted once: R1 at the eps means; the row's SE is the loop's and R1's in quadrature.
    for point, m in zip(points, measured):
        row = m.quantities[claims_diffusion.R1_ROW]
        assert np.allclose(row.se, np.hypot(m.context["tv_se"], m.context["bound_se"])[1:])
        assert row.dof == min(point["replicas"], point["eps_replicas"]) - 1
        assert np.all(m.context["bound_se"][1:] > 0)
    for point, m in zip(points, measured):
        # A loop with real data treated as if it collapsed: the growth row must fail.
        no_real = claim_lib.compare(claim_lib.rows_for_point(
            0, point, m.quantities, claim.theory(dict(point, lam=0.0), m.context)), claim.alpha)
        if point["lam"] != 0:
            assert no_real["rejected"] > 0
        # R1 fed a third of eps is violated (where lam > 0 it sits far below the loop's TV).
        under = claim_lib.compare(claim_lib.rows_for_point(
            0, point, m.quantities, claim.theory(point, dict(m.context, eps=m.context["eps"] / 3))),
            claim.alpha)
        if point["lam"] != 0:
            assert under["violations"] > 0


def test_b2_loop_rows_with_r1_at_or_above_one_are_vacuous_not_evidence():
    point = dict(claims_diffusion.B2_LOOP.grid("quick")[0], generations=12)
    context = dict(eps=np.full(12, 0.12))
    theory = claims_diffusion.B2_LOOP.theory(point, context)[claims_diffusion.R1_ROW]
    assert theory.trivial == 1.0 and np.any(theory.value >= 1.0)
    rows = claim_lib.rows_for_point(0, point, {claims_diffusion.R1_ROW: claim_lib.Measured(
        np.arange(1, 12), np.full(11, 0.2), np.full(11, 0.01), 16)},
        {claims_diffusion.R1_ROW: theory})
    summary = claim_lib.compare(rows, 0.05)
    vacuous = [r for r in rows if r.get("vacuous")]
    assert len(vacuous) == int(np.sum(theory.value >= 1.0)) and summary["rejected"] == 0


@pytest.mark.fresh_measurements
def test_b2_loop_fails_with_synthetic_data_shifted_by_one_and_a_half():
    """Issue 18: G_{i-1}'s samples moved by +1.5 (modes at ±2, unit scale), real data and the
    separate one-shot runs correct: the reuse loop leaves R1 (eps at its means, SE once)."""
    claim = claims_diffusion.B2_LOOP
    point = _reuse_point()
    good, _, _ = _rows(claim, point)
    shifted, rows, _ = _rows(claim_lib.control(claim, synthetic_shift=1.5), point)
    assert good["rejected"] == 0
    assert shifted["violations"] > 0, [(r["measured"], r["theory"], r["se"]) for r in rows
                                       if r["kind"] == "upper"]


def _planted_loop(point, diverge_from=None, replicas=64, seed=0):
    """B2-loop's rows from planted trajectories (TV 0.10 ± 0.01, no simulation); the first
    half of the replicas turn NaN from generation ``diverge_from`` on."""
    rng = np.random.default_rng(seed)
    shape = (replicas, point["generations"])
    traj = {"tv": 0.10 + 0.01 * rng.standard_normal(shape), "tv_error": np.full(shape, 1e-3),
            "disc": np.full(shape, 0.01)}
    if diverge_from is not None:
        for leaf in traj.values():
            leaf[: replicas // 2, diverge_from:] = np.nan
    plan = claims_diffusion._loop_plan(point)
    sizes = claims_diffusion.loop_eps_sizes(plan)
    eps = np.linspace(0.09, 0.08, len(sizes))
    return traj, claims_diffusion.loop_rows(traj, plan, sizes, eps, np.full(len(sizes), 2e-3), 48)


def test_b2_loop_counts_a_diverged_replica_against_every_row_it_could_pass():
    """The 2-D fully synthetic loop overflows in some replicas (docs/diffusion.md §7). A diverged
    replica is TV 1 in the R1 rows (so half the replicas diverging fails R1 at lam = 0.5, where
    a finite loop at the same TV passes), its collapse slope uses only the generations it has,
    the numerical budgets leave it out, and the share is a report row and a note."""
    claim = claims_diffusion.B2_LOOP
    reuse, synthetic = claim.grid("quick")[1], claim.grid("quick")[0]

    def summary(point, measured):
        return claim_lib.compare(claim_lib.rows_for_point(
            0, point, measured.quantities, claim.theory(point, measured.context)), claim.alpha)

    _, finite = _planted_loop(reuse)
    traj, broken = _planted_loop(reuse, diverge_from=3)
    assert summary(reuse, finite)["rejected"] == 0
    assert summary(reuse, broken)["violations"] > 0
    r1 = broken.quantities[claims_diffusion.R1_ROW]
    high = np.where(np.isnan(traj["tv"]), 1.0, traj["tv"] + traj["tv_error"])
    np.testing.assert_allclose(r1.mean, high.mean(0)[1:])
    share = broken.quantities[claims_diffusion.DIVERGED]
    np.testing.assert_allclose(share.mean, np.where(np.arange(reuse["generations"]) >= 3, 0.5, 0))
    budget = broken.quantities["grid error budget"]
    assert np.all(np.isfinite(budget.mean)) and np.allclose(budget.mean, 1e-3)
    notes = claims_diffusion.b2_loop_notes(reuse, broken.quantities,
                                           claim.theory(reuse, broken.context), broken.context)
    assert "32 of 64 replicas diverged" in notes[-1] and "generation 3" in notes[-1]
    assert "diverged" not in " ".join(claims_diffusion.b2_loop_notes(
        reuse, finite.quantities, claim.theory(reuse, finite.context), finite.context))
    # lam = 0: the slope of the planted flat TV stays ~0 (the 1s would have made it a "rise")
    traj, broken = _planted_loop(synthetic, diverge_from=3)
    slope = broken.quantities[claims_diffusion.TREND]
    expected = stats.per_replica_slope(traj["tv"], where=np.isfinite(traj["tv"]))
    np.testing.assert_allclose(slope.mean, expected.mean())
    assert summary(synthetic, broken)["effects_unresolved"] == 1   # no collapse is claimed
    # A NaN in G_0 or G_1 is a broken run, not a divergence: an error naming it.
    with pytest.raises(NonFiniteError, match="generation 1"):
        _planted_loop(reuse, diverge_from=1)


def test_squared_contraction_recursion_is_the_named_wrong_r1():
    """R1 with (1 - lam)^2: smaller than R1 wherever 0 < lam < 1, equal at lam = 0 and 1. On the
    diffusion loop it is *not* violated (docs/diffusion.md §6: the loop's TV sits below it),
    so it is a control of the recursion code, not of the claim's power."""
    plan = sims.make_plan("reuse", n=100, m=100, generations=6)
    eps = np.full(6, 0.1)
    right = claims_diffusion.r1_recursion(eps, plan)
    wrong = claims_diffusion.squared_contraction_recursion(eps, plan)
    assert np.all(wrong[1:] < right[1:]) and wrong[0] == right[0]
    np.testing.assert_allclose(right[-1], 0.1 * (2 - 0.5 ** 5), rtol=1e-12)
    synthetic = sims.make_plan("synthetic", n=100, generations=6)
    np.testing.assert_allclose(claims_diffusion.squared_contraction_recursion(eps, synthetic),
                               claims_diffusion.r1_recursion(eps, synthetic))


def test_no_early_stopping_and_too_few_features_degrade_as_the_bound_predicts():
    """With J = 4 fixed draws per point (the named variant): over-training fits the draws."""
    sizes, taus = (100,), (1e3, 1e7)
    wide = claims_diffusion.oneshot_sweep(jax.random.key(11), sizes, taus, width=64,
                                          estimator="draws", draws=4, replicas=8)
    narrow = claims_diffusion.oneshot_sweep(jax.random.key(11), sizes, (1e3,), width=4,
                                            estimator="draws", draws=4, replicas=8)
    score = lambda run: run["bound_kl"] - run["bound_prior"]  # noqa: E731
    # No early stopping: the estimation (variance) term, growing in tau, dominates.
    assert np.mean(score(wide)[:, 0, 1] > score(wide)[:, 0, 0]) >= 0.75
    assert wide["tv"][:, 0, 1].mean() > wide["tv"][:, 0, 0].mean()
    # Too few features: the approximation term keeps the score error and TV high
    # (medians: a bad random first layer gives a heavy right tail).
    assert np.median(score(narrow)[:, 0, 0]) > 2 * np.median(score(wide)[:, 0, 0])
    assert np.median(narrow["tv"][:, 0, 0]) > np.median(wide["tv"][:, 0, 0])


def test_b3_diffusion_bound_rows_pass_its_peak_is_a_finding_and_wrong_bounds_fail():
    """The R1 rows (eps(n + m) from separate runs) are the evidence and pass; no peak is
    resolved at quick size (report rows, a finding), and asserting it (the check THEORY's B3
    implies) fails on the same run; R1 without its propagation term is violated (at large
    m, lam = n/(n + m) is small and eps(n + m) alone is below the measured TV)."""
    claim = claims_diffusion.B3_DIFFUSION
    record = claim_lib.evaluate(claim, "quick")
    assert record["status"] == "pass", record["message"]
    bounds_ = [r for r in record["rows"] if r["kind"] == "upper"]
    assert len(bounds_) == len(claims_diffusion.B3_GENERATIONS) * len(claim.grid("quick")[0]["m_over_n"])
    assert all(np.isfinite(r["measured"]) and np.isfinite(r["theory"]) for r in bounds_)
    assert not any(r["kind"] == "exceeds" for r in record["rows"])
    peak_notes = [n for n in record["notes"] if "peak minus ends" in n]
    assert len(peak_notes) == len(claims_diffusion.B3_GENERATIONS)
    assert any("NO resolved peak" in n for n in peak_notes)
    assert any("flat within" in n for n in record["notes"])
    record = claim_lib.evaluate(claim_lib.control(claim, assert_peak=True), "quick")
    effects = [r for r in record["rows"] if r["kind"] == "exceeds"]
    assert len(effects) == 2 * len(claims_diffusion.B3_GENERATIONS)
    assert record["status"] == "fail" and any(r["reject"] for r in effects)
    no_contraction = claim_lib.control(claim, recursion=claims_diffusion.no_contraction_recursion)
    record = claim_lib.evaluate(no_contraction, "quick")
    assert record["status"] == "fail"
    assert any(r["reject"] for r in record["rows"] if r["kind"] == "upper")


@pytest.mark.fresh_measurements
def test_b3_diffusion_fails_with_synthetic_data_shifted_by_one_and_a_half():
    claim = claims_diffusion.B3_DIFFUSION
    # Trained at 2000 N^(2/5) (B2-loop's rule): the shift control needs no tau* search.
    point = dict(claim.grid("quick")[0], replicas=8, eps_replicas=16, rule="early",
                 tau=claims_diffusion.LOOP_TAU)
    good, _, _ = _rows(claim, point)
    shifted, rows, _ = _rows(claim_lib.control(claim, synthetic_shift=1.5), point)
    assert good["rejected"] == 0
    assert shifted["violations"] > 0, [(r["measured"], r["theory"], r["se"]) for r in rows
                                       if r["kind"] == "upper"]


def test_b3_peak_rows_are_tested_from_peak_replicas_on_and_reported_below():
    """Production tests B3's peak (exceeds) where the held-out half has the power sized on
    default pilot runs (full: 192 replicas), and reports it below (quick, default)."""
    theory = claims_diffusion.B3Theory()
    context = dict(alpha=0.5, C=1.0, eps=np.full((3, 3), 0.1),
                   lam=np.tile([1.0, 0.5, 0.5], (3, 1)))
    point = dict(claims_diffusion.B3_DIFFUSION.grid("quick")[0], m_over_n=[0, 1, 4])
    peak = "TV(G_2) at interior peak minus ends (paired)"
    kinds = {r: theory(dict(point, replicas=r), context)[peak].kind
             for r in (64, claims_diffusion.PEAK_REPLICAS - 1, claims_diffusion.PEAK_REPLICAS)}
    assert kinds == {64: "report", claims_diffusion.PEAK_REPLICAS - 1: "report",
                     claims_diffusion.PEAK_REPLICAS: "exceeds"}
    assert claims_diffusion.B3_DIFFUSION.grid("full")[0]["replicas"] >= claims_diffusion.PEAK_REPLICAS
    assert claims_diffusion.B3_DIFFUSION.grid("default")[0]["replicas"] < claims_diffusion.PEAK_REPLICAS
    never = claims_diffusion.B3Theory(assert_peak=False)(dict(point, replicas=10 ** 4), context)
    assert never[peak].kind == "report"


def test_diffusion_claims_parts_are_their_controls():
    assert claim_lib.parts(claims_diffusion.B2_LOOP) == {
        "synthetic_shift": 0.0, "recursion": claims_diffusion.r1_recursion}
    assert set(claim_lib.parts(claims_diffusion.B3_DIFFUSION)) == {
        "synthetic_shift", "recursion", "assert_peak"}
    assert set(claim_lib.parts(claims_diffusion.B2_ONESHOT)) == {
        "score_term", "inverse_tau", "kl_rate", "tv_rate", "tau_law", "kl_width_rate"}


def test_samplers_validate_steps_and_horizon():
    params = D.random_features(jax.random.key(0), 4)
    with pytest.raises(ValueError, match="steps"):
        D.sample_sde(jax.random.key(1), params, 10, 4.0, 0)
    with pytest.raises(ValueError, match="time horizon T"):
        D.sde_density_on_grid(params, NODES, -1.0, 10)
    with pytest.raises(ValueError, match="steps"):
        D.ode_log_density(params, NODES, 4.0, 0)


# --- 2-D (the full mode's B2-oneshot point) ------------------------------------------------

LOC_2D = jnp.array([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])
TRUTH_2D = Mixture(LOC_2D, jnp.full(4, 0.25), jnp.ones(4))
GRID_2D = metrics.make_grid(-7.0, 7.0, 32, dim=2)
NODES_2D = jnp.asarray(metrics.grid_nodes(GRID_2D))


@functools.lru_cache(maxsize=None)
def _trained_2d(n=300, width=64, tau=1e3):
    k_data, k_feat, k_draw = jax.random.split(jax.random.key(20), 3)
    data = sample_mixture(k_data, TRUTH_2D, n)
    params = D.random_features(k_feat, width, dim=2)
    t, eps = D.dsm_draws(k_draw, n, 4, 4.0, 1e-3, dim=2)
    quadratic = D.dsm_quadratic(params, data, jnp.ones(n), t, eps)
    return params._replace(readout=D.train_exact(quadratic, tau)), quadratic


def _inside(samples):
    return float(np.mean(np.all(np.abs(np.asarray(samples)) < GRID_2D.hi, axis=1)))


def _histogram_2d(samples):
    counts, _, _ = np.histogram2d(np.asarray(samples[:, 0]), np.asarray(samples[:, 1]),
                                  bins=GRID_2D.size, range=[[GRID_2D.lo, GRID_2D.hi]] * 2)
    return counts / (len(samples) * GRID_2D.cell_volume)


def _tv_2d(p, q):
    return 0.5 * float(np.sum(np.abs(np.asarray(p) - np.asarray(q)))) * GRID_2D.cell_volume


def test_2d_mixture_score_matches_autodiff():
    x = jax.random.normal(jax.random.key(0), (7, 2)) * 2.5
    for t in (0.0, 0.3, 2.0):
        loc_t, w, scale_t = bounds_diffusion.ou_marginal(LOC_2D, TRUTH_2D.weight, TRUTH_2D.scale, t)
        auto = jax.vmap(jax.grad(lambda y: bounds_diffusion.mixture_log_density(
            y, loc_t, w, scale_t)))(x)
        exact = bounds_diffusion.mixture_score(x, LOC_2D, TRUTH_2D.weight, TRUTH_2D.scale, t)
        assert exact.shape == (7, 2)
        np.testing.assert_allclose(exact, auto, rtol=1e-10, atol=1e-12)


def test_2d_training_is_one_1d_flow_per_output_coordinate():
    params, quadratic = _trained_2d()
    for k in range(2):
        column = D.train_exact(quadratic._replace(linear=quadratic.linear[:, k]), 1e3)
        np.testing.assert_allclose(params.readout[:, k], column, rtol=1e-10, atol=1e-10)
    assert float(D.dsm_loss(quadratic, params.readout)) < float(
        D.dsm_loss(quadratic, jnp.zeros_like(params.readout)))


def test_2d_score_divergence_is_the_trace_of_the_jacobian():
    params, _ = _trained_2d()
    x = jax.random.normal(jax.random.key(1), (5, 2)) * 2
    jac = jax.vmap(jax.jacfwd(lambda y: D.score(params, y, 0.4)))(x)
    np.testing.assert_allclose(D.score_divergence(params, x, 0.4), jnp.trace(jac, axis1=1, axis2=2),
                               rtol=1e-10, atol=1e-12)


def test_2d_sde_density_integrates_to_one_and_is_the_law_of_the_sampler():
    params, _ = _trained_2d()
    density, lost = D.sde_density_on_grid(params, NODES_2D, 4.0, 20)
    assert density.shape == (32, 32)
    samples = D.sample_sde(jax.random.key(2), params, 100_000, 4.0, 20)
    # The mass on the grid is the samples' fraction inside it (a few 1e-3 escape).
    mass = float(jnp.sum(density)) * GRID_2D.cell_volume
    assert abs(mass - _inside(samples)) < 3e-3 and abs(1.0 - mass - float(lost)) < 1e-12
    tv = _tv_2d(_histogram_2d(samples), density)
    # Histogram noise with 1024 cells and 1e5 samples is ~0.03.
    assert tv < 0.045, tv
    wrong = D.sample_sde(jax.random.key(2), params, 100_000, 4.0, 4)
    assert _tv_2d(_histogram_2d(wrong), density) > tv + 0.03


def test_2d_ode_density_by_change_of_variables_matches_ode_samples():
    """On a 64 x 64 grid: the relu network's ODE density has sharp edges, so at 32 cells the
    midpoint value and the cell average (the histogram) differ by ~0.08 in TV."""
    params, _ = _trained_2d()
    grid = metrics.make_grid(-7.0, 7.0, 64, dim=2)
    nodes = jnp.asarray(metrics.grid_nodes(grid))
    density = np.exp(np.asarray(D.ode_log_density(params, D.grid_points(nodes, 2), 4.0, 100)))
    density = density.reshape(64, 64)
    samples = D.sample_ode(jax.random.key(3), params, 400_000, 4.0, 100)

    def tv(points):
        counts, _, _ = np.histogram2d(np.asarray(points[:, 0]), np.asarray(points[:, 1]), bins=64,
                                      range=[[grid.lo, grid.hi]] * 2)
        return 0.5 * np.sum(np.abs(counts / (len(points) * grid.cell_volume) - density)) * grid.cell_volume

    # ~2% of the ODE's mass leaves [-7, 7]^2 (the flow is wild far from the data).
    assert abs(density.sum() * grid.cell_volume - _inside(samples)) < 0.01
    # Histogram noise with 4096 cells and 4e5 samples is ~0.04.
    assert tv(samples) < 0.065, tv(samples)
    # A coarser ODE sampler's samples are told apart from this density.
    assert tv(D.sample_ode(jax.random.key(3), params, 400_000, 4.0, 3)) > tv(samples) + 0.03


def test_2d_girsanov_bound_exceeds_the_measured_tv_and_full_grid_has_2d_points():
    run = claims_diffusion.oneshot_sweep(jax.random.key(4), (100, 400), (1e3,), width=32, draws=2,
                                         replicas=2, steps=20, cells=32, dim=2)
    assert run["tv"].shape == (2, 2, 1)
    assert all(np.all(np.isfinite(v)) for v in run.values())
    measured = run["tv"] + run["tv_error"] + run["disc"]
    assert np.all(measured < np.sqrt(run["bound_kl"] / 2.0))
    # ... and the bound's prior term alone is far below the measured TV.
    assert np.all(np.sqrt(run["bound_prior"] / 2.0) < run["tv"])
    dims = {mode: [p.get("dim", 1) for p in claims_diffusion.B2_ONESHOT.grid(mode)]
            for mode in ("quick", "default", "full")}
    assert set(dims["quick"]) == set(dims["default"]) == {1} and 2 in dims["full"]


def test_dimension_other_than_one_or_two_raises_naming_it():
    with pytest.raises(ValueError, match="dim"):
        D.diffusion(8, 1.0, dim=3)
    with pytest.raises(ValueError, match="dim"):
        D.sde_density_for_score(lambda x, t: x, NODES, 4.0, 10, dim=3)


# --- 2-D in the loop (the full mode's B2-loop points) ----------------------------------------

def test_2d_tv_metric_is_small_for_a_well_trained_model_and_its_budget_covers_the_grid():
    """n = 3000, W = 128: TV to the four-mode p0 ≈ 0.24 (the untrained, zero-score model's is
    ≈ 0.5); the budget is finite, positive and below the claims' tolerance; a finer grid's
    TV lies within the two budgets; TV plus its budgets is under the Girsanov–Pinsker bound."""
    params, _ = _trained_2d(n=3000, width=128)
    generation = sims.Generation(0, params, params, None, None)
    out = {cells: D.diffusion_tv_metric(metrics.make_grid(-7.0, 7.0, cells, dim=2), 4.0, 50, 25)(
        None, generation, TRUTH_2D) for cells in (32, 48)}
    coarse, fine = out[32], out[48]
    assert 0 < float(coarse["tv"]) < 0.3, coarse
    for o in out.values():
        assert 0 < float(o["tv_error"]) < claims_diffusion.GRID_TOLERANCE, o
        assert 0 < float(o["disc"]) < claims_diffusion.DISC_TOLERANCE, o
    assert abs(float(coarse["tv"] - fine["tv"])) <= float(coarse["tv_error"] + fine["tv_error"])
    bound = bounds_diffusion.girsanov_kl_bound(lambda x, t: D.score(params, x, t), TRUTH_2D.loc,
                                               TRUTH_2D.weight, TRUTH_2D.scale, 4.0, NODES_2D)
    assert float(coarse["tv"] + coarse["tv_error"] + coarse["disc"]) < math.sqrt(float(bound.kl) / 2)
    untrained = D.diffusion_tv_metric(GRID_2D, 4.0, 50, 25)(
        None, sims.Generation(0, params._replace(readout=jnp.zeros_like(params.readout)), params,
                              None, None), TRUTH_2D)
    assert float(untrained["tv"]) > float(coarse["tv"]) + 0.15


def test_tv_metric_rejects_a_model_of_another_dimension():
    params, _ = _trained_2d()
    with pytest.raises(ValueError, match="dim"):
        D.diffusion_tv_metric(GRID, 4.0, 10)(None, sims.Generation(0, params, params, None, None),
                                             TRUTH)


# Tiny 2-D loop (16 x 16 cells, 10 sampler steps); B2-loop's tiny point below reuses these
# compiled loops (same model, metric and plan layout).
TINY_2D = dict(n=20, m=20, width=16, draws=2, tau=1e3, generations=3, replicas=2, eps_replicas=2, cells=16,
               steps=10, dim=2)


@pytest.mark.parametrize("scheme", ["synthetic", "reuse", "fresh", "accumulate"])
def test_2d_loop_runs_through_the_engine_with_every_scheme(scheme):
    p = TINY_2D
    model = D.diffusion(p["width"], p["tau"], horizon=claims_diffusion.HORIZON, steps=p["steps"],
                        draws=p["draws"], t_min=claims_diffusion.T_MIN, dim=2)
    metric = D.diffusion_tv_metric(claims_diffusion._grid(p["cells"], 2), claims_diffusion.HORIZON,
                                   p["steps"], p["steps"] // 2)
    plan = sims.make_plan(scheme, n=p["n"], m=p["m"], generations=p["generations"])
    run = lambda: sims.run(jax.random.key(3), model, TRUTH_2D, plan, metric,  # noqa: E731
                           replicas=p["replicas"], batch_size=p["replicas"],
                           real_sampler=gaussian_mixture_sampler)
    first, second = run(), run()
    assert set(first) == {"tv", "tv_error", "disc"}
    for name, value in first.items():
        assert value.shape == (p["replicas"], p["generations"])
        assert np.all(np.isfinite(value)) and np.all(value >= 0), name
        np.testing.assert_array_equal(value, second[name])
    assert np.all(first["tv"] <= 1.0)


def test_b2_loop_2d_point_measures_and_is_only_in_the_full_grid():
    grids = {mode: claims_diffusion.B2_LOOP.grid(mode) for mode in ("quick", "default", "full")}
    assert all("dim" not in p for mode in ("quick", "default") for p in grids[mode])
    full_2d = [p for p in grids["full"] if p.get("dim", 1) == 2]
    assert [(p["scheme"], p["lam"]) for p in full_2d] == [("synthetic", 0.0), ("reuse", 0.5)]
    assert len(grids["full"]) == 6
    point = dict(full_2d[1], **TINY_2D)
    measurement = claims_diffusion.B2_LOOP.measure(jax.random.key(5), point)
    theory = claims_diffusion.b2_loop_theory(point, measurement.context)
    bound_row = claims_diffusion.R1_ROW
    tv, bound = measurement.quantities[bound_row], theory[bound_row]
    assert tv.mean.shape == bound.value.shape == (TINY_2D["generations"] - 1,)
    assert np.all(np.isfinite(tv.mean)) and np.all(np.isfinite(bound.value))
    assert np.all(measurement.context["eps"] > 0)
    np.testing.assert_allclose(bound.value, tv_bounds.tv_recursion_bound(
        measurement.context["eps"], [1.0] + [0.5] * (TINY_2D["generations"] - 1))[1:])


def test_b2_loop_2d_fully_synthetic_point_is_reported_not_tested_and_says_why():
    """Its law leaves the grid (docs/diffusion.md §7): every row report, the reason in the notes;
    every other point keeps its tested rows."""
    claim = claims_diffusion.B2_LOOP
    for point in claim.grid("full"):
        point = dict(point, generations=4)
        _, planted = _planted_loop(point)
        theory = claim.theory(point, planted.context)
        kinds = {th.kind for th in theory.values()}
        notes = " ".join(claims_diffusion.b2_loop_notes(point, planted.quantities, theory,
                                                        planted.context))
        if point.get("dim", 1) == 2 and point["lam"] == 0:
            assert kinds == {"report"} and "reported, not tested" in notes
        else:
            assert "upper" in kinds and "numerical" in kinds and "not tested" not in notes


def test_b2_loop_covers_every_scheme_and_feeds_accumulate_its_own_recursion():
    """Default and full add fresh and accumulate to quick's synthetic and reuse; accumulate's
    eps is predicted at every N_i = n + i m, and its bound is R1's accumulate recursion."""
    schemes = {mode: [p["scheme"] for p in claims_diffusion.B2_LOOP.grid(mode) if "dim" not in p]
               for mode in ("quick", "default", "full")}
    assert schemes["quick"] == ["synthetic", "reuse"]
    assert schemes["default"] == schemes["full"] == ["synthetic", "reuse", "fresh", "accumulate"]
    point = dict(claims_diffusion.B2_LOOP.grid("default")[3], generations=3, replicas=2,
                 cells=claims_diffusion.QUICK_CELLS, steps=claims_diffusion.QUICK_STEPS)
    point["eps_replicas"] = 2
    measurement = claims_diffusion.B2_LOOP.measure(jax.random.key(6), point)
    context = measurement.context
    assert context["eps_sizes"] == [100, 200, 300]
    row = claims_diffusion.R1_ROW
    theory = claims_diffusion.b2_loop_theory(point, context)[row]
    np.testing.assert_allclose(theory.value,
                               tv_bounds.accumulate_tv_bound(context["eps"], 100, [100, 100])[1:])
    # Not the reuse recursion with lam = 1/2 (which would contract harder).
    assert not np.allclose(theory.value, tv_bounds.tv_recursion_bound(context["eps"], [1, .5, .5])[1:])


def test_quick_run_passes_and_matches_the_baseline(tmp_path, capsys):
    """The diffusion claims' part of the README's quick run (tests/quick_run.py), last in this
    file: the tests above measured most of the same quick points in this process."""
    assert_quick_run_passes(claims_checked_in(__file__), tmp_path, capsys)
