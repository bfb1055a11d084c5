"""Claim A1 (paper A): R3 term by term.

``E[R_p0(h_i) - R_hat_{S_i}(h_i)] <= stability + recursive stability + shift`` (+
concentration = 0), and each term against the measured quantity it bounds, for the mean,
categorical and ridge loops of ``verify.claims.paper_a_setting`` (docs/paper_a.md 9.2).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from sims.coupled import run_coupled
from verify.claim import Claim, Theory, measured, per_mode, register
from verify.claims.paper_a_setting import (BATCH, categorical_error_exact, coupler,
                                           coupling_tv_metric, gap_bound, loss_constants,
                                           mean_gap_exact, model_and_truth, plan_for, r2_values,
                                           report_generations, ridge_shift_estimate, run_loop,
                                           scaled, se_notes, sizes)


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


# The A1 rows: the total, then each R3 term against the quantity it bounds (docs 9.2).
GAP = "gap <= R3 bound"
TERM_REAL = "term real: lam E[R_p0(h) - R_S0(h)] <= lam beta_N (1 + m gamma_(i-1))"
TERM_SYNTH = "term learner stability: (1-lam) E[R_G(h) - R_Z(h)] <= (1-lam) beta_N"
TERM_SHIFT = "term shift: (1-lam) E[R_p0(h) - R_G(h)] <= (1-lam) M E TV(p0, G_(i-1))"
TERM_TV = "term shift TV: (1-lam) M E TV(p0, G_(i-1)) <= its bound"
TERM_REC = "term recursive: lam beta_N m E TV(G_(i-1), G'_(i-1)) <= lam beta_N m gamma_(i-1)"
CAPPED = " [R2 capped at 1: report]"
TERM_PREFIX = "term "


def _a1_gamma(key, point, generations):
    """Coupled-loop ``E TV(G_j, G'_j)`` (maximal coupling) at ``generations``: an
    independent run (its own key) of the pair of loops behind R2 (docs 8)."""
    model, truth = model_and_truth(point["model"])
    metric = coupling_tv_metric(point["model"])
    # 4096 pairs resolve the recursive term to ~2%; more would only cost time
    moments = run_coupled(jax.random.fold_in(key, 1), model, truth, plan_for(point), metric,
                          replaced_index=0, replicas=min(point["replicas"], 4096),
                          coupler=coupler(point["model"], "maximal"), batch_size=BATCH)
    return measured(moments, "gamma", np.arange(point["generations"]), select=generations)


def _recursive_term_rows(point, i) -> np.ndarray | None:
    """Where A1 tests the recursive term: the generations whose R2 is below 1 (a mask over
    ``i``), or ``None`` when A1 runs no coupled loops at this point. No maximal coupler for
    ridge (R2 is not proved there). Coupled runs only where they share their compilation with
    A2-gamma (lam in 0.2 .. 0.8; at m = 19n a pair of loops would cost more than the rest of
    the point) and test more than gamma_0. Measure and theory both ask here, so they always
    state the same rows."""
    n, m, lam = sizes(point)
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
    n, m, lam = sizes(point)
    if m == 0:  # lam = 1: the gap is the one-fit gap on n i.i.d. points, bounded by beta_n
        return out
    beta, loss_range = loss_constants(point)
    out[TERM_REAL] = scaled(measured(moments, "real_part", axis, select=i), lam)
    out[TERM_SYNTH] = scaled(measured(moments, "synthetic_part", axis, select=i), 1 - lam)
    out[TERM_SHIFT] = scaled(measured(moments, "shift_part", axis, select=i), 1 - lam)
    out[TERM_TV] = scaled(measured(moments, "tv_prev", axis, select=i), (1 - lam) * loss_range)
    tested = _recursive_term_rows(point, i)
    if tested is not None:
        gamma = scaled(_a1_gamma(key, point, i - 1), lam * beta * m)
        gamma = gamma._replace(x=i)
        for name, mask in ((TERM_REC, tested), (TERM_REC + CAPPED, ~tested)):
            if mask.any():
                out[name] = scaled(gamma, 1.0, mask)
    return out


@dataclasses.dataclass(frozen=True)
class A1Theory:
    """A1's theory: R3's total (upper), each term against its measured counterpart (upper),
    and the exact gap where known.

    Parts (swapped with ``verify.control``, they are negative controls): ``drop`` (a
    ``GapBound`` field) removes one term, ``keep_power=2`` replaces every ``(1-lam)`` factor by
    ``(1-lam)^2``, and ``scale`` multiplies terms, as ``(field, factor)`` pairs
    (``(("recursive_stability", 0.5), ("distribution_shift", 0.5))`` halves the loop terms).
    """

    drop: str | None = None
    keep_power: int = 1
    scale: tuple = ()

    def __call__(self, point):
        drop, keep_power, scale = self.drop, self.keep_power, self.scale
        i = report_generations(point["generations"])
        bound = gap_bound(point, i)
        n, m, lam = sizes(point)
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


def _a1_notes(point, meas, theory):
    g, th = meas[GAP], theory[GAP]
    ratio = g.mean / np.asarray(th.value)
    j = int(np.argmax(ratio))
    head = f"A1 {point['model']} n={point['n']} lam={point['lam']}"
    notes = [f"{head}: tightness gap/bound in [{ratio.min():.3g}, {ratio.max():.3g}], largest at "
             f"i={int(g.x[j])} ({g.mean[j]:.4g} vs {float(np.asarray(th.value)[j]):.4g}); "
             + se_notes(point, meas, theory, GAP)]
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
    _a1_grid, a1_measure, A1Theory(), notes=_a1_notes, figure=a1_figure))
