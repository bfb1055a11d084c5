"""The harness end to end: negative controls, error reporting, atomic reports, CLI, baseline."""
import dataclasses
import functools
import json
import os
import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest

import sims
from sims.models import GaussianParams, gaussian
from verify import all as verify_all, baseline, report
from verify.claim import REGISTRY, Claim, Measured, control, evaluate

import quick_run


@functools.lru_cache(maxsize=None)
def quick(claim_id, **overrides):
    claim = REGISTRY[claim_id]
    if overrides:
        claim = dataclasses.replace(claim, **dict(overrides))
    return evaluate(claim, "quick", seed=0)


NEGATIVE_CONTROLS = {  # the claim and the part swapped (verify.control)
    "P1 exponent off by one (g+1)": ("P1", dict(exponent_offset=1)),
    "P1 exponent off by one (g-1)": ("P1", dict(exponent_offset=-1)),
    "P5 with 1.5 in place of pi^2/6": ("P5", dict(constant=1.5)),
    "P5 with mean-biased synthetic noise": ("P5", dict(noise_bias=0.5)),
    "P8 with a dropped (1-lam) factor": ("P8", dict(drop_factor=True)),
}


@pytest.mark.parametrize("name", NEGATIVE_CONTROLS)
def test_negative_controls_are_flagged(name):
    claim_id, swaps = NEGATIVE_CONTROLS[name]
    record = evaluate(control(REGISTRY[claim_id], **swaps), "quick", 0)
    assert record["status"] == "fail", record["summary"]
    assert record["summary"]["rejected"] >= 1


def test_p5_bound_control_is_a_violation_not_just_a_mismatch():
    record = evaluate(control(REGISTRY["P5"], constant=1.5), "quick", 0)
    assert record["summary"]["violations"] >= 1
    assert record["summary"]["max_ratio"] > 1


@pytest.mark.fresh_measurements
@pytest.mark.parametrize("claim_id", ["P1", "P5", "P8"])
def test_correct_predictions_pass_deterministically(claim_id):
    first = evaluate(REGISTRY[claim_id], "quick", 0)
    assert first["status"] == "pass", first["message"]
    again = evaluate(REGISTRY[claim_id], "quick", 0)
    assert [r["measured"] for r in first["rows"]] == [r["measured"] for r in again["rows"]]


def _nan_metric(key, gen, truth):
    return {"v": jnp.where(gen.index == 2, jnp.inf, gen.params.cov[0, 0])}


def _nan_measure(key, point):
    plan = sims.make_plan("synthetic", n=5, generations=4)
    scale = point["scale"]
    m = sims.run(key, gaussian(1), GaussianParams(jnp.zeros(1), scale * jnp.eye(1)), plan,
                 _nan_metric if scale > 1 else _finite_metric, replicas=8, batch_size=8,
                 reduce=True)
    return {"v": Measured(np.arange(4), m.mean["v"], m.se["v"], m.count)}


def _finite_metric(key, gen, truth):
    return {"v": gen.params.cov[0, 0]}


def test_nonfinite_values_are_reported_with_claim_grid_point_and_generation():
    toy = Claim("TOY", "toy", lambda mode: [{"scale": 1.0}, {"scale": 2.0}], _nan_measure,
                lambda p: {})
    record = evaluate(toy, "quick", 0)
    assert record["status"] == "error"
    assert "TOY at grid point 1 (scale=2.0)" in record["message"]
    assert "generation 2" in record["message"]


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    report.atomic_write_json(path, {"a": 1})
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        report.atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp file left behind


def test_cli_writes_report_with_provenance_figures_and_resumes(tmp_path, capsys):
    out, fig = tmp_path / "out", tmp_path / "fig"
    args = ["--quick", "--only", "P7", "--out", str(out), "--figures-dir", str(fig), "--seed", "3"]
    assert verify_all.main(args) == 0
    data = json.loads((out / "report.json").read_text())
    prov = data["provenance"]
    assert prov["seed"] == 3 and prov["mode"] == "quick"
    assert {"jax", "jaxlib", "numpy"} <= set(prov["versions"]) and prov["prng_impl"]
    row = data["claims"][0]["rows"][0]
    assert {"measured", "se", "theory", "z", "kind"} <= set(row)
    assert (out / "report.md").read_text().startswith("# Verification report")
    assert (fig / "P7.png").stat().st_size > 10_000
    capsys.readouterr()
    assert verify_all.main(args + ["--resume"]) == 0
    assert "resumed" in capsys.readouterr().out


def test_cli_rejects_unknown_claims():
    assert verify_all.main(["--only", "P99"]) == 2


def test_baseline_catches_a_changed_constant():
    good = evaluate(REGISTRY["P5"], "quick", 0)
    snap = baseline.snapshot([good], "quick", 0)
    assert baseline.check([good], snap, "quick", 0) == []
    bad = evaluate(control(REGISTRY["P5"], constant=1.6), "quick", 0)
    problems = baseline.check([bad], snap, "quick", 0)
    assert any("value changed" in p for p in problems)


def test_quick_run_passes_every_claim_and_matches_the_committed_baseline(tmp_path, capsys):
    """The README's main command on the quick grid, with the tightness regression check, for
    every claim but those a family test file runs (``tests/quick_run.py``).

    In this process and one claim at a time, so that it reuses the measurements the
    per-claim tests made (the same claim, seed and point measure the same); worker
    processes (``--jobs 2``) are tested in tests/test_resume.py, and
    ``test_the_cli_error_has_no_traceback_in_a_real_process`` runs the CLI as a process.
    """
    report_data = quick_run.assert_quick_run_passes(list(quick_run.IN_FAMILY_FILES), tmp_path,
                                                    capsys, skip=True)
    family_files = {c for i in quick_run.IN_FAMILY_FILES for c in REGISTRY
                    if c == i or c.startswith(i + "-")}  # --only A2 runs A2-gamma too
    assert {c["id"] for c in report_data["claims"]} == set(REGISTRY) - family_files


def test_every_claim_is_in_exactly_one_quick_run():
    """The split quick run is the whole command: each claim a family file takes is a real
    claim, and that file runs it."""
    assert set(quick_run.IN_FAMILY_FILES) <= set(REGISTRY)
    for claim_id, name in quick_run.IN_FAMILY_FILES.items():
        text = (pathlib.Path(__file__).parent / name).read_text()
        assert "assert_quick_run_passes(claims_checked_in(__file__)" in text, (claim_id, name)
    assert quick_run.claims_checked_in("tests/test_diffusion.py") == [
        "B2-oneshot", "B2-loop", "B3-diffusion"]


def _baseline_copy(tmp_path, **changes) -> pathlib.Path:
    """The committed baseline with ``changes`` (a claim ID -> entry, or None to drop it)."""
    data = json.loads(baseline.BASELINE_PATH.read_text())
    for claim_id, entry in changes.items():
        if entry is None:
            data["claims"].pop(claim_id)
        else:
            data["claims"][claim_id] = entry
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(data))
    return path


def test_write_baseline_for_one_claim_keeps_the_others(tmp_path):
    path = _baseline_copy(tmp_path, P7=None)
    before = json.loads(path.read_text())
    assert verify_all.main(["--quick", "--only", "P7", "--write-baseline", "--baseline",
                            str(path), "--no-figures", "--out", str(tmp_path / "out")]) == 0
    after = json.loads(path.read_text())
    assert after["claims"].pop("P7")["status"] == "pass"
    assert after == before


def test_write_baseline_for_one_claim_needs_the_files_mode_and_seed(tmp_path, capsys):
    path = _baseline_copy(tmp_path)
    assert verify_all.main(["--quick", "--seed", "1", "--only", "P7", "--write-baseline",
                            "--baseline", str(path), "--no-figures", "--out",
                            str(tmp_path / "out")]) == 2
    assert "seed=0" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_baseline_claim_missing_from_the_run_is_a_problem(tmp_path, capsys):
    """P7-old (a renamed check, say) is pinned and named by --only P7, but did not run."""
    entry = json.loads(baseline.BASELINE_PATH.read_text())["claims"]["P7"]
    path = _baseline_copy(tmp_path, **{"P7-old": entry})
    assert verify_all.main(["--quick", "--only", "P7", "--check-baseline", "--baseline",
                            str(path), "--no-figures", "--out", str(tmp_path / "out")]) == 1
    assert "baseline: P7-old: in the baseline but not in this run" in capsys.readouterr().out


def test_baseline_check_reports_only_the_expected_missing_claims():
    snap = {"mode": "quick", "seed": 0, "claims": {"A": {}, "B": {}}}
    assert baseline.check([], snap, "quick", 0) == []
    assert baseline.check([], snap, "quick", 0, expected=["B"]) == [
        "B: in the baseline but not in this run (renamed or no longer registered?)"]


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{", "not valid JSON"),
    ("[]", "not a baseline (expected a JSON object"),
    ('{"mode": "quick", "seed": 0}', "a dict under 'claims'"),
    ('{"mode": "quick", "seed": 0, "claims": {"P1": {"status": "pass"}}}', "claim 'P1'"),
    ('{"mode": "full", "seed": 0, "claims": {}}', "made with mode=full seed=0"),
])
def test_baseline_read_rejects_an_unusable_file(tmp_path, content, message):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(baseline.BaselineError, match=re.escape(message)):
        baseline.read(path, "quick", 0)


def test_the_committed_baseline_is_readable():
    data = json.loads(baseline.BASELINE_PATH.read_text())
    assert baseline.read(baseline.BASELINE_PATH, data["mode"], data["seed"]) == data


def _scaled(theory, factor):
    """A theory whose exact predictions are all off by ``factor`` (a negative control)."""
    def wrong(point, *context):
        return {q: t._replace(value=np.asarray(t.value) * factor) if t.kind == "exact" else t
                for q, t in theory(point, *context).items()}
    return wrong


@pytest.mark.parametrize("claim_id", ["P2", "P3", "P4", "P6", "P7"])
def test_every_peer_check_detects_a_five_percent_error(claim_id):
    claim = REGISTRY[claim_id]
    record = evaluate(dataclasses.replace(claim, theory=_scaled(claim.theory, 1.05)), "quick", 0)
    assert record["status"] == "fail", record["summary"]


def test_reports_are_written_with_normal_permissions(tmp_path):
    """Atomic writes go through mkstemp (0600); the final file must be readable like any other."""
    import os
    import stat
    from verify import report
    report.atomic_write_text(tmp_path / "r.md", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "r.md").stat().st_mode) == 0o666 & ~mask
