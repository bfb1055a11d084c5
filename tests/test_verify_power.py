"""Harness rules on synthetic claims (no simulations): NaN is an error, numerical rows are
not evidence, claims without evidence are untested, detection power is what we compute by
hand, weak checks are flagged, and the baseline catches dropped or downgraded rows."""
import dataclasses
import json
import math
import numpy as np
import pytest
from scipy.stats import t as scipy_t

from verify import baseline, report, stats
from verify.claim import Claim, Measured, Theory, evaluate

def _claim(quantities, *, alpha=1e-3, claim_id="SYN"):
    """A claim with one grid point whose rows are ``{name: (mean, se, kind, theory)}`` lists."""
    def measure(key, point):
        return {name: Measured(np.arange(len(rows)), np.array([r[0] for r in rows], float),
                               np.array([r[1] for r in rows], float), 1000)
                for name, rows in quantities.items()}

    def theory(point):
        return {name: Theory(rows[0][2], np.array([r[3] for r in rows], float))
                for name, rows in quantities.items() if rows[0][2] != "report"}

    return Claim(claim_id, "synthetic", lambda mode: [{"a": 1}], measure, theory, alpha=alpha)


def _run(quantities, **kw):
    return evaluate(_claim(quantities, **kw), "quick", 0)


@pytest.mark.parametrize("field,kind", [("theory", "exact"), ("theory", "upper"),
                                        ("measured", "exact"), ("measured", "lower"),
                                        ("se", "exact"), ("theory", "numerical"),
                                        ("theory", "exceeds")])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_nonfinite_tested_row_is_an_error_that_names_it(field, kind, bad):
    row = {"measured": 1.0, "se": 0.01, "theory": 1.0}
    row[field] = bad
    record = _run({"q": [(1.0, 0.01, kind, 1.0), (row["measured"], row["se"], kind,
                                                   row["theory"])]})
    assert record["status"] == "error"
    assert "point 0 (a=1), q at generation i=1 (" + kind + ")" in record["message"]
    assert f"{field} is {bad}" in record["message"]


def test_holm_refuses_nan_p_values():
    with pytest.raises(ValueError, match="NaN p-value"):
        stats.holm([0.5, math.nan], 0.05)


def test_numerical_rows_are_checked_but_never_evidence():
    record = _run({"q": [(1.0, 0.01, "exact", 1.0)], "grid error": [(1e-6, 0.0, "numerical", 1e-3)]})
    s = record["summary"]
    assert record["status"] == "pass"
    # numerical rows have a Holm family of their own
    assert (s["evidence_rows"], s["numerical_rows"], s["holm_family"]) == (1, 1, 1)
    assert s["numerical_family"] == 1
    assert "bound_rows" not in s and "bound" not in s["power"]
    # a violated budget still fails the claim: it is checked, and the message names it
    record = _run({"q": [(1.0, 0.01, "exact", 1.0)], "grid error": [(2e-3, 0.0, "numerical", 1e-3)]})
    assert record["status"] == "fail" and record["summary"]["numerical_violations"] == 1
    assert "1 numerical row(s) beyond their tolerance" in record["message"]
    assert "grid error at generation i=0" in record["message"]


def test_numerical_rows_do_not_dilute_the_evidence_family():
    """A wrong exact row at p ~ 1e-4 is rejected at alpha = 1e-3 with one evidence row, however
    many budgets the claim also checks (one Holm family would have needed p < 1e-3 / 81)."""
    t = float(stats.t_isf(0.5e-4, 999))  # a two-sided p of 1e-4
    wrong = [(1.0 + t * 0.01, 0.01, "exact", 1.0)]
    budgets = [(1e-6, 1e-7, "numerical", 1e-3)] * 80
    record = _run({"e": wrong, "budget": budgets})
    assert record["status"] == "fail" and record["summary"]["holm_family"] == 1


def test_a_claim_without_evidence_rows_fails_unless_declared_report_only():
    quantities = {"grid error": [(1e-6, 0.0, "numerical", 1e-3)],
                  "shown": [(3.0, 0.1, "report", 0.0)]}
    record = _run(quantities)
    assert record["status"] == "fail"
    assert "no tested evidence row" in record["message"] and "report_only" in record["message"]
    declared = evaluate(dataclasses.replace(_claim(quantities), report_only="a pilot study"),
                        "quick", 0)
    assert declared["status"] == "untested"
    assert declared["message"].startswith("report-only: a pilot study")
    text = report.render_markdown(_report([declared]))
    assert "| SYN | untested |" in text and "1 untested" in text


def test_detection_power_equals_the_hand_computation():
    alpha, k = 1e-3, 4
    record = _run({"e": [(2.0, 0.01, "exact", 2.0), (1.0, 0.02, "exact", 1.0)],
                   "u": [(0.5, 0.01, "upper", 1.0)], "l": [(3.0, 0.1, "lower", 1.0)],
                   "x": [(1.0, 0.2, "exceeds", 0.0)]}, alpha=alpha)
    power = record["summary"]["power"]
    assert power["family_size"] == k  # the exceeds row is tested on its own
    dof = 999  # 1000 replicas: Student t quantiles (scipy's, an independent implementation)
    z2 = scipy_t.isf(alpha / (2 * k), dof)
    assert power["exact"]["min_detectable_rel_error"] == pytest.approx(z2 * 0.01 / 2, rel=1e-9)
    assert power["exact"]["max_detectable_rel_error"] == pytest.approx(z2 * 0.02 / 1, rel=1e-9)
    z1 = scipy_t.isf(alpha / k, dof)
    upper_slack = 1 / (0.5 - z1 * 0.01)        # the bound 1 could shrink to 0.5 - z1 SE
    lower_slack = (3.0 + z1 * 0.1) / 1.0        # the bound 1 could grow to 3 + z1 SE
    assert power["bound"]["slack"] == pytest.approx(min(upper_slack, lower_slack), rel=1e-9)
    assert "u at" in power["bound"]["tightest_row"]
    assert power["effect"]["min_resolved_effect"] == pytest.approx(scipy_t.isf(0.01, dof) * 0.2,
                                                                   rel=1e-9)
    assert not power["weak"] and record["status"] == "pass"


def test_the_detectable_error_is_the_error_the_run_rejects():
    """Planting an error just above (below) delta in the best row is (is not) rejected."""
    rows = [(2.0, 0.01, "exact", 2.0), (1.0, 0.02, "exact", 1.0)]
    delta = _run({"e": rows})["summary"]["power"]["exact"]["min_detectable_rel_error"]
    for factor, status in ((1 + 1.01 * delta, "fail"), (1 + 0.99 * delta, "pass")):
        planted = [(2.0, 0.01, "exact", 2.0 * factor), rows[1]]
        assert _run({"e": planted})["status"] == status


@pytest.mark.parametrize("quantities,reason", [
    ({"e": [(1.0, 0.1, "exact", 1.0), (2.0, 0.2, "exact", 2.0)]}, "exact rows miss"),
    ({"u": [(0.05, 0.001, "upper", 1.0), (0.01, 0.001, "upper", 1.0)]}, "every bound"),
    ({"l": [(30.0, 0.01, "lower", 1.0)]}, "every bound"),
])
def test_weak_checks_are_flagged_next_to_a_pass(quantities, reason):
    record = _run(quantities)
    power = record["summary"]["power"]
    assert record["status"] == "pass" and power["weak"]
    assert any(reason in r for r in power["weak_reasons"])
    text = report.render_markdown(_report([record]))
    assert "pass (weak)" in text and reason in text


def test_deterministic_rows_are_not_monte_carlo_evidence():
    """SE = 0 rows (theory against a grid search) give no sampling power and are counted apart."""
    record = _run({"peak": [(0.155, 0.0, "upper", 0.155 * (1 + 1e-9))] * 3})
    power = record["summary"]["power"]
    assert record["status"] == "pass" and power["deterministic_rows"] == 3
    assert "bound" not in power and power["weak"]
    assert "every evidence row is deterministic" in power["weak_reasons"][0]
    mixed = _run({"peak": [(0.155, 0.0, "upper", 0.155)], "e": [(1.0, 0.001, "exact", 1.0)]})
    power = mixed["summary"]["power"]
    assert power["deterministic_rows"] == 1 and not power["weak"] and "bound" not in power
    assert "1 deterministic row(s)" in report.results_table(_report([mixed]))


def test_a_sensitive_row_keeps_a_claim_from_being_weak():
    record = _run({"e": [(1.0, 0.1, "exact", 1.0), (2.0, 0.002, "exact", 2.0)],
                   "u": [(0.05, 0.001, "upper", 1.0), (0.9, 0.001, "upper", 1.0)]})
    assert not record["summary"]["power"]["weak"]


def _mc_claim(theory_factor):
    """A real Monte Carlo check: the mean of N(1, 1) draws against theory 1 (times a factor)."""
    def measure(key, point):
        draws = np.random.default_rng(point["seed"]).normal(1.0, 1.0, size=(20_000, 3))
        return {"mean": Measured(np.arange(3), draws.mean(0), draws.std(0, ddof=1) / np.sqrt(20_000),
                                 20_000)}

    return Claim("MC", "mean of N(1,1)", lambda mode: [{"seed": 1}, {"seed": 2}], measure,
                 lambda point: {"mean": Theory("exact", np.full(3, theory_factor))})


def test_negative_control_a_theory_five_percent_off_fails():
    good, bad = evaluate(_mc_claim(1.0), "quick", 0), evaluate(_mc_claim(1.05), "quick", 0)
    assert good["status"] == "pass", good["message"]
    assert bad["status"] == "fail" and bad["summary"]["rejected"] == 6
    # and the run said beforehand that it could see it
    assert good["summary"]["power"]["exact"]["max_detectable_rel_error"] < 0.05


def _report(records):
    prov = {"mode": "quick", "seed": 0, "versions": {"jax": "x", "numpy": "y"}, "prng_impl": "p",
            "backend": "cpu", "devices": ["cpu"], "git_commit": None, "time_utc": "now"}
    status = "pass" if all(r["status"] == "pass" for r in records) else "fail"
    return {"status": status, "provenance": prov, "claims": records}


def test_results_table_lists_evidence_numerical_rows_power_and_status():
    records = [_run({"e": [(2.0, 0.01, "exact", 2.0)], "n": [(0.0, 0.0, "numerical", 1.0)]}),
               _run({"u": [(0.05, 0.001, "upper", 1.0)]}, claim_id="LOOSE")]
    lines = report.results_table(_report(records)).splitlines()
    assert lines[0].startswith("| claim | what | status | evidence rows | vacuous rows | "
                               "numerical rows")
    assert lines[2].startswith("| SYN | synthetic | pass | 1 | 0 | 1 | exact: detects rel. errors ")
    assert lines[3].startswith("| LOOSE | synthetic | pass (weak) | 1 | 0 | 0 | bounds: slack ")
    text = report.render_markdown(_report(records))
    assert "Numerical-quality rows (checked, not evidence)" in text
    assert "## Detection power" in text


def _snapshot_of(quantities):
    record = _run(quantities)
    return record, baseline.snapshot([record], "quick", 0)


def test_baseline_catches_a_downgraded_and_a_dropped_row():
    rows = [(1.0, 0.01, "exact", 1.0), (2.0, 0.01, "exact", 2.0)]
    record, snap = _snapshot_of({"e": rows, "u": [(0.5, 0.01, "upper", 1.0)]})
    assert baseline.check([record], snap, "quick", 0) == []
    downgraded = _run({"e": rows, "u": [(0.5, 0.01, "report", 1.0)]})
    problems = baseline.check([downgraded], snap, "quick", 0)
    assert ("SYN [0|u|0]: kind changed upper -> report (downgraded to report-only: "
            "no longer tested)") in problems
    to_numerical = _run({"e": rows, "u": [(0.5, 0.01, "numerical", 1.0)]})
    assert "upper -> numerical (no longer evidence)" in baseline.check([to_numerical], snap,
                                                                        "quick", 0)[0]
    dropped = _run({"e": rows[:1], "u": [(0.5, 0.01, "upper", 1.0)]})
    assert baseline.check([dropped], snap, "quick", 0) == [
        "SYN [0|e|1]: exact tested row dropped (missing from this run)"]


def test_baseline_reads_nonfinite_numbers_written_as_strings():
    record, snap = _snapshot_of({"e": [(1.0, 0.01, "exact", 1.0)]})
    snap["claims"]["SYN"]["rows"]["0|e|0"]["measured"] = "nan"  # as report._clean writes NaN
    problems = baseline.check([record], snap, "quick", 0)
    assert len(problems) == 1 and "measured moved nan -> 1" in problems[0]


def test_results_table_reads_a_saved_report(tmp_path):
    """The lead builds the README table from report.json, where inf is written as a string."""
    record = _run({"u": [(0.001, 0.01, "upper", 1.0)]})  # mean - z SE < 0: infinite slack
    assert record["summary"]["power"]["bound"]["slack"] == math.inf
    report.atomic_write_json(tmp_path / "report.json", _report([record]))
    saved = json.loads((tmp_path / "report.json").read_text())
    assert "| SYN | synthetic | pass (weak) | 1 | 0 | 0 | bounds: slack ∞: this run could not flag any value of the bound |" in (
        report.results_table(saved))
