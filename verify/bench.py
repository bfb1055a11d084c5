"""``python -m verify.bench``: throughput of the JAX loops against NumPy, and against randomness.

For each loop (Gaussian, OLS, KDE) it times, in the same process and run:

* the JAX engine (``sims.run``: scan over generations, vmap over replicas, compiled once;
  compile time is reported separately and excluded);
* NumPy looping over replicas (each replica a Python loop over generations);
* NumPy vectorised over replicas (a Python loop over generations only);
* the *random-draw floor*: the same scan/vmap structure drawing the same random
  numbers and reducing them to a checksum. No implementation can beat it.

Machines are noisy, so only ratios measured in one run are reported: JAX speed-up
over each NumPy version, and JAX time as a multiple of the floor. JAX runs on every
device it sees (``--host-devices N`` makes N CPU devices); the vectorised NumPy
version is also timed in one process per core (``--processes``, replicas split
evenly), so that both sides use every core. Compile time is measured apart: the
first call minus a steady call. ``--prng`` compares float64 normal generators
(threefry + erfinv, the default; Box-Muller; the ``rbg`` and ``unsafe_rbg`` key
implementations) and checks which give the same numbers whatever the batch. ``--memory``
also measures peak RSS of the Gaussian loop at 1e4, 1e5, 1e6 replicas (running
moments, so memory should stay flat). Results go to ``OUT/bench.json``. This is
never part of the test suite.

``--transformer`` also times claim A4's transformer (``transformer_bench``, A4's quick
sizes, float32): Adam steps per second of ``train_replicas`` and wall time per generation
of the self-consuming loop, for 1, 2, 4 and 8 vmapped replicas (compile excluded, reported
apart), written to ``OUT/bench_transformer.json`` (a few minutes on 2 cores: each replica
count compiles its own loop). Alone: ``python -c "from verify.bench import
transformer_bench; transformer_bench(out='results')"``. ``--diffusion`` times claim B2's
random-feature diffusion model (``diffusion_bench``): the SDE sampler's samples per second
and the loop's seconds per replica-generation (exact fit, sampling, grid density), into
``bench.json``. ``--only ''`` skips the three engine loops.

``--device`` is the accelerator table (``device_bench``; nothing else runs): in float64, on
whatever device JAX sees, replica-generations per second of the Gaussian, OLS, KDE,
linear-attention and diffusion loops (65536 replicas x 50 generations where the loop is
cheap), Adam steps per second of A4's transformer, and the wall time of ``verify.all
--quick`` (``--default-run``: also the default run, long; ``--all-only`` restricts the
claims), into ``OUT/bench_device.json``. ``--float32`` adds the transformer in float32, the
one place float32 is allowed (A4 trains in it; every other loop feeds an exact comparison).
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import sims
from sims.loop import generation_keys
from sims.models import GaussianParams, Mixture, gaussian, kde, ols_fixed_design
from verify import report
from verify.cache import enable_compilation_cache


class Timing(NamedTuple):
    seconds: float
    replicas: int
    generations: int

    @property
    def per_replica_generation(self) -> float:
        return self.seconds / (self.replicas * self.generations)


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Minimum wall time over ``repeats`` calls (the least noisy estimate)."""
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - tic)
    return min(times)


# --- the loops under test -------------------------------------------------------------

def var_metric(key, gen, truth):
    return gen.params.cov[0, 0]


def ols_metric(key, gen, truth):
    return jnp.sum((gen.params - truth) ** 2)


def kde_metric(key, gen, truth):
    return jnp.sum(gen.params.weight * gen.params.loc ** 2)


class Case(NamedTuple):
    name: str
    jax_run: Callable[[int, int], object]       # (replicas, seed) -> result
    floor: Callable[[int, int], object]         # same draws, checksum only
    numpy_loop: Callable[[int, int], object]    # (replicas, seed)
    numpy_vectorised: Callable[[int, int], object]
    factory: tuple = ()                         # (name, args): rebuilds the case in a worker


def _floor(draw: Callable, generations: int, batch: int):
    """Scan/vmap structure of the engine, drawing the loop's randomness and summing it."""

    def replica(key):
        def step(total, i):
            return total + jnp.sum(draw(generation_keys(key, i))), None
        return jax.lax.scan(step, 0.0, jnp.arange(generations))[0]

    mesh = Mesh(np.asarray(jax.devices()), ("replicas",))
    sharding = NamedSharding(mesh, P("replicas"))

    def per_device(base, indices):
        keys = jax.vmap(jax.random.fold_in, (None, 0))(base, indices)
        return jax.vmap(replica)(keys)

    chunk = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("replicas")),
                                  out_specs=P("replicas"), check_vma=False))
    size = batch * len(jax.devices())

    def run(replicas, seed):
        base = jax.random.key(seed)
        return [chunk(base, jax.device_put(np.arange(s, s + size, dtype=np.uint32), sharding))
                for s in range(0, replicas, size)]

    return run


def gaussian_case(M: int, generations: int, batch: int) -> Case:
    model, truth = gaussian(1), GaussianParams(jnp.zeros(1), jnp.eye(1))
    plan = sims.make_plan("synthetic", n=M, generations=generations)

    def jax_run(replicas, seed):
        return sims.run(jax.random.key(seed), model, truth, plan, var_metric,
                        replicas=replicas, batch_size=batch)

    def draw(keys):  # the loop draws M normals per generation (real at i=0, synthetic after)
        return jax.random.normal(keys.synthetic, (M,))

    def numpy_loop(replicas, seed):
        rng, out = np.random.default_rng(seed), np.empty((replicas, generations))
        for r in range(replicas):
            mean, sd = 0.0, 1.0
            for g in range(generations):
                x = mean + sd * rng.standard_normal(M)
                mean, var = x.mean(), x.var()
                sd, out[r, g] = np.sqrt(var), var
        return out

    def numpy_vectorised(replicas, seed):
        rng, out = np.random.default_rng(seed), np.empty((replicas, generations))
        mean, sd = np.zeros((replicas, 1)), np.ones((replicas, 1))
        for g in range(generations):
            x = mean + sd * rng.standard_normal((replicas, M))
            mean = x.mean(axis=1, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
            sd, out[:, g] = np.sqrt(var), var[:, 0]
        return out

    return Case(f"gaussian (M={M})", jax_run, _floor(draw, generations, batch), numpy_loop,
                numpy_vectorised, ("gaussian", (M, generations, batch)))


def ols_case(T: int, d: int, generations: int, batch: int) -> Case:
    X = np.random.default_rng(0).standard_normal((T, d))
    model, w_star = ols_fixed_design(X, 1.0), jnp.linspace(-1, 1, d)
    plan = sims.make_plan("synthetic", n=T, generations=generations)
    pinv = np.linalg.pinv(X)

    def jax_run(replicas, seed):
        return sims.run(jax.random.key(seed), model, w_star, plan, ols_metric,
                        replicas=replicas, batch_size=batch)

    def draw(keys):
        return jax.random.normal(keys.synthetic, (T,))

    def numpy_loop(replicas, seed):
        rng, out, w0 = np.random.default_rng(seed), np.empty((replicas, generations)), np.asarray(w_star)
        for r in range(replicas):
            w = w0
            for g in range(generations):
                y = X @ w + rng.standard_normal(T)
                w = np.linalg.lstsq(X, y, rcond=None)[0]
                out[r, g] = np.sum((w - w0) ** 2)
        return out

    def numpy_vectorised(replicas, seed):
        rng, out, w0 = np.random.default_rng(seed), np.empty((replicas, generations)), np.asarray(w_star)
        w = np.tile(w0, (replicas, 1))
        for g in range(generations):
            y = w @ X.T + rng.standard_normal((replicas, T))
            w = y @ pinv.T  # the same least-squares solution, batched
            out[:, g] = np.sum((w - w0) ** 2, axis=1)
        return out

    return Case(f"ols (T={T}, d={d})", jax_run, _floor(draw, generations, batch), numpy_loop,
                numpy_vectorised, ("ols", (T, d, generations, batch)))


def kde_case(n: int, m: int, generations: int, batch: int, h: float = 0.5) -> Case:
    model = kde(h)
    truth = Mixture(jnp.array([-2.0, 2.0]), jnp.array([0.5, 0.5]), jnp.array([1.0, 1.0]))
    plan = sims.make_plan("reuse", n=n, m=m, generations=generations)
    N = n + m

    def jax_run(replicas, seed):
        return sims.run(jax.random.key(seed), model, truth, plan, kde_metric, replicas=replicas,
                        batch_size=batch)

    def draw(keys):
        k1, k2 = jax.random.split(keys.synthetic)
        return jax.random.randint(k1, (m,), 0, N) + jax.random.normal(k2, (m,))

    def _real(rng, shape):
        return np.where(rng.random(shape) < 0.5, -2.0, 2.0) + rng.standard_normal(shape)

    def numpy_loop(replicas, seed):
        rng, out = np.random.default_rng(seed), np.empty((replicas, generations))
        for r in range(replicas):
            real = _real(rng, n)
            data = real
            out[r, 0] = np.mean(data ** 2)
            for g in range(1, generations):
                synth = data[rng.integers(0, len(data), m)] + h * rng.standard_normal(m)
                data = np.concatenate([real, synth])
                out[r, g] = np.mean(data ** 2)
        return out

    def numpy_vectorised(replicas, seed):
        rng, out = np.random.default_rng(seed), np.empty((replicas, generations))
        real = _real(rng, (replicas, n))
        data = real
        out[:, 0] = np.mean(data ** 2, axis=1)
        rows = np.arange(replicas)[:, None]
        for g in range(1, generations):
            pick = rng.integers(0, data.shape[1], (replicas, m))
            synth = data[rows, pick] + h * rng.standard_normal((replicas, m))
            data = np.concatenate([real, synth], axis=1)
            out[:, g] = np.mean(data ** 2, axis=1)
        return out

    return Case(f"kde (n={n}, m={m})", jax_run, _floor(draw, generations, batch), numpy_loop,
                numpy_vectorised, ("kde", (n, m, generations, batch)))


CASES = {"gaussian": gaussian_case, "ols": ols_case, "kde": kde_case}


@functools.lru_cache(maxsize=None)
def _worker_case(name: str, args: tuple) -> Case:
    return CASES[name](*args)


def _numpy_share(job):
    """One process's share of the vectorised NumPy loop (its own seed)."""
    factory, replicas, seed = job
    return _worker_case(*factory).numpy_vectorised(replicas, seed)


def numpy_parallel(case: Case, pool, processes: int) -> Callable[[int, int], object]:
    """The vectorised NumPy loop with its replicas split over ``processes`` processes."""

    def run(replicas, seed):
        share = -(-replicas // processes)
        return pool.map(_numpy_share, [(case.factory, share, seed * 1000 + w)
                                       for w in range(processes)])

    return run


def median_of(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def measure(case: Case, replicas: int, generations: int, loop_replicas: int, repeats: int,
            pool=None, processes: int = 1) -> dict:
    tic = time.perf_counter()
    jax.block_until_ready(case.jax_run(replicas, 0))  # compiles
    compile_and_first = time.perf_counter() - tic
    jax.block_until_ready(case.floor(replicas, 0))
    parallel = numpy_parallel(case, pool, processes) if pool is not None else None
    if parallel is not None:
        parallel(replicas, 0)  # workers import and build the case once
    # Interleaved, so that a change in the machine's load hits every contestant alike.
    timed = {"engine": lambda: case.jax_run(replicas, 1), "floor": lambda: case.floor(replicas, 1),
             "vectorised": lambda: case.numpy_vectorised(replicas, 1)}
    if parallel is not None:
        timed["parallel"] = lambda: parallel(replicas, 1)
    times = {k: [] for k in timed}
    for _ in range(repeats):
        for k, fn in timed.items():
            times[k].append(best_of(fn, 1))
    engine, floor, vectorised = (statistics.median(times[k]) for k in ("engine", "floor",
                                                                        "vectorised"))
    # The looping version is timed on fewer replicas (it is linear in them) and scaled.
    looping = best_of(lambda: case.numpy_loop(loop_replicas, 1), 1) * replicas / loop_replicas
    row = {"case": case.name, "replicas": replicas, "generations": generations,
           "devices": len(jax.devices()), "timing": f"median of {repeats}, interleaved",
           "jax_seconds": engine, "jax_compile_plus_first_run_seconds": compile_and_first,
           "jax_compile_seconds": max(compile_and_first - engine, 0.0),
           "floor_seconds": floor, "numpy_vectorised_seconds": vectorised,
           "numpy_loop_seconds_scaled": looping, "numpy_loop_replicas_timed": loop_replicas,
           "replica_generations_per_second": replicas * generations / engine,
           "speedup_vs_numpy_loop": looping / engine,
           "speedup_vs_numpy_vectorised": vectorised / engine,
           "multiple_of_floor": engine / floor}
    if parallel is not None:
        row["numpy_vectorised_processes"] = processes
        row["numpy_vectorised_all_cores_seconds"] = statistics.median(times["parallel"])
        row["speedup_vs_numpy_vectorised_all_cores"] = row[
            "numpy_vectorised_all_cores_seconds"] / engine
    return row


# --- float64 normal generators ----------------------------------------------------------

def box_muller(key, shape):
    """``shape[0]`` float64 standard normals by Box-Muller from ``shape[0]`` uniforms."""
    half = (shape[0] + 1) // 2
    u = jax.random.uniform(key, (2, half), jnp.float64, minval=jnp.finfo(jnp.float64).tiny)
    radius, angle = jnp.sqrt(-2.0 * jnp.log(u[0])), 2.0 * jnp.pi * u[1]
    return jnp.concatenate([radius * jnp.cos(angle), radius * jnp.sin(angle)])[: shape[0]]


GENERATORS = {"threefry2x32 + erfinv (default)": ("threefry2x32", jax.random.normal),
              "threefry2x32 + Box-Muller": ("threefry2x32", box_muller),
              "rbg + erfinv": ("rbg", jax.random.normal),
              "unsafe_rbg + erfinv": ("unsafe_rbg", jax.random.normal)}


def prng_comparison(samples: int, generations: int, replicas: int, repeats: int) -> list[dict]:
    """ns per float64 normal in the engine's pattern (per-replica keys, scan, vmap).

    ``batch_independent``: a replica draws the same numbers alone, in a batch of 8 and in
    a batch of ``replicas`` (the engine's results must not depend on the batch size).
    """
    rows, fns = [], {}
    for name, (impl, normal) in GENERATORS.items():
        def replica(key, normal=normal):
            def step(total, i):
                return total + jnp.sum(normal(jax.random.fold_in(key, i), (samples,))), None
            return jax.lax.scan(step, 0.0, jnp.arange(generations))[0]

        base = jax.random.key(0, impl=impl)
        run = jax.jit(lambda b, idx, replica=replica: jax.vmap(
            lambda r: replica(jax.random.fold_in(b, r)))(idx))
        draw = jax.jit(lambda b, idx, normal=normal: jax.vmap(
            lambda r: normal(jax.random.fold_in(b, r), (samples,)))(idx))
        batches = [np.asarray(draw(base, jnp.arange(size, dtype=jnp.uint32)))[:3]
                   for size in (8, replicas)]
        alone = np.concatenate([np.asarray(draw(base, jnp.arange(r, r + 1, dtype=jnp.uint32)))
                                for r in range(3)])
        tic = time.perf_counter()
        jax.block_until_ready(run(base, jnp.arange(replicas, dtype=jnp.uint32)))
        rows.append({"generator": name, "impl": impl,
                     "compile_plus_first_seconds": time.perf_counter() - tic,
                     "batch_independent": bool(np.array_equal(batches[0], batches[1])
                                               and np.array_equal(alone, batches[0]))})
        fns[name] = (run, base)
    times = {name: [] for name in fns}
    indices = jnp.arange(replicas, dtype=jnp.uint32)
    for _ in range(repeats):  # interleaved
        for name, (run, base) in fns.items():
            times[name].append(best_of(lambda: run(base, indices), 1))
    for row in rows:
        row["ns_per_normal"] = statistics.median(times[row["generator"]]) / (
            replicas * generations * samples) * 1e9
    return rows


def peak_rss_child(replicas: int) -> float:
    """Peak RSS (MiB) of a fresh process running the Gaussian loop with running moments."""
    code = (
        "import resource, jax, jax.numpy as jnp, sims\n"
        "from sims.models import gaussian, GaussianParams\n"
        "from verify.bench import var_metric\n"
        f"plan = sims.make_plan('synthetic', n=10, generations=20)\n"
        f"sims.run(jax.random.key(0), gaussian(1), GaussianParams(jnp.zeros(1), jnp.eye(1)), plan,"
        f" var_metric, replicas={replicas}, batch_size=8192, reduce=True)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    import verify

    verify.enable_float64()  # importing the library leaves JAX's settings alone
    parser = argparse.ArgumentParser(prog="python -m verify.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=None,
                        help="replicas per loop (default 4096; --device: 65536)")
    parser.add_argument("--generations", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10, help="samples per generation M (Gaussian)")
    parser.add_argument("--loop-replicas", type=int, default=256,
                        help="replicas timed for the NumPy loop (scaled linearly)")
    parser.add_argument("--only", default="gaussian,ols,kde")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak RSS at 1e4, 1e5, 1e6 replicas")
    parser.add_argument("--processes", type=int, default=os.cpu_count(),
                        help="processes for the all-cores vectorised NumPy version (1: skip)")
    parser.add_argument("--host-devices", type=int, default=None,
                        help="run JAX on this many CPU devices (re-executes with XLA_FLAGS)")
    parser.add_argument("--prng", action="store_true",
                        help="also compare float64 normal generators")
    parser.add_argument("--transformer", action="store_true",
                        help="also time A4's transformer (steps/s, s/generation, 1-8 replicas)")
    parser.add_argument("--diffusion", action="store_true",
                        help="also time B2's diffusion sampler (samples/s) and loop (s/generation)")
    parser.add_argument("--device", action="store_true",
                        help="the accelerator table: every loop's rep*gen/s, transformer steps/s "
                             "and the wall time of verify.all --quick, float64 (nothing else runs)")
    parser.add_argument("--default-run", action="store_true",
                        help="with --device: also time the default verify.all run (long)")
    parser.add_argument("--no-quick-run", action="store_true",
                        help="with --device: do not time verify.all --quick")
    parser.add_argument("--float32", action="store_true",
                        help="with --device: also time the transformer in float32 (as A4 trains)")
    parser.add_argument("--all-only", default=None,
                        help="with --device: restrict the timed verify.all runs to these claims")
    parser.add_argument("--out", default="results")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="compile from scratch (compile times then include XLA compilation)")
    args = parser.parse_args(argv)
    if not args.no_compile_cache:
        enable_compilation_cache()
    if args.host_devices and len(jax.devices("cpu")) != args.host_devices:
        flags = f"--xla_force_host_platform_device_count={args.host_devices}"
        env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip())
        os.execve(sys.executable, [sys.executable, "-m", "verify.bench",
                                   *(sys.argv[1:] if argv is None else argv)], env)
    if args.device:
        device_bench(replicas=args.replicas or DEVICE_SIZES["replicas"], generations=args.generations,
                     repeats=args.repeats, float32=args.float32, quick_run=not args.no_quick_run,
                     default_run=args.default_run, only=args.all_only, out=args.out)
        return 0
    R, G = args.replicas or 4096, args.generations
    factories = {"gaussian": (args.samples, G, R), "ols": (20, 5, G, R),
                 "kde": (100, 100, G, min(R, 1024))}
    pool = None
    if args.processes > 1:  # spawn: forking a process that runs JAX threads can deadlock
        pool = multiprocessing.get_context("spawn").Pool(args.processes)
    results = []
    print(f"JAX on {len(jax.devices())} device(s); NumPy on 1 and {args.processes} process(es)")
    print(f"{'loop':22s} {'rep*gen/s':>11s} {'vs NumPy loop':>14s} {'vs NumPy vec':>13s} "
          f"{'vs vec, all cores':>18s} {'x floor':>8s} {'compile s':>10s}")
    for name in filter(None, args.only.split(",")):
        row = measure(CASES[name](*factories[name]), R, G, args.loop_replicas, args.repeats,
                      pool, args.processes)
        results.append(row)
        all_cores = row.get("speedup_vs_numpy_vectorised_all_cores")
        all_cores = "—" if all_cores is None else f"{all_cores:.2f}x"  # --processes 1: not run
        print(f"{row['case']:22s} {row['replica_generations_per_second']:11.3g} "
              f"{row['speedup_vs_numpy_loop']:13.1f}x {row['speedup_vs_numpy_vectorised']:12.2f}x "
              f"{all_cores:>18s} "
              f"{row['multiple_of_floor']:8.2f} {row['jax_compile_seconds']:10.2f}", flush=True)
    if pool is not None:
        pool.close()
    generators = []
    if args.prng:
        generators = prng_comparison(args.samples, G, R, args.repeats)
        for row in generators:
            print(f"{row['generator']:34s} {row['ns_per_normal']:7.2f} ns/normal  "
                  f"batch-independent: {row['batch_independent']}", flush=True)
    memory = {}
    if args.memory:
        for replicas in (10 ** 4, 10 ** 5, 10 ** 6):
            memory[replicas] = peak_rss_child(replicas)
            print(f"peak RSS, gaussian loop with running moments, {replicas:>8d} replicas: "
                  f"{memory[replicas]:.0f} MiB", flush=True)
    if args.transformer:
        transformer_bench(repeats=args.repeats, out=args.out)
    diffusion = {}
    if args.diffusion:
        diffusion = diffusion_bench(repeats=args.repeats)
        print(f"{diffusion['case']}: sampler {diffusion['sampler_samples_per_second']:.3g} "
              f"samples/s, loop {diffusion['seconds_per_replica_generation']:.3f} s per "
              "replica-generation", flush=True)
    info = {"provenance": report.provenance(0, "bench"), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "results": results, "normal_generators": generators,
            "peak_rss_mib": memory, "diffusion": diffusion}
    report.atomic_write_json(Path(args.out) / "bench.json", info)
    return 0


def transformer_bench(replica_counts=(1, 2, 4, 8), generations: int = 4, repeats: int = 2,
                      dtypes=("float32",), out: str | None = None, **spec) -> list[dict]:
    """Claim A4's transformer: Adam steps per second and wall time per loop generation.

    For each floating type and replica count ``R`` (replicas vmapped in one call), times
    ``train_replicas`` (one training run per replica) and ``run_loop`` over ``generations``
    generations, compile excluded (reported separately). ``spec`` overrides A4's quick sizes;
    ``dtypes=("float32", "float64")`` compares the precisions.
    Run: ``python -m verify.bench --transformer`` (after the other loops) or call it.
    """
    from sims.models import transformer as tr
    from verify.claims.transformer import SIZES

    rows = []
    for dtype in dtypes:
        s = tr.make_spec(**{**SIZES["quick"]["spec"], "dtype": dtype, **spec})
        for R in replica_counts:
            keys = jax.random.split(jax.random.key(0), R)
            data = jax.vmap(lambda k: tr.replica_data(k, s))(keys)
            run_train = lambda: tr.train_replicas(keys, s, data.train, data.train.target)  # noqa: E731
            tic = time.perf_counter()
            jax.block_until_ready(run_train())
            train_compile = time.perf_counter() - tic
            train_s = best_of(run_train, repeats)
            run_loop = lambda: tr.run_loop(jax.random.key(1), s, 0.5, generations, R)  # noqa: E731
            tic = time.perf_counter()
            jax.block_until_ready(run_loop())
            loop_compile = time.perf_counter() - tic
            loop_s = best_of(run_loop, repeats)
            row = {"dtype": dtype, "replicas": R, "steps": s.steps,
                   "train_steps_per_second": s.steps / train_s,
                   "replica_steps_per_second": R * s.steps / train_s,
                   "seconds_per_generation": loop_s / generations,
                   "seconds_per_generation_per_replica": loop_s / generations / R,
                   "train_compile_plus_first_s": train_compile,
                   "loop_compile_plus_first_s": loop_compile}
            rows.append(row)
            print(f"transformer {dtype} R={R}: {row['replica_steps_per_second']:.0f} replica-steps/s,"
                  f" {row['seconds_per_generation']:.2f} s per generation (all {R} replicas), "
                  f"compile+first: train {train_compile:.1f} s, loop {loop_compile:.1f} s",
                  flush=True)
    if out is not None:
        report.atomic_write_json(Path(out) / "bench_transformer.json",
                                 {"provenance": report.provenance(0, "bench"), "results": rows})
    return rows


def diffusion_bench(samples: int = 4096, steps: int = 100, width: int = 64, replicas: int = 8,
                    generations: int = 4, repeats: int = 3) -> dict:
    """Random-feature diffusion: SDE sampler throughput and wall time per loop generation.

    Run: ``python -m verify.bench --diffusion`` (after the other loops) or call it.
    Times (best of ``repeats``, compile excluded and reported): the ``steps``-step SDE
    sampler drawing ``samples`` points (samples/second), and a ``reuse`` loop
    (``n = m = 100``, ``diffusion_tv_metric``) over ``replicas`` x ``generations``
    (seconds per replica-generation: exact fit + sampling + grid density).
    """
    from sims.models import diffusion as diffusion_model
    from sims.models.kde import gaussian_mixture_sampler
    from sims import metrics

    model = diffusion_model.diffusion(width, 1e3, steps=steps)
    truth = Mixture(jnp.array([-2.0, 2.0]), jnp.array([0.5, 0.5]), jnp.array([1.0, 1.0]))
    data = gaussian_mixture_sampler(jax.random.key(0), truth, 100)
    params = jax.jit(model.fit)(jax.random.key(1), data, jnp.ones(100))
    draw = jax.jit(lambda key: model.sample(key, params, samples))
    tic = time.perf_counter()
    jax.block_until_ready(draw(jax.random.key(2)))
    sampler_compile = time.perf_counter() - tic
    sampler_seconds = best_of(lambda: draw(jax.random.key(3)), repeats)
    grid = metrics.make_grid(-7.0, 7.0, 128)
    metric = diffusion_model.diffusion_tv_metric(grid, 4.0, steps)
    plan = sims.make_plan("reuse", n=100, m=100, generations=generations)
    run = lambda: sims.run(jax.random.key(4), model, truth, plan, metric,  # noqa: E731
                           replicas=replicas, batch_size=replicas,
                           real_sampler=gaussian_mixture_sampler)
    tic = time.perf_counter()
    run()
    loop_compile = time.perf_counter() - tic
    loop_seconds = best_of(run, repeats)
    return {"case": f"diffusion W={width} steps={steps}",
            "sampler_samples_per_second": samples / sampler_seconds,
            "sampler_compile_plus_first_run_seconds": sampler_compile,
            "seconds_per_replica_generation": loop_seconds / (replicas * generations),
            "loop_compile_plus_first_run_seconds": loop_compile}


if __name__ == "__main__":
    sys.exit(main())


# --- the accelerator path: one table for every loop ---------------------------------------
#
# ``python -m verify.bench --device`` runs everything in float64 on whatever device JAX
# sees (a GPU if there is one) and reports replica-generations per second for each loop,
# the transformer's Adam steps per second, and the wall time of ``verify.all --quick`` (and,
# with ``--default-run``, of the default run). Where float32 would be allowed: only where no
# exact identity is checked (A4's transformer already trains in float32, ``--float32`` times
# it in both precisions); every other loop feeds an exact or bound comparison at the
# replica SE and stays float64.

DEVICE_SIZES = dict(replicas=65536, generations=50, kde_replicas=4096, diffusion_replicas=256,
                    diffusion_generations=6, transformer_replicas=8)


def _loop_rate(name: str, run: Callable[[int], object], replicas: int, generations: int,
               repeats: int) -> dict:
    """Time ``run(seed)`` (compile + first call apart, then the best of ``repeats``)."""
    tic = time.perf_counter()
    jax.block_until_ready(run(0))
    first = time.perf_counter() - tic
    seconds = best_of(lambda: run(1), repeats)
    return {"loop": name, "replicas": replicas, "generations": generations,
            "seconds": seconds, "replica_generations_per_second": replicas * generations / seconds,
            "compile_plus_first_seconds": first}


def _linear_attention_run(replicas: int, generations: int, batch: int):
    """A2's loop (linear attention, ``reuse``, n = m = 20, d = 5) through its public entry points."""
    from sims.models import icl_real_sampler, icl_task, linear_attention

    d = 5
    model, truth = linear_attention(d, 0.0), icl_task(np.ones(d) / np.sqrt(d), 0.5)
    plan = sims.make_plan("reuse", n=20, m=20, generations=generations)
    return lambda seed: sims.run(jax.random.key(seed), model, truth, plan, _la_metric,
                                 replicas=replicas, batch_size=batch,
                                 real_sampler=icl_real_sampler(d, 0.5), reduce=True)


def _la_metric(key, gen, truth):
    return jnp.sum((gen.params.w_hat - truth.w) ** 2)


def _diffusion_run(replicas: int, generations: int, batch: int, steps: int = 100,
                   width: int = 64):
    """B2's loop (random-feature score diffusion, ``reuse``, n = m = 100) via its public entry
    points, as ``diffusion_bench`` calls them."""
    from sims import metrics
    from sims.models import diffusion as diffusion_model
    from sims.models.kde import gaussian_mixture_sampler

    model = diffusion_model.diffusion(width, 1e3, steps=steps)
    truth = Mixture(jnp.array([-2.0, 2.0]), jnp.array([0.5, 0.5]), jnp.array([1.0, 1.0]))
    metric = diffusion_model.diffusion_tv_metric(metrics.make_grid(-7.0, 7.0, 128), 4.0, steps)
    plan = sims.make_plan("reuse", n=100, m=100, generations=generations)
    return lambda seed: sims.run(jax.random.key(seed), model, truth, plan, metric,
                                 replicas=replicas, batch_size=batch,
                                 real_sampler=gaussian_mixture_sampler, reduce=True)


def _timed_cli(args: list[str], out: Path) -> dict:
    """Wall time of one ``python -m verify.all`` run in a fresh process (``--jobs 1``: one
    accelerator, and no second process preallocating its memory)."""
    root = Path(__file__).resolve().parents[1]  # the repository, whatever the caller's cwd
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "verify.all", *args, "--out", str(Path(out).resolve()),
               "--no-figures", "--fresh", "--jobs", "1"]
    tic = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True)
    seconds = time.perf_counter() - tic
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return {"command": " ".join(command[1:]), "wall_seconds": seconds, "exit_status": done.returncode,
            "summary": last}


def device_bench(*, replicas: int = DEVICE_SIZES["replicas"],
                 generations: int = DEVICE_SIZES["generations"], repeats: int = 3,
                 kde_replicas: int = DEVICE_SIZES["kde_replicas"],
                 diffusion_replicas: int = DEVICE_SIZES["diffusion_replicas"],
                 diffusion_generations: int = DEVICE_SIZES["diffusion_generations"],
                 transformer_replicas: int = DEVICE_SIZES["transformer_replicas"],
                 transformer_spec: dict | None = None, float32: bool = False,
                 quick_run: bool = True, default_run: bool = False, only: str | None = None,
                 only_loops: tuple | None = None, out: str | None = None) -> dict:
    """Every loop's throughput on the current device, float64, and the CLI's time to a verdict.

    Replica-generations per second (compile excluded, reported apart) for the Gaussian, OLS,
    KDE, linear-attention and diffusion loops, through ``sims.run`` (one chunk of all
    replicas per device, sharded over every device JAX sees); Adam steps per second of A4's
    transformer (``transformer_bench``, float64; ``float32=True`` adds float32); and the
    wall time of ``verify.all --quick`` (``quick_run``) and of the default run
    (``default_run``; long) in a fresh process each, ``only`` restricting their claims.
    ``only_loops`` (first words, lower case: gaussian, ols, kde, linear, diffusion) picks loops.
    Must run on CPU too (the test suite runs it at tiny sizes).
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError("device_bench measures float64: call verify.enable_float64() first")
    devices = jax.devices()
    G = generations

    def chunk(R):  # all replicas in one chunk, split over the devices
        return -(-R // len(devices))

    def engine(case, R):  # the bench's own cases: (replicas, seed) -> result
        return lambda seed: case.jax_run(R, seed)

    runs = [
        ("gaussian (M=10, synthetic)", engine(CASES["gaussian"](10, G, chunk(replicas)), replicas),
         replicas, G),
        ("OLS (T=20, d=5, replace)", engine(CASES["ols"](20, 5, G, chunk(replicas)), replicas),
         replicas, G),
        ("KDE (n=m=100, reuse)", engine(CASES["kde"](100, 100, G, chunk(kde_replicas)),
                                        kde_replicas), kde_replicas, G),
        ("linear attention (d=5, n=m=20, reuse)",
         _linear_attention_run(replicas, G, chunk(replicas)), replicas, G),
        ("diffusion (W=64, 100 steps, n=m=100)",
         _diffusion_run(diffusion_replicas, diffusion_generations, chunk(diffusion_replicas)),
         diffusion_replicas, diffusion_generations),
    ]
    if only_loops is not None:
        runs = [r for r in runs if r[0].split(" ")[0].lower() in only_loops]
    loops = []
    for name, run, R, gens in runs:
        row = _loop_rate(name, run, R, gens, repeats)
        loops.append(row)
        print(f"{name:40s} {row['replica_generations_per_second']:11.3g} rep*gen/s  "
              f"({R} replicas x {gens} generations in {row['seconds']:.3g} s; compile+first "
              f"{row['compile_plus_first_seconds']:.1f} s)", flush=True)
    dtypes = ("float64", "float32") if float32 else ("float64",)
    transformer = []
    if only_loops is None or "transformer" in only_loops:
        transformer = transformer_bench(replica_counts=(transformer_replicas,), generations=1,
                                        repeats=repeats, dtypes=dtypes, **(transformer_spec or {}))
    runs_cli = {}
    base = Path(out) if out is not None else Path("results")
    restrict = ["--only", only] if only else []
    if quick_run:
        runs_cli["quick"] = _timed_cli(["--quick", *restrict], base / "device-quick")
    if default_run:
        runs_cli["default"] = _timed_cli(restrict, base / "device-default")
    for mode, row in runs_cli.items():
        print(f"verify.all {mode}: {row['wall_seconds']:.1f} s wall, exit {row['exit_status']}: "
              f"{row['summary']}", flush=True)
    info = {"provenance": report.provenance(0, "bench"),
            "devices": [f"{d.platform}:{getattr(d, 'device_kind', '?')}" for d in devices],
            "float64": bool(jax.config.jax_enable_x64), "loops": loops,
            "transformer": transformer, "verify_all": runs_cli}
    if out is not None:
        report.atomic_write_json(Path(out) / "bench_device.json", info)
    return info
