"""Honest comparison of Monte Carlo measurements with theory (THEORY §5).

* exact predictions: ``z = (mean - prediction) / se`` with ``se`` from the replicas,
  two-sided p-values, Holm's step-down over the whole grid of a claim;
* upper (lower) bounds: the tightness ratio ``mean / bound`` with its MC interval,
  the raw exceedance count, and a one-sided test of "the true mean exceeds the
  bound" under the same Holm control;
* rates: least-squares slopes on log-log grids with confidence intervals; a rate row
  tests a fitted exponent against a stated one, one-sided, with the exponent's SE taken
  from the replicas (``rate_exponent``), never from the scatter of a few grid points;
* detection power: the critical z a single wrong row must reach at the first Holm
  step, from which ``verify.claim`` derives the smallest error a run can see.

Holm controls the family-wise error under any dependence between rows, which
matters here: the generations of one replica are strongly correlated.

Every test statistic divides by an SE *estimated* from the replicas, so its null law is
Student's t with the SE's degrees of freedom (``replicas - 1`` for a mean, a paired
difference or a per-replica slope), not the normal: with 3 replicas the normal tail
understates a p-value by orders of magnitude far out (``t_sf``; docs/statistics.md).
A ``dof`` of ``inf`` is the normal limit (an SE known exactly).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import stats as _scipy_stats

__all__ = ["power_law_fit", "power_law_upper", "normal_sf", "normal_isf", "t_sf", "t_isf", "critical_z", "critical_t", "z_scores",
           "holm", "tightness", "Slope", "fit_slope", "per_replica_slope", "RateFit",
           "rate_exponent",
           "DEFAULT_ALPHA", "Z_975"]

DEFAULT_ALPHA = 1e-3  # family-wise error per claim; with fixed seeds a run is deterministic


def normal_sf(z):
    """Upper tail ``P(Z > z)`` of the standard normal (scipy; accurate far out)."""
    return _scipy_stats.norm.sf(np.asarray(z, dtype=np.float64))


def normal_isf(p):
    """Inverse upper tail: the ``z`` with ``P(Z > z) = p``."""
    return _scipy_stats.norm.isf(np.asarray(p, dtype=np.float64))


Z_975 = float(normal_isf(0.025))  # 1.95996..., the half-width factor of a 95% interval


def _dof(dof):
    dof = np.asarray(dof, np.float64)
    if np.any(~(dof > 0)):  # NaN included
        raise ValueError(f"degrees of freedom must be > 0 (at least 2 replicas), got {dof}")
    return dof


def t_sf(t, dof):
    """Upper tail ``P(T > t)`` of Student's t with ``dof`` degrees of freedom
    (``inf``: the normal). Accurate far out (scipy)."""
    t, dof = np.asarray(t, np.float64), _dof(dof)
    return np.where(np.isinf(dof), _scipy_stats.norm.sf(t), _scipy_stats.t.sf(t, np.where(
        np.isinf(dof), 1.0, dof)))


def t_isf(p, dof):
    """Inverse upper tail of Student's t: the ``t`` with ``P(T > t) = p``."""
    p, dof = np.asarray(p, np.float64), _dof(dof)
    return np.where(np.isinf(dof), _scipy_stats.norm.isf(p), _scipy_stats.t.isf(p, np.where(
        np.isinf(dof), 1.0, dof)))


def critical_t(alpha: float, family_size: int, dof, *, two_sided: bool):
    """``critical_z`` for a statistic whose SE has ``dof`` degrees of freedom."""
    if family_size < 1:
        raise ValueError(f"family_size must be >= 1, got {family_size}")
    return t_isf(alpha / family_size / (2 if two_sided else 1), dof)


def critical_z(alpha: float, family_size: int, *, two_sided: bool) -> float:
    """The |z| a single wrong row must reach to be rejected by Holm at level ``alpha``.

    Holm's first step compares the smallest p-value with ``alpha / k`` (``k`` rows in
    the family), so one wrong row among ``k`` correct ones is rejected exactly when
    its p-value is below ``alpha / k``: ``z_{1 - alpha/(2k)}`` two-sided,
    ``z_{1 - alpha/k}`` one-sided. When several rows are wrong at once, later steps
    have looser thresholds, so this is conservative.
    """
    if family_size < 1:
        raise ValueError(f"family_size must be >= 1, got {family_size}")
    tail = alpha / family_size / (2 if two_sided else 1)
    return float(normal_isf(tail))


def z_scores(mean, se, prediction, *, rtol_if_exact: float = 1e-9):
    """``(mean - prediction) / se``; a zero ``se`` (a deterministic quantity) gives
    0 when ``mean`` matches to ``rtol_if_exact`` and ``±inf`` otherwise."""
    mean, se, prediction = (np.asarray(a, np.float64) for a in (mean, se, prediction))
    diff = mean - prediction
    tiny = rtol_if_exact * np.maximum(np.abs(prediction), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = diff / se
        return np.where(se > 0, z, np.where(np.abs(diff) <= tiny, 0.0, np.copysign(np.inf, diff)))


def holm(p_values, alpha: float = DEFAULT_ALPHA):
    """Holm's step-down procedure: which hypotheses to reject at family-wise level ``alpha``.

    Returns a boolean array (True = rejected). Valid under arbitrary dependence.

    Raises:
      ValueError: a p-value is NaN (it would sort last and never be rejected: a
        silent pass). Callers check their rows first and name the bad one.
    """
    p = np.asarray(p_values, np.float64).ravel()
    if np.isnan(p).any():
        raise ValueError(f"holm: NaN p-value at position(s) {np.flatnonzero(np.isnan(p)).tolist()}")
    order = np.argsort(p, kind="stable")
    thresholds = alpha / (len(p) - np.arange(len(p)))
    passed = p[order] <= thresholds
    # Reject the first k sorted hypotheses, where k is the first failure.
    k = len(p) if passed.all() else int(np.argmin(passed))
    reject = np.zeros(len(p), bool)
    reject[order[:k]] = True
    return reject.reshape(np.shape(p_values))


class Tightness(NamedTuple):
    ratio: np.ndarray     # mean / bound
    low: np.ndarray       # 95% MC interval of the ratio
    high: np.ndarray
    p_violation: np.ndarray  # one-sided p-value of H0: true mean <= bound


def tightness(mean, se, bound, *, upper: bool = True, dof=np.inf) -> Tightness:
    """Tightness ratio of an upper (or lower) bound, with its MC interval and the
    one-sided p-value against "the bound holds" (Student t with ``dof``)."""
    mean, se, bound = (np.asarray(a, np.float64) for a in (mean, se, bound))
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero bound: infinite ratio
        ratio = mean / bound
        half = t_isf(0.025, dof) * se / np.abs(bound)
        low, high = ratio - half, ratio + half
    excess = z_scores(mean, se, bound) * (1 if upper else -1)
    return Tightness(ratio, low, high, t_sf(excess, dof))


class Slope(NamedTuple):
    slope: float
    intercept: float
    slope_se: float
    low: float   # 95% interval
    high: float


def fit_slope(x, y, y_se=None) -> Slope:
    """Weighted least-squares fit of ``log y = a + b log x`` (a rate), with a 95% CI on ``b``.

    ``y_se`` (MC standard errors of ``y``) weights the points by ``1/var(log y)``
    via the delta method; without it the residual scatter sets the error.
    """
    lx, ly = np.log(np.asarray(x, np.float64)), np.log(np.asarray(y, np.float64))
    if len(lx) < 3:
        raise ValueError(f"a rate fit needs at least 3 points, got {len(lx)}")
    w = np.ones_like(lx) if y_se is None else (np.asarray(y, np.float64) / np.asarray(y_se)) ** 2
    design = np.stack([np.ones_like(lx), lx], axis=1)
    cov = np.linalg.inv(design.T @ (w[:, None] * design))
    coef = cov @ design.T @ (w * ly)
    resid = ly - design @ coef
    dof = len(lx) - 2
    scale = max(float(w @ resid ** 2) / dof, 1.0) if y_se is not None else float(w @ resid ** 2) / dof
    se = math.sqrt(cov[1, 1] * scale)
    t = float(_scipy_stats.t.ppf(0.975, dof))
    return Slope(float(coef[1]), float(coef[0]), se, float(coef[1] - t * se), float(coef[1] + t * se))



def power_law_fit(sizes, mean, se) -> dict:
    """Fit ``mean(N) = C N^-alpha`` with the covariance a pointwise band needs (B1, B3; R4).

    Kind: rate. Weighted least squares of ``log mean`` on ``log N`` (``fit_slope``: weights
    from the MC standard errors ``se``, delta method), and the covariance of ``(log C,
    -alpha)`` inflated by the residual chi^2 per degree of freedom when the power law misfits.
    Returns ``C``, ``alpha``, alpha's 95% interval (``alpha_low``, ``alpha_high``),
    ``log_cov`` and the Student t quantile ``t``: the inputs of ``power_law_upper``.
    """
    sizes = np.asarray(sizes, float)
    mean, se = np.asarray(mean, float), np.asarray(se, float)
    slope = fit_slope(sizes, mean, se)
    design = np.stack([np.ones(len(sizes)), np.log(sizes)], axis=1)
    weights = (mean / se) ** 2
    cov = np.linalg.inv(design.T @ (weights[:, None] * design))
    resid = np.log(mean) - design @ np.array([slope.intercept, slope.slope])
    dof = len(sizes) - 2
    cov = cov * max(float(weights @ resid ** 2) / dof, 1.0)
    return dict(C=float(np.exp(slope.intercept)), alpha=-slope.slope, alpha_low=-slope.high,
                alpha_high=-slope.low, log_cov=cov.tolist(),
                t=float(_scipy_stats.t.ppf(0.975, dof)))


def power_law_upper(fit, N):
    """Upper end of a ``power_law_fit``'s 95% pointwise band: ``exp(log C - alpha log N + t sd)``.

    Kind: rate (a prediction of ``mean(N)`` made from separate runs, with the fit's
    uncertainty carried into it). docs/paper_b.md §7.3.
    """
    x = np.stack([np.ones_like(np.asarray(N, float)), np.log(np.asarray(N, float))], axis=-1)
    centre = np.log(fit["C"]) - fit["alpha"] * x[..., 1]
    sd = np.sqrt(np.einsum("...i,ij,...j->...", x, np.asarray(fit["log_cov"]), x))
    return np.exp(centre + fit["t"] * sd)

def per_replica_slope(values, start: int = 0, where=None) -> np.ndarray:
    """OLS slope over generations ``start .. G-1`` (the last axis) of each replica's values.

    A per-replica statistic: its mean and SE over replicas are then tested with Student t at
    ``replicas - 1`` dof (a trend test that pools every generation into one row).
    ``where`` (bool, the shape of ``values``): the generations each replica's fit uses, e.g.
    those before it diverged; every replica needs two of them from ``start`` on. Values
    outside ``where`` (NaN included) are never read.
    """
    values = np.asarray(values, np.float64)[..., start:]
    i = np.arange(values.shape[-1], dtype=np.float64)
    if where is None:
        centred = i - i.mean()
        return (values - values.mean(-1, keepdims=True)) @ centred / (centred @ centred)
    use = np.broadcast_to(np.asarray(where, bool)[..., start:], values.shape)
    count = use.sum(-1, keepdims=True)
    if np.any(count < 2):
        raise ValueError("where must leave every replica two generations to fit a slope")
    y = np.where(use, values, 0.0)
    centred = np.where(use, i - (use * i).sum(-1, keepdims=True) / count, 0.0)
    return (centred * (y - y.sum(-1, keepdims=True) / count)).sum(-1) / (centred ** 2).sum(-1)


class RateFit(NamedTuple):
    """A fitted exponent ``b`` of ``y ~ a x^b`` with its uncertainty from the replicas."""
    slope: float
    intercept: float
    se: float
    dof: float   # of ``se``: the fewest replicas behind a point, minus one
    low: float   # 95% t interval
    high: float


def rate_exponent(x, mean, se, replicas) -> RateFit:
    """The exponent of ``mean ~ a x^b`` with an SE that comes from the replicas.

    Each point's ``log mean`` has variance ``(se/mean)^2`` (delta method; the points are
    independent runs), so weighted least squares with those *known* weights gives the
    slope's SE without looking at the residual scatter of a few points, which says more
    about the curve's shape than about the Monte Carlo error (docs/statistics.md). The
    SE is estimated from ``replicas`` draws per point, so the interval and any test use
    Student t with ``min(replicas) - 1`` degrees of freedom.
    """
    x, mean, se = (np.asarray(a, np.float64).ravel() for a in (x, mean, se))
    replicas = np.broadcast_to(np.asarray(replicas), x.shape)
    if len(x) < 2 or len(np.unique(x)) < 2:
        raise ValueError(f"a rate fit needs at least 2 distinct x values, got {x.tolist()}")
    if np.any(~(mean > 0)) or np.any(~(se > 0)) or np.any(~(x > 0)):
        raise ValueError("a rate fit needs positive x, means and standard errors, got "
                         f"x={x.tolist()}, mean={mean.tolist()}, se={se.tolist()}")
    lx, ly, w = np.log(x), np.log(mean), (mean / se) ** 2
    design = np.stack([np.ones_like(lx), lx], axis=1)
    cov = np.linalg.inv(design.T @ (w[:, None] * design))
    coef = cov @ design.T @ (w * ly)
    slope_se = math.sqrt(cov[1, 1])
    dof = float(np.min(replicas)) - 1
    half = float(t_isf(0.025, dof)) * slope_se
    return RateFit(float(coef[1]), float(coef[0]), slope_se, dof, float(coef[1] - half),
                   float(coef[1] + half))
