"""Does a verdict depend on the seed? Run ``verify.all`` at many seeds and count failures.

``python -m verify.seeds --quick --seeds 0-20`` runs ``python -m verify.all --quick --seed s``
for each seed (into ``OUT/seed-S``; finished points are kept, so an interrupted sweep
resumes) and prints, per claim, the seeds at which it did not pass, and the number of
failing runs beside what the claims' levels allow: with ``k`` claims each at family-wise
level ``alpha`` (plus one ``EFFECT_ALPHA`` per effect row), a correct tree fails a run with
probability at most about ``k alpha``. ``--only`` restricts the claims, as in
``verify.all``. A dev tool: the README quotes its result.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["parse_seeds", "sweep", "main"]


def parse_seeds(text: str) -> list[int]:
    """``"0-20"`` or ``"1,3,5"`` (or both, comma-separated) as a sorted list of seeds."""
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            values = range(int(low), int(high) + 1) if sep else [int(low)]
        except ValueError:
            raise ValueError(f"--seeds: expected ranges like 0-20 or lists like 1,3,5, got "
                             f"{text!r}") from None
        seeds.update(values)
    if not seeds or min(seeds) < 0:
        raise ValueError(f"--seeds must name seeds >= 0, got {text!r}")
    return sorted(seeds)


def sweep(seeds, mode_flags, out: Path, only: str = "", jobs: int | None = None) -> dict:
    """Run ``verify.all`` once per seed; return ``{seed: {claim: status}}``."""
    from verify import all as verify_all
    statuses = {}
    for seed in seeds:
        target = out / f"seed-{seed}"
        argv = [*mode_flags, "--seed", str(seed), "--out", str(target), "--no-figures"]
        argv += ["--only", only] if only else []
        argv += ["--jobs", str(jobs)] if jobs else []
        code = verify_all.main(argv)
        if code not in (0, 1):
            raise SystemExit(code)
        report = json.loads((target / "report.json").read_text())
        statuses[seed] = {c["id"]: c["status"] for c in report["claims"]}
        failed = [cid for cid, status in statuses[seed].items() if status != "pass"]
        print(f"seed {seed}: {'pass' if not failed else 'FAIL ' + ', '.join(failed)}",
              flush=True)
    return statuses


def summary(statuses: dict) -> str:
    """Per claim, the seeds at which it did not pass; then the failing-run count."""
    claims = sorted({cid for run in statuses.values() for cid in run})
    lines = ["| claim | runs | not pass at seeds |", "|---|---|---|"]
    for cid in claims:
        bad = [str(s) for s, run in statuses.items() if run.get(cid, "pass") != "pass"]
        lines.append(f"| {cid} | {sum(cid in run for run in statuses.values())} | "
                     f"{', '.join(bad) or '—'} |")
    failing = sum(any(v != "pass" for v in run.values()) for run in statuses.values())
    lines.append(f"\n{failing} of {len(statuses)} runs failed a claim.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.seeds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--full", action="store_true")
    parser.add_argument("--seeds", default="0-20", help="e.g. 0-20 or 1,3,5 (default 0-20)")
    parser.add_argument("--only", default="", help="claim IDs or families, as in verify.all")
    parser.add_argument("--out", default="results/seeds", help="one folder per seed below it")
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as err:
        parser.error(str(err))
    flags = ["--quick"] if args.quick else ["--full"] if args.full else []
    statuses = sweep(seeds, flags, Path(args.out), args.only, args.jobs)
    text = summary(statuses)
    print(text)
    (Path(args.out) / "summary.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
