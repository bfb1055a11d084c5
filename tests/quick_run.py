"""The README's main command (``verify.all --quick --check-baseline``), split by family.

Run as one test it measured every claim a second time: the claims' own test files measure
the same quick points in other worker processes, and measurements are shared only within a
process (``verify.claim.reuse_measurements``). So the claims whose quick grid is expensive
are checked in the file that already measures them (``IN_FAMILY_FILES``), and
``tests/test_verify_harness.py`` checks every other claim; together they are the whole
command, which ``test_every_claim_is_in_exactly_one_quick_run`` keeps true.
"""
from __future__ import annotations

import json
import pathlib

from verify import all as verify_all

# claim ID -> the test file that runs its part of the quick run (it measures these points anyway)
IN_FAMILY_FILES = {
    "A2": "test_linear_attention.py",
    "A4": "test_transformer.py",
    "B2-oneshot": "test_diffusion.py",
    "B2-loop": "test_diffusion.py",
    "B3-diffusion": "test_diffusion.py",
}


def claims_checked_in(test_file: str) -> list[str]:
    """The claim IDs whose quick run ``test_file`` (a path or a name) checks."""
    name = pathlib.Path(test_file).name
    return [claim_id for claim_id, where in IN_FAMILY_FILES.items() if where == name]


def assert_quick_run_passes(claim_ids, tmp_path, capsys, *, skip=False) -> dict:
    """``verify.all --quick --check-baseline --only IDS`` (``skip``: ``--skip IDS``) in this
    process: every claim it runs passes and matches the committed baseline. Returns the report."""
    assert claim_ids, "no claim named"
    status = verify_all.main(["--quick", "--check-baseline", "--jobs", "1",
                              "--skip" if skip else "--only", ",".join(claim_ids),
                              "--out", str(tmp_path / "out"), "--figures-dir", str(tmp_path / "fig")])
    out, err = capsys.readouterr()
    assert status == 0, out[-4000:] + err[-4000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    statuses = {c["id"]: c["status"] for c in report["claims"]}
    ran = set(statuses)
    assert ran.isdisjoint(claim_ids) if skip else set(claim_ids) <= ran, statuses
    assert all(v == "pass" for v in statuses.values()), statuses
    return report
