"""Claims P1-P8: the peers' exact closed forms, checked against the loop engine.

Each measurement is a ``sims.run`` with running moments (memory flat in the
replica count); each theory is a ``bounds.peers`` function. The x-axis is the
number of fits ``g = i + 1`` for P1-P7 and the generation ``i`` for P8.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import sims
from bounds import peers
from sims.models import GaussianParams, Mixture, categorical, gaussian, kde, ols_fixed_design
from sims.models import ols_fresh_design
from sims.models.ols import OLSData, fit_ols as ols_fit
from verify.claim import Claim, Theory, measured, per_mode, register

FITS = "fits g"



def _batch(replicas: int) -> int:
    return min(replicas, 4096)


def _fits(generations: int) -> np.ndarray:
    return np.asarray(peers.fits_after_generation(np.arange(generations)))


# --- Gaussian chains (P1-P3) ------------------------------------------------------------

def gaussian_metric(key, gen, truth):
    """Variance (mean of the diagonal), its log and square root, and 1-D W2^2 to ``p0``."""
    del key
    var = jnp.trace(gen.params.cov) / gen.params.cov.shape[0]
    var0 = jnp.trace(truth.cov) / truth.cov.shape[0]
    w2sq = jnp.sum((gen.params.mean - truth.mean) ** 2) + (jnp.sqrt(var) - jnp.sqrt(var0)) ** 2
    return {"var": var, "log_var": jnp.log(var), "sd": jnp.sqrt(var), "w2sq": w2sq}


def _gaussian_chain(key, point, unbiased, sizes=None):
    d = point.get("d", 1)
    truth = GaussianParams(jnp.zeros(d), point["sigma0_sq"] * jnp.eye(d))
    if sizes is None:
        plan = sims.make_plan("synthetic", n=point["M"], generations=point["generations"])
    else:
        plan = sims.make_plan("synthetic", n=sizes[0], m=sizes[1:], generations=len(sizes))
    return sims.run(key, gaussian(d, unbiased), truth, plan, gaussian_metric,
                    replicas=point["replicas"], batch_size=_batch(point["replicas"]), reduce=True)


def _p1_grid(mode):
    r = per_mode(mode, 8192, 32768, 131072)
    points = [dict(M=20, d=1, sigma0_sq=1.0, generations=30, replicas=r)]
    if mode != "quick":
        points += [dict(M=5, d=1, sigma0_sq=2.0, generations=30, replicas=r),
                   dict(M=20, d=3, sigma0_sq=1.0, generations=30, replicas=r)]
    return points


def _measure_chain(key, point, unbiased, with_sd):
    """``E sigma^2`` up to the tameness horizon; ``E log sigma^2`` (and ``E sigma``) throughout."""
    moments = _gaussian_chain(key, point, unbiased=unbiased)
    g = _fits(point["generations"])
    tame = g <= peers.moment_ratio_horizon(point["M"])
    out = {"E[sigma^2]": measured(moments, "var", g, x_label=FITS, select=tame)}
    if with_sd:
        out["E[sigma]"] = measured(moments, "sd", g, x_label=FITS)
    out["E[log sigma^2]"] = measured(moments, "log_var", g, x_label=FITS)
    return out


def _p1_measure(key, point):
    return _measure_chain(key, point, unbiased=False, with_sd=False)


@dataclasses.dataclass(frozen=True)
class P1Theory:
    """P1; ``exponent_offset`` perturbs the exponent (a negative control)."""

    exponent_offset: int = 0

    def __call__(self, point):
        exponent_offset = self.exponent_offset
        g = _fits(point["generations"])
        tame = g <= peers.moment_ratio_horizon(point["M"])
        var = peers.mle_variance_chain(g[tame] + exponent_offset, point["M"], point["sigma0_sq"])
        log_var = peers.mle_log_variance_chain(g, point["M"], point["sigma0_sq"])
        if point.get("d", 1) > 1:  # the log of the mean diagonal is not the mean log: report only
            return {"E[sigma^2]": Theory("exact", var, "((M-1)/M)^g sigma0^2")}
        return {"E[sigma^2]": Theory("exact", var, "((M-1)/M)^g sigma0^2"),
                "E[log sigma^2]": Theory("exact", log_var, "log sigma0^2 + g E log(chi2_{M-1}/M)")}


P1 = register(Claim(
    "P1", "Gaussian, MLE variance, fully synthetic: E sigma_g^2 = ((M-1)/M)^g sigma0^2",
    _p1_grid, _p1_measure, P1Theory()))


def _p2_grid(mode):
    r = per_mode(mode, 8192, 32768, 131072)
    points = [dict(M=20, sigma0_sq=1.0, generations=30, replicas=r)]
    if mode != "quick":
        points += [dict(M=5, sigma0_sq=1.0, generations=40, replicas=r),
                   dict(M=100, sigma0_sq=3.0, generations=40, replicas=r)]
    return points


def _p2_measure(key, point):
    return _measure_chain(key, point, unbiased=True, with_sd=True)


def _p2_theory(point):
    g, M, s2 = _fits(point["generations"]), point["M"], point["sigma0_sq"]
    tame = g <= peers.moment_ratio_horizon(M)
    return {"E[sigma^2]": Theory("exact", peers.unbiased_variance_chain(g[tame], M, s2),
                                 "sigma0^2 (martingale)"),
            "E[sigma]": Theory("exact", peers.unbiased_sd_chain(g, M, np.sqrt(s2)),
                               "c4(M)^g sigma0"),
            "E[log sigma^2]": Theory("exact", peers.unbiased_log_variance_chain(g, M, s2),
                                     "log sigma0^2 + g E log(chi2_{M-1}/(M-1))")}


P2 = register(Claim(
    "P2", "Gaussian, unbiased variance: E sigma^2 constant, yet E sigma = c4^g sigma0 -> 0",
    _p2_grid, _p2_measure, _p2_theory))


def _p3_sizes(point):
    cycle = point["sizes_cycle"]
    return [cycle[k % len(cycle)] for k in range(point["generations"])]


def _p3_grid(mode):
    r = per_mode(mode, 8192, 32768, 131072)
    points = [dict(sizes_cycle=[10, 40, 20], sigma0_sq=1.0, generations=24, replicas=r)]
    if mode != "quick":
        points += [dict(sizes_cycle=[5], sigma0_sq=2.0, generations=30, replicas=r)]
    return points


def _p3_measure(key, point):
    moments = _gaussian_chain(key, point, unbiased=True, sizes=_p3_sizes(point))
    return {"E[W2^2]": measured(moments, "w2sq", _fits(point["generations"]), x_label=FITS)}


def _p3_theory(point):
    return {"E[W2^2]": Theory("exact", peers.w2_squared_unbiased_chain(_p3_sizes(point),
                                                                       point["sigma0_sq"]),
                              "sigma0^2 [sum 1/M_k + 2(1 - prod c4(M_k))]")}


P3 = register(Claim(
    "P3", "Unbiased Gaussian chain with per-fit sizes M_k: E W2^2 to the truth",
    _p3_grid, _p3_measure, _p3_theory))


# --- OLS chains (P4-P6) -----------------------------------------------------------------

def _design(T, d, seed=0):
    """The fixed design of P4/P5: Gaussian rows drawn once from a recorded seed."""
    return np.random.default_rng(seed).standard_normal((T, d))


def _w_star(d):
    return jnp.linspace(-1.0, 1.0, d)


def ols_error_metric(key, gen, truth):
    """Squared parameter error ``||w_i - w*||^2``."""
    del key
    return {"err": jnp.sum((gen.params - truth) ** 2)}


def _ols_fixed_run(key, point, scheme, noise_bias=0.0):
    X = _design(point["T"], point["d"])
    model = ols_fixed_design(X, point["sigma"], noise_bias)
    real = ols_fixed_design(X, point["sigma"]).sample  # real labels are never biased
    plan = sims.make_plan(scheme, n=point["T"], m=point["T"], generations=point["generations"])
    return sims.run(key, model, _w_star(point["d"]), plan, ols_error_metric, real_sampler=real,
                    replicas=point["replicas"], batch_size=_batch(point["replicas"]), reduce=True)


def _trace_inv_gram(point):
    X = _design(point["T"], point["d"])
    return float(np.trace(np.linalg.inv(X.T @ X)))


def _p4_grid(mode):
    r = per_mode(mode, 4096, 16384, 65536)
    points = [dict(T=20, d=5, sigma=1.0, generations=20, replicas=r)]
    if mode != "quick":
        points += [dict(T=12, d=10, sigma=0.5, generations=20, replicas=r)]
    return points


def _p4_measure(key, point):
    moments = _ols_fixed_run(key, point, "synthetic")
    return {"E||w_g - w*||^2": measured(moments, "err", _fits(point["generations"]),
                                        x_label=FITS)}


def _p4_theory(point):
    g = _fits(point["generations"])
    return {"E||w_g - w*||^2": Theory("exact", peers.ols_replace_error(
        g, point["sigma"], _trace_inv_gram(point)), "g sigma^2 tr((X^T X)^-1)")}


P4 = register(Claim("P4", "OLS, fixed design, replace: E||w_g - w*||^2 = g sigma^2 tr((X^T X)^-1)",
                    _p4_grid, _p4_measure, _p4_theory))


def _p5_grid(mode):
    r = per_mode(mode, 4096, 16384, 65536)
    points = [dict(T=20, d=5, sigma=1.0, generations=30, replicas=r)]
    if mode != "quick":
        points = [dict(T=20, d=5, sigma=1.0, generations=50, replicas=r),
                  dict(T=12, d=10, sigma=0.5, generations=30, replicas=r)]
    return points


@dataclasses.dataclass(frozen=True)
class P5Measure:
    """P5 measurement; ``noise_bias`` biases the synthetic noise (a broken assumption)."""

    noise_bias: float = 0.0

    def __call__(self, key, point):
        noise_bias = self.noise_bias
        moments = _ols_fixed_run(key, point, "accumulate", noise_bias)
        err = measured(moments, "err", _fits(point["generations"]), x_label=FITS)
        return {"E||w_g - w*||^2": err, "E||w_g - w*||^2 vs bound": err}


@dataclasses.dataclass(frozen=True)
class P5Theory:
    """P5's exact value and upper bound; ``constant`` perturbs the bound (a negative control)."""

    constant: float = peers.PI_SQUARED_OVER_6

    def __call__(self, point):
        constant = self.constant
        g, tr = _fits(point["generations"]), _trace_inv_gram(point)
        bound = peers.ols_accumulate_bound(point["sigma"], tr, constant)
        return {"E||w_g - w*||^2": Theory("exact", peers.ols_accumulate_error(g, point["sigma"], tr),
                                          "sigma^2 tr((X^T X)^-1) sum_k 1/k^2"),
                "E||w_g - w*||^2 vs bound": Theory("upper", np.full(len(g), float(bound)),
                                                   f"{constant:.4g} sigma^2 tr((X^T X)^-1)")}


P5 = register(Claim("P5", "OLS, fixed design, accumulate: error sum 1/k^2, bounded by pi^2/6",
                    _p5_grid, P5Measure(), P5Theory()))


@functools.lru_cache(maxsize=None)
def downstream_metric(rows: int, sigma: float):
    """P6's metric: chain error, and the error of a downstream OLS fit on ``rows`` fresh
    Gaussian rows labelled by the current chain model with noise ``sigma``."""

    def metric(key, gen, truth):
        d = truth.shape[0]
        key_x, key_y = jax.random.split(key)
        x = jax.random.normal(key_x, (rows, d))
        y = x @ gen.params + sigma * jax.random.normal(key_y, (rows,))
        w_hat = ols_fit(None, OLSData(x, y), jnp.ones(rows))
        return {"chain": jnp.sum((gen.params - truth) ** 2),
                "test": jnp.sum((w_hat - truth) ** 2)}

    return metric


def _p6_grid(mode):
    r = per_mode(mode, 4096, 16384, 65536)
    points = [dict(d=5, T0=20, sigma0=1.0, T=40, sigma=0.5, generations=10, replicas=r)]
    if mode != "quick":
        points += [dict(d=3, T0=8, sigma0=0.5, T=10, sigma=1.0, generations=15, replicas=r)]
    return points


def _p6_measure(key, point):
    plan = sims.make_plan("synthetic", n=point["T0"], generations=point["generations"])
    moments = sims.run(key, ols_fresh_design(point["d"], point["sigma0"]), _w_star(point["d"]),
                       plan, downstream_metric(point["T"], point["sigma"]),
                       replicas=point["replicas"], batch_size=_batch(point["replicas"]),
                       reduce=True)
    g = _fits(point["generations"])
    return {"E||w_g - w*||^2 (Gaussian design)": measured(moments, "chain", g, x_label=FITS),
            "E_test": measured(moments, "test", g, x_label=FITS)}


def _p6_theory(point):
    g, d = _fits(point["generations"]), point["d"]
    return {"E||w_g - w*||^2 (Gaussian design)": Theory(
                "exact", peers.ols_replace_error(g, point["sigma0"],
                                                 peers.gaussian_design_trace(point["T0"], d)),
                "g sigma0^2 d/(T0-d-1)"),
            "E_test": Theory("exact", peers.ols_fresh_design_test_error(
                g, point["sigma"], point["T"], point["sigma0"], point["T0"], d),
                "sigma^2 d/(T-d-1) + g sigma0^2 d/(T0-d-1)")}


P6 = register(Claim("P6", "OLS, fresh design each generation, then a downstream fit: E_test",
                    _p6_grid, _p6_measure, _p6_theory))


# --- Categorical (P7) -------------------------------------------------------------------

def collision_metric(key, gen, truth):
    del key, truth
    return {"S": jnp.sum(gen.params ** 2)}


def _p7_probs(K):
    weights = np.arange(1, K + 1, dtype=np.float64)
    return weights / weights.sum()


def _p7_grid(mode):
    r = per_mode(mode, 8192, 32768, 131072)
    points = [dict(K=10, n=50, generations=40, replicas=r)]
    if mode != "quick":
        points += [dict(K=4, n=10, generations=40, replicas=r)]
    return points


def _p7_measure(key, point):
    plan = sims.make_plan("synthetic", n=point["n"], generations=point["generations"])
    moments = sims.run(key, categorical(point["K"]), jnp.asarray(_p7_probs(point["K"])), plan,
                       collision_metric, replicas=point["replicas"],
                       batch_size=_batch(point["replicas"]), reduce=True)
    return {"E[S_g]": measured(moments, "S", _fits(point["generations"]), x_label=FITS)}


def _p7_theory(point):
    S0 = float(np.sum(_p7_probs(point["K"]) ** 2))
    return {"E[S_g]": Theory("exact", peers.categorical_collision_chain(
        _fits(point["generations"]), point["n"], S0), "1 - (1-1/n)^g (1 - S_0)")}


P7 = register(Claim("P7", "Categorical, fully synthetic: E S_g = 1 - (1-1/n)^g (1-S_0)",
                    _p7_grid, _p7_measure, _p7_theory))


# --- KDE (P8) ---------------------------------------------------------------------------

TWO_MODES = dict(loc=(-2.0, 2.0), weight=(0.5, 0.5), scale=(1.0, 1.0))


def _mixture(spec) -> Mixture:
    return Mixture(*(jnp.asarray(spec[k], jnp.float64) for k in ("loc", "weight", "scale")))


def _mixture_second_moment(spec) -> float:
    loc, weight, scale = (np.asarray(spec[k]) for k in ("loc", "weight", "scale"))
    return float(np.sum(weight * (loc ** 2 + scale ** 2)))


def second_moment_metric(key, gen, truth):
    """``int x^2 p_hat(x) dx`` of a KDE / mixture: linear in the density, so P8 gives its mean."""
    del key, truth
    mix = gen.params
    return {"m2": jnp.sum(mix.weight * (mix.loc ** 2 + mix.scale ** 2))}


def _p8_grid(mode):
    r = per_mode(mode, 4096, 16384, 65536)
    base = dict(n=50, h=1.0, generations=12, replicas=r)
    points = [dict(base, scheme="reuse", lam=0.5), dict(base, scheme="synthetic", lam=0.0),
              dict(base, scheme="accumulate", lam=None, m=40, n=40, generations=6)]
    if mode != "quick":
        points += [dict(base, scheme="fresh", lam=0.2),
                   dict(base, scheme="accumulate", lam=None, n=20, m=60, generations=8)]
    return points


def _p8_plan(point):
    if point["scheme"] == "synthetic":
        return sims.make_plan("synthetic", n=point["n"], generations=point["generations"])
    if point["scheme"] == "accumulate":
        return sims.make_plan("accumulate", n=point["n"], m=point["m"],
                              generations=point["generations"])
    return sims.make_plan(point["scheme"], n=point["n"], lam=point["lam"],
                          generations=point["generations"])


@dataclasses.dataclass(frozen=True)
class P8Measure:
    """``E int x^2 p_hat_i``; ``model`` (default ``kde``) swaps in a broken KDE (negative controls)."""

    model: Callable = kde

    def __call__(self, key, point):
        model = self.model
        plan = _p8_plan(point)
        moments = sims.run(key, model(point["h"]), _mixture(TWO_MODES), plan, second_moment_metric,
                           replicas=point["replicas"], batch_size=_batch(point["replicas"]),
                           reduce=True)
        return {"E int x^2 p_hat_i": measured(moments, "m2", np.arange(point["generations"]))}


@dataclasses.dataclass(frozen=True)
class P8Theory:
    """P8 (constant ``lam``) and its ``accumulate`` form; both exact.

    Negative controls: ``drop_factor`` loses one factor of the excess (constant
    ``lam``: ``(1-lam)^(i+1) -> (1-lam)^i``; accumulate: the last term of ``H_i``),
    ``excess_scale`` multiplies the excess ``h^2 F`` (e.g. 0.95 or 1.05).
    """

    drop_factor: bool = False
    excess_scale: float = 1.0

    def __call__(self, point):
        drop_factor, excess_scale = self.drop_factor, self.excess_scale
        i = np.arange(point["generations"])
        h, m2 = point["h"], _mixture_second_moment(TWO_MODES)
        if point["scheme"] == "accumulate":
            m = np.asarray(_p8_plan(point).m, float)
            excess = np.asarray(peers.kde_accumulate_excess_variance(point["n"], m, h))
            if drop_factor:  # H_i -> H_{i-1}: one generation's kernel forgotten
                excess = excess - np.r_[0.0, h ** 2 * m / (point["n"] + np.cumsum(m))]
            label = "m2(p0) + h^2 (1 + sum_{k<i} m_k/N_{k+1}) (accumulate)"
        else:
            lam = point["lam"]
            excess = np.asarray(peers.kde_excess_variance(i, lam, h))
            if drop_factor:  # h^2 (1 - (1-lam)^i) / lam: the (i+1)-th power lost one factor
                excess = excess - h ** 2 * (1 - lam) ** i
            label = "m2(p0) + h^2 (1-(1-lam)^(i+1))/lam"
        return {"E int x^2 p_hat_i": Theory("exact", m2 + excess_scale * excess, label)}


P8 = register(Claim("P8", "Gaussian KDE, constant lam and accumulate: second moment of E p_hat_i "
                    "(P8)", _p8_grid, P8Measure(), P8Theory()))
