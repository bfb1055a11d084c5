"""Claim A2-gamma (paper A): recursive stability measured by coupled loops (S0 vs S0')
against R2 (docs/paper_a.md 8)."""
from __future__ import annotations

import dataclasses

import numpy as np

from sims.coupled import run_coupled
from verify.claim import Claim, Theory, measured, per_mode, register
from verify.claims.paper_a_setting import (BATCH, category_probs, coupler, coupling_tv_metric,
                                           model_and_truth, plan_for, r2_values,
                                           report_generations, scaled)


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
    metric = coupling_tv_metric(point["model"])
    moments = run_coupled(key, model, truth, plan_for(point), metric, replaced_index=0,
                          replicas=point["replicas"], coupler=coupler(point["model"],
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
            out[name] = scaled(gamma, 1.0, mask)
    return out


A2_R2 = "E TV(G_i, G'_i) <= R2"
A2_CAPPED = "E TV(G_i, G'_i) vs R2 [R2 >= 1, capped: report]"
A2_SHARED = "E TV(G_i, G'_i) vs R2"


def r2_tested(point) -> np.ndarray:
    """Rows where the claim's R2 is below 1: only there is ``E TV <= R2`` a test (a capped
    R2 = 1 only says TV <= 1). Fixed by the claim's R2, also under wrong-theory controls."""
    return r2_values(point, uncapped=True)[0] < 1.0


@dataclasses.dataclass(frozen=True)
class A2Theory:
    """R2 (upper where below 1, report where capped) for maximal couplings, and exact
    values where derived (docs 8.2-8.3). Parts (negative controls when swapped with
    ``verify.control``): ``keep_power=2`` uses ``c (1-lam)^2``; ``drop="propagation"``
    drops R2's ``m gamma_(i-1)`` term."""

    keep_power: int = 1
    drop: str | None = None

    def __call__(self, point):
        keep_power, drop = self.keep_power, self.drop
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
    _a2_grid, _a2_measure, A2Theory(), notes=_a2_notes))
