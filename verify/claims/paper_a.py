"""Claims A1, A2-gamma, A3 and A5 (paper A): recursive stability and the STL gap bound.

Three models, every constant explicit (docs/paper_a.md):

* ``mean``: real data ``mu + U[-a, a]``, generator ``mean(S) + U[-a, a]``, learner
  ``mean(S)``, squared loss (the bounded variant of THEORY section 4);
* ``categorical``: the empirical law on ``K`` symbols (``alpha = 0``) is both the
  generator and the learner, with the loss ``l(p, x) = 1 - p(x)`` in ``[0, 1]``;
* ``ridge``: inputs from a fixed pool, labels clipped to ``[-B, B]``, penalty ``rho``;
  the ridge fit is both the label generator and the learner, squared loss.

The measured generalization gap is ``E[R_p0(h_i) - R_hat_{S_i}(h_i)]``: ``R_p0`` is
computed exactly per replica (closed forms; the ridge input law is a finite pool),
``R_hat`` is the plain average over the ``N`` training points, and ``E`` is the MC
mean over replicas. All loops use the ``reuse`` scheme; ``lam = 0`` uses
``synthetic``. Every loop run of A1/A3/A5 uses the same (model, plan, metric,
batch size) objects, so a plan shared by several claims compiles once.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import sims
from bounds import stability as st
from sims.coupled import maximal_categorical, run_coupled, shared_keys
from sims.models import categorical, mean_estimation, mean_estimation_coupler
from sims.models.ridge import (population_risk, ridge, ridge_pool, ridge_spec, ridge_tv)
from verify.claim import Claim, Measured, Theory, measured, register

GEN = "generation i"
BATCH = 4096  # one batch size for every run: a shared plan compiles once

# --- the three models ------------------------------------------------------------------
HALF_WIDTH = 1.0           # mean loop: a
MU = 0.0
NUM_SYMBOLS = 10           # categorical: K, p0 proportional to 1..K
RIDGE_POOL = dict(size=16, dim=3, feature_bound=1.0, seed=0)
RIDGE_RHO, RIDGE_TAU, RIDGE_B = 1.0, 0.5, 1.0
RIDGE_W_STAR = (0.6, -0.4, 0.3)
TERMS = ("learner stability", "recursive stability", "distribution shift", "concentration")


def category_probs() -> np.ndarray:
    weights = np.arange(1, NUM_SYMBOLS + 1, dtype=np.float64)
    return weights / weights.sum()


def ridge_model():
    return ridge(ridge_pool(**RIDGE_POOL), RIDGE_RHO, RIDGE_TAU, RIDGE_B)


def model_and_truth(name: str):
    """The cached model object and ``p0``'s parameters for a model name."""
    if name == "mean":
        return mean_estimation("uniform", HALF_WIDTH), jnp.asarray(MU, jnp.float64)
    if name == "categorical":
        return categorical(NUM_SYMBOLS), jnp.asarray(category_probs())
    if name == "ridge":
        return ridge_model(), jnp.asarray(RIDGE_W_STAR, jnp.float64)
    raise ValueError(f"model must be 'mean', 'categorical' or 'ridge', got {name!r}")


# --- per-generation metrics (module-level or cached: one object, one compilation) ------

def mean_metric(key, gen, truth):
    """Gap, squared error and ``TV(p0, G_{i-1})`` of the uniform mean loop (exact per replica)."""
    del key
    theta, weights = gen.params, gen.weights
    risk = (theta - truth) ** 2 + HALF_WIDTH ** 2 / 3.0  # E_{p0} (x - theta)^2
    empirical = weights @ (gen.data - theta) ** 2 / weights.sum()
    return {"gap": risk - empirical, "error": (theta - truth) ** 2,
            "tv_prev": jnp.minimum(1.0, jnp.abs(gen.previous - truth) / (2.0 * HALF_WIDTH))}


def categorical_metric(key, gen, truth):
    """Gap under ``1 - p(x)``, ``||p_hat - p0||^2`` and ``TV(p0, G_{i-1})`` (exact per replica)."""
    del key
    counts = jnp.zeros_like(gen.params).at[gen.data].add(gen.weights)
    empirical = counts / gen.weights.sum()
    return {"gap": gen.params @ (empirical - truth), "error": jnp.sum((gen.params - truth) ** 2),
            "tv_prev": 0.5 * jnp.sum(jnp.abs(gen.previous - truth))}


@functools.lru_cache(maxsize=None)
def ridge_metric(model):
    """Gap (exact ``R_p0`` over the pool), ``||w_i - w*||^2``, ``R_p0`` and ``TV(p0, G_{i-1})``."""
    spec = ridge_spec(model)

    def metric(key, gen, truth):
        del key
        w, data, weights = gen.params, gen.data, gen.weights
        risk = population_risk(spec, w, truth)
        empirical = weights @ (data.y - data.x @ w) ** 2 / weights.sum()
        return {"gap": risk - empirical, "error": jnp.sum((w - truth) ** 2), "risk": risk,
                "tv_prev": ridge_tv(spec, gen.previous, truth)}

    return metric


def metric_for(name: str):
    return {"mean": mean_metric, "categorical": categorical_metric}.get(name) or \
        ridge_metric(ridge_model())


def plan_for(point):
    """The loop of a grid point: ``reuse`` with ``m = round(n (1-lam)/lam)``; ``lam = 0``:
    ``synthetic`` with ``m = n``; an explicit ``m`` wins."""
    n, gens = point["n"], point["generations"]
    if "m" in point:
        return sims.make_plan("reuse", n=n, m=point["m"], generations=gens)
    if point["lam"] == 0:
        return sims.make_plan("synthetic", n=n, m=n, generations=gens)
    return sims.make_plan("reuse", n=n, lam=point["lam"], generations=gens)


def run_loop(key, point):
    model, truth = model_and_truth(point["model"])
    return sims.run(key, model, truth, plan_for(point), metric_for(point["model"]),
                    replicas=point["replicas"], batch_size=BATCH, reduce=True)


def _sizes(point):
    plan = plan_for(point)
    m = plan.m[0] if plan.m else 0
    return plan.n, m, plan.n / (plan.n + m)


def report_generations(generations: int) -> np.ndarray:
    """Generations with rows in the report: a log-spaced subset of ``1 .. G-1``."""
    picks = [1, 2, 3, 5, 10, 20, 30, 40, 50, 75, 100]
    return np.asarray([i for i in picks if i < generations] or [generations - 1])


def _mode(mode, quick, default, full):
    return {"quick": quick, "default": default, "full": full}[mode]


# --- exact predictions used by A1/A3/A5 -------------------------------------------------

def mean_error_exact(n, m, i, lam_zero=False, keep_power=1):
    """``E (theta_i - mu)^2`` (docs 5.4); ``keep_power=2`` replaces ``1-lam`` by ``(1-lam)^2``."""
    s2 = HALF_WIDTH ** 2 / 3.0
    i = np.asarray(i)
    if m == 0:
        return np.full(i.shape, s2 / n)
    lam = 0.0 if lam_zero else n / (n + m)
    keep = (1.0 - lam) ** keep_power
    return np.asarray(st.mean_estimation_exact_variance(s2, n, m, i, lam=1.0 - keep))


def mean_gap_exact(n, m, i):
    """``E gap_i = 2 v_i - (1-lam) v_{i-1}`` for the mean loop (docs 9.1; ``i >= 1``)."""
    lam = n / (n + m)
    return 2.0 * mean_error_exact(n, m, i) - (1.0 - lam) * mean_error_exact(n, m, np.asarray(i) - 1)


def categorical_error_exact(n, m, i, lam_zero=False):
    """``E ||p_hat_i - p0||^2 = sum_k v_i(k)``; under ``1 - p(x)`` it is also ``E gap_i`` (docs 9.1)."""
    lam = 0.0 if lam_zero else None
    return np.asarray(st.categorical_loop_mse(category_probs(), n, m, np.asarray(i), lam)).sum(-1)


# --- A1: the R3 decomposition bound ------------------------------------------------------

@functools.lru_cache(maxsize=None)
def ridge_shift_estimate(n: int, lam: float, generations: int, replicas: int):
    """``E TV(p0, G_{i-1})`` of the ridge loop: MC mean and SE from an *independent* run
    (fixed seed, not the claim's), so the bound is a fixed function of the grid point."""
    point = dict(model="ridge", n=n, lam=lam, generations=generations, replicas=replicas)
    moments = run_loop(jax.random.key(20250611), point)
    return np.asarray(moments.mean["tv_prev"]), np.asarray(moments.se["tv_prev"])


def gap_bound(point, i) -> st.GapBound:
    """The R3 bound of a grid point at generations ``i >= 1`` (terms separately)."""
    n, m, _ = _sizes(point)
    model = point["model"]
    if model == "mean":
        return st.mean_estimation_gap_bound(HALF_WIDTH, n, m, i)
    if model == "categorical":
        return st.categorical_gap_bound(category_probs(), n, m, i)
    tv_mean, _ = ridge_shift_estimate(n, point["lam"], point["generations"], point["replicas"])
    spec = ridge_spec(ridge_model())
    return st.ridge_gap_bound(spec.feature_bound, RIDGE_B, RIDGE_RHO, RIDGE_TAU, n, m, i,
                              np.clip(tv_mean[i], 0.0, 1.0))


def _a1_grid(mode):
    gens = _mode(mode, 11, 51, 51)
    lams = _mode(mode, (1.0, 0.05), (1.0, 0.8, 0.5, 0.2, 0.05), (1.0, 0.8, 0.5, 0.2, 0.1, 0.05))
    ns = _mode(mode, (20,), (20,), (10, 20, 50))
    reps = dict(mean=_mode(mode, 4096, 16384, 65536), categorical=_mode(mode, 4096, 8192, 65536),
                ridge=_mode(mode, 4096, 4096, 32768))
    ridge_lams = _mode(mode, (0.5,), (1.0, 0.5, 0.05), lams)
    points = []
    for model in ("mean", "categorical", "ridge"):
        for n in ns:
            for lam in (ridge_lams if model == "ridge" else lams):
                points.append(dict(model=model, n=n, lam=lam, generations=gens,
                                   replicas=reps[model]))
    return points


def _a1_measure(key, point):
    moments = run_loop(key, point)
    i = report_generations(point["generations"])
    gap = measured(moments, "gap", np.arange(point["generations"]), select=i)
    out = {"gap <= R3 bound": gap}
    if point["model"] != "ridge":
        out["gap (exact)"] = gap
    for term in TERMS:
        out[f"R3 term: {term}"] = gap
    return out


def a1_theory(point, *, drop: str | None = None, keep_power: int = 1):
    """A1's theory: R3 by term, its total (upper) and the exact gap where known.

    ``drop`` (a ``GapBound`` field) removes one term and ``keep_power=2`` replaces every
    ``(1-lam)`` factor by ``(1-lam)^2``: negative controls.
    """
    i = report_generations(point["generations"])
    bound = gap_bound(point, i)
    _, _, lam = _sizes(point)
    if keep_power != 1:
        factor = (1.0 - lam) ** (keep_power - 1)
        bound = bound._replace(distribution_shift=bound.distribution_shift * factor,
                               synthetic_stability=bound.synthetic_stability * factor)
    if drop is not None:
        bound = bound._replace(**{drop: jnp.zeros_like(getattr(bound, drop))})
    shape = np.shape(i)
    total = np.broadcast_to(np.asarray(bound.total, np.float64), shape)
    out = {"gap <= R3 bound": Theory("upper", total, "R3: sum of the four terms")}
    terms = (bound.stability, bound.recursive_stability, bound.distribution_shift,
             bound.concentration)
    for name, value in zip(TERMS, terms):
        out[f"R3 term: {name}"] = Theory("report", np.broadcast_to(np.asarray(value), shape),
                                         f"R3 term: {name}")
    n, m, _ = _sizes(point)
    if point["model"] == "mean":
        out["gap (exact)"] = Theory("exact", mean_gap_exact(n, m, i), "2 v_i - (1-lam) v_{i-1}")
    elif point["model"] == "categorical":
        out["gap (exact)"] = Theory("exact", categorical_error_exact(n, m, i), "sum_k v_i(k)")
    return out


def _se_notes(point, meas, theory, bound_quantity):
    """Replica count, largest SE, and SE relative to the smallest bound slack it must resolve."""
    g, th = meas[bound_quantity], theory[bound_quantity]
    slack = np.asarray(th.value) - g.mean
    worst = float(np.max(g.se / np.maximum(np.abs(slack), 1e-300)))
    return (f"replicas={g.replicas}, max SE={np.max(g.se):.3g}, smallest slack "
            f"(bound - measured)={np.min(slack):.3g}, max SE/|slack|={worst:.3f}")


def _a1_notes(point, meas, theory):
    g, th = meas["gap <= R3 bound"], theory["gap <= R3 bound"]
    ratio = g.mean / np.asarray(th.value)
    j = int(np.argmax(ratio))
    notes = [f"A1 {point['model']} n={point['n']} lam={point['lam']}: tightness gap/bound "
             f"in [{ratio.min():.3g}, {ratio.max():.3g}], largest at i={int(g.x[j])} "
             f"({g.mean[j]:.4g} vs {float(np.asarray(th.value)[j]):.4g}); "
             + _se_notes(point, meas, theory, "gap <= R3 bound")]
    if point["model"] == "ridge":
        _, se = ridge_shift_estimate(point["n"], point["lam"], point["generations"],
                                     point["replicas"])
        notes.append(f"A1 ridge n={point['n']} lam={point['lam']}: distribution-shift term uses "
                     f"the MC mean of TV(p0, G_(i-1)) from an independent run of "
                     f"{point['replicas']} replicas (max SE {np.max(se[1:]):.2g})")
    return notes


def a1_figure(record):
    from verify import figures_paper_a
    return figures_paper_a.stacked_terms_figure(record)


A1 = register(Claim(
    "A1", "R3: E[R_p0(h_i) - R_hat_{S_i}(h_i)] <= stability + recursive stability + shift "
    "(+ concentration = 0), mean/categorical/ridge",
    _a1_grid, _a1_measure, a1_theory, notes=_a1_notes, figure=a1_figure))


# --- A3: constant lam keeps the error bounded; lam = 0 collapses -------------------------

def _a3_grid_for(model):
    def grid(mode):
        gens = _mode(mode, 11, 51, 101)
        lams = _mode(mode, (0.0, 0.05), (0.0, 0.8, 0.5, 0.2, 0.05),
                     (0.0, 0.8, 0.5, 0.2, 0.05))
        if model == "ridge":
            lams = _mode(mode, (0.0, 0.5), (0.0, 1.0, 0.5, 0.05), (0.0, 1.0, 0.5, 0.2, 0.05))
        reps = _mode(mode, 4096, {"mean": 16384, "categorical": 8192, "ridge": 4096}[model],
                     65536)
        if mode == "default" and model != "ridge":
            gens = 51
        return [dict(model=model, n=20, lam=lam, generations=gens, replicas=reps) for lam in lams]
    return grid


def _a3_measure(key, point):
    moments = run_loop(key, point)
    i = report_generations(point["generations"])
    i = np.concatenate([[0], i])
    err = measured(moments, "error", np.arange(point["generations"]), select=i)
    out = {"E err_i": err}
    if point["lam"] > 0 or point["model"] == "ridge":
        out["E err_i <= sup_i bound"] = err
    return out


def a3_theory(point, *, keep_power: int = 1):
    """A3: exact error curve (mean, categorical), its uniform-in-i bound for ``lam > 0``,
    and for ridge the pathwise bound ``(B/sqrt(rho) + ||w*||)^2``. ``keep_power=2``
    (``(1-lam) -> (1-lam)^2``) is a negative control."""
    i = np.concatenate([[0], report_generations(point["generations"])])
    n, m, lam = _sizes(point)
    lam_zero = point["lam"] == 0
    model = point["model"]
    if model == "ridge":
        w_star = np.asarray(RIDGE_W_STAR)
        bound = (RIDGE_B / math.sqrt(RIDGE_RHO) + np.linalg.norm(w_star)) ** 2
        return {"E err_i <= sup_i bound": Theory("upper", np.full(i.shape, bound),
                                                 "(B/sqrt(rho) + ||w*||)^2 (pathwise)")}
    if model == "mean":
        exact = mean_error_exact(n, m, i, lam_zero, keep_power)
        label = "s^2/n + (s^2/m) r (1-r^i)/(1-r)" if not lam_zero else "s^2/n + i s^2/m"
        out = {"E err_i": Theory("exact", exact, label)}
        if not lam_zero:
            plateau = float(st.mean_estimation_variance_plateau(
                HALF_WIDTH ** 2 / 3.0, n, m, lam=1.0 - (1.0 - lam) ** keep_power))
            out["E err_i <= sup_i bound"] = Theory("upper", np.full(i.shape, plateau),
                                                   "plateau s^2/n + (s^2/m) r/(1-r)")
        return out
    exact = categorical_error_exact(n, m, i, lam_zero)
    out = {"E err_i": Theory("exact", exact, "sum_k v_i(k) (docs 6.1)")}
    if not lam_zero:
        limit = categorical_error_exact(n, m, np.asarray([10 ** 6]))
        sup = max(float(limit[0]), float(exact[0]))
        out["E err_i <= sup_i bound"] = Theory("upper", np.full(i.shape, sup),
                                               "sup_i sum_k v_i(k) (limit)")
    return out


def _a3_notes(point, meas, theory):
    err = meas["E err_i"]
    grow = (err.mean[-1] - err.mean[0]) / math.hypot(err.se[-1], err.se[0])
    note = (f"A3 {point['model']} lam={point['lam']}: E err from {err.mean[0]:.4g} (i=0) to "
            f"{err.mean[-1]:.4g} (i={int(err.x[-1])}), change = {grow:.1f} SE; replicas="
            f"{err.replicas}, max SE={np.max(err.se):.3g}")
    notes = [note]
    if point["model"] == "mean" and point["lam"] == 0:
        slope = np.polyfit(err.x, err.mean, 1)[0]
        notes.append(f"A3 mean lam=0: fitted slope {slope:.4g} per generation vs s^2/m = "
                     f"{HALF_WIDTH ** 2 / 3 / point['n']:.4g} (linear growth)")
    if point["model"] == "ridge" and point["lam"] == 0:
        notes.append(f"A3 ridge lam=0: the fully synthetic ridge chain shrinks towards w = 0, so the "
                     f"error rises towards ||w*||^2 = {np.sum(np.square(RIDGE_W_STAR)):.3g} "
                     "(collapse), and stays bounded because of the penalty and clipping")
    if "E err_i <= sup_i bound" in meas and point["model"] != "ridge":
        notes.append(_se_notes(point, meas, theory, "E err_i <= sup_i bound"))
    return notes


def a3_figure(record):
    from verify import figures_paper_a
    return figures_paper_a.error_vs_generation_figure(record)


A3 = {model: register(Claim(
    f"A3-{model}", f"{model}: constant lam > 0 keeps the error bounded uniformly in i; "
    "lam = 0 collapses", _a3_grid_for(model), _a3_measure, a3_theory, notes=_a3_notes,
    figure=a3_figure)) for model in ("mean", "categorical", "ridge")}


# --- A2-gamma: measured recursive stability against R2 ----------------------------------

def mean_gamma_metric(key, gen, gen_prime, truth):
    """``TV(G_i, G'_i)`` of two uniform-noise mean generators (exact)."""
    del key, truth
    return {"gamma": jnp.minimum(1.0, jnp.abs(gen.params - gen_prime.params) / (2 * HALF_WIDTH))}


def categorical_gamma_metric(key, gen, gen_prime, truth):
    del key, truth
    return {"gamma": 0.5 * jnp.sum(jnp.abs(gen.params - gen_prime.params))}


@functools.lru_cache(maxsize=None)
def ridge_gamma_metric(model):
    spec = ridge_spec(model)

    def metric(key, gen, gen_prime, truth):
        del key, truth
        return {"gamma": ridge_tv(spec, gen.params, gen_prime.params)}

    return metric


def _coupler(model_name, coupling):
    model, _ = model_and_truth(model_name)
    if coupling == "shared":
        return shared_keys(model)
    if model_name == "mean":
        return mean_estimation_coupler("uniform", HALF_WIDTH)
    if model_name == "categorical":
        return maximal_categorical(NUM_SYMBOLS)
    raise ValueError(f"no maximal coupler for {model_name!r}")


def _a2_grid(mode):
    gens = _mode(mode, 11, 51, 101)
    reps = _mode(mode, 4096, 4096, 32768)
    base = dict(n=20, generations=gens, replicas=reps)
    points = [dict(base, model="mean", coupling="maximal", lam=0.5),
              dict(base, model="categorical", coupling="maximal", lam=0.5)]
    if mode != "quick":
        points += [dict(base, model="mean", coupling="shared", lam=0.5),
                   dict(base, model="mean", coupling="maximal", lam=0.9),
                   dict(base, model="mean", coupling="maximal", lam=0.1),
                   dict(base, model="categorical", coupling="maximal", lam=0.1),
                   dict(base, model="ridge", coupling="shared", lam=0.5)]
    return points


def _a2_measure(key, point):
    model, truth = model_and_truth(point["model"])
    metric = {"mean": mean_gamma_metric, "categorical": categorical_gamma_metric}.get(
        point["model"]) or ridge_gamma_metric(model)
    moments = run_coupled(key, model, truth, plan_for(point), metric, replaced_index=0,
                          replicas=point["replicas"], coupler=_coupler(point["model"],
                                                                       point["coupling"]),
                          batch_size=BATCH)
    i = np.concatenate([[0], report_generations(point["generations"])])
    gamma = measured(moments, "gamma", np.arange(point["generations"]), select=i)
    if point["coupling"] == "maximal":
        return {"E TV(G_i, G'_i) <= R2": gamma, "E TV(G_i, G'_i) (exact)": gamma}
    return {"E TV(G_i, G'_i) vs R2": gamma, "E TV(G_i, G'_i) (exact)": gamma}


def r2_values(point, *, keep_power: int = 1, drop: str | None = None,
              uncapped: bool = False) -> tuple[np.ndarray, float]:
    """R2 at the report generations (capped at 1) and the contraction ``c (1-lam)``.

    ``keep_power=2`` uses ``c (1-lam)^2`` (i.e. ``m (1-lam)`` synthetic points) and
    ``drop="propagation"`` drops the ``m gamma_{i-1}`` term: negative controls.
    """
    i = np.concatenate([[0], report_generations(point["generations"])])
    n, m, lam = _sizes(point)
    N = n + m
    if point["model"] == "mean":
        const = st.mean_estimation_uniform_constants(HALF_WIDTH, n, m)
        eps, gamma_0, c = float(const.eps_N), float(const.gamma_0), float(const.generator_c)
    elif point["model"] == "categorical":
        eps = float(st.categorical_replace_one_tv(N, NUM_SYMBOLS))
        gamma_0, c = float(st.categorical_replace_one_tv(n, NUM_SYMBOLS)), 1.0
    else:
        c = float(st.ridge_generator_constant(ridge_spec(ridge_model()).feature_bound, RIDGE_B,
                                              RIDGE_RHO, RIDGE_TAU))
        eps, gamma_0 = c / N, min(1.0, c / n)
    m_eff = m * (1.0 - lam) ** (keep_power - 1)
    if drop == "propagation":
        m_eff = 0.0
    value = np.asarray(st.recursive_stability_closed_form(eps, m_eff, i, gamma_0=gamma_0))
    value = np.where(i == 0, gamma_0, value)
    if uncapped:
        return value, c * (1.0 - lam)
    return np.minimum(1.0, value), c * (1.0 - lam)


def a2_theory(point, *, keep_power: int = 1, drop: str | None = None):
    """R2 (upper) for maximal couplings, and exact values where derived (docs 8.2-8.3)."""
    i = np.concatenate([[0], report_generations(point["generations"])])
    bound, contraction = r2_values(point, keep_power=keep_power, drop=drop)
    n = point["n"]
    label = f"R2 (capped at 1), c(1-lam)={contraction:.3g}"
    out = {}
    if point["coupling"] == "maximal":
        out["E TV(G_i, G'_i) <= R2"] = Theory("upper", bound, label)
    else:
        out["E TV(G_i, G'_i) vs R2"] = Theory("report", bound, label + " (R2 assumes a maximal "
                                              "coupling; shown for comparison)")
    if point["model"] == "categorical":
        S = float(np.sum(category_probs() ** 2))
        out["E TV(G_i, G'_i) (exact)"] = Theory("exact", np.full(i.shape, (1 - S) / n),
                                                "(1 - sum p0^2)/n for every i")
    elif point["model"] == "mean" and point["coupling"] == "shared":
        out["E TV(G_i, G'_i) (exact)"] = Theory("exact", np.full(i.shape, 1 / (3 * n)),
                                                "E|x - x'|/(2 a n) = 1/(3n) for every i")
    return out


def _a2_notes(point, meas, theory):
    gamma = next(iter(meas.values()))
    bound, contraction = r2_values(point)
    raw, _ = r2_values(point, uncapped=True)
    uncapped = raw[-1]
    grows = "grows (c(1-lam) >= 1)" if contraction >= 1 else "stays O(1/N) (c(1-lam) < 1)"
    return [f"A2-gamma {point['model']} ({point['coupling']} coupling) lam={point['lam']}: "
            f"R2 {grows}; at i={int(gamma.x[-1])} measured E TV = {gamma.mean[-1]:.4g} "
            f"± {gamma.se[-1]:.2g}, R2 = {float(uncapped):.4g} uncapped (capped {bound[-1]:.4g}): "
            f"R2/measured = {float(uncapped) / gamma.mean[-1]:.3g}; max measured over i = "
            f"{gamma.mean.max():.4g} (1/n = {1 / point['n']:.3g}); replicas={gamma.replicas}"]


A2_GAMMA = register(Claim(
    "A2-gamma", "Recursive stability measured by coupled loops (S0 vs S0') against R2",
    _a2_grid, _a2_measure, a2_theory, notes=_a2_notes))


# --- A5: the bound's minimiser m* vs the empirical argmin of the true error ---------------

def _a5_grid(mode):
    gens = _mode(mode, 11, 51, 51)
    ratios = _mode(mode, (0.0, 19.0), (0.0, 1.0, 4.0, 19.0),
                   (0.0, 0.25, 1.0, 4.0, 19.0))
    reps = dict(mean=_mode(mode, 4096, 8192, 65536), categorical=_mode(mode, 4096, 8192, 65536),
                ridge=_mode(mode, 4096, 4096, 32768))
    models = _mode(mode, ("mean", "categorical"), ("mean", "categorical", "ridge"),
                   ("mean", "categorical", "ridge"))
    return [dict(model=model, n=20, m_over_n=list(ratios), generations=gens,
                 replicas=reps[model]) for model in models]


def _a5_m_grid(point):
    return [int(round(point["n"] * r)) for r in point["m_over_n"]]


def _a5_sub_point(point, m):
    lam = point["n"] / (point["n"] + m)
    # Same plan object as A1/A3 (m = round(n (1-lam)/lam)): shared compilation.
    return dict(model=point["model"], n=point["n"], lam=lam, generations=point["generations"],
                replicas=point["replicas"])


def _a5_generations(point):
    return (1, point["generations"] - 1)


def _a5_measure(key, point):
    ms = np.asarray(_a5_m_grid(point))
    quantity = "risk" if point["model"] == "ridge" else "error"
    means = {g: [] for g in _a5_generations(point)}
    ses = {g: [] for g in _a5_generations(point)}
    gaps = {g: ([], []) for g in _a5_generations(point)}
    count = 0
    for index, m in enumerate(ms):  # a grid over m: separate loops, not replicas
        moments = run_loop(jax.random.fold_in(key, index), _a5_sub_point(point, int(m)))
        count = moments.count
        for g in _a5_generations(point):
            means[g].append(float(moments.mean[quantity][g]))
            ses[g].append(float(moments.se[quantity][g]))
            gaps[g][0].append(float(moments.mean["gap"][g]))
            gaps[g][1].append(float(moments.se["gap"][g]))
    out = {}
    for g in _a5_generations(point):
        err = Measured(ms, np.asarray(means[g]), np.asarray(ses[g]), count, "synthetic size m")
        out[f"true error, i={g}"] = err
        out[f"gap vs R3 bound, i={g}"] = Measured(ms, np.asarray(gaps[g][0]),
                                                   np.asarray(gaps[g][1]), count,
                                                   "synthetic size m")
    return out


def a5_bounds(point) -> dict[int, np.ndarray]:
    """R3 bound totals over the m grid, per reported generation."""
    out = {}
    for g in _a5_generations(point):
        out[g] = np.asarray([float(gap_bound(_a5_sub_point(point, int(m)), np.asarray([g])).total
                                   .reshape(-1)[0]) for m in _a5_m_grid(point)])
    return out


def a5_theory(point):
    ms = np.asarray(_a5_m_grid(point))
    n = point["n"]
    out = {}
    for g, bound in a5_bounds(point).items():
        out[f"gap vs R3 bound, i={g}"] = Theory("upper", bound, "R3 total")
        if point["model"] == "mean":
            exact = np.asarray([float(mean_error_exact(n, int(m), np.asarray([g]))[0]) for m in ms])
            out[f"true error, i={g}"] = Theory("exact", exact, "E (theta_i - mu)^2 (exact)")
        elif point["model"] == "categorical":
            exact = np.asarray([float(categorical_error_exact(n, int(m), np.asarray([g]))[0])
                                for m in ms])
            out[f"true error, i={g}"] = Theory("exact", exact, "E ||p_hat_i - p0||^2 (exact)")
    return out


def _a5_notes(point, meas, theory):
    notes = []
    for g, bound in a5_bounds(point).items():
        err = meas[f"true error, i={g}"]
        m_star = int(err.x[int(np.argmin(bound))])
        best = int(np.argmin(err.mean))
        tied = [int(err.x[j]) for j in range(len(err.x))
                if err.mean[j] - 2 * math.hypot(err.se[j], err.se[best]) <= err.mean[best]]
        verdict = ("agree" if m_star == int(err.x[best]) else
                   "disagree in the point estimate but the bound's m* is within 2 SE of the "
                   "empirical minimum" if m_star in tied else "DISAGREE")
        notes.append(f"A5 {point['model']} n={point['n']} i={g}: bound minimiser m* = {m_star}; "
                     f"empirical argmin of the true error = {int(err.x[best])} (m within 2 SE of "
                     f"the minimum: {tied}); they {verdict}; replicas={err.replicas}")
        if point["model"] == "mean":
            notes.append(f"A5 mean i={g}: synthetic data never help: the exact error is "
                         f">= s^2/n at every m, with equality only at m = 0 (docs 5.7)")
    return notes


A5 = register(Claim(
    "A5", "Optimal synthetic size: the R3 bound's minimiser m* vs the empirical argmin of "
    "the true error", _a5_grid, _a5_measure, a5_theory, notes=_a5_notes))
