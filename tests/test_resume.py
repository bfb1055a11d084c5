"""Sweeps survive interruption, corrupted records and faults (verify.store, verify.all).

A subprocess runs a small four-point claim (tests/toy_sweep.py) and sends itself
SIGINT or SIGKILL at the third point; the rerun of the same command computes only
what is missing and writes the same report.json as an uninterrupted run, apart
from its ``run`` field (timings, compile counts, what was reused).
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import toy_sweep
from verify import all as verify_all
from verify.claim import REGISTRY, evaluate
from verify.store import PointStore

from conftest import ROOT

SCRIPT = str(ROOT / "tests" / "toy_sweep.py")
# The toy claim fails or signals where the environment says: never reuse its measurements.
pytestmark = pytest.mark.fresh_measurements


@pytest.fixture(autouse=True)
def _children_take_ctrl_c():
    """A session started in the background (`pytest &` in a script) ignores SIGINT, and
    the CLI processes it starts would inherit that: give them Ctrl-C as a terminal would
    (a handled signal is reset to its default across exec; an ignored one stays ignored)."""
    before = signal.getsignal(signal.SIGINT)
    if before == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _cli(out, *extra, **env):
    """Run the toy sweep through the CLI in a fresh process; returns the CompletedProcess."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, SCRIPT, "--quick", "--only", toy_sweep.ID, "--out",
                           str(out), "--no-figures", *extra], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=300)


def _report(out):
    data = json.loads((out / "report.json").read_text())
    data.pop("run")
    return data


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: the path the other runs reuse, its report, its stored points."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    result = _cli(out)
    assert result.returncode == 0, result.stderr
    expected, points = _report(out), out.parent / "points"
    shutil.move(out / "points", points)
    shutil.rmtree(out)
    return out, expected, points


@pytest.mark.parametrize("signal_name, returncode", [("INT", 130), ("KILL", -9)])
def test_an_interrupted_sweep_resumes_to_the_same_report(reference, signal_name, returncode):
    out, expected, _ = reference
    try:
        stopped = _cli(out, STL_TOY_SIGNAL=signal_name, STL_TOY_AT="2")
        assert stopped.returncode == returncode, stopped.stderr
        assert sorted(p.name for p in (out / "points" / toy_sweep.ID).iterdir()) == ["0.json",
                                                                                      "1.json"]
        assert not (out / "report.json").exists()  # no partial report
        resumed = _cli(out)
        assert resumed.returncode == 0, resumed.stderr
        assert "2/4 points resumed" in resumed.stdout
        assert _report(out) == expected
        run = json.loads((out / "report.json").read_text())["run"]
        assert run["claims"][toy_sweep.ID]["points_reused"] == 2
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_corrupted_records_are_reported_and_recomputed(reference):
    out, expected, saved = reference
    try:
        shutil.copytree(saved, out / "points")
        points = out / "points" / toy_sweep.ID
        text = (points / "1.json").read_text()
        (points / "1.json").write_text(text[: len(text) // 2])  # truncated
        tampered = json.loads((points / "3.json").read_text())
        tampered["result"]["rows"][0]["measured"] += 1.0  # well-formed, but not what was stored
        (points / "3.json").write_text(json.dumps(tampered))
        rerun = _cli(out)
        assert rerun.returncode == 0, rerun.stderr
        assert rerun.stderr.count("corrupted record") == 2, rerun.stderr
        assert "2/4 points resumed" in rerun.stdout
        assert _report(out) == expected
        assert len(json.loads((out / "report.json").read_text())["run"]["store_problems"]) == 2
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_fresh_recomputes_and_changed_settings_never_reuse(tmp_path):
    store = PointStore(tmp_path)
    first = evaluate(toy_sweep.CLAIM, "quick", 0, store=store)
    assert store.reused == 0 and first["status"] == "pass", first["message"]
    assert evaluate(toy_sweep.CLAIM, "quick", 0, store=store)["rows"] == first["rows"]
    assert store.reused == 4
    other_seed = evaluate(toy_sweep.CLAIM, "quick", 1, store=store)
    assert store.reused == 4 and other_seed["rows"] != first["rows"]
    fresh = PointStore(tmp_path, fresh=True)
    evaluate(toy_sweep.CLAIM, "quick", 1, store=fresh)
    assert fresh.reused == 0


def test_a_failing_point_keeps_every_other_point(monkeypatch):
    monkeypatch.setenv("STL_TOY_FAIL_AT", "1")
    record = evaluate(toy_sweep.CLAIM, "quick", 0)
    assert record["status"] == "error"
    assert [e["point"] for e in record["errors"]] == [1]
    assert ("TOY-sweep at grid point 1 (k=1, variance=2.0): RuntimeError: deliberate failure "
            "at k=1") in record["message"]
    assert sorted({r["point"] for r in record["rows"]}) == [0, 2, 3]


def test_the_cli_reports_a_failed_point_and_exits_nonzero(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(REGISTRY, toy_sweep.ID, toy_sweep.CLAIM)
    monkeypatch.setenv("STL_TOY_FAIL_AT", "2")
    assert verify_all.main(["--quick", "--only", toy_sweep.ID, "--out", str(tmp_path),
                            "--no-figures"]) == 1
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["status"] == "fail" and data["claims"][0]["status"] == "error"
    assert {r["point"] for r in data["claims"][0]["rows"]} == {0, 1, 3}
    assert "deliberate failure at k=2" in capsys.readouterr().out
    monkeypatch.delenv("STL_TOY_FAIL_AT")  # the rerun retries only the failed point
    assert verify_all.main(["--quick", "--only", toy_sweep.ID, "--out", str(tmp_path),
                            "--no-figures"]) == 0
    assert "3/4 points resumed" in capsys.readouterr().out


def test_a_full_disk_leaves_no_partial_report_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(REGISTRY, toy_sweep.ID, toy_sweep.CLAIM)
    args = ["--quick", "--only", toy_sweep.ID, "--out", str(tmp_path), "--no-figures"]
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up when the report is written
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".report"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert verify_all.main(args) == 1
    assert "No space left on device; no report written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points"]  # no report, no temp file
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert verify_all.main(args) == 0
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.md").exists()


def test_points_are_written_atomically_with_their_configuration(tmp_path):
    store = PointStore(tmp_path)
    evaluate(toy_sweep.CLAIM, "quick", 0, store=store)
    saved = json.loads((tmp_path / toy_sweep.ID / "0.json").read_text())
    assert saved["identity"] == {"claim": toy_sweep.ID, "mode": "quick", "seed": 0, "index": 0,
                                 "point": {"k": 0, "variance": 1.0}}
    assert len(saved["checksum"]) == 64 and saved["config_hash"]
    assert not [p for p in (tmp_path / toy_sweep.ID).iterdir() if p.name.startswith(".")]


def test_a_run_writes_figures_under_its_output_directory_not_into_the_checkout(tmp_path):
    committed = {p: p.stat().st_mtime_ns for p in (ROOT / "figures").glob("*.png")}
    assert verify_all.main(["--quick", "--only", "P7", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "figures" / "P7.png").stat().st_size > 10_000
    assert {p: p.stat().st_mtime_ns for p in (ROOT / "figures").glob("*.png")} == committed


def test_claims_in_worker_processes_resume_to_the_report_of_one_at_a_time(tmp_path):
    """Four claims in two worker processes, Ctrl-C midway, then resumed: the claims of a
    one-at-a-time run, whatever the order in which they finished."""
    argv = [sys.executable, "-m", "verify.all", "--quick", "--only", "P7,P2,P4,A3-mean",
            "--no-figures"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    one = subprocess.run([*argv, "--jobs", "1", "--out", str(tmp_path / "one")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    out = tmp_path / "two"
    cli = subprocess.Popen([*argv, "--jobs", "2", "--out", str(out)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not list((out / "points").glob("*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    cli.send_signal(signal.SIGINT)  # as Ctrl-C would, once a first point is stored
    _, err = cli.communicate(timeout=120)
    if cli.returncode == 0:
        pytest.skip("the sweep finished before the interruption arrived")
    assert cli.returncode == 130, err
    assert not (out / "report.json").exists()
    resumed = subprocess.run([*argv, "--jobs", "2", "--out", str(out)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "points resumed" in resumed.stdout
    two, first = _report(out), _report(tmp_path / "one")  # other --out and --jobs: same claims
    assert two["status"] == first["status"] and two["claims"] == first["claims"]
    run = json.loads((out / "report.json").read_text())["run"]
    assert run["jobs"] == 2 and run["cpu_seconds"] > 0 and run["cores_busy"] > 0
    assert run["compilation"]["executables"] > 0  # the workers' counts reach the report
