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
from bounds.models import categorical as categorical_bounds
from bounds.models import mean_estimation as mean_bounds
from bounds.models import ridge as ridge_bounds
from sims.coupled import maximal_categorical, run_coupled, shared_keys
from sims.models import categorical, mean_estimation, mean_estimation_coupler
from sims.models.ridge import (population_risk, ridge, ridge_pool, ridge_spec, ridge_tv)
from verify.claim import Claim, Measured, Theory, measured, per_mode, register

GEN = "generation i"
BATCH = 4096  # one batch size for every run: a shared plan compiles once

# --- the three models ------------------------------------------------------------------
HALF_WIDTH = 1.0           # mean loop: a
MU = 0.0
NUM_SYMBOLS = 10           # categorical: K, p0 proportional to 1..K
RIDGE_POOL = dict(size=16, dim=3, feature_bound=1.0, seed=0)
RIDGE_RHO, RIDGE_TAU, RIDGE_B = 1.0, 0.5, 1.0
RIDGE_W_STAR = (0.6, -0.4, 0.3)


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


# --- per-generation metrics (cached per n: one object, one compilation per plan) -------
# Besides the gap, each metric splits it as in the proof of R3 (docs 4.2, 9.1), for
# generations i >= 1 of a ``reuse`` buffer [S0 (n) | Z_i (m)]:
#   gap = lam real_part + (1-lam) shift_part + (1-lam) synthetic_part, with
#   real_part = R_p0(h_i) - R_hat_{S0}(h_i), shift_part = R_p0(h_i) - R_{G_{i-1}}(h_i),
#   synthetic_part = R_{G_{i-1}}(h_i) - R_hat_{Z_i}(h_i).
# Buffers without a synthetic block (m = 0, or ``synthetic``'s [Z_i]) report zeros.

def _parts(n, size, risk, risk_prev, losses):
    """The three pieces of the gap from per-slot losses (static split at ``n``)."""
    if size <= n:
        zero = jnp.zeros_like(risk)
        return {"real_part": zero, "shift_part": zero, "synthetic_part": zero}
    return {"real_part": risk - losses[:n].mean(), "shift_part": risk - risk_prev,
            "synthetic_part": risk_prev - losses[n:].mean()}


@functools.lru_cache(maxsize=None)
def mean_metric(n: int):
    """Gap and its parts, squared error and ``TV(p0, G_{i-1})`` of the uniform mean loop
    (exact per replica)."""
    s2 = HALF_WIDTH ** 2 / 3.0

    def metric(key, gen, truth):
        del key
        theta, weights = gen.params, gen.weights
        risk = (theta - truth) ** 2 + s2  # E_{p0} (x - theta)^2
        losses = (gen.data - theta) ** 2
        out = {"gap": risk - weights @ losses / weights.sum(), "error": (theta - truth) ** 2,
               "tv_prev": jnp.minimum(1.0, jnp.abs(gen.previous - truth) / (2.0 * HALF_WIDTH))}
        out.update(_parts(n, gen.data.shape[0], risk, (theta - gen.previous) ** 2 + s2, losses))
        return out

    return metric


@functools.lru_cache(maxsize=None)
def categorical_metric(n: int):
    """Gap under ``1 - p(x)`` and its parts, ``||p_hat - p0||^2`` and ``TV(p0, G_{i-1})``."""

    def metric(key, gen, truth):
        del key
        p = gen.params
        counts = jnp.zeros_like(p).at[gen.data].add(gen.weights)
        empirical = counts / gen.weights.sum()
        out = {"gap": p @ (empirical - truth), "error": jnp.sum((p - truth) ** 2),
               "tv_prev": 0.5 * jnp.sum(jnp.abs(gen.previous - truth))}
        out.update(_parts(n, gen.data.shape[0], 1.0 - p @ truth, 1.0 - p @ gen.previous,
                          1.0 - p[gen.data]))
        return out

    return metric


@functools.lru_cache(maxsize=None)
def ridge_metric(model, n: int):
    """Gap (exact ``R_p0`` over the pool) and its parts, ``||w_i - w*||^2``, ``||w_i||^2``,
    ``R_p0`` and ``TV(p0, G_{i-1})``."""
    spec = ridge_spec(model)

    def metric(key, gen, truth):
        del key
        w, data, weights = gen.params, gen.data, gen.weights
        risk = population_risk(spec, w, truth)
        losses = (data.y - data.x @ w) ** 2
        out = {"gap": risk - weights @ losses / weights.sum(), "error": jnp.sum((w - truth) ** 2),
               "weight_sq": jnp.sum(w ** 2), "risk": risk,
               "tv_prev": ridge_tv(spec, gen.previous, truth)}
        out.update(_parts(n, data.y.shape[0], risk, population_risk(spec, w, gen.previous),
                          losses))
        return out

    return metric


def metric_for(name: str, n: int):
    if name == "mean":
        return mean_metric(n)
    if name == "categorical":
        return categorical_metric(n)
    return ridge_metric(ridge_model(), n)


def plan_for(point):
    """The loop of a grid point: ``reuse`` with ``m = round(n (1-lam)/lam)``; ``lam = 0``:
    ``synthetic`` with ``m = n``; an explicit ``m`` wins."""
    n, gens = point["n"], point["generations"]
    if "m" in point:
        return sims.make_plan("reuse", n=n, m=point["m"], generations=gens)
    if point["lam"] == 0:
        return sims.make_plan("synthetic", n=n, m=n, generations=gens)
    return sims.make_plan("reuse", n=n, lam=point["lam"], generations=gens)


def run_loop(key, point, model=None, reduce=True):
    """The loop of a grid point; ``model`` overrides the point's model (broken simulators
    for negative controls) and ``reduce=False`` returns per-replica trajectories."""
    default, truth = model_and_truth(point["model"])
    return sims.run(key, model or default, truth, plan_for(point),
                    metric_for(point["model"], point["n"]), replicas=point["replicas"],
                    batch_size=BATCH, reduce=reduce)


def _sizes(point):
    plan = plan_for(point)
    m = plan.m[0] if plan.m else 0
    return plan.n, m, plan.n / (plan.n + m)


def report_generations(generations: int) -> np.ndarray:
    """Generations with rows in the report: a log-spaced subset of ``1 .. G-1``."""
    picks = [1, 2, 3, 5, 10, 20, 30, 40, 50, 75, 100]
    return np.asarray([i for i in picks if i < generations] or [generations - 1])



# --- exact predictions used by A1/A3/A5 -------------------------------------------------

def mean_error_exact(n, m, i, lam_zero=False, keep_power=1):
    """``E (theta_i - mu)^2`` (docs 5.4); ``keep_power=2`` replaces ``1-lam`` by ``(1-lam)^2``."""
    s2 = HALF_WIDTH ** 2 / 3.0
    i = np.asarray(i)
    if m == 0:
        return np.full(i.shape, s2 / n)
    lam = 0.0 if lam_zero else n / (n + m)
    keep = (1.0 - lam) ** keep_power
    return np.asarray(mean_bounds.mean_estimation_exact_variance(s2, n, m, i, lam=1.0 - keep))


def mean_gap_exact(n, m, i):
    """``E gap_i = 2 v_i - (1-lam) v_{i-1}`` for the mean loop (docs 9.1; ``i >= 1``)."""
    lam = n / (n + m)
    return 2.0 * mean_error_exact(n, m, i) - (1.0 - lam) * mean_error_exact(n, m, np.asarray(i) - 1)


def categorical_error_exact(n, m, i, lam_zero=False):
    """``E ||p_hat_i - p0||^2 = sum_k v_i(k)``; under ``1 - p(x)`` it is also ``E gap_i`` (docs 9.1)."""
    lam = 0.0 if lam_zero else None
    return np.asarray(categorical_bounds.categorical_loop_mse(category_probs(), n, m, np.asarray(i), lam)).sum(-1)


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
        return mean_bounds.mean_estimation_gap_bound(HALF_WIDTH, n, m, i)
    if model == "categorical":
        return categorical_bounds.categorical_gap_bound(category_probs(), n, m, i)
    tv_mean, _ = ridge_shift_estimate(n, point["lam"], point["generations"], point["replicas"])
    spec = ridge_spec(ridge_model())
    return ridge_bounds.ridge_gap_bound(spec.feature_bound, RIDGE_B, RIDGE_RHO, RIDGE_TAU, n, m, i,
                              np.clip(tv_mean[i], 0.0, 1.0))


def _a1_grid(mode):
    gens = per_mode(mode, 11, 51, 51)
    # quick: lam = 0.5 shares its coupled loops (the recursive term) with A2-gamma
    lams = per_mode(mode, (1.0, 0.5), (1.0, 0.8, 0.5, 0.2, 0.05), (1.0, 0.8, 0.5, 0.2, 0.1, 0.05))
    ns = per_mode(mode, (20,), (20,), (10, 20, 50))
    # mean: every A1 bound is loose by >= 50x, so 8192 replicas resolve it (default time)
    reps = dict(mean=per_mode(mode, 4096, 8192, 65536),
                categorical=per_mode(mode, 4096, 8192, 65536),
                ridge=per_mode(mode, 4096, 4096, 32768))
    ridge_lams = per_mode(mode, (0.5,), (1.0, 0.5, 0.05), lams)
    points = []
    for model in ("mean", "categorical", "ridge"):
        for n in ns:
            for lam in (ridge_lams if model == "ridge" else lams):
                points.append(dict(model=model, n=n, lam=lam, generations=gens,
                                   replicas=reps[model]))
    return points


def loss_constants(point) -> tuple[float, float]:
    """``(beta_N, M)``: the learner's replace-one stability on ``N`` points and the loss
    range of a grid point's model (docs 5.5, 6.3, 7.1-7.2)."""
    n, m, _ = _sizes(point)
    if point["model"] == "mean":
        const = mean_bounds.mean_estimation_uniform_constants(HALF_WIDTH, n, m)
        return float(const.beta_N), float(const.loss_bound)
    if point["model"] == "categorical":
        return 1.0 / (n + m), 1.0
    kappa = ridge_spec(ridge_model()).feature_bound
    return (float(ridge_bounds.ridge_uniform_stability(kappa, RIDGE_B, RIDGE_RHO, n + m)),
            float(ridge_bounds.ridge_loss_bound(kappa, RIDGE_B, RIDGE_RHO)))


# The A1 rows: the total, then each R3 term against the quantity it bounds (docs 9.2).
GAP = "gap <= R3 bound"
TERM_REAL = "term real: lam E[R_p0(h) - R_S0(h)] <= lam beta_N (1 + m gamma_(i-1))"
TERM_SYNTH = "term learner stability: (1-lam) E[R_G(h) - R_Z(h)] <= (1-lam) beta_N"
TERM_SHIFT = "term shift: (1-lam) E[R_p0(h) - R_G(h)] <= (1-lam) M E TV(p0, G_(i-1))"
TERM_TV = "term shift TV: (1-lam) M E TV(p0, G_(i-1)) <= its bound"
TERM_REC = "term recursive: lam beta_N m E TV(G_(i-1), G'_(i-1)) <= lam beta_N m gamma_(i-1)"
CAPPED = " [R2 capped at 1: report]"
TERM_PREFIX = "term "


def _scaled(meas: Measured, factor: float, select=slice(None)) -> Measured:
    return Measured(meas.x[select], factor * meas.mean[select], abs(factor) * meas.se[select],
                    meas.replicas, meas.x_label)


def _a1_gamma(key, point, generations):
    """Coupled-loop ``E TV(G_j, G'_j)`` (maximal coupling) at ``generations``: an
    independent run (its own key) of the pair of loops behind R2 (docs 8)."""
    model, truth = model_and_truth(point["model"])
    metric = {"mean": mean_gamma_metric, "categorical": categorical_gamma_metric}[point["model"]]
    # 4096 pairs resolve the recursive term to ~2%; more would only cost time
    moments = run_coupled(jax.random.fold_in(key, 1), model, truth, plan_for(point), metric,
                          replaced_index=0, replicas=min(point["replicas"], 4096),
                          coupler=_coupler(point["model"], "maximal"), batch_size=BATCH)
    return measured(moments, "gamma", np.arange(point["generations"]), select=generations)


def _recursive_term_rows(point, i) -> np.ndarray | None:
    """Where A1 tests the recursive term: the generations whose R2 is below 1 (a mask over
    ``i``), or ``None`` when A1 runs no coupled loops at this point. No maximal coupler for
    ridge (R2 is not proved there). Coupled runs only where they share their compilation with
    A2-gamma (lam in 0.2 .. 0.8; at m = 19n a pair of loops would cost more than the rest of
    the point) and test more than gamma_0. Measure and theory both ask here, so they always
    state the same rows."""
    n, m, lam = _sizes(point)
    if point["model"] == "ridge" or m == 0 or lam < 0.2:
        return None
    tested = r2_values(point, generations=i - 1, uncapped=True)[0] < 1.0
    return tested if tested.sum() >= 2 else None


def a1_measure(key, point):
    """The gap, its three parts (docs 9.1) and, for lam < 1, the coupled-loop gamma."""
    moments = run_loop(key, point)
    i = report_generations(point["generations"])
    axis = np.arange(point["generations"])
    gap = measured(moments, "gap", axis, select=i)
    out = {GAP: gap}
    if point["model"] != "ridge":
        out["gap (exact)"] = gap
    n, m, lam = _sizes(point)
    if m == 0:  # lam = 1: the gap is the one-fit gap on n i.i.d. points, bounded by beta_n
        return out
    beta, loss_range = loss_constants(point)
    out[TERM_REAL] = _scaled(measured(moments, "real_part", axis, select=i), lam)
    out[TERM_SYNTH] = _scaled(measured(moments, "synthetic_part", axis, select=i), 1 - lam)
    out[TERM_SHIFT] = _scaled(measured(moments, "shift_part", axis, select=i), 1 - lam)
    out[TERM_TV] = _scaled(measured(moments, "tv_prev", axis, select=i), (1 - lam) * loss_range)
    tested = _recursive_term_rows(point, i)
    if tested is not None:
        gamma = _scaled(_a1_gamma(key, point, i - 1), lam * beta * m)
        gamma = gamma._replace(x=i)
        for name, mask in ((TERM_REC, tested), (TERM_REC + CAPPED, ~tested)):
            if mask.any():
                out[name] = _scaled(gamma, 1.0, mask)
    return out


def a1_theory(point, *, drop: str | None = None, keep_power: int = 1,
              scale: dict | None = None):
    """A1's theory: R3's total (upper), each term against its measured counterpart (upper),
    and the exact gap where known.

    Negative controls: ``drop`` (a ``GapBound`` field) removes one term, ``keep_power=2``
    replaces every ``(1-lam)`` factor by ``(1-lam)^2``, and ``scale`` multiplies terms
    (``{"recursive_stability": 0.5, "distribution_shift": 0.5}`` halves the loop terms).
    """
    i = report_generations(point["generations"])
    bound = gap_bound(point, i)
    n, m, lam = _sizes(point)
    if keep_power != 1:
        factor = (1.0 - lam) ** (keep_power - 1)
        bound = bound._replace(distribution_shift=bound.distribution_shift * factor,
                               synthetic_stability=bound.synthetic_stability * factor)
    scale = dict(scale or {})
    if drop is not None:
        scale[drop] = 0.0
    bound = bound._replace(**{k: getattr(bound, k) * v for k, v in scale.items()})
    shape = np.shape(i)

    def term(value):
        return np.broadcast_to(np.asarray(value, np.float64), shape)

    # A bound at a term's trivial range says nothing (vacuous rows, never evidence): a loss in
    # [0, M] gives a gap <= M, lam- and (1-lam)-weighted terms <= lam M and (1-lam) M, and a
    # TV <= 1 caps the recursive term at lam beta_N m.
    beta, M = loss_constants(point)
    out = {GAP: Theory("upper", term(bound.total), "R3: sum of the terms (concentration = 0)",
                       trivial=M)}
    if point["model"] == "mean":
        out["gap (exact)"] = Theory("exact", mean_gap_exact(n, m, i), "2 v_i - (1-lam) v_{i-1}")
    elif point["model"] == "categorical":
        out["gap (exact)"] = Theory("exact", categorical_error_exact(n, m, i), "sum_k v_i(k)")
    if m == 0:  # lam = 1: only the gap is measured (one fit on n i.i.d. points)
        return out
    real = term(bound.real_stability + bound.recursive_stability)
    out[TERM_REAL] = Theory("upper", real, "lam beta_N (1 + m gamma_(i-1)), gamma: R2 capped at 1",
                            trivial=lam * M)
    out[TERM_SYNTH] = Theory("upper", term(bound.synthetic_stability), "(1-lam) beta_N",
                             trivial=(1 - lam) * M)
    shift = term(bound.distribution_shift)
    out[TERM_SHIFT] = Theory("upper", shift, "(1-lam) M E TV(p0, G_(i-1)) (bound on E TV)",
                             trivial=(1 - lam) * M)
    ridge_tv_note = " (ridge: E TV is an MC estimate from an independent run: report)"
    if point["model"] == "ridge":
        out[TERM_TV] = Theory("report", shift, "(1-lam) M x (Jensen bound on E TV)" + ridge_tv_note)
    else:
        out[TERM_TV] = Theory("upper", shift, "(1-lam) M x (Jensen bound on E TV)",
                              trivial=(1 - lam) * M)
    tested = _recursive_term_rows(point, i)
    if tested is not None:
        rec = term(bound.recursive_stability)
        out[TERM_REC] = Theory("upper", rec[tested], "lam beta_N m R2(gamma_(i-1))",
                               trivial=lam * beta * m)
        if (~tested).any():
            out[TERM_REC + CAPPED] = Theory("report", rec[~tested],
                                            "lam beta_N m min(1, R2): R2 >= 1 tests TV <= 1 only")
    return out


def _se_notes(point, meas, theory, bound_quantity):
    """Replica count, largest SE, and SE relative to the smallest bound slack it must resolve."""
    g, th = meas[bound_quantity], theory[bound_quantity]
    slack = np.asarray(th.value) - g.mean
    worst = float(np.max(g.se / np.maximum(np.abs(slack), 1e-300)))
    return (f"replicas={g.replicas}, max SE={np.max(g.se):.3g}, smallest slack "
            f"(bound - measured)={np.min(slack):.3g}, max SE/|slack|={worst:.3f}")


def _a1_notes(point, meas, theory):
    g, th = meas[GAP], theory[GAP]
    ratio = g.mean / np.asarray(th.value)
    j = int(np.argmax(ratio))
    head = f"A1 {point['model']} n={point['n']} lam={point['lam']}"
    notes = [f"{head}: tightness gap/bound in [{ratio.min():.3g}, {ratio.max():.3g}], largest at "
             f"i={int(g.x[j])} ({g.mean[j]:.4g} vs {float(np.asarray(th.value)[j]):.4g}); "
             + _se_notes(point, meas, theory, GAP)]
    terms = []
    for name in meas:
        if name.startswith(TERM_PREFIX) and len(meas[name].mean):
            value = np.asarray(theory[name].value)
            r = meas[name].mean / value
            kind = theory[name].kind
            terms.append((float(np.max(r)), name.split(":")[0][len(TERM_PREFIX):], kind))
    if terms:
        parts = ", ".join(f"{label} {r:.3g}{'' if kind == 'upper' else ' (report)'}"
                          for r, label, kind in terms)
        tested = [t for t in terms if t[2] == "upper"]
        loosest = min(tested) if tested else None
        notes.append(f"{head}: per-term max tightness (measured counterpart / term): {parts}"
                     + (f"; loosest tested term: {loosest[1]}, loose by a factor "
                        f"{1 / max(loosest[0], 1e-300):.3g}" if loosest else ""))
    if point["model"] == "ridge":
        _, se = ridge_shift_estimate(point["n"], point["lam"], point["generations"],
                                     point["replicas"])
        notes.append(f"{head}: distribution-shift term uses the MC mean of TV(p0, G_(i-1)) from "
                     f"an independent run of {point['replicas']} replicas (max SE "
                     f"{np.max(se[1:]):.2g})")
    return notes


def a1_figure(record):
    from verify import figures_paper_a
    return figures_paper_a.terms_figure(record)


A1 = register(Claim(
    "A1", "R3 term by term: E[R_p0(h_i) - R_hat_{S_i}(h_i)] <= stability + recursive stability "
    "+ shift (+ concentration = 0); each term against what it bounds; mean/categorical/ridge",
    _a1_grid, a1_measure, a1_theory, notes=_a1_notes, figure=a1_figure))


# --- A3: constant lam keeps the error bounded; lam = 0 collapses -------------------------

def _a3_grid_for(model):
    def grid(mode):
        gens = per_mode(mode, 11, 51, 101)
        # quick: the lam = 0.5 loop is shared with A1 and A5 (one compilation)
        lams = per_mode(mode, (0.0, 0.5), (0.0, 0.8, 0.5, 0.2, 0.05),
                     (0.0, 0.8, 0.5, 0.2, 0.05))
        if model == "ridge":
            lams = per_mode(mode, (0.0, 0.5), (0.0, 1.0, 0.5, 0.05), (0.0, 1.0, 0.5, 0.2, 0.05))
        # mean: 16384 replicas resolve a 5% error in the exact curve (z ~ 4.5)
        reps = per_mode(mode, 16384 if model == "mean" else 4096,
                     {"mean": 16384, "categorical": 8192, "ridge": 4096}[model],
                     65536)
        if mode == "default" and model != "ridge":
            gens = 51
        return [dict(model=model, n=20, lam=lam, generations=gens, replicas=reps) for lam in lams]
    return grid


A3_ERR, A3_SUP = "E err_i", "E err_i <= sup_i bound"
A3_NORM = "E ||w_i||^2 <= u_i^2"
A3_COLLAPSE = "collapse: E[err_i - err_0] (paired) > 0"
A3_GROWTH = "growth: E[err_i - err_1] (paired) > 0"


def _over_replicas(values, x, x_label=GEN) -> Measured:
    """MC mean and SE over the replica axis of ``values`` (replicas x len(x))."""
    values = np.asarray(values, np.float64)
    count = values.shape[0]
    return Measured(np.asarray(x), values.mean(0), values.std(0, ddof=1) / math.sqrt(count),
                    count, x_label)


def a3_measure(key, point, model=None):
    """Error curve, and for ``lam = 0`` the paired growth ``err_i - err_0`` and
    ``err_i - err_1`` on the same replicas. ``model`` overrides the simulator (controls)."""
    traj = run_loop(key, point, model=model, reduce=False)
    i = np.concatenate([[0], report_generations(point["generations"])])
    err = np.asarray(traj["error"])
    out = {A3_ERR: _over_replicas(err[:, i], i)}
    if point["lam"] > 0 or point["model"] == "ridge":
        out[A3_SUP] = out[A3_ERR]
    if point["model"] == "ridge":
        out[A3_NORM] = _over_replicas(np.asarray(traj["weight_sq"])[:, i], i)
    if point["lam"] == 0:
        later = i[i >= 1]
        out[A3_COLLAPSE] = _over_replicas(err[:, later] - err[:, :1], later)
        out[A3_GROWTH] = _over_replicas(err[:, later[later >= 2]] - err[:, 1:2], later[later >= 2])
    return out


def ridge_plateau_inputs():
    """``(kappa, lam_C, ||w*||)`` of the ridge loop: the pool's norm bound, the largest
    eigenvalue of its second-moment matrix (``x`` uniform on the pool) and the truth's norm."""
    pool = ridge_spec(ridge_model()).pool
    lam_c = float(np.linalg.eigvalsh(pool.T @ pool / len(pool))[-1])
    return float(np.max(np.linalg.norm(pool, axis=1))), lam_c, float(np.linalg.norm(RIDGE_W_STAR))


def _ridge_a3_theory(point, i, n, m, drop):
    kappa, lam_c, w_norm = ridge_plateau_inputs()
    args = (kappa, lam_c, RIDGE_B, RIDGE_RHO, RIDGE_TAU, n, m)
    lam_arg = 0.0 if point["lam"] == 0 else None
    sup = ridge_bounds.ridge_error_plateau_bound(*args, w_norm, lam=lam_arg)
    if drop == "w_star":  # (||w*|| + u)^2 -> u^2
        sup = (math.sqrt(sup) - w_norm) ** 2
    u = ridge_bounds.ridge_weight_l2_bound(*args, i, w_norm, lam=lam_arg)
    return {A3_SUP: Theory("upper", np.full(i.shape, sup),
                           "(||w*|| + max(u_0, u_inf))^2 (docs 7.7)"),
            A3_NORM: Theory("upper", u ** 2, "u_i^2, L2 recursion (docs 7.7)")}


def a3_theory(point, *, keep_power: int = 1, drop: str | None = None):
    """A3: exact error curve (mean, categorical), its uniform-in-i bound for ``lam > 0``
    (ridge: the L2 bound of docs 7.7), and for ``lam = 0`` the asserted collapse (paired
    growth exceeds 0). Negative controls: ``keep_power=2`` (``(1-lam) -> (1-lam)^2``);
    ``drop="loop"`` keeps only the generation-0 error (mean, categorical), ``drop="w_star"``
    the ``||w*||`` term of the ridge bound."""
    i = np.concatenate([[0], report_generations(point["generations"])])
    n, m, lam = _sizes(point)
    lam_zero = point["lam"] == 0
    model = point["model"]
    out = {}
    if lam_zero:
        later = i[i >= 1]
        out[A3_COLLAPSE] = Theory("exceeds", np.zeros(later.shape), "lam = 0 collapses: > 0")
        out[A3_GROWTH] = Theory("exceeds", np.zeros(later[later >= 2].shape),
                                "it keeps growing after generation 1: > 0")
    if model == "ridge":
        out.update(_ridge_a3_theory(point, i, n, m, drop))
        return out
    if model == "mean":
        exact = mean_error_exact(n, m, i, lam_zero, keep_power)
        if drop == "loop":
            exact = np.full(i.shape, exact[0])
        label = "s^2/n + (s^2/m) r (1-r^i)/(1-r)" if not lam_zero else "s^2/n + i s^2/m"
        out[A3_ERR] = Theory("exact", exact, label)
        if not lam_zero:
            plateau = float(mean_bounds.mean_estimation_variance_plateau(
                HALF_WIDTH ** 2 / 3.0, n, m, lam=1.0 - (1.0 - lam) ** keep_power))
            out[A3_SUP] = Theory("upper", np.full(i.shape, plateau),
                                 "plateau s^2/n + (s^2/m) r/(1-r)")
        return out
    exact = categorical_error_exact(n, m, i, lam_zero)
    if drop == "loop":
        exact = np.full(i.shape, exact[0])
    out[A3_ERR] = Theory("exact", exact, "sum_k v_i(k) (docs 6.1)")
    if not lam_zero:
        limit = categorical_error_exact(n, m, np.asarray([10 ** 6]))
        sup = max(float(limit[0]), float(exact[0]))
        out[A3_SUP] = Theory("upper", np.full(i.shape, sup),
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
    if A3_SUP in meas:
        ratio = meas[A3_SUP].mean / np.asarray(theory[A3_SUP].value)
        notes.append(f"A3 {point['model']} lam={point['lam']}: uniform-in-i bound tightness in "
                     f"[{ratio.min():.3g}, {ratio.max():.3g}]; "
                     + _se_notes(point, meas, theory, A3_SUP))
    if A3_NORM in meas:
        ratio = meas[A3_NORM].mean / np.asarray(theory[A3_NORM].value)
        notes.append(f"A3 ridge lam={point['lam']}: E||w_i||^2 / u_i^2 in "
                     f"[{ratio.min():.3g}, {ratio.max():.3g}] (the non-trivial part of the bound)")
    if A3_COLLAPSE in meas:
        for name in (A3_COLLAPSE, A3_GROWTH):
            d = meas[name]
            notes.append(f"A3 {point['model']} lam=0 {name.split(':')[0]}: paired increments "
                         f"{', '.join(f'i={int(x)}: {v:.3g}' for x, v in zip(d.x, d.mean))}; "
                         f"smallest z = {np.min(d.mean / d.se):.1f}")
    return notes


def a3_figure(record):
    from verify import figures_paper_a
    return figures_paper_a.error_vs_generation_figure(record)


A3 = {model: register(Claim(
    f"A3-{model}", f"{model}: constant lam > 0 keeps the error bounded uniformly in i; "
    "lam = 0 collapses", _a3_grid_for(model), a3_measure, a3_theory, notes=_a3_notes,
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
    gens = per_mode(mode, 11, 51, 101)
    reps = per_mode(mode, 4096, 4096, 32768)
    base = dict(n=20, generations=gens, replicas=reps)
    points = [dict(base, model="mean", coupling="maximal", lam=0.5),
              dict(base, model="categorical", coupling="maximal", lam=0.5)]
    if mode != "quick":  # lam 0.8 and 0.2: the same coupled loops as A1's recursive rows
        points += [dict(base, model="mean", coupling="shared", lam=0.5),
                   dict(base, model="mean", coupling="maximal", lam=0.8),
                   dict(base, model="mean", coupling="maximal", lam=0.2),
                   dict(base, model="categorical", coupling="maximal", lam=0.8),
                   dict(base, model="categorical", coupling="maximal", lam=0.2),
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
    out = {"E TV(G_i, G'_i) (exact)": gamma}
    if point["coupling"] != "maximal":
        return {A2_SHARED: gamma, **out}
    tested = r2_tested(point)
    for name, mask in ((A2_R2, tested), (A2_CAPPED, ~tested)):
        if mask.any():
            out[name] = _scaled(gamma, 1.0, mask)
    return out


A2_R2 = "E TV(G_i, G'_i) <= R2"
A2_CAPPED = "E TV(G_i, G'_i) vs R2 [R2 >= 1, capped: report]"
A2_SHARED = "E TV(G_i, G'_i) vs R2"


def r2_tested(point) -> np.ndarray:
    """Rows where the claim's R2 is below 1: only there is ``E TV <= R2`` a test (a capped
    R2 = 1 only says TV <= 1). Fixed by the claim's R2, also under wrong-theory controls."""
    return r2_values(point, uncapped=True)[0] < 1.0


def r2_values(point, *, generations=None, keep_power: int = 1, drop: str | None = None,
              uncapped: bool = False) -> tuple[np.ndarray, float]:
    """R2 (capped at 1 unless ``uncapped``) and the contraction ``c (1-lam)``, at
    ``generations`` (default: 0 and the report generations); base ``gamma_0`` on ``n``.

    ``keep_power=2`` uses ``c (1-lam)^2`` (i.e. ``m (1-lam)`` synthetic points) and
    ``drop="propagation"`` drops the ``m gamma_{i-1}`` term: negative controls.
    """
    i = (np.concatenate([[0], report_generations(point["generations"])])
         if generations is None else np.asarray(generations))
    n, m, lam = _sizes(point)
    N = n + m
    if point["model"] == "mean":
        const = mean_bounds.mean_estimation_uniform_constants(HALF_WIDTH, n, m)
        eps, gamma_0, c = float(const.eps_N), float(const.gamma_0), float(const.generator_c)
    elif point["model"] == "categorical":
        eps = float(categorical_bounds.categorical_replace_one_tv(N, NUM_SYMBOLS))
        gamma_0, c = float(categorical_bounds.categorical_replace_one_tv(n, NUM_SYMBOLS)), 1.0
    else:
        c = float(ridge_bounds.ridge_generator_constant(ridge_spec(ridge_model()).feature_bound, RIDGE_B,
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
    """R2 (upper where below 1, report where capped) for maximal couplings, and exact
    values where derived (docs 8.2-8.3)."""
    i = np.concatenate([[0], report_generations(point["generations"])])
    bound, contraction = r2_values(point, keep_power=keep_power, drop=drop)
    n = point["n"]
    label = f"R2, c(1-lam)={contraction:.3g}"
    out = {}
    if point["coupling"] == "maximal":
        tested = r2_tested(point)
        out[A2_R2] = Theory("upper", bound[tested], label, trivial=1.0)
        if (~tested).any():
            out[A2_CAPPED] = Theory("report", bound[~tested], label + " (capped at 1)")
    else:
        out[A2_SHARED] = Theory("report", bound, label + " (capped at 1; R2 assumes a maximal "
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
    gamma = meas["E TV(G_i, G'_i) (exact)"]
    bound, contraction = r2_values(point)
    raw, _ = r2_values(point, uncapped=True)
    uncapped = raw[-1]
    grows = "grows (c(1-lam) >= 1)" if contraction >= 1 else "stays O(1/N) (c(1-lam) < 1)"
    return [f"A2-gamma {point['model']} ({point['coupling']} coupling) lam={point['lam']}: "
            f"R2 {grows}; at i={int(gamma.x[-1])} measured E TV = {gamma.mean[-1]:.4g} "
            f"± {gamma.se[-1]:.2g}, R2 = {float(uncapped):.4g} uncapped (capped {bound[-1]:.4g}): "
            f"R2/measured = {float(uncapped) / gamma.mean[-1]:.3g}; max measured over i = "
            f"{gamma.mean.max():.4g} (1/n = {1 / point['n']:.3g}); replicas={gamma.replicas}; "
            f"R2 rows tested: {int(r2_tested(point).sum())} of {len(gamma.x)} (the rest have "
            "R2 >= 1 and are report)"]


A2_GAMMA = register(Claim(
    "A2-gamma", "Recursive stability measured by coupled loops (S0 vs S0') against R2",
    _a2_grid, _a2_measure, a2_theory, notes=_a2_notes))


# --- A5: the bound's minimiser m* vs the empirical argmin of the true error ---------------

def _a5_grid(mode):
    gens = per_mode(mode, 11, 51, 51)
    ratios = per_mode(mode, (0.0, 1.0), (0.0, 1.0, 4.0, 19.0),
                   (0.0, 0.25, 1.0, 4.0, 19.0))
    reps = dict(mean=per_mode(mode, 4096, 8192, 65536),
                categorical=per_mode(mode, 4096, 8192, 65536),
                ridge=per_mode(mode, 4096, 4096, 32768))
    models = per_mode(mode, ("mean", "categorical"), ("mean", "categorical", "ridge"),
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
        if ms[0] == 0:  # independent runs per m: the SE of a difference is the hypot
            out[_a5_argmin_quantity(g)] = Measured(
                ms[1:], err.mean[1:] - err.mean[0], np.hypot(err.se[1:], err.se[0]), count,
                "synthetic size m")
    return out


def _a5_argmin_quantity(g):
    return f"true error(m) - true error(0), i={g}"


def a5_bounds(point) -> dict[int, np.ndarray]:
    """R3 bound totals over the m grid, per reported generation."""
    out = {}
    for g in _a5_generations(point):
        out[g] = np.asarray([float(gap_bound(_a5_sub_point(point, int(m)), np.asarray([g])).total
                                   .reshape(-1)[0]) for m in _a5_m_grid(point)])
    return out


def a5_theory(point, *, bounds=a5_bounds):
    """A5: R3 over the m grid (upper), the exact true error (mean, categorical), and the
    bound's minimiser ``m*`` as a prediction of the true error's argmin.

    For mean and categorical the true argmin is ``m = 0`` (docs 5.7, 6.4). If ``m* = 0``,
    every ``err(m) - err(0)`` must exceed 0 at the last generation; if ``m* > 0``, the
    bound predicts ``err(m*) <= err(0)`` (upper; the other rows then assert nothing, +inf).
    At ``i = 1`` (effects of a few %) and for ridge (no proof) these rows are report.
    ``bounds`` (a function like ``a5_bounds``) swaps the bound: a negative control.
    """
    ms = np.asarray(_a5_m_grid(point))
    n = point["n"]
    last = point["generations"] - 1
    out = {}
    for g, bound in bounds(point).items():
        out[f"gap vs R3 bound, i={g}"] = Theory("upper", bound, "R3 total")
        exact_fn = {"mean": mean_error_exact, "categorical": categorical_error_exact}.get(
            point["model"])
        if exact_fn is not None:
            exact = np.asarray([float(exact_fn(n, int(m), np.asarray([g]))[0]) for m in ms])
            out[f"true error, i={g}"] = Theory("exact", exact, "E err_i (exact)")
        m_star = int(ms[int(np.argmin(bound))])
        tested = exact_fn is not None and g == last
        if m_star == 0:
            out[_a5_argmin_quantity(g)] = Theory(
                "exceeds" if tested else "report", np.zeros(len(ms) - 1),
                "m* = 0 (R3's minimiser) is the strict argmin: err(m) - err(0) > 0")
        else:
            out[_a5_argmin_quantity(g)] = Theory(
                "upper" if tested else "report", np.where(ms[1:] == m_star, 0.0, np.inf),
                f"R3's minimiser m* = {m_star}: err(m*) - err(0) <= 0")
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
