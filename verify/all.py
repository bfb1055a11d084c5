"""``python -m verify.all``: check every registered claim, write the report, draw figures.

Exit status 0 when every selected claim passes (and, with ``--check-baseline``,
nothing regressed against ``verify/baseline.json``); 1 otherwise; 2 on bad usage.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

from verify import baseline, report
from verify.claim import MODES, REGISTRY, evaluate
import verify.claims  # noqa: F401  (registers the claims)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m verify.all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small grids (< 90 s); used by tests")
    size.add_argument("--full", action="store_true", help="large grids and replica counts")
    parser.add_argument("--only", default="", help="comma-separated claim IDs, e.g. P1,P4")
    parser.add_argument("--out", default="results", help="output directory (default: results/)")
    parser.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    parser.add_argument("--figures-dir", default="figures",
                        help="where PNGs go (default: figures/)")
    parser.add_argument("--no-figures", action="store_true", help="skip drawing figures")
    parser.add_argument("--resume", action="store_true",
                        help="reuse per-claim results in OUT/claims/ made with the same config")
    parser.add_argument("--check-baseline", action="store_true",
                        help="fail if a bound is violated or a statistic moved past the baseline")
    parser.add_argument("--write-baseline", action="store_true",
                        help="record this run as verify/baseline.json (all claims must pass)")
    parser.add_argument("--distributed", action="store_true",
                        help="multi-host: call jax.distributed.initialize() first (cluster "
                             "settings from the environment, e.g. SLURM or JAX_COORDINATOR_*)")
    parser.add_argument("--list", action="store_true", help="list the registered claims and exit")
    return parser.parse_args(argv)


def _selected(only: str):
    if not only:
        return list(REGISTRY.values())
    ids = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [i for i in ids if i not in REGISTRY]
    if unknown:
        print(f"error: unknown claim ID(s) {unknown}; known: {sorted(REGISTRY)}", file=sys.stderr)
        raise SystemExit(2)
    return [REGISTRY[i] for i in ids]


def _is_writer() -> bool:
    return jax.process_index() == 0


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.distributed:
        jax.distributed.initialize()  # before any computation; every host runs this same CLI
    if args.list:
        for claim in REGISTRY.values():
            print(f"{claim.id:6s} {claim.title}")
        return 0
    mode = "quick" if args.quick else "full" if args.full else "default"
    if args.write_baseline and args.only:
        print("error: --write-baseline records every claim; drop --only", file=sys.stderr)
        return 2
    claims = _selected(args.only)
    revision = report.provenance(args.seed, mode)["git_commit"]
    out = Path(args.out)
    started = time.perf_counter()
    records = []
    for claim in claims:
        path = out / "claims" / f"{claim.id}.json"
        # Resume only what the same code made with the same claim, mode, seed and grid.
        config = report.config_hash(claim.id, mode, args.seed, revision,
                                    list(map(dict, claim.grid(mode))))
        if args.resume and path.exists():
            saved = json.loads(path.read_text())
            if saved.get("config_hash") == config:
                print(f"{claim.id:6s} {saved['status']:5s} (resumed from {path})", flush=True)
                records.append(saved)
                continue
        tic = time.perf_counter()
        record = evaluate(claim, mode, args.seed, progress=sys.stderr.isatty())
        record["seconds"] = time.perf_counter() - tic
        record["config_hash"] = config
        if _is_writer():
            report.atomic_write_json(path, record)
        records.append(record)
        summary = record.get("summary", {})
        detail = (f"max|z|={summary['max_abs_z']:.2f} " if "max_abs_z" in summary else "") + (
            f"ratio≤{summary['max_ratio']:.3f} violations={summary['violations']}"
            if "max_ratio" in summary else "")
        print(f"{claim.id:6s} {record['status']:5s} {record['seconds']:6.1f}s  {detail} "
              f"{record['message']}".rstrip(), flush=True)
    status = "pass" if all(r["status"] == "pass" for r in records) else "fail"
    problems = []
    if args.check_baseline:
        problems = baseline.check(records, baseline.load(), mode, args.seed)
        for problem in problems:
            print(f"baseline: {problem}")
        if problems:
            status = "fail"
    from sims.loop import compile_count
    full = {"status": status, "provenance": report.provenance(args.seed, mode),
            "compiled_loops": compile_count(),
            "config": vars(args), "wall_seconds": time.perf_counter() - started,
            "baseline_problems": problems, "claims": records}
    if not _is_writer():  # on several hosts only process 0 writes; all compute
        return 0 if status == "pass" else 1
    report.write_report(out, full)
    if not args.no_figures:
        from verify import figures
        figures.draw_all(records, args.figures_dir, REGISTRY)
    if args.write_baseline:
        if status != "pass":
            print("not writing the baseline: some claims did not pass", file=sys.stderr)
            return 1
        report.atomic_write_json(baseline.BASELINE_PATH, baseline.snapshot(records, mode,
                                                                          args.seed))
        print(f"baseline written to {baseline.BASELINE_PATH}")
    print(f"{status.upper()}: {sum(r['status'] == 'pass' for r in records)}/{len(records)} claims "
          f"pass in {full['wall_seconds']:.1f} s; report in {out / 'report.md'}")
    return 0 if status == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
