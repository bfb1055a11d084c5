"""Claims A3-mean, A3-categorical, A3-ridge (paper A): a constant ``lam > 0`` keeps the
error bounded uniformly in ``i``; ``lam = 0`` collapses (docs/paper_a.md 5.4, 6.1, 7.7)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from bounds.models import mean_estimation as mean_bounds
from bounds.models import ridge as ridge_bounds
from sims.model import GenerativeModel
from sims.models.ridge import ridge_spec
from verify.claim import Claim, Theory, per_mode, register
from verify.claims.paper_a_setting import (HALF_WIDTH, RIDGE_B, RIDGE_RHO, RIDGE_TAU, RIDGE_W_STAR,
                                           categorical_error_exact, mean_error_exact,
                                           over_replicas, report_generations, ridge_model,
                                           run_loop, se_notes, sizes)


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


@dataclasses.dataclass(frozen=True)
class A3Measure:
    """Error curve, and for ``lam = 0`` the paired growth ``err_i - err_0`` and
    ``err_i - err_1`` on the same replicas.

    Part: ``model``, the generator refitted in the loop (``None``: the grid point's model);
    ``control(A3["mean"], model=broken)`` runs a broken simulator (a negative control).
    """

    model: GenerativeModel | None = None

    def __call__(self, key, point):
        return _a3_measure(key, point, self.model)


def _a3_measure(key, point, model):
    traj = run_loop(key, point, model=model, reduce=False)
    i = np.concatenate([[0], report_generations(point["generations"])])
    err = np.asarray(traj["error"])
    out = {A3_ERR: over_replicas(err[:, i], i)}
    if point["lam"] > 0 or point["model"] == "ridge":
        out[A3_SUP] = out[A3_ERR]
    if point["model"] == "ridge":
        out[A3_NORM] = over_replicas(np.asarray(traj["weight_sq"])[:, i], i)
    if point["lam"] == 0:
        later = i[i >= 1]
        out[A3_COLLAPSE] = over_replicas(err[:, later] - err[:, :1], later)
        out[A3_GROWTH] = over_replicas(err[:, later[later >= 2]] - err[:, 1:2], later[later >= 2])
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


@dataclasses.dataclass(frozen=True)
class A3Theory:
    """A3: exact error curve (mean, categorical), its uniform-in-i bound for ``lam > 0``
    (ridge: the L2 bound of docs 7.7), and for ``lam = 0`` the asserted collapse (paired
    growth exceeds 0). Negative controls: ``keep_power=2`` (``(1-lam) -> (1-lam)^2``);
    ``drop="loop"`` keeps only the generation-0 error (mean, categorical), ``drop="w_star"``
    the ``||w*||`` term of the ridge bound."""

    keep_power: int = 1
    drop: str | None = None

    def __call__(self, point):
        keep_power, drop = self.keep_power, self.drop
        i = np.concatenate([[0], report_generations(point["generations"])])
        n, m, lam = sizes(point)
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
                     + se_notes(point, meas, theory, A3_SUP))
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
    "lam = 0 collapses", _a3_grid_for(model), A3Measure(), A3Theory(), notes=_a3_notes,
    figure=a3_figure)) for model in ("mean", "categorical", "ridge")}
