"""A claim is data: an ID, a grid, a measurement, a theory, and how to compare them.

``measure(key, point)`` runs simulations and returns ``Measured`` arrays (mean and
MC standard error along an axis such as the generation); ``theory(point)`` returns
``Theory`` arrays of the same shape. ``evaluate`` turns both into rows with
z-scores, tightness ratios and Holm-controlled pass/fail. Swapping ``theory`` for
a deliberately wrong one (``dataclasses.replace``) is how negative controls work.
"""
from __future__ import annotations

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
# "numerical" rows check numerical quality (a grid quadrature budget, a tail mass) as
# "measured <= theory". They are tested, but they are never evidence for the claim.
MODES = ("quick", "default", "full")


class Measured(NamedTuple):
    """Monte Carlo estimates along one axis.

    Attributes:
      x: axis values (e.g. generations ``i``, or synthetic sizes ``m``).
      mean: MC mean at each ``x``.
      se: MC standard error at each ``x`` (from the replicas).
      replicas: number of independent replicas behind ``mean``.
      x_label: what ``x`` is.
    """

    x: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    replicas: int
    x_label: str = "generation i"


class Measurement(NamedTuple):
    """What ``measure`` returns when its theory needs measured inputs as well.

    Example: B1's bound is R1 evaluated at the ``eps_i`` measured in the same
    replicas. ``context`` is handed to ``theory(point, context)`` and
    ``notes(point, measured, theory, context)``: explicit data flow, no hidden state.
    """

    quantities: Mapping[str, Measured]
    context: Any


class Theory(NamedTuple):
    """What theory says along the same axis.

    ``kind``: ``exact`` (z-test), ``upper`` / ``lower`` (violation test and tightness),
    ``numerical`` (a numerical-quality budget, tested like ``upper`` but never evidence),
    ``exceeds`` (an effect: the mean must be significantly above ``value``),
    ``rate`` or ``report`` (shown, not tested).
    """

    kind: str
    value: np.ndarray
    label: str = ""


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
      alpha: family-wise error level of the claim's tests (Holm over all its rows).
    """

    id: str
    title: str
    grid: Callable[[str], Sequence[Mapping[str, Any]]]
    measure: Callable[[jax.Array, Mapping[str, Any]], Mapping[str, Measured]]
    theory: Callable[[Mapping[str, Any]], Mapping[str, Theory]]
    notes: Callable | None = None
    figure: Callable | None = None
    alpha: float = stats.DEFAULT_ALPHA


REGISTRY: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    """Add a claim to the registry (IDs are unique)."""
    if claim.id in REGISTRY:
        raise ValueError(f"claim {claim.id!r} is registered twice")
    REGISTRY[claim.id] = claim
    return claim


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
    """Flatten one grid point into rows: one per (quantity, axis value)."""
    rows = []
    for quantity, meas in measured.items():
        th = theory.get(quantity)
        value = (np.broadcast_to(np.asarray(th.value, np.float64), np.shape(meas.mean))
                 if th is not None else None)
        for j, x in enumerate(np.asarray(meas.x).ravel()):
            row = {"point": index, "quantity": quantity, "x": _jsonable(x),
                   "x_label": meas.x_label, "measured": float(meas.mean[j]),
                   "se": float(meas.se[j]), "replicas": int(meas.replicas),
                   "kind": th.kind if th is not None else "report",
                   "theory": float(value[j]) if th is not None else None,
                   "theory_label": th.label if th is not None else ""}
            rows.append(row)
    return rows


def compare(rows: list[dict], alpha: float) -> dict:
    """Add statistics to rows in place and return the claim's summary.

    Exact rows get ``z`` and a two-sided p; bound rows get the tightness ratio, its
    95% MC interval and a one-sided violation p. All tested rows share one Holm
    family at level ``alpha``.
    """
    tested = []
    for row in rows:
        kind, th = row["kind"], row["theory"]
        if kind == "exact":
            z = float(stats.z_scores(row["measured"], row["se"], th))
            row["z"] = z
            row["p"] = float(2 * stats.normal_sf(abs(z)))
            tested.append(row)
        elif kind in ("upper", "lower", "numerical"):
            t = stats.tightness(row["measured"], row["se"], th, upper=kind != "lower")
            row.update(ratio=float(t.ratio), ratio_low=float(t.low), ratio_high=float(t.high),
                       p=float(t.p_violation),
                       exceeds=bool(row["measured"] > th if kind != "lower"
                                    else row["measured"] < th))
            tested.append(row)
        elif kind == "exceeds":
            z = float(stats.z_scores(row["measured"], row["se"], th))
            row.update(z=z, p=float(stats.normal_sf(z)), reject=not stats.normal_sf(z) <= EFFECT_ALPHA)
    effects = [r for r in rows if r["kind"] == "exceeds"]
    reject = stats.holm([r["p"] for r in tested], alpha) if tested else []
    for row, rejected in zip(tested, reject):
        row["reject"] = bool(rejected)
    exact = [r for r in tested if r["kind"] == "exact"]
    bounds_ = [r for r in tested if r["kind"] in ("upper", "lower")]
    summary = {"rows": len(rows), "tested": len(tested) + len(effects), "alpha": alpha,
               "rejected": int(sum(r["reject"] for r in tested + effects))}
    if effects:
        summary.update(effect_rows=len(effects), effects_unresolved=int(sum(r["reject"]
                                                                           for r in effects)))
    if exact:
        worst = max(exact, key=lambda r: abs(r["z"]))
        summary.update(exact_rows=len(exact), max_abs_z=abs(worst["z"]),
                       max_rel_error=max(abs(r["measured"] - r["theory"]) / max(abs(r["theory"]),
                                                                                 1e-300)
                                         for r in exact))
    if bounds_:
        summary.update(bound_rows=len(bounds_),
                       violations=int(sum(r["reject"] for r in bounds_)),
                       raw_exceedances=int(sum(r["exceeds"] for r in bounds_)),
                       max_ratio=max(r["ratio"] for r in bounds_ if math.isfinite(r["ratio"])),
                       min_ratio=min(r["ratio"] for r in bounds_ if math.isfinite(r["ratio"])))
    return summary


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
    if record["summary"]["rejected"]:
        record["status"] = "fail"
        bad = [r for r in record["rows"] if r.get("reject")]
        worst = bad[0]
        record["message"] = (f"{len(bad)} row(s) rejected at family-wise alpha={claim.alpha}; "
                             f"e.g. point {worst['point']} ({point_label(points[worst['point']])}),"
                             f" {worst['quantity']} at {worst['x_label']}={worst['x']}: measured "
                             f"{worst['measured']:.6g} ± {worst['se']:.2g}, {worst['kind']} "
                             f"{worst['theory']:.6g}")
    if not points:  # nothing measured is never a pass
        record["errors"].append({"point": None, "message": f"{claim.id}: grid({mode!r}) is empty; "
                                 "a claim needs at least one grid point"})
    if record["errors"]:
        first = record["errors"][0]
        record.update(status="error", message=first["message"] + (
            f" (and {len(record['errors']) - 1} more failed grid point(s))"
            if len(record["errors"]) > 1 else ""))
    return record


def _evaluate_point(claim: Claim, seed: int, index: int, point: Mapping[str, Any]) -> dict:
    """One grid point: its rows (theory included) and notes, all JSON-friendly."""
    measured = claim.measure(claim_key(seed, claim.id, index), point)
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
