"""Reports: provenance, atomic writes, ``report.json`` and a readable ``report.md``.

Every file is written to a temporary sibling and renamed into place, so a file
is either whole or absent (``report.json`` and ``report.md`` together). Finished
grid points are stored separately (``verify.store``), so an interrupted sweep resumes.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import jax
import numpy as np

from verify import stats
from verify.claim import STATUSES

__all__ = ["provenance", "atomic_write_text", "atomic_write_json",
           "write_report", "render_markdown", "results_table", "power_text"]


def provenance(seed: int, mode: str, argv: Iterable[str] | None = None) -> dict:
    """What made these numbers: seed, mode, versions, PRNG, devices, code revision."""
    import jaxlib
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "seed": seed,
        "mode": mode,
        "command": " ".join(argv if argv is not None else sys.argv),
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "jax": jax.__version__,
                     "jaxlib": jaxlib.__version__, "numpy": np.__version__},
        "prng_impl": str(jax.config.jax_default_prng_impl),
        "x64": bool(jax.config.jax_enable_x64),
        "devices": [str(d) for d in jax.devices()],
        "backend": jax.default_backend(),
        "machine": platform.machine(),
        "git_commit": commit,
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    _replace_all([(Path(path), text)])


def _replace_all(files: list[tuple[Path, str]]) -> None:
    """Write every file to a temporary sibling, then rename them all into place.

    A failure while writing (full disk) removes the temporaries and leaves every
    target as it was: the set is written whole or not at all.
    """
    temps = []
    try:
        for path, text in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temps.append(tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600: give reports normal permissions
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        for (path, _), tmp in zip(files, temps):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
        raise


def _clean(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as strings so that files stay standard JSON."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _json_text(data: Any) -> str:
    return json.dumps(_clean(data), indent=1, sort_keys=False) + "\n"


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, _json_text(data))


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, str):
        return x
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _point_text(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


def _percent(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2g}%"


def _slack_text(slack) -> str:
    # An infinite slack: the measurement's lower confidence end is <= 0, so no bound value,
    # however small, would be flagged by this run.
    if not math.isfinite(float(slack)):
        return "∞: this run could not flag any value of the bound"
    return f"{_fmt(slack, 3)}× (tightest point)"


def _power_cells(power: dict) -> tuple[str, str, str, str]:
    """Exact, bound, rate and effect power as short texts (``—`` where the claim has none)."""
    exact, bound, rate, effect = (power.get(k) for k in ("exact", "bound", "rate", "effect"))
    return ((f"{_percent(exact['min_detectable_rel_error'])} (best point) – "
             f"{_percent(exact['max_detectable_rel_error'])} (worst)") if exact else "—",
            _slack_text(bound["slack"]) if bound and bound["slack"] is not None else "—",
            f"exponent +{_fmt(rate['min_detectable_excess'], 2)}" if rate else "—",
            (f"≥ {_fmt(effect['min_resolved_effect'], 2)}"
             + (f" ({effect['underpowered']} underpowered)" if effect.get("underpowered")
                else "")) if effect else "—")


def power_text(summary: dict) -> str:
    """One cell saying what the run could have caught (see ``verify.claim.detection_power``)."""
    power = summary.get("power", {})
    parts = [f"{name} {cell}" for name, cell, key in zip(
        ("exact: detects rel. errors", "bounds: slack", "rates: detects", "effects: resolves"),
        _power_cells(power), ("exact", "bound", "rate", "effect")) if key in power]
    if power.get("deterministic_rows"):
        parts.append(f"{power['deterministic_rows']} deterministic row(s) (SE = 0) not counted")
    return "; ".join(parts) or "—"


def _status_text(claim: dict) -> str:
    weak = claim.get("summary", {}).get("power", {}).get("weak")
    return claim["status"] + (" (weak)" if weak else "")


def results_table(report: dict) -> str:
    """README results-table rows: claim, what, status, row counts, detection power / slack.

    ``evidence`` counts tested data-against-theory rows (exact/upper/lower/rate/exceeds);
    ``vacuous`` bound rows (at the quantity's trivial range) and numerical-quality rows are
    listed apart, never as evidence.
    """
    lines = ["| claim | what | status | evidence rows | vacuous rows | numerical rows | "
             "detection power / slack |", "|---|---|---|---|---|---|---|"]
    for c in report["claims"]:
        s = c.get("summary", {})
        lines.append(f"| {c['id']} | {c['title']} | {_status_text(c)} | "
                     f"{s.get('evidence_rows', '—')} | {s.get('vacuous_rows', '—')} | "
                     f"{s.get('numerical_rows', '—')} | {power_text(s)} |")
    return "\n".join(lines) + "\n"


def _power_section(claims: list[dict]) -> list[str]:
    lines = ["## Detection power", "",
             "What each claim could have caught, from this run's own standard errors, with "
             "k rows in the claim's evidence Holm family and t the Student-t quantile at each "
             "row's degrees of freedom. *Exact*: the smallest relative error "
             "δ = t₁₋α/(2k)·SE/|prediction| that Holm rejects when it is the only wrong row "
             "(best and worst grid point; a constant error is caught once it exceeds the best). "
             "*Bounds*: the factor by which the bound could shrink (upper) or grow (lower) before "
             "the one-sided test at t₁₋α/k flags it, at the tightest grid point (vacuous bounds "
             "not counted). *Rates*: the smallest excess of the exponent over the stated rate "
             "flagged, t₁₋α/k·SE. *Effects*: t₀.₉₉·SE, the smallest effect resolved; an "
             "effect row is *underpowered* when its power at the effect it measured is below "
             "0.99 (it would fail at other seeds). Rows with SE = 0 (theory against a "
             "deterministic computation, not Monte Carlo data) are counted apart. A claim is "
             "**weak** when its exact rows miss errors below 25% everywhere, every bound has "
             "slack above 10×, or every evidence row has SE = 0.", "",
             "| claim | status | k | exact: detectable rel. error (best – worst) | "
             "bounds: slack | rates: detectable excess | effects: resolved | SE = 0 rows | "
             "weak because |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in claims:
        power = c.get("summary", {}).get("power", {})
        cells = " | ".join(_power_cells(power))
        lines.append(f"| {c['id']} | {c['status']} | {power.get('family_size', '—')} | {cells} | "
                     f"{power.get('deterministic_rows', '—')} | "
                     f"{'; '.join(power.get('weak_reasons', [])) or '—'} |")
    return lines


def _row_stat(r: dict) -> str:
    if "error" in r:
        return f"**error: {r['error']}**"
    if r.get("vacuous"):
        return f"vacuous (bound at the trivial {_fmt(r['trivial'])}): not evidence"
    if r["kind"] == "rate":  # the fitted exponent, its interval and the stated rate together
        half = float(stats.t_isf(0.025, r["dof"])) * r["se"]
        stat = (f"exponent {_fmt(r['measured'], 3)} [{_fmt(r['measured'] - half, 3)}, "
                f"{_fmt(r['measured'] + half, 3)}] vs stated ≤ {_fmt(r['theory'], 3)}: "
                f"t = {_fmt(r['z'], 3)}, p = {_fmt(r['p'], 2)}")
    elif r["kind"] in ("exact", "exceeds"):
        stat = f"t = {_fmt(r['z'], 3)}, p = {_fmt(r['p'], 2)}"
        if r.get("underpowered"):
            stat += f" (underpowered: power {_fmt(r['power'], 2)})"
    elif r["kind"] in ("upper", "lower", "numerical"):
        stat = f"{_fmt(r['ratio'], 4)} [{_fmt(r['ratio_low'], 3)}, {_fmt(r['ratio_high'], 3)}]"
    else:
        return "—"
    return stat + (" **rejected**" if r.get("reject") else "")


def _rows_table(rows: list[dict], max_rows: int) -> list[str]:
    lines = ["| quantity | x | measured ± SE | theory | kind | z or ratio [95% CI] |",
             "|---|---|---|---|---|---|"]
    step = max(1, math.ceil(len(rows) / max_rows))
    for j, r in enumerate(rows):
        if j % step == 0 or r.get("reject") or "error" in r:
            lines.append(f"| {r['quantity']} | {_fmt(r['x'])} | {_fmt(r['measured'], 5)} ± "
                         f"{_fmt(r['se'], 2)} | {_fmt(r['theory'], 5)} | {r['kind']} | "
                         f"{_row_stat(r)} |")
    if step > 1:
        lines.append(f"\n(every {step}th row shown; all {len(rows)} are in report.json)")
    return lines


def render_markdown(report: dict, max_rows_per_point: int = 12) -> str:
    """A readable summary: the claims table, detection power, then each claim's grid.

    Numerical-quality rows are shown in their own tables, apart from the evidence.
    """
    prov = report["provenance"]
    counts = {}
    for c in report["claims"]:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    weak = [c["id"] for c in report["claims"] if c.get("summary", {}).get("power", {}).get("weak")]
    lines = ["# Verification report", "",
             f"Mode `{prov['mode']}`, seed {prov['seed']}, jax {prov['versions']['jax']}, "
             f"numpy {prov['versions']['numpy']}, PRNG `{prov['prng_impl']}`, "
             f"backend {prov['backend']} ({len(prov['devices'])} device(s)), "
             f"commit `{(prov['git_commit'] or 'unknown')[:10]}`, {prov['time_utc']}.", "",
             f"**Overall: {report['status'].upper()}** "
             f"({counts.get('pass', 0)}/{len(report['claims'])} claims pass"
             + "".join(f", {counts[status]} {status}" for status in STATUSES[1:]
                       if status in counts)
             + f"; wall time {report.get('wall_seconds', 0):.1f} s)", ""]
    if weak:
        lines += [f"Weak detection power (see below): {', '.join(weak)}.", ""]
    lines += ["| claim | status | evidence rows | vacuous rows | numerical rows | max abs t "
              "(exact) | tightness ratio range (bounds) | significant violations | seconds |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in report["claims"]:
        s = c.get("summary", {})
        ratio = (f"{_fmt(s['min_ratio'], 3)} – {_fmt(s['max_ratio'], 3)}"
                 if s.get("max_ratio") is not None else "—")
        numerical = s.get("numerical_rows", "—")
        if s.get("numerical_violations"):
            numerical = f"{numerical} ({s['numerical_violations']} beyond tolerance)"
        elif s.get("numerical_raw_exceedances"):
            numerical = f"{numerical} ({s['numerical_raw_exceedances']} above, not significant)"
        lines.append(f"| {c['id']} | {_status_text(c)} | {s.get('evidence_rows', '—')} | "
                     f"{s.get('vacuous_rows', '—')} | {numerical} | "
                     f"{_fmt(s.get('max_abs_z'), 3)} | {ratio} | "
                     f"{s.get('violations', '—')} | {_fmt(c.get('seconds'), 3)} |")
    lines += ["", "Every statistic is t = (MC mean − theory)/SE referred to Student's t with the "
              "SE's degrees of freedom (replicas − 1 unless a row says otherwise). Exact rows: "
              "two-sided. Bound rows: ratio = MC mean / bound with its 95% MC interval; a "
              "violation is a Holm-significant one-sided exceedance. Rate rows: a fitted "
              "exponent fails when significantly above the stated one. Evidence rows share one "
              "Holm family at the claim's α. Vacuous rows (a bound at the quantity's trivial "
              "range, e.g. a TV bound ≥ 1) cannot fail and are not evidence. Numerical rows "
              "(grid budgets, tail masses) form a Holm family of their own: one beyond its "
              "tolerance fails the claim, but they never count as evidence. A claim without "
              "tested evidence rows fails, unless it declares itself report-only (`untested`).",
              ""]
    lines += _power_section(report["claims"])
    for c in report["claims"]:
        lines += ["", f"## {c['id']}: {c['title']}", "", f"Status: **{_status_text(c)}**"
                  + (f": {c['message']}" if c["message"] else "")]
        for reason in c.get("summary", {}).get("power", {}).get("weak_reasons", []):
            lines.append(f"- weak: {reason}")
        for note in c.get("notes", []):
            lines.append(f"- {note}")
        for index, point in enumerate(c["points"]):
            rows = [r for r in c["rows"] if r["point"] == index]
            if not rows:
                continue
            evidence = [r for r in rows if r["kind"] != "numerical"]
            numerical = [r for r in rows if r["kind"] == "numerical"]
            lines += ["", f"Point {index}: {_point_text(point)} ({rows[0]['replicas']} replicas)",
                      ""]
            if evidence:
                lines += _rows_table(evidence, max_rows_per_point)
            if numerical:
                lines += ["", "Numerical-quality rows (checked, not evidence):", ""]
                lines += _rows_table(numerical, max_rows_per_point)
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | os.PathLike, report: dict) -> None:
    """Write ``report.json`` and ``report.md`` together, atomically (both or neither)."""
    out_dir = Path(out_dir)
    _replace_all([(out_dir / "report.json", _json_text(report)),
                  (out_dir / "report.md", render_markdown(_with_run_facts(report)))])


def _with_run_facts(report: dict) -> dict:
    """The report as ``render_markdown`` reads it: timings put back next to what they time.

    ``verify.all`` keeps timings in ``report["run"]`` so that two runs of the same
    inputs write the same ``report.json`` apart from that field.
    """
    run = report.get("run")
    if run is None:
        return report
    seconds = {k: v["seconds"] for k, v in run.get("claims", {}).items()}
    return {**report, "wall_seconds": run.get("wall_seconds", 0),
            "provenance": {**report["provenance"], "time_utc": run.get("started_utc", "")},
            "claims": [{**c, "seconds": seconds.get(c["id"])} for c in report["claims"]]}
