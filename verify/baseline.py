"""Tightness regression: compare a run with the committed ``verify/baseline.json``.

Two tolerances, because two kinds of numbers are compared:

* theory values (predictions and bounds) are deterministic functions of the grid:
  they must match to ``THEORY_RTOL`` (a changed constant is caught at once);
* measured values are Monte Carlo: with the same seed they match exactly on the
  same platform, and elsewhere they must agree within ``TOL_SIGMA`` combined
  standard errors ``sqrt(se^2 + se_baseline^2)``. A tightness ratio is
  measured / bound, so both rules together bound its drift.

A baseline claim that is not ``pass`` now, or whose grid changed, is a regression.
So is a weaker check: a tested row (``exact``, ``upper``, ``lower``, ``exceeds``,
``numerical``) that is gone, or whose kind changed (``exact`` -> ``report`` is a
downgrade to report-only, ``upper`` -> ``numerical`` stops being evidence). New rows
are not regressions. Checks that drop rows must rewrite the baseline deliberately.
A claim in the baseline that the run was expected to include but did not is reported too.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from verify.claim import EVIDENCE_KINDS, TESTED_KINDS

__all__ = ["BASELINE_PATH", "TOL_SIGMA", "THEORY_RTOL", "BaselineError", "snapshot", "check",
           "load", "read", "merge"]

BASELINE_PATH = Path(__file__).with_name("baseline.json")
TOL_SIGMA = 5.0
THEORY_RTOL = 1e-6


def _row_key(row: dict) -> str:
    return f"{row['point']}|{row['quantity']}|{row['x']}"


def snapshot(records: list[dict], mode: str, seed: int) -> dict:
    """The statistics worth pinning, per claim and row."""
    return {"mode": mode, "seed": seed, "tol_sigma": TOL_SIGMA, "theory_rtol": THEORY_RTOL,
            "claims": {r["id"]: {"status": r["status"], "points": r["points"],
                                 "rows": {_row_key(row): {"measured": row["measured"],
                                                          "se": row["se"],
                                                          "theory": row["theory"],
                                                          "kind": row["kind"]}
                                          for row in r["rows"]}}
                       for r in records}}


def _number(value) -> float | None:
    """Numbers as written by ``report.atomic_write_json`` (non-finite ones as strings):
    the baseline file, and records resumed from ``OUT/claims/``."""
    return None if value is None else float(value)


def _kind_change(record_id: str, key: str, old: str, new: str) -> str | None:
    if old == new:
        return None
    if old in TESTED_KINDS and new not in TESTED_KINDS:
        why = f"downgraded to {new}-only: no longer tested"
    elif old in EVIDENCE_KINDS and new not in EVIDENCE_KINDS:
        why = "no longer evidence"
    else:
        why = "the check changed"
    return f"{record_id} [{key}]: kind changed {old} -> {new} ({why})"


class BaselineError(ValueError):
    """A baseline file that cannot be used: missing, unreadable, malformed, or made with
    another mode or seed (one line, naming the file)."""


def load(path: str | Path = BASELINE_PATH) -> dict:
    with open(path) as f:
        return json.load(f)


def _structure_problem(data) -> str | None:
    if not isinstance(data, dict):
        return f"a JSON object, got {type(data).__name__}"
    for key, kind in [("mode", str), ("seed", int), ("claims", dict)]:
        if not isinstance(data.get(key), kind):
            return f"a {kind.__name__} under {key!r}"
    for cid, entry in data["claims"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("status"), str)
                and isinstance(entry.get("points"), list) and isinstance(entry.get("rows"), dict)
                and all(isinstance(r, dict) and {"measured", "se", "theory", "kind"} <= set(r)
                        for r in entry["rows"].values())):
            return f"claim {cid!r} with status, points and rows"
    return None


def read(path: str | Path, mode: str, seed: int) -> dict:
    """The baseline at ``path``, checked before a run: readable JSON with the structure
    ``snapshot`` writes, made with this ``mode`` and ``seed``; else ``BaselineError``."""
    try:
        data = load(path)
    except FileNotFoundError:
        raise BaselineError(f"{path}: no such file (write one with --write-baseline)") from None
    except OSError as err:
        raise BaselineError(f"{path}: unreadable ({err.strerror or err})") from None
    except ValueError as err:  # json.JSONDecodeError, UnicodeDecodeError
        raise BaselineError(f"{path}: not valid JSON ({str(err).splitlines()[0]})") from None
    problem = _structure_problem(data)
    if problem is not None:
        raise BaselineError(f"{path}: not a baseline (expected {problem})")
    if data["mode"] != mode or data["seed"] != seed:
        raise BaselineError(f"{path} was made with mode={data['mode']} seed={data['seed']}, "
                            f"this run has mode={mode} seed={seed}")
    return data


def merge(old: dict, new: dict) -> dict:
    """``old`` with the claims of ``new`` replaced or added (same mode and seed)."""
    if (old["mode"], old["seed"]) != (new["mode"], new["seed"]):
        raise BaselineError(f"cannot merge a mode={new['mode']} seed={new['seed']} snapshot "
                            f"into a mode={old['mode']} seed={old['seed']} baseline")
    return {**old, **{k: v for k, v in new.items() if k != "claims"},
            "claims": {**old["claims"], **new["claims"]}}


def check(records: list[dict], baseline: dict, mode: str, seed: int,
          expected: list[str] | None = None) -> list[str]:
    """Problems found (empty when the run matches the baseline).

    ``expected``: the baseline claims this run should have included (default: none
    checked); each one missing from ``records`` is a problem.
    """
    if baseline.get("mode") != mode or baseline.get("seed") != seed:
        return [f"baseline was made with mode={baseline.get('mode')} seed={baseline.get('seed')}, "
                f"this run has mode={mode} seed={seed}"]
    ran = {record["id"] for record in records}
    problems = [f"{cid}: in the baseline but not in this run (renamed or no longer registered?)"
                for cid in expected or [] if cid not in ran]
    for record in records:
        base = baseline["claims"].get(record["id"])
        if base is None:
            problems.append(f"{record['id']}: not in the baseline (run --write-baseline)")
            continue
        if record["status"] != "pass" and record["status"] != base["status"]:
            problems.append(f"{record['id']}: status {record['status']} "
                            f"(baseline {base['status']}): {record['message']}")
        if record["points"] != base["points"]:
            problems.append(f"{record['id']}: grid changed since the baseline")
            continue
        current = {_row_key(r): r for r in record["rows"]}
        for key, old in base["rows"].items():
            new = current.get(key)
            if new is None:
                what = "tested row" if old["kind"] in TESTED_KINDS else "row"
                problems.append(f"{record['id']} [{key}]: {old['kind']} {what} dropped "
                                f"(missing from this run)")
                continue
            change = _kind_change(record["id"], key, old["kind"], new["kind"])
            if change:
                problems.append(change)
            old_theory, new_theory = _number(old["theory"]), _number(new["theory"])
            if old_theory is not None and (new_theory is None or not math.isclose(
                    new_theory, old_theory, rel_tol=THEORY_RTOL, abs_tol=1e-300)):
                problems.append(f"{record['id']} [{key}]: {old['kind']} value changed "
                                f"{old['theory']!r} -> {new['theory']!r}")
            old_measured, new_measured = _number(old["measured"]), _number(new["measured"])
            spread = math.hypot(_number(new["se"]), _number(old["se"]))
            moved = abs(new_measured - old_measured)
            if not moved <= TOL_SIGMA * spread + 1e-12 * abs(old_measured):  # NaN moves too
                problems.append(f"{record['id']} [{key}]: measured moved {old_measured:.6g} -> "
                                f"{new_measured:.6g} (> {TOL_SIGMA} combined SE = "
                                f"{TOL_SIGMA * spread:.3g})")
    return problems
