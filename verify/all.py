"""``python -m verify.all``: check every registered claim, write the report, draw figures.

Every finished grid point is stored in ``OUT/points/`` as soon as it is done, so
rerunning the same command after an interruption computes only what is missing
(``--fresh`` recomputes everything). Figures go to ``OUT/figures/`` unless
``--figures-dir`` says otherwise (``--figures-dir figures`` refreshes the committed ones).
Claims run ``--jobs`` at a time (default: one per core) in worker processes; the numbers
do not depend on it, since every grid point's key is a function of (seed, claim, point).

Claims from outside the repository: ``--claims SPEC`` (repeatable; a dotted module name
or a path to a ``.py`` file) imports a module that registers claims, before ``--only``
selects; installed packages declare such modules in the entry-point group
``stl_verify.claims``. Worker processes load the same modules (``verify.plugins``).

Exit status 0 when every selected claim passes (and, with ``--check-baseline``,
nothing regressed against ``verify/baseline.json``); 1 when a claim fails or errors,
or the report cannot be written; 2 on bad usage (a one-line message); 130 when
interrupted (finished points are kept).
"""
from __future__ import annotations

import argparse
import datetime
import collections
import functools
import json
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import verify

verify.configure_cpu_runtime()  # before JAX's backend exists (see its docstring)

import jax  # noqa: E402
from verify import baseline, plugins, report
from sims.loop import chunk_progress, compile_count
from sims.programs import stored_count
from verify.cache import compile_stats, enable_compilation_cache
from verify.claim import REGISTRY, evaluate
from verify.store import PointStore
import verify.claims  # noqa: F401  (registers the claims)

PROG = "python -m verify.all"
# jax.random.key takes a seed that fits in a signed 64-bit integer.
MAX_SEED = 2**63 - 1


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class WorkerError(Exception):
    """A worker process could not start a claim: reported in one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit; we want one line
        raise UsageError(message)


def parse_args(argv):
    parser = _Parser(prog=PROG, description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="small grids (about 1 min on 2 cores with the caches filled, 6 min "
                           "cold); used by tests")
    size.add_argument("--full", action="store_true", help="large grids and replica counts")
    parser.add_argument("--only", default=None,
                        help="comma-separated claim IDs or families, e.g. P1,P4 or B1 (= B1-*)")
    parser.add_argument("--skip", default=None,
                        help="claim IDs or families left out (as --only names them), e.g. A4,B2")
    parser.add_argument("--claims", action="append", default=[], metavar="SPEC",
                        help="also load the claims registered by SPEC, a module name (mypkg.claims)"
                             " or a .py file; repeatable (installed packages: entry-point group "
                             f"{plugins.ENTRY_POINT_GROUP})")
    parser.add_argument("--out", default="results", help="output directory (default: results/)")
    parser.add_argument("--seed", type=int, default=0,
                        help="root seed, an integer in [0, 2**63 - 1] (default 0)")
    parser.add_argument("--figures-dir", default=None,
                        help="where figures go (default: OUT/figures; `figures` refreshes the "
                             "committed ones)")
    parser.add_argument("--figure-format", default="png",
                        help="comma-separated figure formats among png, pdf, svg (default png; "
                             "e.g. png,pdf for a paper)")
    parser.add_argument("--no-figures", action="store_true", help="skip drawing figures")
    parser.add_argument("--jobs", type=int, default=available_cores(),
                        help="claims evaluated at once, an integer >= 1 (default: the cores "
                             f"this process may use, here {available_cores()})")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--fresh", action="store_true",
                       help="recompute every grid point, ignoring OUT/points/")
    again.add_argument("--resume", action="store_true",
                       help="reuse finished grid points in OUT/points/ (the default; kept for "
                            "compatibility)")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not use the persistent compilation cache (also: "
                             "STL_VERIFY_CACHE_DIR=off; the variable also moves it)")
    parser.add_argument("--check-baseline", action="store_true",
                        help="fail if a bound is violated or a statistic moved past the baseline")
    parser.add_argument("--write-baseline", action="store_true",
                        help="record the selected claims in the baseline (they must pass); with "
                             "--only, the other claims' entries are kept")
    parser.add_argument("--baseline", default=str(baseline.BASELINE_PATH), metavar="PATH",
                        help="the baseline file (default: verify/baseline.json)")
    parser.add_argument("--distributed", action="store_true",
                        help="multi-host: call jax.distributed.initialize() first (cluster "
                             "settings from the environment, e.g. SLURM or JAX_COORDINATOR_*)")
    parser.add_argument("--list", action="store_true", help="list the registered claims and exit")
    args = parser.parse_args(argv)
    if not 0 <= args.seed <= MAX_SEED:
        raise UsageError(f"--seed must be an integer in [0, 2**63 - 1], got {args.seed}")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be an integer >= 1, got {args.jobs}")
    # An empty value is a mistake (an unset shell variable), not "the default".
    for flag, value in [("--only", args.only), ("--skip", args.skip), ("--out", args.out),
                        ("--figures-dir", args.figures_dir), ("--baseline", args.baseline),
                        *(("--claims", spec) for spec in args.claims)]:
        if value is not None and not value.strip():
            raise UsageError(f"{flag} must not be empty, got {value!r}")
    from verify.figures import parse_formats
    try:
        args.figure_format = parse_formats(args.figure_format)
    except ValueError as err:
        raise UsageError(f"--figure-format: {err}") from None
    return args


def select(only: str | None, skip: str | None = None) -> list:
    """The claims named by ``--only`` (all when ``None``), less those ``--skip`` names.

    A name selects the claim with that exact ID, if any, followed by its family: every
    ``name-*`` (``B1`` gives ``B1-synthetic``, ``B1-reuse``, ...; ``A2`` gives ``A2`` and
    ``A2-*``). A name that selects nothing, in either list, is an error listing the known IDs;
    so is a selection that leaves nothing.
    """
    chosen = dict(REGISTRY)
    if only is not None:
        chosen = _matching(only, "--only")
    if skip is not None:
        left_out = _matching(skip, "--skip")
        chosen = {i: c for i, c in chosen.items() if i not in left_out}
        if not chosen:
            raise UsageError(f"--skip {skip!r} leaves no claim to run")
    return list(chosen.values())


def _matching(value: str, flag: str) -> dict:
    names = _names(value)
    if not names:
        raise UsageError(f"{flag} must name at least one claim, got {value!r}")
    chosen = {}
    for name in names:
        matches = [i for i in REGISTRY if _named(i, [name])]
        matches.sort(key=lambda i: i != name)  # the exact ID first, then its family
        if not matches:
            raise UsageError(f"{flag}: unknown claim ID {name!r}; known: {', '.join(REGISTRY)}")
        chosen.update((i, REGISTRY[i]) for i in matches)
    return chosen


def _partial(args) -> bool:
    """Whether ``--only`` or ``--skip`` leaves some registered claims out of this run."""
    return args.only is not None or args.skip is not None


def _names(only: str) -> list[str]:
    return [s.strip() for s in only.split(",") if s.strip()]


def _named(claim_id: str, names: list[str]) -> bool:
    """Whether ``--only`` names ``claim_id``: its exact ID or its family (``name-*``)."""
    return any(claim_id == name or claim_id.startswith(name + "-") for name in names)


def _writable_dir(flag: str, path: Path) -> None:
    """Fail now, in one line, if ``path`` cannot hold our files (not after the sweep)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UsageError(f"{flag} {path}: not a writable directory "
                         f"({err.strerror or type(err).__name__})") from None


def _is_writer() -> bool:
    return jax.process_index() == 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verify.enable_float64()  # the claims' tolerances assume float64 (docs/api.md)
    try:
        return _main(argv)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except WorkerError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished grid points are kept, rerun the same command to "
              "resume", file=sys.stderr)
        return 130
    except OSError as err:  # e.g. a full disk; every write is atomic, so nothing is half written
        where = f" ({err.filename})" if err.filename else ""
        print(f"{PROG}: error: {err.strerror or err}{where}; no report written", file=sys.stderr)
        return 1


def _main(argv) -> int:
    args = parse_args(argv)
    try:  # before --only selects: out-of-tree claims are selected like built-in ones
        plugins.load_all(args.claims)
    except plugins.PluginError as err:
        raise UsageError(str(err)) from None
    if args.list:
        for claim in REGISTRY.values():
            print(f"{claim.id:6s} {claim.title}")
        return 0
    claims = select(args.only, args.skip)
    mode = "quick" if args.quick else "full" if args.full else "default"
    # The baseline is read before anything is computed: a bad one wastes no run.
    pinned = _read_baseline(args, mode) if args.check_baseline or args.write_baseline else None
    out = Path(args.out)
    figures_dir = Path(args.figures_dir) if args.figures_dir is not None else out / "figures"
    if args.distributed:
        jax.distributed.initialize()  # before any computation; every host runs this same CLI
    if _is_writer():
        _writable_dir("--out", out)
        if not args.no_figures:
            _writable_dir("--figures-dir", figures_dir)
    if not args.no_compile_cache:
        enable_compilation_cache()
    # On several hosts every process must compute the same points, so nothing is resumed.
    store = PointStore(out / "points", fresh=args.fresh) if jax.process_count() == 1 else None
    started, started_utc, cpu_before = time.perf_counter(), _utc_now(), _cpu_seconds()
    # On several hosts every process runs the same claims in step: no worker processes.
    jobs = 1 if jax.process_count() > 1 else args.jobs
    # Each claim's figure is drawn as soon as it is evaluated, by the worker that evaluated
    # it (before the report: a failed write leaves no report at all).
    draw_to = None if args.no_figures or not _is_writer() else (figures_dir, args.figure_format)
    records, per_claim, workers = _evaluate_all(claims, mode, args.seed, store, jobs, draw_to,
                                       cache=not args.no_compile_cache,
                                       expected=_previous_seconds(out / "report.json", mode),
                                       specs=args.claims)
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
    for problem in store.problems if store else []:
        print(f"warning: {problem}", file=sys.stderr)
    # "untested" (no evidence row: a finding) is never a pass, but it is not a failure either.
    status = "fail" if any(r["status"] in ("fail", "error") for r in records) else "pass"
    problems = []
    if args.check_baseline:
        # A pinned claim that did not run is a problem, unless --only or --skip left it out.
        wanted = [cid for cid in pinned["claims"]
                  if (args.only is None or _named(cid, _names(args.only)))
                  and (args.skip is None or not _named(cid, _names(args.skip)))]
        problems = baseline.check(records, pinned, mode, args.seed, expected=wanted)
        for problem in problems:
            print(f"baseline: {problem}")
        if problems:
            status = "fail"
    if not _is_writer():  # on several hosts only process 0 writes; all compute
        return 0 if status == "pass" else 1
    full = {"status": status, "provenance": report.provenance(args.seed, mode, [PROG, *argv]),
            # How many claims ran at once is not an input: it never changes a number.
            "config": {**{k: v for k, v in vars(args).items() if k != "jobs"},
                       "figures_dir": str(figures_dir)},
            "baseline_problems": problems, "claims": records,
            # Everything that depends on this execution rather than on its inputs:
            "run": {"started_utc": started_utc, "wall_seconds": wall, "jobs": jobs,
                    "cpu_seconds": cpu, "cores_busy": cpu / wall, "claims": per_claim,
                    "compilation": _compilation(workers),
                    "store_problems": store.problems if store else []}}
    full["provenance"].pop("time_utc")  # in "run": reports of equal inputs are equal
    report.write_report(out, full)
    if args.write_baseline:
        if status != "pass":
            print("not writing the baseline: some claims did not pass", file=sys.stderr)
            return 1
        fresh = baseline.snapshot(records, mode, args.seed)
        # With --only/--skip, the other claims' entries are kept (mode and seed matched above).
        if _partial(args) and pinned is not None:
            fresh = baseline.merge(pinned, fresh)
        report.atomic_write_json(args.baseline, fresh)
        which = f" ({', '.join(r['id'] for r in records)})" if _partial(args) else ""
        print(f"baseline written to {args.baseline}{which}")
    compiled = full["run"]["compilation"]
    untested = [r["id"] for r in records if r["status"] == "untested"]
    print(f"{status.upper()}: {sum(r['status'] == 'pass' for r in records)}/{len(records)} claims "
          f"pass" + (f", {len(untested)} untested ({', '.join(untested)})" if untested else "")
          + f" in {wall:.1f} s on {cpu / wall:.2f} cores ({compiled['compiled']} compiled, "
          f"{compiled['loaded_from_cache']} cached executables, {compiled['compile_seconds']:.1f}"
          f" s, {compiled['stored_programs']} of {compiled['compiled_loops']} loops untraced);"
          f" report in {out / 'report.md'}")
    return 0 if status == "pass" else 1


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished worker processes."""
    return sum(usage.ru_utime + usage.ru_stime for usage in
               map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def _compile_counts() -> dict:
    return {"compiled_loops": compile_count(), "stored_programs": stored_count(),
            **compile_stats()}


def _compilation(workers: collections.Counter) -> dict:
    """Executables compiled or loaded, by this process and by its workers (added up)."""
    total = collections.Counter(_compile_counts())
    total.update(workers)  # (not "+": a Counter sum drops zero counts)
    return {key: round(value, 3) if key == "compile_seconds" else value
            for key, value in total.items()}


def _previous_seconds(path: Path, mode: str) -> dict:
    """Per-claim seconds of the last run of this mode in ``--out`` (empty if none)."""
    try:
        data = json.loads(path.read_text())
        if data["provenance"]["mode"] != mode:
            return {}
        return {cid: float(t["seconds"]) for cid, t in data["run"]["claims"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _read_baseline(args, mode: str) -> dict | None:
    """The baseline file, checked before the run: a ``UsageError`` in one line when it
    cannot serve (``None`` when ``--write-baseline`` starts a new one)."""
    path = Path(args.baseline)
    flag = "--check-baseline" if args.check_baseline else "--write-baseline"
    if args.write_baseline and not args.check_baseline and (
            not _partial(args) or not path.exists()):
        return None  # written from scratch: nothing to read
    try:
        return baseline.read(path, mode, args.seed)
    except baseline.BaselineError as err:
        raise UsageError(f"{flag}: {err}") from None


def _evaluate_all(claims, mode: str, seed: int, store, jobs: int, figures_dir, cache: bool,
                  expected: dict | None = None, specs=()):
    """Every claim's record (in the order given), its timings, and the workers' compile
    counts added up (empty when everything ran in this process).

    ``jobs > 1`` evaluates claims in that many worker processes (spawned, each with its
    own JAX runtime; executables come from the shared persistent cache and points go to
    the shared store), so one claim compiles while another computes and the small vmapped
    loops of two claims run on two cores. Processes rather than threads: the Python parts
    of a claim (theory, statistics, SciPy) hold the GIL, Ctrl-C can stop a worker in the
    middle of an XLA call (a thread cannot be interrupted there), and a claim that hangs or
    crashes its runtime leaves the others' results intact. A grid point's key depends only
    on (seed, claim, point), so the numbers do not depend on ``jobs``. On Ctrl-C the
    workers are terminated: a point stored before that is kept, one in flight is lost,
    nothing is half written. Claims start longest first by ``expected`` seconds (the last
    run's, when ``--out`` has one), so that a long claim does not start last. With
    ``figures_dir``, whoever evaluates a claim also draws its figure there. Workers load
    ``specs`` (``--claims``) and the entry points before looking a claim up.
    """
    bar = None
    if sys.stderr.isatty():  # a bar over claims; one claim at a time also shows its points
        from tqdm.auto import tqdm
        bar = tqdm(total=len(claims), unit="claim", leave=False)
    say = bar.write if bar is not None else functools.partial(print, flush=True)

    def finished(result):
        record, timing = result
        say(_claim_line(record, timing["seconds"], timing["points_reused"]))
        if bar is not None:
            bar.update()

    root = None if store is None else (str(store.root), store.fresh)
    try:
        if jobs == 1 or len(claims) == 1:
            done = []
            # In this process and on a terminal: bars over points and over a sweep's chunks.
            with chunk_progress(bar is not None):
                for claim in claims:
                    done.append(_evaluate_one(claim, mode, seed, store, figures_dir,
                                              progress=bar is not None))
                    finished(done[-1])
        else:
            pool = multiprocessing.get_context("spawn").Pool(
                min(jobs, len(claims)), initializer=_worker_init, initargs=(cache, tuple(specs)))
            try:
                longest_first = sorted(claims, key=lambda c: -(expected or {}).get(c.id, 0.0))
                pending = {c.id: pool.apply_async(_evaluate_in_worker,
                                                  (c.id, mode, seed, root, figures_dir),
                                                  callback=finished) for c in longest_first}
                done = [pending[c.id].get() for c in claims]
                pool.close()
            except KeyboardInterrupt:  # stop every worker now: a point in flight is lost
                pool.terminate()
                raise
            except BaseException:
                # A worker's error: the other claims finish (their points are kept), then it is
                # raised. Not terminate(): it can kill a worker that holds the result queue's
                # lock, and then waits for ever on its own task thread (a test run hung so).
                pool.close()
                raise
            finally:
                pool.join()
    finally:
        if bar is not None:
            bar.close()
    workers = collections.Counter()
    for _, timing in done:  # what a worker found and compiled (its own store and runtime)
        workers.update(timing.pop("compilation", {}))
        problems = timing.pop("store_problems", [])
        if store is not None:
            store.problems.extend(problems)
    return ([record for record, _ in done],
            {c.id: timing for c, (_, timing) in zip(claims, done)}, workers)


def _evaluate_one(claim, mode: str, seed: int, store, figures_dir=None, progress: bool = False):
    """One claim's record and timing; its figure too when ``figures_dir`` (a directory and
    the formats to write) is given."""
    tic = time.perf_counter()
    record = evaluate(claim, mode, seed, store=store, progress=progress)
    timing = {"seconds": time.perf_counter() - tic, "points": len(record["points"]),
              "points_reused": store.reused_by_claim[claim.id] if store is not None else 0}
    if figures_dir is not None:
        from verify import figures
        directory, formats = figures_dir
        figures.draw_all([record], directory, REGISTRY, formats=formats)
    return record, timing


_WORKER_INIT_ERROR = None  # why this worker could not load its claims (see _worker_init)


def _worker_init(cache: bool, specs=()) -> None:
    global _WORKER_INIT_ERROR
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    verify.enable_float64()  # a spawned interpreter starts from JAX's defaults
    if cache:
        enable_compilation_cache()
    try:  # the parent's claims: built-in, entry points and --claims
        plugins.load_all(specs)
    except Exception as err:  # a failing initializer makes the pool respawn it forever
        _WORKER_INIT_ERROR = f"{type(err).__name__}: {err}"


def _evaluate_in_worker(claim_id: str, mode: str, seed: int, root, figures_dir):
    """One claim in a worker process: its record and timing, with this worker's compile
    stats and store problems for the parent to add up."""
    store = PointStore(root[0], fresh=root[1]) if root is not None else None
    if _WORKER_INIT_ERROR is not None:
        raise WorkerError(f"a worker process could not load the claims: {_WORKER_INIT_ERROR}")
    if claim_id not in REGISTRY:  # registered in the parent only (a script, a notebook)
        raise WorkerError(f"claim {claim_id!r} is not registered in a worker process; load "
                          "the module that registers it with --claims MODULE_OR_FILE (or the "
                          f"{plugins.ENTRY_POINT_GROUP} entry point), or run with --jobs 1")
    before = _compile_counts()
    record, timing = _evaluate_one(REGISTRY[claim_id], mode, seed, store, figures_dir)
    after = _compile_counts()
    timing["compilation"] = {k: after[k] - before[k] for k in after}
    timing["store_problems"] = store.problems if store is not None else []
    return record, timing


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _claim_line(record: dict, seconds: float, reused: int) -> str:
    summary = record.get("summary", {})
    detail = (f"max|t|={summary['max_abs_z']:.2f} " if "max_abs_z" in summary else "") + (
        f"ratio≤{summary['max_ratio']:.3f} violations={summary['violations']} "
        if summary.get("max_ratio") is not None else "")
    if summary.get("power", {}).get("weak"):
        detail += "(weak) "
    resumed = f" ({reused}/{len(record['points'])} points resumed)" if reused else ""
    return (f"{record['id']:14s} {record['status']:8s} {seconds:6.1f}s  {detail} "
            f"{record['message']}".rstrip() + resumed)


if __name__ == "__main__":
    sys.exit(main())
