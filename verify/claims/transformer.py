"""Claim A4: a trained softmax transformer that learns in context, inside THEORY §1's loop.

The loop (``sims.models.transformer``, docs/transformer.md §2): ``G_0`` trains on ``n`` real
prompts; generation ``i`` trains a fresh network on the same ``n`` real prompts plus ``m``
synthetic prompts drawn from ``G_{i-1}``'s joint law (fresh inputs and contexts from the
input law, query label ``G_{i-1}(P) + N(0, sigma^2)``), ``lam = n/(n+m)``; at ``lam = 0`` on
``m = n`` synthetic prompts only. Every ``lam`` of a mode runs on the same replica keys
(paired). Beside the loop, on the same keys: "real only" (``G_0``, the ``n`` real prompts)
and "all real" (``n + m`` real prompts). Separately keyed calibration runs measure the
one-generation learning errors ``eps(n)`` and ``eps(N)``.

Rows (docs/transformer.md §3), with ``D_i = sqrt(mean_P (f_i(P) - f_B(P))^2)`` the distance
of ``G_i`` to the Bayes predictor on fresh real test prompts:

* upper: ``G_0``'s test error ``<= icl_risk(gamma*)``: the network learns in context at
  least as well as the best linear-attention layer;
* exact: the optimal linear-attention layer's test error on the same prompts equals
  ``icl_risk(gamma*)`` (the prompt law and the test set are right);
* exceeds: at ``lam = 0`` the excess risk grows over generations ``i >= 1`` (per-replica
  slope, a paired trend test);
* upper, per ``lam`` and generation: ``E D_i`` at most R1 in ``L2``,
  ``(1-lam)^i E eps(n) + E eps(N) (1-(1-lam)^i)/lam``, with ``eps`` from the calibration
  runs (a prediction made before, and independently of, the loops it is tested on);
* exceeds: real data help: the excess risk at the last generation, averaged over
  ``lam > 0``, is below that of the ``lam = 0`` loop (paired per replica; per ``lam`` the
  contrast is a report row: at ``lam = 0.1`` and 6 generations it is too small to resolve);
* upper, per ``m`` and generation (R2, docs/transformer.md §5): coupled loops with ``m``
  synthetic prompts per generation (``lam = n/(n+m)``), twins whose real sets differ in one
  prompt: their mean TV ``gamma_i`` is at most R2 unrolled from ``gamma_0 = eps_n``,
  ``gamma_i = eps_N (1 + m gamma_{i-1})``, with ``eps_n``, ``eps_N`` measured on twin fits in
  separate runs; a bound ``>= 1`` is vacuous (never evidence). One set of rows per
  architecture whose coupled loops ran (``coupled_architectures``: default and full run every
  one of ``architectures``, on the same keys; quick the A4 network only), each from its own
  constants (``r2_row(m, arch)``; the A4 network's rows keep their names).

Report rows: the test errors and both controls per generation, the Bayes risk (ridge
posterior mean), the effective ``gamma``, R2 at the constants' means with its SE, and
``eps_n`` and ``c = N eps_N`` of every measured architecture beside R2's contraction threshold
``N/m``, and per coupled architecture and ``m`` the paired change ``gamma_last - gamma_1``.
Notes say per architecture and ``m`` which side of ``m eps_N < 1`` it is on and whether its loop
grew; R2 is an upper bound, so on the non-contracting side it predicts nothing beyond possible
growth.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from bounds.models.linear_attention import gamma_star, icl_risk
from bounds.models.transformer import l2_recursion_bound
from bounds.stability import recursive_stability_bound
from sims.models import transformer as tr
from verify import stats
from verify.claim import Claim, Measured, Measurement, Theory, per_mode, register

GEN = "generation i"
LAM = "lam"
QUALITY = "G_0 test error (n real prompts)"
LSA = "optimal linear-attention test error"
BAYES = "Bayes risk (ridge posterior mean)"
GROWS = "lam = 0: slope of excess risk over i >= 1 (grows)"

# Fewest replicas at which an effect row is tested (below, Student t's dof are too few to
# resolve the effect at nearly every seed; docs/statistics.md section 5: quick's 6 replicas
# failed the growth row at seed 1, t = 2.96 against 3.36).
EFFECT_REPLICAS = 8
# A4's independent runs (loops, calibration, coupled loops, one-fit constants) in flight at once.
RUNS_AT_ONCE = 2

# --- every size of A4 in one place -------------------------------------------------------------
# Work is (replicas + calibration replicas) x trainings x steps x batch. Per replica the loop
# trains 1 + len(lams) (all real) + len(lams) (generations - 1) networks; a calibration replica
# 1 + len(lams). At d = 3, N = 10, sigma = 0.5, 200 Adam steps of 64 at peak rate 2e-2 reach a
# test error near 0.9 (icl_risk(gamma*) = 1.145, Bayes 0.36; docs/transformer.md §1).
_NETWORK = dict(dim=3, context=10, width=16, heads=2, layers=2, mlp=32, batch=64,
                learning_rate=2e-2, test_prompts=1024)
# R2 (docs/transformer.md §5): coupled loops with m synthetic prompts per generation
# (``stability_m``, lam = n/(n+m)) over ``stability_generations``, ``pairs`` twin pairs, and
# the one-fit constants of the production network and of every ``architectures`` entry
# (spec overrides) from separately keyed twin fits. Coupled loops run for every architecture
# where ``coupled_architectures`` (default, full), for the production network alone in quick
# (its grid, and the baseline's quick point, stay as they were). m = 8, where c(m = 4) put the
# two networks on opposite sides of m eps_N < 1, is in full only: measured at default size both
# are below 1 there (docs §5), and it took default A4 2 minutes past its 6-minute budget.
SIZES = {
    # quick is the tests' grid too (tests/test_transformer.py), so the test suite measures it
    # once: 6 replicas (its effect rows are reports, tested from EFFECT_REPLICAS = 8; the tests
    # test them on these 6 replicas at seed 0 with ``effect_replicas=6``).
    "quick": dict(spec=dict(_NETWORK, steps=150, warmup=15, train_prompts=2000,
                            test_prompts=512),
                  generations=4, replicas=6, lams=(0.0, 0.5),
                  stability=dict(stability_m=[1, 4], stability_generations=2, pairs=4,
                                 architectures=[dict(layers=1)])),
    "default": dict(spec=dict(_NETWORK, steps=250, warmup=25, train_prompts=4000),
                    generations=6, replicas=8, lams=(0.0, 0.1, 0.3, 0.5),
                    stability=dict(stability_m=[1, 4], stability_generations=4, pairs=8,
                                   architectures=[dict(layers=1)], coupled_architectures=True)),
    "full": dict(spec=dict(_NETWORK, steps=400, warmup=40, train_prompts=4000),
                 generations=10, replicas=16, lams=(0.0, 0.1, 0.3, 0.5),
                 stability=dict(stability_m=[1, 2, 4, 8], stability_generations=6, pairs=16,
                                architectures=[dict(layers=1)], coupled_architectures=True)),
}
SPEC_FIELDS = ("dim", "context", "noise", "width", "heads", "layers", "mlp", "steps", "batch",
               "learning_rate", "warmup", "train_prompts", "test_prompts", "probe_prompts")


def _a4_grid(mode):
    size = per_mode(mode, SIZES["quick"], SIZES["default"], SIZES["full"])
    return [dict(size["spec"], **size["stability"], generations=size["generations"],
                 replicas=size["replicas"], lams=list(size["lams"]))]


def spec_of(point) -> tr.TransformerSpec:
    return tr.make_spec(**{k: point[k] for k in SPEC_FIELDS if k in point})


def per_lam(quantity: str, lam: float) -> str:
    return f"{quantity} (lam={lam:g})"


def distance_row(lam: float) -> str:
    return per_lam("D_i = L2 distance to Bayes <= R1", lam)


def helps_row(lam: float) -> str:
    return per_lam("excess(lam=0) - excess(lam) at the last generation", lam)


HELPS = "excess(lam=0) - mean over lam > 0 of excess(lam), last generation (real data help)"
PRODUCTION = "A4 network"


def _arch_suffix(arch: str) -> str:
    # the production network keeps its row names (the committed baseline keys on them)
    return "" if arch == PRODUCTION else f", {arch}"


def r2_row(m: int, arch: str = PRODUCTION) -> str:
    return f"gamma_i = twins' mean TV <= R2 (m={m}{_arch_suffix(arch)})"


def growth_row(m: int, arch: str = PRODUCTION) -> str:
    return f"gamma_last - gamma_1 of the coupled loops, paired (m={m}{_arch_suffix(arch)})"


def architecture(overrides) -> str:
    """Label of a network: the production one, or its spec overrides."""
    return ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or PRODUCTION


def r2_prediction_row(m: int, arch: str = PRODUCTION) -> str:
    return f"R2 at the means of eps from separate twin fits (m={m}{_arch_suffix(arch)})"


def eps_n_row(arch: str) -> str:
    return f"eps_n: twin fits on n real prompts ({arch})"


def constant_row(arch: str) -> str:
    return f"c = N eps_N: twin fits on N = n + m real prompts ({arch})"


def _series(values, label=GEN, x=None, dof=None):
    values = np.asarray(values, np.float64)
    n = values.shape[0]
    se = values.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(values.shape[1:], np.nan)
    mean = np.atleast_1d(values.mean(0))
    x = np.arange(mean.shape[0]) if x is None else np.asarray(x)
    return Measured(x, mean, np.atleast_1d(se), n, label, dof)


def bound_per_replica(first, all_real, lams, generations, recursion=l2_recursion_bound):
    """R1-in-L2 bound of every calibration replica: shape ``(replica, lam, generation)``.

    ``first``: ``eps(n)`` per replica; ``all_real``: ``eps(N)`` per replica and ``lam``. At
    ``lam = 0`` the synthetic-only set has ``N = n`` prompts, so ``eps(N) = eps(n)``. The bound
    is linear in both, so its mean over replicas is the bound at the means.
    """
    out = []
    for j, lam in enumerate(lams):
        eps = first if lam == 0 else all_real[:, j]
        out.append(np.stack([recursion(a, b, lam, generations) for a, b in zip(first, eps)]))
    return np.stack(out, 1)


def _welch_se_dof(se_a, n_a, se_b, n_b):
    """SE of a difference of two independent means and Welch's degrees of freedom."""
    a, b = np.asarray(se_a) ** 2, np.asarray(se_b) ** 2
    return np.sqrt(a + b), (a + b) ** 2 / (a ** 2 / (n_a - 1) + b ** 2 / (n_b - 1))


def r2_bound(eps_n, eps_N, m, generations) -> np.ndarray:
    """R2 unrolled: ``gamma_0 = eps_n`` (``G_0`` fits ``n`` real prompts), then
    ``gamma_i = eps_N (1 + m gamma_{i-1})``; broadcast over a leading axis of ``eps_n``.

    Claim A4 (A2's R2 for the trained transformer). Kind: upper, on the twins' mean TV
    ``gamma_i``; ``trivial = 1`` (a bound >= 1 is vacuous). Assumptions: every fit is
    ``eps_N`` replace-one stable in TV, with ``eps_n``, ``eps_N`` the separately measured
    one-fit constants; R2 is proved for a maximal coupling of the synthetic draws, the loops
    share keys instead. Proof: docs/paper_a.md §3.1 (``bounds.stability.
    recursive_stability_bound``); its use here: docs/transformer.md §5."""
    eps_n, eps_N = np.broadcast_arrays(np.asarray(eps_n, np.float64),
                                       np.asarray(eps_N, np.float64))
    return np.stack([np.asarray(recursive_stability_bound(b, m, generations, gamma_0=a))
                     for a, b in zip(eps_n.ravel(), eps_N.ravel())]).reshape(
        eps_n.shape + (generations,))


def r2_bound_se(eps_n, eps_N, m, generations, step=1e-6) -> np.ndarray:
    """SE of ``r2_bound`` at the means of the per-pair ``eps_n``, ``eps_N`` (delta method:
    each pair's linearised bound, so their correlation is counted, once)."""
    mean_n, mean_N = float(np.mean(eps_n)), float(np.mean(eps_N))
    base = r2_bound(mean_n, mean_N, m, generations)
    d_n = (r2_bound(mean_n + step, mean_N, m, generations) - base) / step
    d_N = (r2_bound(mean_n, mean_N + step, m, generations) - base) / step
    linear = np.outer(np.asarray(eps_n), d_n) + np.outer(np.asarray(eps_N), d_N)
    return linear.std(0, ddof=1) / np.sqrt(linear.shape[0])


def stability_rows(gammas, stabilities, point) -> tuple[dict, dict]:
    """R2 rows from coupled loops and one-fit constants measured on separate keys.

    ``gammas``: ``{architecture: gamma}``, each ``(pair, generation, m)``, for the
    architectures whose loops ran (the production one at least); ``stabilities``:
    ``{architecture: tr.Stability}`` of every measured architecture. Each architecture's R2
    rows use its own constants. Returns ``(quantities, context)``; ``ValueError`` names
    ``gammas`` when a loop has no constants or the production loop is missing.
    """
    ms, n = point["stability_m"], point["train_prompts"]
    if PRODUCTION not in gammas or set(gammas) - set(stabilities):
        raise ValueError(f"gammas must hold the {PRODUCTION!r} loops and only architectures "
                         f"with measured constants {sorted(stabilities)}, got {sorted(gammas)}")
    quantities, eps = {}, {}
    for arch, st in stabilities.items():
        eps_n, eps_N = np.asarray(st.eps_n, np.float64), np.asarray(st.eps_N, np.float64)
        eps[arch] = (eps_n, eps_N)
        quantities[eps_n_row(arch)] = _series(eps_n[:, None], "one fit", [n])
        quantities[constant_row(arch)] = _series(eps_N * (n + np.asarray(ms)), "m", ms)
    for arch, gamma in gammas.items():
        gamma, (eps_n, eps_N) = np.asarray(gamma, np.float64), eps[arch]
        G = gamma.shape[1]
        for j, m in enumerate(ms):
            loop = _series(gamma[:, :, j])
            b_se = r2_bound_se(eps_n, eps_N[:, j], m, G)
            se, dof = _welch_se_dof(loop.se, loop.replicas, b_se, eps_n.shape[0])
            quantities[r2_row(m, arch)] = loop._replace(se=se, dof=dof)
            quantities[r2_prediction_row(m, arch)] = Measured(  # report: R2 ± SE (figure band)
                np.arange(G), r2_bound(eps_n.mean(), eps_N[:, j].mean(), m, G), b_se,
                eps_n.shape[0], GEN)
            if G >= 3:  # did the loop grow after generation 1? (paired per twin pair)
                quantities[growth_row(m, arch)] = _series(
                    (gamma[:, -1, j] - gamma[:, 1, j])[:, None], GEN, [G - 1])
    context = {"eps": {arch: (float(eps[arch][0].mean()), eps[arch][1].mean(0))
                       for arch in gammas},
               "coupled": list(gammas)}
    return quantities, context


def summarise(out: tr.LoopOutput, cal: tr.Calibration, point) -> Measurement:
    """Rows of the point from its loops (``(replica, generation, lam)``) and calibration."""
    lams, G = point["lams"], point["generations"]
    excess = np.asarray(out.loop.excess, np.float64)
    distance = np.sqrt(excess)
    cal_first = np.sqrt(np.asarray(cal.first.excess, np.float64)[:, 0])
    cal_all = np.sqrt(np.asarray(cal.all_real.excess, np.float64)[:, 0])
    bound = bound_per_replica(cal_first, cal_all, lams, G)
    quantities, context = {}, {"lams": lams, "bound": bound.mean(0),
                               "eps_n": _series(cal_first[:, None]),
                               "eps_N": _series(cal_all)}
    quantities[QUALITY] = _series(np.asarray(out.loop.test_error)[:, :1, 0])
    quantities[LSA] = _series(np.asarray(out.lsa_error)[:, :1])
    quantities[BAYES] = _series(np.asarray(out.bayes_error)[:, :1])
    for j, lam in enumerate(lams):
        quantities[per_lam("test error", lam)] = _series(out.loop.test_error[:, :, j])
        quantities[per_lam("all-real control test error", lam)] = _series(
            out.all_real.test_error[:, :, j])
        quantities[per_lam("real-only control test error", lam)] = _series(
            np.broadcast_to(np.asarray(out.loop.test_error)[:, :1, j], excess.shape[:2]))
        quantities[per_lam("excess risk", lam)] = _series(excess[:, :, j])
        quantities[per_lam("effective gamma", lam)] = _series(out.loop.gamma[:, :, j])
        # E D_i against a bound estimated from independent replicas: the SE of the difference
        # adds both, with Welch's degrees of freedom.
        loop = _series(distance[:, :, j])
        b_se = bound[:, j].std(0, ddof=1) / np.sqrt(bound.shape[0])
        se, dof = _welch_se_dof(loop.se, loop.replicas, b_se, bound.shape[0])
        quantities[distance_row(lam)] = loop._replace(se=se, dof=dof)
    if 0.0 in lams and G >= 3:
        zero = lams.index(0.0)
        quantities[GROWS] = _series(stats.per_replica_slope(excess[:, 1:, zero])[:, None],
                                    "first generation of the fit", [1])
        positive = [j for j, lam in enumerate(lams) if lam > 0]
        for j in positive:
            quantities[helps_row(lams[j])] = _series(
                (excess[:, -1, zero] - excess[:, -1, j])[:, None], GEN, [G - 1])
        if positive:  # pooled over lam > 0: one effect, resolved where single lam's are not
            quantities[HELPS] = _series(
                (excess[:, -1, zero] - excess[:, -1, positive].mean(-1))[:, None], GEN, [G - 1])
    return Measurement(quantities, context)


@dataclasses.dataclass(frozen=True)
class Measure:
    """A4's measurement; its parts (fields) are what a negative control swaps.

    Attributes:
      rules: how a generation's training set is formed (``tr.SECTION1``).
      spec_of: ``point -> TransformerSpec`` (the network and its training).
    """

    rules: Any = tr.SECTION1
    spec_of: Callable = spec_of

    def __call__(self, key, point):
        spec = self.spec_of(point)
        loop_key, calibration_key = jax.random.split(key)
        # R2: coupled loops, and the one-fit constants from separate keys (the same keys for
        # every architecture: paired, so architectures differ by the network alone).
        coupled_key, stability_key = jax.random.split(jax.random.fold_in(key, 1))
        ms, pairs = point.get("stability_m"), point.get("pairs")
        # Every spec is built (and validated) before any run starts.
        specs = {architecture(o): self.spec_of(dict(point, **o))
                 for o in (architectures(point) if ms else [])}
        coupled = [architecture(o) for o in coupled_architectures(point)] if ms else []
        # The runs are independent programs: two at a time, so one is traced while another
        # computes (numbers do not depend on it: each run has its own keys and program). An
        # error or Ctrl-C cancels the runs not yet started.
        pool = concurrent.futures.ThreadPoolExecutor(RUNS_AT_ONCE)
        try:
            out = pool.submit(tr.run_loops, loop_key, spec, point["lams"], point["generations"],
                              point["replicas"], self.rules)
            cal = pool.submit(tr.run_calibration, calibration_key, spec, point["lams"],
                              point["replicas"])
            gammas = {a: pool.submit(tr.run_coupled, coupled_key, specs[a], ms,
                                     point["stability_generations"], pairs) for a in coupled}
            stabilities = {a: pool.submit(tr.run_stability, stability_key, specs[a], ms, pairs)
                           for a in specs}
            measured = summarise(out.result(), cal.result(), point)
            if not ms:
                return measured
            quantities, context = stability_rows({a: f.result() for a, f in gammas.items()},
                                                 {a: f.result() for a, f in stabilities.items()},
                                                 point)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return Measurement(dict(measured.quantities, **quantities),
                           dict(measured.context, stability=context))


def architectures(point) -> list[dict]:
    """Spec overrides of every network whose one-fit constants are measured: the A4 network
    (``{}``) first, then the point's ``architectures`` (``ValueError`` names an unknown field)."""
    others = list(point.get("architectures", []))
    for overrides in others:
        unknown = sorted(set(overrides) - set(SPEC_FIELDS))
        if unknown:
            raise ValueError(f"architectures entries override spec fields {SPEC_FIELDS}, got "
                             f"{', '.join(unknown)}")
    return [{}] + others


def coupled_architectures(point) -> list[dict]:
    """Spec overrides of the networks whose coupled loops run: every one of
    ``architectures(point)`` where the point's ``coupled_architectures`` is true (default and
    full), else the A4 network alone (quick: the second network's loops would cost more than
    quick's budget; its constants are still measured). ``TypeError`` names the flag."""
    flag = point.get("coupled_architectures", False)
    if not isinstance(flag, bool):
        raise TypeError(f"coupled_architectures must be a bool, got {flag!r}")
    return architectures(point) if flag else [{}]


def best_linear_attention_risk(N, d, sigma) -> float:
    """``icl_risk(gamma*)``: the test error of the best linear-attention layer."""
    return float(icl_risk(gamma_star(N, d, sigma), N, d, sigma))


@dataclasses.dataclass(frozen=True)
class A4Theory:
    """A4's predictions; fields are swappable parts (negative controls).

    Attributes:
      bound_scale: multiplies the R1 bound (1: the bound; a control shrinks it).
      eps_scale: multiplies both one-fit constants in R2 (1: measured; a control halves
        them).
      effect_replicas: fewest replicas at which the effect rows are tested (the tests lower
        it to test them, at one seed, on the quick grid's 6 replicas).
      reference: ``(N, d, sigma) -> risk`` the network must reach (``icl_risk(gamma*)``).
    """

    bound_scale: float = 1.0
    eps_scale: float = 1.0
    effect_replicas: int = EFFECT_REPLICAS
    reference: Callable = None  # default: best_linear_attention_risk

    def __call__(self, point, context):
        spec = spec_of(point)
        best = (self.reference or best_linear_attention_risk)(spec.context, spec.dim, spec.noise)
        out = {QUALITY: Theory("upper", best, "icl_risk(gamma*): best linear attention"),
               LSA: Theory("exact", float(icl_risk(gamma_star(spec.context, spec.dim, spec.noise),
                                                   spec.context, spec.dim, spec.noise)),
                           "icl_risk(gamma*)"),
               }
        g_star = float(gamma_star(spec.context, spec.dim, spec.noise))
        for j, lam in enumerate(point["lams"]):
            out[distance_row(lam)] = Theory(
                "upper", self.bound_scale * context["bound"][j],
                "R1 in L2: (1-lam)^i eps(n) + eps(N)(1-(1-lam)^i)/lam, eps from separate runs")
            out[per_lam("effective gamma", lam)] = Theory(
                "report", np.full(point["generations"], g_star), "gamma*")
        if "stability" in context:
            st, n = context["stability"], point["train_prompts"]
            G = point["stability_generations"]
            for arch in st["coupled"]:  # each architecture's R2 from its own constants
                eps_n, eps_N = st["eps"][arch]
                for j, m in enumerate(point["stability_m"]):
                    out[r2_row(m, arch)] = Theory("upper", r2_bound(
                        self.eps_scale * eps_n, self.eps_scale * eps_N[j], m, G),
                        f"R2 ({arch}'s eps): gamma_0 = eps_n, gamma_i = eps_N (1 + m "
                        "gamma_{i-1}); eps from separate twin fits", trivial=1.0)
                    if G >= 3:
                        out[growth_row(m, arch)] = Theory(
                            "report", 0.0, "0: no growth after generation 1 (R2 bounds the "
                            "level only where m eps_N < 1; above, it predicts nothing)")
            threshold = Theory("report", [(n + m) / m for m in point["stability_m"]],
                               "1/(1-lam) = N/m: R2 contracts iff c (1-lam) < 1")
            for o in architectures(point):
                out[constant_row(architecture(o))] = threshold
        tested = point["replicas"] >= self.effect_replicas
        untested = "" if tested else f" (not tested below {self.effect_replicas} replicas)"
        effect = lambda label: Theory(  # noqa: E731
            "exceeds" if tested else "report", 0.0, label + untested)
        if 0.0 in point["lams"] and point["generations"] >= 3:
            out[GROWS] = effect("0 (collapse: the excess risk grows)")
            if any(lam > 0 for lam in point["lams"]):
                out[HELPS] = effect("0 (real data keep the error lower)")
        return out


def _a4_notes(point, measured, theory, context):
    spec = spec_of(point)
    G = point["generations"]
    q, lsa, bayes = measured[QUALITY], measured[LSA], measured[BAYES]
    notes = [f"A4 G_0 (n={spec.train_prompts} real prompts, {spec.steps} Adam steps of "
             f"{spec.batch}): test error {q.mean[0]:.3f} ± {q.se[0]:.2g} vs icl_risk(gamma*) "
             f"{float(theory[QUALITY].value):.3f} (optimal linear attention measured "
             f"{lsa.mean[0]:.3f} ± {lsa.se[0]:.2g}), Bayes risk {bayes.mean[0]:.3f} ± "
             f"{bayes.se[0]:.2g}, zero predictor {spec.dim + spec.noise ** 2:.3g}; "
             f"replicas={q.replicas}",
             f"A4 calibration (separate keys): eps(n) = {context['eps_n'].mean[0]:.3f} ± "
             f"{context['eps_n'].se[0]:.2g}; eps(N) per lam = "
             + ", ".join(f"{m:.3f} ± {s:.2g}" for m, s in zip(context['eps_N'].mean,
                                                              context['eps_N'].se))]
    for j, lam in enumerate(point["lams"]):
        err = measured[per_lam("test error", lam)]
        ctrl = measured[per_lam("all-real control test error", lam)]
        d = measured[distance_row(lam)]
        b = np.asarray(theory[distance_row(lam)].value)
        notes.append(f"A4 lam={lam:g}: test error {err.mean[0]:.3f} -> {err.mean[-1]:.3f} ± "
                     f"{err.se[-1]:.2g} (i={G - 1}); all-real control {ctrl.mean[0]:.3f} ± "
                     f"{ctrl.se[0]:.2g}; D_{G - 1} = {d.mean[-1]:.3f} ± {d.se[-1]:.2g} vs R1 "
                     f"bound {b[-1]:.3f} (ratio {d.mean[-1] / b[-1]:.2f}; smallest ratio over i "
                     f"{np.min(d.mean[1:] / b[1:]) if G > 1 else np.nan:.2f})")
    if "stability" in context:
        notes += _r2_notes(point, measured, theory)
    if GROWS in measured:
        s = measured[GROWS]
        notes.append(f"A4 lam=0: excess-risk slope over i >= 1 = {s.mean[0]:.4f} ± {s.se[0]:.2g} "
                     f"per generation (replicas={s.replicas})")
    return notes


def _half_width(se, replicas) -> float:
    """95% two-sided half-width from ``replicas`` pairs: Student t, not the normal tail (8 pairs:
    2.36 SE, not 2)."""
    return float(stats.t_isf(0.025, replicas - 1)) * se


def _side(value, se, replicas) -> str:
    """Which side of R2's contraction condition ``m eps_N < 1`` an estimate is on (95%, t)."""
    half = _half_width(se, replicas)
    if value + half < 1:
        return "contracting side (m eps_N < 1)"
    if value - half > 1:
        return "non-contracting side (m eps_N > 1)"
    return "side unresolved (1 within the 95% t interval)"


def _trend(change, se, replicas) -> str:
    half = _half_width(se, replicas)
    if change > half:
        return "grew"
    return "shrank" if change < -half else "did not change resolvably"


def _prediction(side: str) -> str:
    """What R2, an upper bound, predicts on a side of its condition (nothing more)."""
    if side.startswith("contracting"):
        return "R2 predicts a bounded loop (below R2 at every generation: the upper rows)"
    if side.startswith("non-contracting"):
        return "R2 allows growth here and predicts nothing beyond it"
    return ("R2 predicts a bounded loop if m eps_N < 1 and nothing beyond possible growth "
            "otherwise (side unresolved)")


def _r2_notes(point, measured, theory):
    n, ms = point["train_prompts"], point["stability_m"]
    coupled = [architecture(o) for o in coupled_architectures(point)]
    notes = []
    for o in architectures(point):
        arch = architecture(o)
        e, c = measured[eps_n_row(arch)], measured[constant_row(arch)]
        notes.append(f"A4 R2 one-fit constants ({arch}; {e.replicas} twin pairs, separate keys): "
                     f"eps_n = {e.mean[0]:.3f} ± {e.se[0]:.2g}; c = N eps_N = " + ", ".join(
                         f"{cm:.0f} ± {cs:.2g} (m={m}, c(1-lam) = m eps_N = {cm * m / (n + m):.2f})"
                         for m, cm, cs in zip(ms, c.mean, c.se)))
    for arch in coupled:
        for m in ms:
            g, b = measured[r2_row(m, arch)], np.asarray(theory[r2_row(m, arch)].value)
            tested = b < 1.0
            notes.append(f"A4 R2 m={m}{_arch_suffix(arch)}: gamma_i = "
                         + ", ".join(f"{v:.3f}" for v in g.mean)
                         + " vs R2 " + ", ".join(f"{v:.3f}" for v in b) + "; ratio on non-vacuous "
                         "rows " + (", ".join(f"{v:.2f}" for v in g.mean[tested] / b[tested])
                                    if tested.any() else "none") + f" ({int((~tested).sum())} "
                         f"vacuous, R2 >= 1; {g.replicas} pairs)")
    # Which side of the condition, and what the loop did. R2 is an upper bound: on the
    # contracting side it caps gamma_i by eps_N / (1 - m eps_N); on the other it allows
    # growth and predicts nothing more (a loop that does not grow does not contradict it).
    for o in architectures(point):
        arch = architecture(o)
        c = measured[constant_row(arch)]
        for j, m in enumerate(ms):
            factor, factor_se = c.mean[j] * m / (n + m), c.se[j] * m / (n + m)
            side = _side(factor, factor_se, c.replicas)
            text = (f"A4 R2 side ({arch}, m={m}, lam={n / (n + m):.4f}): m eps_N = {factor:.2f} ± "
                    f"{factor_se:.2g}, {side}")
            if factor < 1:
                fixed = c.mean[j] / (n + m) / (1 - factor)
                text += (f"; R2's fixed point eps_N/(1 - m eps_N) = {fixed:.3f}"
                         + (" (vacuous, >= 1)" if fixed >= 1 else ""))
            if arch not in coupled:
                notes.append(text + "; coupled loops not run at this size (constants only)")
                continue
            g = measured[r2_row(m, arch)]
            if growth_row(m, arch) in measured:
                d = measured[growth_row(m, arch)]
                text += (f"; loop: gamma_1 = {g.mean[1]:.3f}, gamma_{len(g.mean) - 1} = "
                         f"{g.mean[-1]:.3f}, change {d.mean[0]:+.3f} ± {d.se[0]:.2g} (paired): "
                         f"{_trend(d.mean[0], d.se[0], d.replicas)}")
            else:
                text += (f"; loop: gamma_{len(g.mean) - 1} = {g.mean[-1]:.3f} "
                         "(too few generations to see a trend)")
            notes.append(text + "; " + _prediction(side))
    return notes


def a4_figure(record):
    """Errors and controls, D_i against R1, effective gamma (``verify.figures_transformer``)."""
    from verify import figures_transformer

    return figures_transformer.a4_figure(record)


A4 = register(Claim(
    "A4", "Trained softmax transformer learning in context, in THEORY §1's loop: learns "
    "(vs icl_risk(gamma*)), grows at lam = 0, bounded by R1 (eps from separate runs) for "
    "lam > 0, with real-only and all-real controls; R2 predicts the coupled loops' stability "
    "from separately measured one-fit constants, measured for two architectures",
    _a4_grid, Measure(), A4Theory(), notes=_a4_notes, figure=a4_figure))
