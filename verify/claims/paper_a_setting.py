"""Paper A's setting, shared by A1, A2-gamma, A3, A5: three models, their loops, closed forms.

Three models, every constant explicit (docs/paper_a.md):

* ``mean``: real data ``mu + U[-a, a]``, generator ``mean(S) + U[-a, a]``, learner
  ``mean(S)``, squared loss (the bounded variant of THEORY section 4);
* ``categorical``: the empirical law on ``K`` symbols (``alpha = 0``) is both the
  generator and the learner, with the loss ``l(p, x) = 1 - p(x)`` in ``[0, 1]``;
* ``ridge``: inputs from a fixed pool, labels clipped to ``[-B, B]``, penalty ``rho``;
  the ridge fit is both the label generator and the learner, squared loss.

The measured generalization gap is ``E[R_p0(h_i) - R_hat_{S_i}(h_i)]``: ``R_p0`` is
computed exactly per replica (``sims.gap_metrics``), ``R_hat`` is the plain average over
the ``N`` training points, and ``E`` is the MC mean over replicas. All loops use the
``reuse`` scheme; ``lam = 0`` uses ``synthetic``. Every loop run of A1/A3/A5 uses the same
(model, plan, metric, batch size) objects, so a plan shared by several claims compiles once.
This module declares no claim: it holds what the claims share (models and truths, plans,
exact predictions, R2 and R3 at a grid point, small helpers for rows).
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
from sims import gap_metrics
from sims.coupled import maximal_categorical, shared_keys
from sims.models import categorical, mean_estimation, mean_estimation_coupler
from sims.models.ridge import ridge, ridge_pool, ridge_spec
from verify.claim import Measured


GEN = "generation i"
BATCH = 4096  # one batch size for every run: a shared plan compiles once

# The three models.
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


# Besides the gap, each metric splits it as in the proof of R3 (docs 4.2, 9.1), for
# generations i >= 1 of a ``reuse`` buffer [S0 (n) | Z_i (m)]:
#   gap = lam real_part + (1-lam) shift_part + (1-lam) synthetic_part, with
#   real_part = R_p0(h_i) - R_hat_{S0}(h_i), shift_part = R_p0(h_i) - R_{G_{i-1}}(h_i),
#   synthetic_part = R_{G_{i-1}}(h_i) - R_hat_{Z_i}(h_i).
# Buffers without a synthetic block (m = 0, or ``synthetic``'s [Z_i]) report zeros.


def metric_for(name: str, n: int):
    """The per-generation metric of a model name (``sims.gap_metrics``; cached objects)."""
    if name == "mean":
        return gap_metrics.mean_gap_metric(HALF_WIDTH, n)
    if name == "categorical":
        return gap_metrics.categorical_gap_metric(n)
    return gap_metrics.ridge_gap_metric(ridge_model(), n)


def coupling_tv_metric(name: str):
    """``TV(G_i, G'_i)`` of a coupled pair of a model name's loops (``sims.gap_metrics``)."""
    if name == "mean":
        return gap_metrics.mean_coupling_tv_metric(HALF_WIDTH)
    if name == "categorical":
        return gap_metrics.categorical_coupling_tv_metric()
    return gap_metrics.ridge_coupling_tv_metric(ridge_model())


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


def sizes(point):
    plan = plan_for(point)
    m = plan.m[0] if plan.m else 0
    return plan.n, m, plan.n / (plan.n + m)


def report_generations(generations: int) -> np.ndarray:
    """Generations with rows in the report: a log-spaced subset of ``1 .. G-1``."""
    picks = [1, 2, 3, 5, 10, 20, 30, 40, 50, 75, 100]
    return np.asarray([i for i in picks if i < generations] or [generations - 1])


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


@functools.lru_cache(maxsize=None)
def ridge_shift_estimate(n: int, lam: float, generations: int, replicas: int):
    """``E TV(p0, G_{i-1})`` of the ridge loop: MC mean and SE from an *independent* run
    (fixed seed, not the claim's), so the bound is a fixed function of the grid point."""
    point = dict(model="ridge", n=n, lam=lam, generations=generations, replicas=replicas)
    moments = run_loop(jax.random.key(20250611), point)
    return np.asarray(moments.mean["tv_prev"]), np.asarray(moments.se["tv_prev"])


def gap_bound(point, i) -> st.GapBound:
    """The R3 bound of a grid point at generations ``i >= 1`` (terms separately)."""
    n, m, _ = sizes(point)
    model = point["model"]
    if model == "mean":
        return mean_bounds.mean_estimation_gap_bound(HALF_WIDTH, n, m, i)
    if model == "categorical":
        return categorical_bounds.categorical_gap_bound(category_probs(), n, m, i)
    tv_mean, _ = ridge_shift_estimate(n, point["lam"], point["generations"], point["replicas"])
    spec = ridge_spec(ridge_model())
    return ridge_bounds.ridge_gap_bound(spec.feature_bound, RIDGE_B, RIDGE_RHO, RIDGE_TAU, n, m, i,
                              np.clip(tv_mean[i], 0.0, 1.0))


def loss_constants(point) -> tuple[float, float]:
    """``(beta_N, M)``: the learner's replace-one stability on ``N`` points and the loss
    range of a grid point's model (docs 5.5, 6.3, 7.1-7.2)."""
    n, m, _ = sizes(point)
    if point["model"] == "mean":
        const = mean_bounds.mean_estimation_uniform_constants(HALF_WIDTH, n, m)
        return float(const.beta_N), float(const.loss_bound)
    if point["model"] == "categorical":
        return 1.0 / (n + m), 1.0
    kappa = ridge_spec(ridge_model()).feature_bound
    return (float(ridge_bounds.ridge_uniform_stability(kappa, RIDGE_B, RIDGE_RHO, n + m)),
            float(ridge_bounds.ridge_loss_bound(kappa, RIDGE_B, RIDGE_RHO)))


def scaled(meas: Measured, factor: float, select=slice(None)) -> Measured:
    return Measured(meas.x[select], factor * meas.mean[select], abs(factor) * meas.se[select],
                    meas.replicas, meas.x_label)


def se_notes(point, meas, theory, bound_quantity):
    """Replica count, largest SE, and SE relative to the smallest bound slack it must resolve."""
    g, th = meas[bound_quantity], theory[bound_quantity]
    slack = np.asarray(th.value) - g.mean
    worst = float(np.max(g.se / np.maximum(np.abs(slack), 1e-300)))
    return (f"replicas={g.replicas}, max SE={np.max(g.se):.3g}, smallest slack "
            f"(bound - measured)={np.min(slack):.3g}, max SE/|slack|={worst:.3f}")


def over_replicas(values, x, x_label=GEN) -> Measured:
    """MC mean and SE over the replica axis of ``values`` (replicas x len(x))."""
    values = np.asarray(values, np.float64)
    count = values.shape[0]
    return Measured(np.asarray(x), values.mean(0), values.std(0, ddof=1) / math.sqrt(count),
                    count, x_label)


def coupler(model_name, coupling):
    model, _ = model_and_truth(model_name)
    if coupling == "shared":
        return shared_keys(model)
    if model_name == "mean":
        return mean_estimation_coupler("uniform", HALF_WIDTH)
    if model_name == "categorical":
        return maximal_categorical(NUM_SYMBOLS)
    raise ValueError(f"no maximal coupler for {model_name!r}")


def r2_values(point, *, generations=None, keep_power: int = 1, drop: str | None = None,
              uncapped: bool = False) -> tuple[np.ndarray, float]:
    """R2 (capped at 1 unless ``uncapped``) and the contraction ``c (1-lam)``, at
    ``generations`` (default: 0 and the report generations); base ``gamma_0`` on ``n``.

    ``keep_power=2`` uses ``c (1-lam)^2`` (i.e. ``m (1-lam)`` synthetic points) and
    ``drop="propagation"`` drops the ``m gamma_{i-1}`` term: negative controls.
    """
    i = (np.concatenate([[0], report_generations(point["generations"])])
         if generations is None else np.asarray(generations))
    n, m, lam = sizes(point)
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
