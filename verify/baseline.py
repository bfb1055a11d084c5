"""Tightness regression: compare a run with the committed ``verify/baseline.json``.

Two tolerances, because two kinds of numbers are compared:

* theory values (predictions and bounds) are deterministic functions of the grid:
  they must match to ``THEORY_RTOL`` (a changed constant is caught at once);
* measured values are Monte Carlo: with the same seed they match exactly on the
  same platform, and elsewhere they must agree within ``TOL_SIGMA`` combined
  standard errors ``sqrt(se^2 + se_baseline^2)``. A tightness ratio is
  measured / bound, so both rules together bound its drift.

A baseline claim that is not ``pass`` now, or whose grid changed, is a regression.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["BASELINE_PATH", "TOL_SIGMA", "THEORY_RTOL", "snapshot", "check", "load"]

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


def load(path: str | Path = BASELINE_PATH) -> dict:
    with open(path) as f:
        return json.load(f)


def check(records: list[dict], baseline: dict, mode: str, seed: int) -> list[str]:
    """Problems found (empty when the run matches the baseline)."""
    if baseline.get("mode") != mode or baseline.get("seed") != seed:
        return [f"baseline was made with mode={baseline.get('mode')} seed={baseline.get('seed')}, "
                f"this run has mode={mode} seed={seed}"]
    problems = []
    for record in records:
        base = baseline["claims"].get(record["id"])
        if base is None:
            problems.append(f"{record['id']}: not in the baseline (run --write-baseline)")
            continue
        if record["status"] != "pass":
            problems.append(f"{record['id']}: status {record['status']} "
                            f"(baseline {base['status']}): {record['message']}")
        if record["points"] != base["points"]:
            problems.append(f"{record['id']}: grid changed since the baseline")
            continue
        current = {_row_key(r): r for r in record["rows"]}
        for key, old in base["rows"].items():
            new = current.get(key)
            if new is None:
                problems.append(f"{record['id']} [{key}]: row missing")
                continue
            if old["theory"] is not None and (new["theory"] is None or not math.isclose(
                    new["theory"], old["theory"], rel_tol=THEORY_RTOL, abs_tol=1e-300)):
                problems.append(f"{record['id']} [{key}]: {old['kind']} value changed "
                                f"{old['theory']!r} -> {new['theory']!r}")
            spread = math.hypot(new["se"], old["se"])
            moved = abs(new["measured"] - old["measured"])
            if moved > TOL_SIGMA * spread + 1e-12 * abs(old["measured"]):
                problems.append(f"{record['id']} [{key}]: measured moved {old['measured']:.6g} -> "
                                f"{new['measured']:.6g} (> {TOL_SIGMA} combined SE = "
                                f"{TOL_SIGMA * spread:.3g})")
    return problems
