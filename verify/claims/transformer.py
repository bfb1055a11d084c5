"""Claim A4: a trained softmax transformer doing in-context regression inside the loop.

The loop (``sims.models.transformer``, docs/transformer.md): each replica draws a training
set ``S0`` of prompts; generation 0 trains a fresh network on the real query targets;
generation ``i`` trains a fresh network on the same prompts with the query targets of a
fraction ``1 - lam`` replaced by ``G_{i-1}``'s prediction plus ``N(0, sigma^2)`` noise.
The test error is the MSE on fresh real prompts (fixed per replica across generations).

All ``lam`` values of a mode are one grid point run with common random numbers
(``run_loops``): replica ``r`` has the same prompts and keys at every ``lam``, so each
replica gives a *paired* set of slopes. Replicas are the unit of uncertainty: every
statistic is computed per replica, then its mean and SE over replicas are tested.
With ``s0_r`` the OLS slope of replica ``r``'s ``lam = 0`` error over all generations (the
collapse rate) and ``b_r(lam)`` the OLS slope of its ``lam`` error over the late half
``i >= G/2`` (docs/transformer.md section 3):

* ``exceeds`` ``s0 > 0``: at ``lam = 0`` the error grows;
* ``upper`` ``b(lam) - (1-lam)^(G/2) s0 <= 0`` for each ``lam > 0`` (Holm): the late-half
  slope is at most the share of the collapse rate that a contraction at the real-data
  rate ``1 - lam`` leaves after ``G/2`` generations;
* ``exceeds`` ``s0 - mean_{lam>0} b(lam) > 0``: the late-half slopes are resolved below
  the collapse rate (a run too noisy to tell a bounded loop from a collapsing one fails).
  Tested from ``RESOLVED_REPLICAS`` (16) replicas, i.e. in ``--full``; the collapse row
  from ``EFFECT_REPLICAS`` (6). Below, each is a report row that says so: with fewer
  replicas Student t cannot resolve the effect at nearly every seed.

Report rows (never evidence): the effective ``gamma`` fitted on probe prompts against
``gamma*``; ``icl_risk`` at that fitted ``gamma`` beside the measured error (a theory
evaluated at a quantity fitted to the same network); the one-parameter linear-attention
model trained in the same loop; the coupled-replacement distance of the transformer
beside that of the linear-attention model under the same coupling.
"""
from __future__ import annotations

import numpy as np

from bounds.models.linear_attention import gamma_star, icl_risk
from sims.loop import NonFiniteError
from sims.models import transformer as tr
from verify import stats
from verify.claim import Claim, Measured, Measurement, Theory, register

GEN = "generation i"
LAM = "lam"
GROWS = "slope of test error at lam = 0 (grows)"
BOUNDED = "late slope - (1-lam)^(G/2) x collapse slope (bounded)"
RESOLVED = "collapse slope - mean late slope over lam > 0 (resolved)"

# Fewest replicas at which A4's effect rows are tested: below, t's dof are too few for the
# effect to be resolved at nearly every seed (docs/statistics.md section 5).
EFFECT_REPLICAS = 6     # the collapse slope at lam = 0
RESOLVED_REPLICAS = 16  # the collapse slope minus the late slopes (a smaller effect)

# --- every size of A4 in one place --------------------------------------------------------
# Work is loops x generations x steps x batch (CPU time is proportional to it). Quick runs a
# subset (lam in {0, 0.5}, 6 generations, 8 replicas: at 6, EFFECT_REPLICAS, the collapse row's
# t was 8.9 ± 2.5 over 20 seeds, min 4.6 against the critical 3.4); default has the issue's
# grid (>= 10 generations,
# lam in {0, 0.1, 0.3, 0.5}).
# Coupled points (default, full) run ``coupled_pairs`` pairs per lam.
SIZES = {
    "quick": dict(spec=dict(dim=3, context=10, width=16, heads=2, layers=2, mlp=32, steps=150,
                            batch=32, warmup=15, learning_rate=4e-3, train_prompts=4800),
                  generations=6, replicas=8, lams=(0.0, 0.5), coupled_lams=(), coupled_pairs=0),
    "default": dict(spec=dict(dim=3, context=10, width=16, heads=2, layers=2, mlp=32,
                              steps=250, batch=32, warmup=25, train_prompts=8000),
                    generations=12, replicas=6, lams=(0.0, 0.1, 0.3, 0.5),
                    coupled_lams=(0.5,), coupled_pairs=3),
    "full": dict(spec=dict(dim=5, context=20, width=32, heads=2, layers=3, mlp=64, steps=1000,
                           batch=64, warmup=100, train_prompts=64000),
                 generations=20, replicas=32, lams=(0.0, 0.1, 0.3, 0.5),
                 coupled_lams=(0.0, 0.1, 0.3, 0.5), coupled_pairs=16),
}
SPEC_FIELDS = ("dim", "context", "noise", "width", "heads", "layers", "mlp", "steps", "batch",
               "learning_rate", "warmup", "train_prompts", "test_prompts", "probe_prompts")


def _a4_grid(mode):
    size = SIZES[mode]
    base = dict(size["spec"], generations=size["generations"])
    points = [dict(base, lams=list(size["lams"]), coupled=False, replicas=size["replicas"])]
    points += [dict(base, lams=[lam], coupled=True, replicas=size["coupled_pairs"])
               for lam in size["coupled_lams"]]
    return points


def spec_of(point) -> tr.TransformerSpec:
    return tr.make_spec(**{k: point[k] for k in SPEC_FIELDS if k in point})


def contraction_share(lam: float, generations: int) -> float:
    """``(1-lam)^(G/2)``: the share of the collapse rate the bounded row tolerates.

    Claim: A4 (bounded for ``lam > 0``). Kind: upper, from a model of the loop rather than
    a theorem about transformers: the deviation from the plateau contracts at least at the
    real-data anchor's rate ``1 - lam`` per generation (a non-expansive imitation step), so
    after ``k`` generations the increment is at most ``(1-lam)^k`` times the collapse
    increment ``s0``. Derivation and its limits: docs/transformer.md §3.
    """
    return (1.0 - lam) ** (generations // 2)


def paired_slopes(error: np.ndarray, lams) -> dict:
    """Per-replica statistics of the evidence rows from errors of shape ``(lam, replica, G)``.

    Returns ``collapse`` (``s0_r``, shape ``(replica,)``), ``late`` (``b_r(lam)`` for
    ``lam > 0``, shape ``(lam > 0, replica)``), ``bounded`` (``b_r - (1-lam)^(G/2) s0_r``)
    and ``resolved`` (``s0_r - mean_lam b_r``), and the ``lam > 0`` values.
    """
    lams = np.asarray(lams, np.float64)
    G = error.shape[-1]
    if not np.any(lams == 0) or not np.any(lams > 0):
        raise ValueError(f"A4's main point needs lam = 0 and at least one lam > 0, got {lams}")
    collapse = stats.per_replica_slope(error[np.flatnonzero(lams == 0)[0]])
    positive = lams[lams > 0]
    late = stats.per_replica_slope(error[lams > 0], G // 2)
    share = np.array([contraction_share(lam, G) for lam in positive])
    return dict(lams=positive, collapse=collapse, late=late,
                bounded=late - share[:, None] * collapse, resolved=collapse - late.mean(0))


def smallest_detectable_late_slope(stat: dict, family_size: int,
                                   alpha: float = stats.DEFAULT_ALPHA) -> np.ndarray:
    """Per ``lam > 0``: the late slope at which the bounded row is rejected about half the
    time, ``(1-lam)^(G/2) mean s0 + t_{1-alpha/k} SE`` (SE of the paired contrast, Student
    t with ``replicas - 1`` degrees of freedom)."""
    reps = stat["bounded"].shape[1]
    z = stats.critical_t(alpha, family_size, reps - 1, two_sided=False)
    se = stat["bounded"].std(1, ddof=1) / np.sqrt(reps)
    return stat["late"].mean(1) - stat["bounded"].mean(1) + z * se


def check_finite(out: tr.LoopOutput, where) -> None:
    """Raise ``NonFiniteError`` naming the first diverged (generation, replica); ``where``
    (the point's ``lam``, a twin) goes into the message."""
    finite = np.array(out.finite).reshape(-1, np.shape(out.finite)[-1])
    finite &= np.isfinite(np.asarray(out.test_error).reshape(finite.shape))
    if not finite.all():
        bad = np.argwhere(~finite)
        replica, generation = bad[np.argmin(bad[:, 1])]
        raise NonFiniteError(f"training loss (lam={where})", int(generation), int(replica))


def _stats(values: np.ndarray):
    n = values.shape[0]
    se = values.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(values.shape[1:], np.nan)
    return values.mean(0), se, n


def _series(values, label=GEN, x=None):
    mean, se, n = _stats(np.asarray(values, np.float64))
    x = np.arange(mean.shape[0]) if x is None else x
    return Measured(np.asarray(x), np.atleast_1d(mean), np.atleast_1d(se), n, label)


def per_lam(quantity: str, lam: float) -> str:
    return f"{quantity} (lam={lam:g})"


def summarise(out: tr.LoopOutput, point, coupled: tr.Coupled | None = None) -> Measurement:
    """Rows of one grid point from its loops (``out`` has ``(lam, replica, generation)`` axes)."""
    lams = point["lams"]
    error = np.asarray(out.test_error, np.float64)
    spec = spec_of(point)
    risk = lambda g: np.asarray(icl_risk(np.asarray(g), spec.context, spec.dim,  # noqa: E731
                                         spec.noise)).mean(0)  # per replica, then the mean
    quantities, by_lam = {}, {}
    context = {"lams": by_lam}
    for j, lam in enumerate(lams):
        quantities[per_lam("test error", lam)] = _series(error[j])
        quantities[per_lam("effective gamma", lam)] = _series(out.gamma[j])
        quantities[per_lam("linear-attention loop test error", lam)] = _series(
            out.lsa_test_error[j])
        by_lam[lam] = dict(gamma=np.asarray(out.gamma[j]).mean(0),
                            linearity=np.asarray(out.linearity[j]).mean(0),
                            risk_at_gamma=risk(out.gamma[j]), lsa_risk=risk(out.lsa_gamma[j]))
    if coupled is not None:  # fewer replicas than the main point: report rows only
        quantities[per_lam("coupled distance", lams[0])] = _series(coupled.distance)
        lsa_mean, lsa_se, _ = _stats(np.asarray(coupled.lsa_distance, np.float64))
        by_lam[lams[0]].update(lsa_distance=lsa_mean, lsa_distance_se=lsa_se)
        return Measurement(quantities, context)
    stat = paired_slopes(error, lams)
    first = "first generation of the fit"
    quantities[GROWS] = _series(stat["collapse"][:, None], first, [0])
    quantities[BOUNDED] = _series(stat["bounded"].T, LAM, stat["lams"])
    quantities[RESOLVED] = _series(stat["resolved"][:, None], first, [point["generations"] // 2])
    context["late_slope"] = _series(stat["late"].T, LAM, stat["lams"])
    context["smallest_detectable"] = smallest_detectable_late_slope(stat, len(stat["lams"]))
    return Measurement(quantities, context)


def _a4_measure(key, point):
    spec = spec_of(point)
    if point["coupled"]:
        lam = point["lams"][0]
        coupled = tr.run_coupled(key, spec, lam, point["generations"], point["replicas"])
        for twin in (0, 1):
            check_finite(tr.LoopOutput(*(np.asarray(a)[:, twin] for a in coupled.loops)),
                         f"{lam}, twin {twin}")
        out = tr.LoopOutput(*(np.asarray(a)[None, :, 0] for a in coupled.loops))
        return summarise(out, point, coupled)
    out = tr.run_loops(key, spec, point["lams"], point["generations"], point["replicas"])
    for j, lam in enumerate(point["lams"]):
        check_finite(tr.LoopOutput(*(np.asarray(a)[j] for a in out)), lam)
    return summarise(out, point)


def a4_theory(point, context):
    """A4's rows (claim A4; docs/transformer.md §3 for the rows and their assumptions).

    Evidence, each per replica then mean ± SE over replicas (paired across ``lam``):
    ``exceeds`` collapse slope ``s0 > 0`` at ``lam = 0``; ``upper`` ``b(lam) -
    contraction_share(lam, G) s0 ≤ 0`` per ``lam > 0`` (Holm); ``exceeds`` ``s0 - mean b > 0``
    (the run resolves bounded from collapsing). Report only: ``icl_risk`` at the fitted
    ``gamma`` (fitted to the same networks), ``gamma*``, the linear-attention loop's risk
    and the coupled distances.
    """
    spec = spec_of(point)
    G = point["generations"]
    g_star = float(gamma_star(spec.context, spec.dim, spec.noise))
    out = {}
    for lam in point["lams"]:
        c = context["lams"][lam]
        out[per_lam("test error", lam)] = Theory(
            "report", c["risk_at_gamma"], "icl_risk(fitted gamma) (fitted to the same networks)")
        out[per_lam("effective gamma", lam)] = Theory("report", np.full(G, g_star),
                                                      "gamma* = N/(N+d+1+sigma^2)")
        out[per_lam("linear-attention loop test error", lam)] = Theory(
            "report", c["lsa_risk"], "icl_risk(trained LSA gamma)")
        if "lsa_distance" in c:
            out[per_lam("coupled distance", lam)] = Theory(
                "report", c["lsa_distance"], "linear attention trained in the same coupled loops")
    if point["coupled"]:  # a coupled point measures the coupled distance only (report rows)
        return out
    # Effects are asserted only where the replicas resolve them at nearly every seed (power
    # >= 0.99): with 3 replicas Student t has 2 dof and needs t > 7 at the 0.01 level; the
    # resolved contrast had t = 5.2 at 6 replicas (quick) and 3.5 (default): below 16
    # replicas it is shown, not tested.
    for row, label, fewest in ((GROWS, "0 (collapse: grows)", EFFECT_REPLICAS),
                               (RESOLVED, "0 (late slopes below the collapse rate)",
                                RESOLVED_REPLICAS)):
        tested = point["replicas"] >= fewest
        out[row] = Theory("exceeds" if tested else "report", np.zeros(1),
                          label + ("" if tested else f" (not tested below {fewest} replicas)"))
    out[BOUNDED] = Theory("upper", 0.0, "0: late slope <= (1-lam)^(G/2) s0, paired per replica")
    return out


def _a4_notes(point, measured, theory, context):
    spec = spec_of(point)
    G = point["generations"]
    g_star = float(gamma_star(spec.context, spec.dim, spec.noise))
    tag = " (coupled)" if point["coupled"] else ""
    best = float(icl_risk(g_star, spec.context, spec.dim, spec.noise))
    notes = []
    for lam in point["lams"]:
        err, c = measured[per_lam("test error", lam)], context["lams"][lam]
        risk_fit = np.asarray(theory[per_lam("test error", lam)].value)
        notes += [f"A4 lam={lam}{tag}: test error {err.mean[0]:.3f} ± {err.se[0]:.2g} (i=0) -> "
                  f"{err.mean[-1]:.3f} ± {err.se[-1]:.2g} (i={G - 1}); replicas={err.replicas}; "
                  f"zero predictor d+sigma^2={spec.dim + spec.noise ** 2:.3g}, LSA optimum "
                  f"icl_risk(gamma*)={best:.3g}",
                  f"A4 lam={lam}{tag}: effective gamma {c['gamma'][0]:.3f} (i=0) -> "
                  f"{c['gamma'][-1]:.3f} (i={G - 1}) vs gamma*={g_star:.3f}; R^2 of the linear "
                  f"readout {c['linearity'][0]:.2f} -> {c['linearity'][-1]:.2f}; "
                  f"icl_risk(fitted gamma)/measured error in "
                  f"[{np.min(risk_fit / err.mean):.2f}, {np.max(risk_fit / err.mean):.2f}] "
                  "(report only: the network is not a linear-attention layer, and gamma is "
                  "fitted to it)"]
        distance = measured.get(per_lam("coupled distance", lam))
        if distance is not None:
            b, b_se = c["lsa_distance"], c["lsa_distance_se"]
            notes.append(f"A4 lam={lam} coupled (prompt 0 of S0 replaced, all keys shared): "
                         f"transformer E mean_P (f_i - f'_i)^2 = {distance.mean[0]:.3g} (i=0) -> "
                         f"{distance.mean[-1]:.3g} ± {distance.se[-1]:.2g} (i={G - 1}); linear "
                         f"attention {b[0]:.3g} -> {b[-1]:.3g} ± {b_se[-1]:.2g}; transformer/LSA "
                         f"at i={G - 1}: {distance.mean[-1] / max(b[-1], 1e-300):.3g}; "
                         f"pairs={distance.replicas}")
    if GROWS in measured:
        s0, late = measured[GROWS], context["late_slope"]
        notes.append(f"A4 collapse slope s0 (lam=0, all generations): {s0.mean[0]:.4f} ± "
                     f"{s0.se[0]:.2g} per generation; replicas={s0.replicas} (paired: the same "
                     "prompts and keys at every lam)")
        for k, lam in enumerate(late.x):
            notes.append(f"A4 lam={lam:g}: late-half slope {late.mean[k]:.4f} ± {late.se[k]:.2g} "
                         f"vs tolerated (1-lam)^(G/2) s0 = "
                         f"{contraction_share(lam, G) * s0.mean[0]:.4f}; paired contrast "
                         f"{measured[BOUNDED].mean[k]:.4f} ± {measured[BOUNDED].se[k]:.2g}; "
                         f"smallest late slope this run flags (about half the time): "
                         f"{context['smallest_detectable'][k]:.4f} "
                         f"({context['smallest_detectable'][k] / s0.mean[0]:.2f} s0)")
        r = measured[RESOLVED]
        notes.append(f"A4: s0 - mean late slope = {r.mean[0]:.4f} ± {r.se[0]:.2g} (exceeds 0 at "
                     f"one-sided 0.01: the late slopes are resolved below the collapse rate)")
    return notes


def a4_figure(record):
    """Test error, effective gamma and coupled distance per lam: ``verify.figures_transformer``."""
    from verify import figures_transformer

    return figures_transformer.a4_figure(record)


A4 = register(Claim(
    "A4", "Trained softmax transformer (in-context regression) in the loop: bounded for "
    "lam > 0, grows at lam = 0; effective gamma and coupled stability vs linear attention",
    _a4_grid, _a4_measure, a4_theory, notes=_a4_notes, figure=a4_figure))
