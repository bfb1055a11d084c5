"""A claim is data: an ID, a grid, a measurement, a theory, and how to compare them.

``measure(key, point)`` runs simulations and returns ``Measured`` arrays (mean and
MC standard error along an axis such as the generation); ``theory(point)`` returns
``Theory`` arrays of the same shape. ``evaluate`` turns both into rows with
z-scores, tightness ratios and Holm-controlled pass/fail. Negative controls swap a
named part of the measurement or theory (a biased sampler, a wrong recursion) with
``control(claim, part=value)``; production signatures never grow a switch for them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import traceback
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import numpy as np

from sims.loop import NonFiniteError
from verify import stats

KINDS = ("exact", "upper", "lower", "exceeds", "rate", "numerical", "report")
# "exceeds" rows assert an effect (a collapse, a peak, a positive trend): the measured mean
# must be significantly above the theory value (one-sided, level EFFECT_ALPHA per row).
# All such rows must succeed, an intersection-union test, so no multiplicity correction.
EFFECT_ALPHA = 0.01
# An effect row is a test at its size only if the run resolves it at nearly every seed:
# the power at the effect it measured, from its own SE, must reach this.
EFFECT_POWER = 0.99
# "rate" rows test a fitted exponent against a stated upper-bound rate O(x^value): the run
# fails when the exponent is significantly above (shallower than) ``value``, one-sided.
# "numerical" rows check numerical quality (a grid quadrature budget, a tail mass) as
# "measured <= theory". They are tested in a Holm family of their own (a budget must not
# dilute the evidence, nor hide in it), and a rejected one fails the claim, but they are
# never evidence for it.
EVIDENCE_KINDS = ("exact", "upper", "lower", "exceeds", "rate")  # data against theory
TESTED_KINDS = EVIDENCE_KINDS + ("numerical",)
STATUSES = ("pass", "fail", "error", "untested")  # what ``verdict`` returns
# Detection power below which a claim is flagged weak (see ``detection_power``).
WEAK_REL_ERROR = 0.25
WEAK_SLACK = 10.0
MODES = ("quick", "default", "full")


class Measured(NamedTuple):
    """Monte Carlo estimates along one axis.

    Attributes:
      x: axis values (e.g. generations ``i``, or synthetic sizes ``m``).
      mean: MC mean at each ``x``.
      se: MC standard error at each ``x`` (from the replicas).
      replicas: number of independent replicas behind ``mean``.
      x_label: what ``x`` is.
      dof: degrees of freedom of ``se`` (a scalar or one per ``x``): the t law of every
        test of these numbers. Default ``replicas - 1`` (a mean, a paired difference or a
        per-replica statistic over replicas); ``inf`` for an SE known exactly.
    """

    x: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    replicas: int
    x_label: str = "generation i"
    dof: Any = None


class Measurement(NamedTuple):
    """What ``measure`` returns when its theory needs measured inputs as well.

    Example: B1's bound is R1 evaluated at the ``eps_i`` measured in the same
    replicas. ``context`` is handed to ``theory(point, context)`` and
    ``notes(point, measured, theory, context)``: explicit data flow, no hidden state.
    """

    quantities: Mapping[str, Measured]
    context: Any


class _TheoryFields(NamedTuple):
    kind: str
    value: np.ndarray
    label: str = ""
    trivial: float | None = None


class Theory(_TheoryFields):
    """What theory says along the same axis.

    ``kind``: ``exact`` (t-test), ``upper`` / ``lower`` (violation test and tightness),
    ``rate`` (a fitted exponent must not be significantly above ``value``, the exponent of
    an upper-bound rate), ``numerical`` (a numerical-quality budget, tested like ``upper``
    in a family of its own, never evidence), ``exceeds`` (an effect: the mean must be
    significantly above ``value``), or ``report`` (shown, not tested). An unknown kind is
    an error here, not a silently untested row.

    ``trivial``: the bound at which a bound row says nothing, the quantity's trivial range
    (1 for a TV distance or a probability, the loss bound for a risk): an upper bound
    ``>= trivial`` (a lower bound ``<= trivial``) cannot fail, so the row is shown as
    *vacuous* and never counted as evidence.
    """

    __slots__ = ()

    def __new__(cls, kind: str, value, label: str = "", trivial: float | None = None):
        if kind not in KINDS:
            raise ValueError(f"Theory kind must be one of {KINDS}, got {kind!r}")
        if trivial is not None and kind not in ("upper", "lower"):
            raise ValueError(f"Theory trivial= applies to upper/lower bounds, not {kind!r}")
        return super().__new__(cls, kind, value, label, trivial)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One verifiable statement of THEORY.md.

    Attributes:
      id: the claim ID (``P1``, ``A3``, ...). Checks may carry suffixes (``A3-categorical``).
      title: one line saying what is checked.
      grid: ``mode -> list of points`` (``mode`` in ``quick``/``default``/``full``);
        a point is a flat dict of JSON-friendly parameters.
      measure: ``(key, point) -> {quantity: Measured}``, or a ``Measurement`` whose
        ``context`` the theory needs (measured inputs of a bound, fitted rates).
      theory: ``point -> {quantity: Theory}`` (``(point, context)`` when ``measure``
        returns a ``Measurement``); quantities missing here are only reported.
      notes: optional ``(point, measured, theory[, context]) -> list[str]`` of findings
        to report verbatim (e.g. "the bound's minimiser and the empirical argmin differ").
      figure: optional ``(record) -> matplotlib Figure`` drawing the claim from its saved
        result record only (never recomputing); default ``verify.figures.default_figure``.
      alpha: family-wise error level of the claim's tests (Holm over its evidence rows,
        and separately over its numerical rows).
      report_only: empty for a claim that tests something; otherwise the reason why it
        only reports (printed in the report). A claim with no tested evidence row fails
        unless it says so here.
    """

    id: str
    title: str
    grid: Callable[[str], Sequence[Mapping[str, Any]]]
    measure: Callable[[jax.Array, Mapping[str, Any]], Mapping[str, Measured]]
    theory: Callable[[Mapping[str, Any]], Mapping[str, Theory]]
    notes: Callable | None = None
    figure: Callable | None = None
    alpha: float = stats.DEFAULT_ALPHA
    report_only: str = ""


REGISTRY: dict[str, Claim] = {}


class DuplicateClaimError(ValueError):
    """A claim ID registered twice (e.g. a researcher's module reusing a built-in ID)."""


def register(claim: Claim) -> Claim:
    """Add a claim to the registry (IDs are unique)."""
    if claim.id in REGISTRY:
        raise DuplicateClaimError(f"claim {claim.id!r} is registered twice: pick another ID")
    REGISTRY[claim.id] = claim
    return claim


def parts(claim: Claim) -> dict[str, Any]:
    """The swappable parts of a claim: the fields of its ``measure`` and ``theory``.

    A claim whose measurement or theory is built from named parts (the model, the sampler,
    the recursion, a constant) declares them as the fields of a frozen dataclass with a
    ``__call__``, e.g. ``Loop(model=kde)(key, point)``; production call signatures stay
    ``measure(key, point)`` and ``theory(point[, context])``. ``control`` swaps them.
    """
    found: dict[str, Any] = {}
    for role in ("measure", "theory"):
        obj = getattr(claim, role)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for field in dataclasses.fields(obj):
                if field.name in found:
                    raise ValueError(f"claim {claim.id!r}: part {field.name!r} is a field of "
                                     "both its measure and its theory; rename one")
                found[field.name] = getattr(obj, field.name)
    return found


def control(claim: Claim, **swaps: Any) -> Claim:
    """A negative control: ``claim`` with named parts of its measurement or theory swapped.

    ``control(B3, synthetic_shift=1.5)`` is the same claim with a biased sampler;
    ``control(B2_LOOP, recursion=squared)`` the same claim with a wrong theory. Every
    other part, the grid and the keys are unchanged, so a swapped theory is compared with
    the very measurement the correct one saw (see ``reuse_measurements``). Unknown part
    names raise, listing the claim's parts.
    """
    if not swaps:
        raise ValueError("control needs at least one part to swap (name=value)")
    known = parts(claim)
    unknown = sorted(set(swaps) - set(known))
    if unknown:
        raise ValueError(f"claim {claim.id!r} has no part {', '.join(map(repr, unknown))}; "
                         f"its parts: {', '.join(sorted(known)) or 'none'}")
    changes = {}
    for role in ("measure", "theory"):
        obj = getattr(claim, role)
        mine = {name: value for name, value in swaps.items()
                if dataclasses.is_dataclass(obj) and name in {f.name for f in dataclasses.fields(obj)}}
        if mine:
            changes[role] = dataclasses.replace(obj, **mine)
    return dataclasses.replace(claim, **changes)


def per_mode(mode: str, quick, default, full):
    """The value of a size for ``mode`` (``quick``/``default``/``full``): one place that says
    how each mode scales a grid (replicas, generations, sizes)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return {"quick": quick, "default": default, "full": full}[mode]


def claim_key(seed: int, claim_id: str, point_index: int) -> jax.Array:
    """Key of one grid point: a pure function of (seed, claim ID, point index).

    The claim ID enters through a stable hash, so adding or reordering claims
    never changes another claim's numbers.
    """
    tag = int.from_bytes(hashlib.sha256(claim_id.encode()).digest()[:4], "little")
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), tag), point_index)


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def point_label(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def rows_for_point(index: int, point: Mapping[str, Any], measured: Mapping[str, Measured],
                   theory: Mapping[str, Theory]) -> list[dict]:
    """Flatten one grid point into rows: one per (quantity, axis value).

    Raises:
      ValueError: a theory quantity has no measured counterpart (a typo in a key would
        otherwise leave the theory unused and its rows untested), naming both sides.
    """
    orphans = [q for q in theory if q not in measured]
    if orphans:
        raise ValueError(f"theory quantities {orphans} have no measured counterpart; "
                         f"measured quantities are {list(measured)}")
    rows = []
    for quantity, meas in measured.items():
        th = theory.get(quantity)
        value = (np.broadcast_to(np.asarray(th.value, np.float64), np.shape(meas.mean))
                 if th is not None else None)
        dof = np.broadcast_to(np.asarray(meas.replicas - 1 if meas.dof is None else meas.dof,
                                         np.float64), np.shape(meas.mean))
        for j, x in enumerate(np.asarray(meas.x).ravel()):
            row = {"point": index, "quantity": quantity, "x": _jsonable(x),
                   "x_label": meas.x_label, "measured": float(meas.mean[j]),
                   "se": float(meas.se[j]), "replicas": int(meas.replicas),
                   "dof": float(dof[j]),
                   "kind": th.kind if th is not None else "report",
                   "theory": float(value[j]) if th is not None else None,
                   "theory_label": th.label if th is not None else ""}
            if th is not None and th.trivial is not None:
                row["trivial"] = float(th.trivial)
            rows.append(row)
    return rows


def _row_name(row: dict) -> str:
    return f"point {row['point']}, {row['quantity']} at {row['x_label']}={row['x']}"


def _not_finite(row: dict) -> str | None:
    """Why a tested row cannot be tested (a NaN p-value would never be rejected)."""
    for field in ("theory", "measured", "se"):
        value = row[field]
        if value is None or not math.isfinite(value):
            return f"{field} is {value}"
    if row["se"] < 0:
        return f"se is negative ({row['se']})"
    if row["se"] > 0 and not row.get("dof", math.inf) > 0:
        return (f"its SE has {row.get('dof')} degrees of freedom "
                f"({row['replicas']} replicas): a test needs at least 2")
    return None


def _vacuous(row: dict) -> bool:
    """A bound at or beyond the quantity's trivial range: it cannot fail."""
    trivial = row.get("trivial")
    if trivial is None or row["kind"] not in ("upper", "lower"):
        return False
    return row["theory"] >= trivial if row["kind"] == "upper" else row["theory"] <= trivial


def _finite_or_none(values):
    values = [v for v in values if math.isfinite(v)]
    return (min(values), max(values)) if values else (None, None)


def _critical(row: dict, alpha: float, family_size: int, *, two_sided: bool) -> float:
    return float(stats.critical_t(alpha, family_size, row["dof"], two_sided=two_sided))


def detection_power(rows: list[dict], alpha: float, family_size: int) -> dict:
    """How large an error this run could have seen, per kind of evidence row.

    Computed from the run's own standard errors and their degrees of freedom (rows must
    already carry ``ratio`` etc. from ``compare``). With ``k = family_size`` rows in the
    claim's evidence Holm family, and ``t`` the Student-t quantile at the row's dof:

    * exact rows: ``delta = t_{1-alpha/(2k)} * SE / |prediction|``, the smallest
      relative error of a prediction that Holm rejects when it is the only wrong row
      and the MC mean sits at the truth (a wrong row at exactly this error is then
      rejected about half the time; rows with a zero prediction are skipped).
      ``min_detectable_rel_error`` is the best grid point (the one that catches a
      constant relative error first), ``max_detectable_rel_error`` the worst.
    * upper / lower rows with a positive bound ``B``: the run flags a bound moved to
      ``B'`` when ``(mean - B')/SE >= t_{1-alpha/k}`` (upper; mirrored for lower). The
      slack of a row is the factor by which its bound could shrink (upper:
      ``B / (mean - t SE)``; ``inf`` when ``mean - t SE <= 0``) or grow (lower:
      ``(mean + t SE) / B``) before this run flags it. ``slack`` is the smallest over
      rows (the tightest grid point); 1 is a bound the run pins exactly. Vacuous rows
      (a bound at the quantity's trivial range) are not evidence and not counted.
    * rate rows: the smallest excess of the true exponent over the stated one that the
      run flags at the mean, ``t_{1-alpha/k} * SE`` (additive, in exponent units).
    * exceeds rows: the smallest effect the run resolves, ``t_{1-0.01} * SE``
      (absolute, on the row's own scale): min and max over rows.

    Rows with ``SE = 0`` compare theory with a deterministic computation (a grid search,
    a quadrature), not with Monte Carlo data: they would give ``delta = 0`` or a slack
    of 1 and say nothing about sampling. They are counted in ``deterministic_rows``
    and left out of the numbers above.

    ``weak`` is set (with reasons) when the exact rows all miss relative errors of
    ``WEAK_REL_ERROR`` (25%), when every bound has a slack above ``WEAK_SLACK`` (10x),
    or when every evidence row is deterministic. It is a flag next to the status,
    never a status.
    """
    evidence = [r for r in rows if r["kind"] in EVIDENCE_KINDS and "error" not in r
                and not r.get("vacuous")]
    deterministic = sum(r["se"] == 0 for r in evidence)
    power: dict[str, Any] = {"family_size": family_size, "deterministic_rows": deterministic,
                             "weak": False, "weak_reasons": []}
    if evidence and deterministic == len(evidence):
        power["weak_reasons"].append("every evidence row is deterministic (SE = 0): no Monte "
                                     "Carlo data is tested against theory")
    rows = [r for r in evidence if r["se"] > 0]
    exact = [r for r in rows if r["kind"] == "exact" and "z" in r]
    if exact:
        rel = [(_critical(r, alpha, family_size, two_sided=True) * r["se"] / abs(r["theory"]),
                r) for r in exact if r["theory"] != 0]
        entry = {"rows": len(exact), "zero_predictions": len(exact) - len(rel),
                 "min_detectable_rel_error": None, "max_detectable_rel_error": None}
        if rel:
            best, worst = min(rel, key=lambda t: t[0]), max(rel, key=lambda t: t[0])
            entry.update(min_detectable_rel_error=best[0], best_row=_row_name(best[1]),
                         max_detectable_rel_error=worst[0], worst_row=_row_name(worst[1]))
            if best[0] > WEAK_REL_ERROR:
                power["weak_reasons"].append(
                    f"exact rows miss relative errors below {best[0]:.3g} everywhere "
                    f"(> {WEAK_REL_ERROR:.0%})")
        power["exact"] = entry
    bounds_ = [r for r in rows if r["kind"] in ("upper", "lower") and "ratio" in r]
    if bounds_:
        slacks = []
        for r in bounds_:
            if r["theory"] <= 0:
                continue  # a multiplicative slack needs a positive bound
            t = _critical(r, alpha, family_size, two_sided=False)
            if r["kind"] == "upper":
                edge = r["measured"] - t * r["se"]
                slack = r["theory"] / edge if edge > 0 else math.inf
            else:
                slack = (r["measured"] + t * r["se"]) / r["theory"]
            slacks.append((slack, r))
        entry = {"rows": len(bounds_), "slack": None,
                 "nonpositive_bounds": len(bounds_) - len(slacks)}
        if slacks:
            tightest = min(slacks, key=lambda t: t[0])
            entry.update(slack=tightest[0], tightest_row=_row_name(tightest[1]),
                         tightest_ratio_high=tightest[1]["ratio_high"])
            if tightest[0] > WEAK_SLACK:
                power["weak_reasons"].append(
                    f"every bound could move {tightest[0]:.3g}x before this run flags it "
                    f"(> {WEAK_SLACK:g}x)")
        power["bound"] = entry
    rates = [r for r in rows if r["kind"] == "rate" and "z" in r]
    if rates:
        low, high = _finite_or_none([_critical(r, alpha, family_size, two_sided=False)
                                     * r["se"] for r in rates])
        power["rate"] = {"rows": len(rates), "min_detectable_excess": low,
                         "max_detectable_excess": high}
    effects = [r for r in rows if r["kind"] == "exceeds" and "z" in r]
    if effects:
        low, high = _finite_or_none([float(stats.t_isf(EFFECT_ALPHA, r["dof"])) * r["se"]
                                     for r in effects])
        power["effect"] = {"rows": len(effects), "min_resolved_effect": low,
                           "max_resolved_effect": high,
                           "underpowered": sum(bool(r.get("underpowered")) for r in effects)}
    power["weak"] = bool(power["weak_reasons"])
    return power


def compare(rows: list[dict], alpha: float) -> dict:
    """Add statistics to rows in place and return the claim's summary.

    Every statistic is ``(mean - theory) / SE`` referred to Student's t with the SE's
    degrees of freedom (``row["dof"]``), never to the normal: the SE is estimated.

    * exact rows get ``z`` (the t statistic) and a two-sided p;
    * upper / lower / numerical rows get the tightness ratio, its 95% MC interval and a
      one-sided violation p; an upper (lower) bound at or beyond the quantity's trivial
      range is marked ``vacuous`` and not tested: it cannot fail;
    * rate rows get ``z`` and a one-sided p against "the exponent is at most the stated
      one";
    * evidence rows (exact, upper, lower, rate) form one Holm family at level ``alpha``,
      numerical rows another (a numerical budget neither dilutes the evidence nor hides
      in it);
    * ``exceeds`` rows are tested one by one at ``EFFECT_ALPHA`` (intersection-union),
      and flagged ``underpowered`` when the power at their measured effect, from their
      own SE, is below ``EFFECT_POWER``: such a row would fail at other seeds.

    A tested row whose prediction, bound, measured value or SE is NaN or infinite (or
    whose SE rests on fewer than 2 replicas) is not tested: it gets ``error`` and is
    listed in ``summary["errors"]``.

    ``summary["evidence_rows"]`` counts tested evidence rows only (not vacuous, not
    numerical); ``summary["power"]`` is ``detection_power`` of those rows.
    """
    errors, evidence, numerical, effects, vacuous = [], [], [], [], []
    for row in rows:
        kind, th = row["kind"], row["theory"]
        if kind not in TESTED_KINDS:
            continue
        problem = _not_finite(row)
        if problem is not None:
            row["error"] = problem
            errors.append(f"{_row_name(row)} ({kind}): {problem}")
            continue
        # A deterministic row (SE = 0) has no sampling law: its p is 0 or 1 at any dof.
        dof = row.get("dof", math.inf) if row["se"] > 0 else math.inf
        if _vacuous(row):
            row["vacuous"] = True
            vacuous.append(row)
        elif kind == "exact":
            z = float(stats.z_scores(row["measured"], row["se"], th))
            row.update(z=z, p=float(min(1.0, 2 * stats.t_sf(abs(z), dof))))
            evidence.append(row)
        elif kind in ("upper", "lower", "numerical"):
            t = stats.tightness(row["measured"], row["se"], th, upper=kind != "lower", dof=dof)
            row.update(ratio=float(t.ratio), ratio_low=float(t.low), ratio_high=float(t.high),
                       p=float(t.p_violation),
                       exceeds=bool(row["measured"] > th if kind != "lower"
                                    else row["measured"] < th))
            (numerical if kind == "numerical" else evidence).append(row)
        elif kind == "rate":
            z = float(stats.z_scores(row["measured"], row["se"], th))
            row.update(z=z, p=float(stats.t_sf(z, dof)), exceeds=bool(row["measured"] > th))
            evidence.append(row)
        else:  # exceeds
            z = float(stats.z_scores(row["measured"], row["se"], th))
            p = float(stats.t_sf(z, dof))
            critical = float(stats.t_isf(EFFECT_ALPHA, dof))
            power = float(stats.t_sf(critical - z, dof)) if math.isfinite(z) else float(z > 0)
            row.update(z=z, p=p, reject=not p <= EFFECT_ALPHA, power=power,
                       underpowered=power < EFFECT_POWER)
            effects.append(row)
    for family in (evidence, numerical):
        for row, rejected in zip(family, stats.holm([r["p"] for r in family], alpha)
                                 if family else []):
            row["reject"] = bool(rejected)
    kinds = [r["kind"] for r in rows]
    summary = {"rows": len(rows), "alpha": alpha,
               "evidence_rows": len(evidence) + len(effects),
               "vacuous_rows": len(vacuous),
               "numerical_rows": kinds.count("numerical"),
               "report_rows": sum(k not in TESTED_KINDS for k in kinds),
               "tested": len(evidence) + len(effects) + len(numerical),
               "holm_family": len(evidence), "numerical_family": len(numerical),
               "rejected": int(sum(r["reject"] for r in evidence + effects)),
               "numerical_rejected": int(sum(r["reject"] for r in numerical))}
    if errors:
        summary["errors"] = errors
    if effects:
        summary.update(effect_rows=len(effects),
                       effects_unresolved=int(sum(r["reject"] for r in effects)),
                       effects_underpowered=int(sum(r["underpowered"] for r in effects)))
    exact = [r for r in evidence if r["kind"] == "exact"]
    if exact:
        worst = max(exact, key=lambda r: abs(r["z"]))
        summary.update(exact_rows=len(exact), max_abs_z=abs(worst["z"]),
                       max_rel_error=max(abs(r["measured"] - r["theory"]) / max(abs(r["theory"]),
                                                                                 1e-300)
                                         for r in exact))
    for prefix, group in (("", evidence), ("numerical_", numerical)):
        rows_ = [r for r in group if r["kind"] in ("upper", "lower", "numerical")]
        if not rows_:
            continue
        low, high = _finite_or_none([r["ratio"] for r in rows_])
        if not prefix:
            summary["bound_rows"] = len(rows_)
        summary.update({f"{prefix}violations": int(sum(r["reject"] for r in rows_)),
                        f"{prefix}raw_exceedances": int(sum(r["exceeds"] for r in rows_)),
                        f"{prefix}max_ratio": high, f"{prefix}min_ratio": low})
    if evidence or effects or numerical:
        summary["power"] = detection_power(rows, alpha, max(len(evidence), 1))
    return summary


def _where(row: dict, points) -> str:
    return (f"point {row['point']} ({point_label(points[row['point']])}), {row['quantity']} "
            f"at {row['x_label']}={row['x']}: measured {row['measured']:.6g} ± "
            f"{row['se']:.2g}, {row['kind']} {row['theory']:.6g}")


def verdict(rows: list[dict], summary: dict, points: Sequence[Mapping[str, Any]],
            alpha: float, report_only: str = "") -> tuple[str, str]:
    """The claim's status and message from its compared rows.

    ``error`` when a tested row is not finite (named); ``fail`` when an evidence or a
    numerical row is rejected (the message names the first of each), or when no
    evidence row was tested (only vacuous, numerical or report rows: nothing was
    checked against theory) and the claim does not declare itself report-only;
    ``untested`` for a declared report-only claim (the reason is the message); ``pass``
    otherwise. Weak detection power is a separate flag (``summary["power"]["weak"]``),
    never a status.
    """
    if summary.get("errors"):
        first = next(r for r in rows if "error" in r)
        return "error", (f"{len(summary['errors'])} tested row(s) not finite, so not testable; "
                         f"first: point {first['point']} ({point_label(points[first['point']])}),"
                         f" {first['quantity']} at {first['x_label']}={first['x']} "
                         f"({first['kind']}): {first['error']}")
    bad = [r for r in rows if r.get("reject") and r["kind"] != "numerical"]
    budgets = [r for r in rows if r.get("reject") and r["kind"] == "numerical"]
    if bad or budgets:
        parts = []
        if bad:
            how = f"Holm at family-wise alpha={alpha}" + (
                f"; an exceeds row fails when its effect is not resolved at {EFFECT_ALPHA}"
                if summary.get("effect_rows") else "")
            parts.append(f"{len(bad)} evidence row(s) rejected ({how}); e.g. "
                         + _where(bad[0], points))
        if budgets:
            parts.append(f"{len(budgets)} numerical row(s) beyond their tolerance (Holm over "
                         f"the numerical rows at {alpha}); e.g. " + _where(budgets[0], points))
        return "fail", "; ".join(parts)
    if not summary["evidence_rows"]:
        what = (f"no tested evidence row (exact/upper/lower/rate/exceeds): "
                f"{summary.get('vacuous_rows', 0)} vacuous, {summary['numerical_rows']} "
                f"numerical and {summary['report_rows']} report row(s) only")
        if report_only:
            return "untested", f"report-only: {report_only} ({what})"
        return "fail", what + "; a claim that only reports must say why (Claim.report_only)"
    return "pass", ""


def evaluate(claim: Claim, mode: str = "default", seed: int = 0, *, progress: bool = False,
             store=None) -> dict:
    """Run a claim over its grid and compare: the claim's result record.

    Never raises for a simulation problem: a NaN/Inf or any exception at a grid point
    marks that point as failed in ``errors`` (with the claim, the point and the message)
    and the claim as ``status: error``; every other point is still computed and kept.

    Args:
      claim, mode, seed: what to run.
      progress: show a progress bar over the grid.
      store: optional point store (``verify.store.PointStore``): ``get(identity)`` returns
        a finished point's ``{"rows", "notes"}`` or ``None``, ``put(identity, result)``
        keeps one; ``identity`` names the claim, mode, seed, point index and point.
        Failed points are never stored, so a rerun retries them.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    points = [dict(p) for p in claim.grid(mode)]
    record = {"id": claim.id, "title": claim.title, "mode": mode, "seed": seed,
              "points": [{k: _jsonable(v) for k, v in p.items()} for p in points],
              "rows": [], "notes": [], "errors": [], "status": "pass", "message": ""}
    iterator = enumerate(points)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, total=len(points), desc=claim.id, unit="point", leave=False)
    for index, point in iterator:
        identity = {"claim": claim.id, "mode": mode, "seed": seed, "index": index,
                    "point": record["points"][index]}
        result = store.get(identity) if store is not None else None
        if result is None:
            try:
                result = _evaluate_point(claim, seed, index, point)
            except Exception as err:  # report, keep the other points
                where = f"{claim.id} at grid point {index} ({point_label(point)})"
                what = err if isinstance(err, NonFiniteError) else f"{type(err).__name__}: {err}"
                record["errors"].append({"point": index, "message": f"{where}: {what}",
                                         "traceback": traceback.format_exc()})
                continue
            if store is not None:
                store.put(identity, result)
        record["rows"].extend(result["rows"])
        record["notes"].extend(result["notes"])
    record["summary"] = compare(record["rows"], claim.alpha)
    record["status"], record["message"] = verdict(record["rows"], record["summary"], points,
                                                  claim.alpha, claim.report_only)
    if not points:  # nothing measured is never a pass
        record["errors"].append({"point": None, "message": f"{claim.id}: grid({mode!r}) is empty; "
                                 "a claim needs at least one grid point"})
    if record["errors"]:
        first = record["errors"][0]
        record.update(status="error", message=first["message"] + (
            f" (and {len(record['errors']) - 1} more failed grid point(s))"
            if len(record["errors"]) > 1 else ""))
    return record


_MEASUREMENTS: dict | None = None  # see reuse_measurements


@contextlib.contextmanager
def reuse_measurements(enabled: bool = True):
    """Within this context, ``evaluate`` measures each (measure, key, point) only once.

    A negative control that swaps a claim's *theory* (``dataclasses.replace(claim,
    theory=wrong)``) then compares the wrong theory with the very measurement the
    correct one saw, without simulating again; swapping ``measure`` (a broken
    simulator) is a new function and always runs. The test suite runs inside it.
    Measurements are shared, never copied: theory and notes must not mutate them.
    ``enabled=False`` measures afresh inside (a test of determinism, a measurement
    that reads the environment).
    """
    global _MEASUREMENTS
    outer = _MEASUREMENTS
    _MEASUREMENTS = ({} if outer is None else outer) if enabled else None
    try:
        yield
    finally:
        _MEASUREMENTS = outer


def measure_point(claim: Claim, seed: int, index: int, point: Mapping[str, Any]):
    """What ``claim.measure`` returns at grid point ``index`` for ``seed``: the measurement
    ``evaluate`` compares with the theory (the same key), shared within
    ``reuse_measurements()``. For tests that compare one measurement with several theories."""
    return _measure(claim, claim_key(seed, claim.id, index), point)


def _measure(claim: Claim, key: jax.Array, point: Mapping[str, Any]):
    memo = _MEASUREMENTS
    if memo is None:
        return claim.measure(key, point)
    which = (claim.measure, np.asarray(jax.random.key_data(key)).tobytes(),
             repr(sorted((k, _jsonable(v)) for k, v in point.items())))
    if which not in memo:
        memo[which] = claim.measure(key, point)
    return memo[which]


def _evaluate_point(claim: Claim, seed: int, index: int, point: Mapping[str, Any]) -> dict:
    """One grid point: its rows (theory included) and notes, all JSON-friendly."""
    measured = measure_point(claim, seed, index, point)
    extra = ()
    if isinstance(measured, Measurement):
        measured, extra = measured.quantities, (measured.context,)
    theory = claim.theory(point, *extra)
    notes = claim.notes(point, measured, theory, *extra) if claim.notes is not None else []
    return {"rows": rows_for_point(index, point, measured, theory), "notes": list(notes)}


def measured(moments, quantity: str, x, *, x_label: str = "generation i",
             select=slice(None)) -> Measured:
    """``Measured`` for one quantity of a ``sims.Moments`` (optionally a slice of the axis)."""
    mean, se = np.asarray(moments.mean[quantity]), np.asarray(moments.se[quantity])
    return Measured(np.asarray(x)[select], mean[select], se[select], moments.count, x_label)


def measured_rate(x, mean, se, replicas, *, x_label: str = "fitted exponent") -> Measured:
    """The exponent ``b`` of ``mean ~ a x^b`` as a one-row ``Measured`` for a ``rate`` row.

    ``mean`` and ``se`` are Monte Carlo means and SEs at each ``x`` (independent runs),
    ``replicas`` their replica counts: the exponent's SE and degrees of freedom come from
    the replicas (``verify.stats.rate_exponent``), never from the residual scatter.
    """
    fit = stats.rate_exponent(x, mean, se, replicas)
    return Measured(np.zeros(1), np.array([fit.slope]), np.array([fit.se]),
                    int(np.min(replicas)), x_label, dof=fit.dof)
