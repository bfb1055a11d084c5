"""The loop engine: generations in ``lax.scan``, replicas in ``vmap``, devices by sharding.

One replica is a pure function of its key: ``trajectory(key, ...)`` fits ``G_0``
on real data, then scans over generations ``1 .. G-1``. A replica's key is
``fold_in(base_key, replica_index)``, so results do not depend on how replicas
are batched or how many devices share them.

``run`` evaluates replicas in chunks of ``batch_size`` per device. The chunk is a
compiled function of ``(base_key, replica_indices, truth, sizes)``: a new seed, a
new replica count, new truth *values* or new per-generation sizes ``m_i`` (same
``plan.layout``) reuse it, with no recompilation. The replica
axis of a chunk is sharded over all devices with ``shard_map``. Only one chunk
lives on the devices at a time; with ``reduce=True`` only running moments live on
the host too, so memory is flat in the replica count.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
from typing import Any, Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from bounds import validate
from sims.model import GenerativeModel
from sims.programs import compile_program
from sims.schemes import LoopPlan, initial_training_set, next_training_set

Metric = Callable[[jax.Array, "Generation", Any], Any]


class Generation(NamedTuple):
    """What a metric sees of generation ``i``.

    Attributes:
      index: generation index ``i`` (``G_0`` is fit on real data).
      params: parameters of ``G_i``.
      previous: parameters of ``G_{i-1}`` (``G_0`` itself when ``i = 0``).
      data, weights: the training buffer ``G_i`` was fit on (weight 0 = empty slot).
    """

    index: jax.Array
    params: Any
    previous: Any
    data: Any
    weights: jax.Array


class GenerationKeys(NamedTuple):
    """The four independent streams of one generation of one replica."""

    real: jax.Array
    synthetic: jax.Array
    fit: jax.Array
    metric: jax.Array


class LoopState(NamedTuple):
    """The scan carry: the current model and the buffer it was fit on."""

    params: Any
    data: Any
    weights: jax.Array


class Moments(NamedTuple):
    """Running replica moments per generation (float64, merged chunk by chunk).

    ``mean`` and ``m2`` (sum of squared deviations) have the shape of one
    replica's trajectory; ``se`` is the Monte Carlo standard error of ``mean``.
    """

    count: int
    mean: Any
    m2: Any

    @classmethod
    def of(cls, trajectories: Any) -> "Moments":
        """The moments of stacked trajectories (leading replica axis): what
        ``run(..., reduce=True)`` returns for the same replicas."""
        return _merge(None, trajectories)

    @property
    def variance(self) -> Any:
        return jax.tree.map(lambda m2: m2 / max(self.count - 1, 1), self.m2)

    @property
    def se(self) -> Any:
        return jax.tree.map(lambda v: np.sqrt(v / self.count), self.variance)


class NonFiniteError(FloatingPointError):
    """A NaN or Inf appeared in a simulation; says where."""

    def __init__(self, quantity: str, generation: int, replica: int):
        self.quantity, self.generation, self.replica = quantity, generation, replica
        super().__init__(f"non-finite value in {quantity!r} at generation {generation} "
                         f"(first at replica {replica})")


def generation_keys(replica_key: jax.Array, i: Any) -> GenerationKeys:
    """Keys of generation ``i``: a pure function of the replica key and ``i``."""
    return GenerationKeys(*jax.random.split(jax.random.fold_in(replica_key, i), 4))


def first_generation(model: GenerativeModel, plan: LoopPlan, keys: GenerationKeys,
                     real: Any) -> LoopState:
    """Fit ``G_0`` on the ``n`` real samples ``real`` (``S0``)."""
    data, weights = initial_training_set(plan, real)
    return LoopState(model.fit(keys.fit, data, weights), data, weights)


def refit(model: GenerativeModel, plan: LoopPlan, keys: GenerationKeys, state: LoopState,
          i: Any, fresh_real: Any, synthetic: Any, m_i: Any = None) -> LoopState:
    """Fit ``G_i`` on generation ``i``'s training set, given its new real and synthetic samples."""
    data, weights = next_training_set(plan, state.data, state.weights, i, fresh_real, synthetic,
                                      m_i)
    return LoopState(model.fit(keys.fit, data, weights), data, weights)


def next_generation(model: GenerativeModel, plan: LoopPlan, real_sampler: Callable, truth: Any,
                    keys: GenerationKeys, state: LoopState, i: Any, m_i: Any = None) -> LoopState:
    """Form generation ``i``'s training set from ``G_{i-1}`` and fit ``G_i``."""
    synthetic = model.sample(keys.synthetic, state.params, plan.block)
    fresh = real_sampler(keys.real, truth, plan.n) if plan.scheme == "fresh" else None
    return refit(model, plan, keys, state, i, fresh, synthetic, m_i)


def trajectory(key: jax.Array, model: GenerativeModel, truth: Any, plan: LoopPlan,
               metric: Metric, real_sampler: Callable | None = None, sizes: Any = None) -> Any:
    """One replica: ``metric`` at every generation, stacked on a leading axis.

    Args:
      key: the replica's key.
      model: the generator refitted in the loop.
      truth: parameters of the real distribution ``p0``, in the form
        ``real_sampler`` (default ``model.sample``) accepts.
      plan: the loop (scheme, sizes, generations); only ``plan.layout`` is used
        when ``sizes`` is given.
      metric: ``(key, Generation, truth) -> pytree`` of per-generation measurements.
      real_sampler: ``(key, truth, n) -> data``; defaults to ``model.sample``.
      sizes: ``m_i`` per generation (``plan.sizes()``, may be traced); default from ``plan``.

    Returns:
      The metric pytree with a leading generation axis of length ``plan.generations``.
    """
    real_sampler = real_sampler or model.sample
    sizes = jnp.asarray(plan.sizes() if sizes is None else sizes)
    keys0 = generation_keys(key, 0)
    state = first_generation(model, plan, keys0, real_sampler(keys0.real, truth, plan.n))
    first = metric(keys0.metric, Generation(jnp.asarray(0), state.params, state.params,
                                            state.data, state.weights), truth)
    if plan.generations == 1:
        return jax.tree.map(lambda a: a[None], first)

    def step(state, i_and_size):
        i, m_i = i_and_size
        keys = generation_keys(key, i)
        new = next_generation(model, plan, real_sampler, truth, keys, state, i, m_i)
        out = metric(keys.metric, Generation(i, new.params, state.params, new.data, new.weights),
                     truth)
        return new, out

    _, rest = jax.lax.scan(step, state, (jnp.arange(1, plan.generations), sizes[1:]))
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)


# ---------------------------------------------------------------------------------------
# Driver: chunks of replicas, sharded over devices, compiled once per shape.

_COMPILED: dict = {}
# Replica r uses fold_in(key, r) with r a uint32: more replicas would repeat keys.
MAX_REPLICAS = 2**32


def _available_host_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _available_device_bytes(device) -> int:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return _available_host_bytes()


def compile_count() -> int:
    """Number of distinct compiled chunk functions so far (for tests and reports)."""
    return len(_COMPILED)


def _compiled_chunk(replica_fn, static_key, batch_size, devices, base_key, truth):
    """Compile (once per static configuration and truth shape) the chunk function.

    ``replica_fn(key, truth) -> pytree`` is one replica; ``static_key`` is a hashable
    tuple that identifies it (two calls with equal ``static_key`` must mean the same
    ``replica_fn``: it is the compilation cache key).
    """
    truth_shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)),
                                truth)
    # The key's type is part of the signature: a typed key (jax.random.key) and a raw
    # uint32[2] one (jax.random.PRNGKey) compile to different executables.
    key_spec = (np.shape(base_key), str(base_key.dtype))
    cache_key = (*static_key, batch_size, devices, key_spec,
                 jax.tree.structure(truth_shapes), tuple(jax.tree.leaves(truth_shapes)))
    if cache_key in _COMPILED:
        return _COMPILED[cache_key]
    mesh = Mesh(np.asarray(devices), ("replicas",))
    sharding = NamedSharding(mesh, P("replicas"))

    def per_device(base, indices, truth):
        keys = jax.vmap(jax.random.fold_in, (None, 0))(base, indices)
        return jax.vmap(lambda k: replica_fn(k, truth))(keys)

    # check_vma=False: replicas never communicate, and models or metrics may start a
    # scan from a constant carry, which the varying-axis type check would reject.
    chunk_fn = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("replicas"), P()),
                                     out_specs=P("replicas"), check_vma=False))
    indices = jax.ShapeDtypeStruct((batch_size * len(devices),), jnp.uint32, sharding=sharding)
    # Through the program store: a later process loads the lowered program instead of
    # tracing replica_fn again (sims/programs.py).
    key_shape = jax.ShapeDtypeStruct(np.shape(base_key), base_key.dtype)
    compiled = compile_program(chunk_fn, cache_key, key_shape, indices, truth_shapes,
                               platform=devices[0].platform)
    need = _compiled_bytes(compiled)
    local = [d for d in devices if d.process_index == jax.process_index()]
    have = _available_device_bytes(local[0] if local else jax.local_devices()[0])
    if need is not None and need > 0.8 * have:
        suggestion = max(1, int(batch_size * 0.4 * have / need))
        raise MemoryError(
            f"one chunk of {batch_size} replicas per device needs about {need / 2**30:.2f} GiB "
            f"but only {have / 2**30:.2f} GiB is available; try batch_size={suggestion}")
    _COMPILED[cache_key] = (compiled, sharding)
    return compiled, sharding


def _compiled_bytes(compiled) -> int | None:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if stats is None:
        return None
    return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes
               + stats.output_size_in_bytes)


def _first_nonfinite(tree: Any, offset: int) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.floating) and not np.all(np.isfinite(leaf)):
            bad = ~np.isfinite(leaf.reshape(leaf.shape[0], leaf.shape[1], -1)).all(axis=2)
            replica, generation = np.argwhere(bad)[np.argmin(np.argwhere(bad)[:, 1])]
            raise NonFiniteError(jax.tree_util.keystr(path) or "metric", int(generation),
                                 int(replica) + offset)


def diverged(trajectories: Any, settled: int = 2) -> np.ndarray:
    """Where each replica has diverged: ``(replicas, generations)`` bool, True from the first
    generation at which any of its metrics is NaN/Inf on (a non-finite model stays so).

    For trajectories from ``run(..., nonfinite="return")``. A replica that is non-finite
    within its first ``settled`` generations raises ``NonFiniteError``: ``G_0`` is fitted on
    real data only, so a NaN there is a broken run, not a loop that diverged, and a trend
    needs two generations.
    """
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(trajectories)]
    replicas, generations = leaves[0].shape[:2]
    bad = np.zeros((replicas, generations), bool)
    for leaf in leaves:
        if np.issubdtype(leaf.dtype, np.floating):
            bad |= ~np.isfinite(leaf.reshape(replicas, generations, -1)).all(axis=2)
    out = np.logical_or.accumulate(bad, axis=1)
    _first_nonfinite(jax.tree.map(lambda a: np.asarray(a)[:, :settled], trajectories), 0)
    return out


def _merge(moments: Moments | None, chunk: Any) -> Moments:
    """Chan et al.'s pairwise merge of running moments with one chunk's replicas."""
    count = jax.tree.leaves(chunk)[0].shape[0]
    mean = jax.tree.map(lambda a: a.astype(np.float64).mean(axis=0), chunk)
    m2 = jax.tree.map(lambda a, mu: ((a.astype(np.float64) - mu) ** 2).sum(axis=0), chunk, mean)
    if moments is None:
        return Moments(count, mean, m2)
    total = moments.count + count
    delta = jax.tree.map(lambda b, a: b - a, mean, moments.mean)
    new_mean = jax.tree.map(lambda a, d: a + d * count / total, moments.mean, delta)
    new_m2 = jax.tree.map(lambda a, b, d: a + b + d ** 2 * moments.count * count / total,
                          moments.m2, m2, delta)
    return Moments(total, new_mean, new_m2)


def check_loop_inputs(key: Any, model: Any, truth: Any, plan: Any,
                      real_sampler: Callable | None = None) -> None:
    """Raise a ``TypeError``/``ValueError`` naming the argument before JAX sees a bad input.

    ``truth`` must be finite numbers that the real sampler (default ``model.sample``),
    the first fit and sampling from the fitted model accept: this is checked by
    tracing them abstractly (``jax.eval_shape``, no computation), so a ``truth`` of the
    wrong shape fails here, naming ``truth``, not deep inside JAX. With the default
    sampler ``truth`` is a parameter value and must have the structure of the fit's.
    """
    if not isinstance(model, GenerativeModel):
        raise TypeError(f"model must be a sims.GenerativeModel (e.g. sims.models.gaussian(1)), "
                        f"got {type(model).__name__}")
    if not isinstance(plan, LoopPlan):
        raise TypeError(f"plan must be a LoopPlan from sims.make_plan, got {type(plan).__name__}")
    if real_sampler is not None and not callable(real_sampler):
        raise TypeError(f"real_sampler must be a function (key, truth, n) -> data, got "
                        f"{type(real_sampler).__name__}")
    validate.check_prng_key("key", key)
    leaves, treedef = jax.tree.flatten(truth)
    if not leaves:
        raise ValueError(f"truth must hold the parameters of p0 for {model.name}, got {truth!r}")
    for leaf in leaves:
        validate.check_in_range("truth", leaf, -np.inf, np.inf)  # numeric and finite
    spec = tuple(jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in leaves)
    _check_truth_shapes(model, plan.layout, real_sampler, treedef, spec,
                        jax.ShapeDtypeStruct(np.shape(key), key.dtype))


@functools.lru_cache(maxsize=256)
def _check_truth_shapes(model, plan, real_sampler, treedef, spec, key_spec) -> None:
    def first(key, truth):
        keys = generation_keys(key, 0)
        state = first_generation(model, plan, keys, (real_sampler or model.sample)(
            keys.real, truth, plan.n))
        return state.params, model.sample(keys.synthetic, state.params, max(plan.block, 1))

    truth = jax.tree.unflatten(treedef, spec)
    try:
        params, _ = jax.eval_shape(first, key_spec, truth)
    except (TypeError, ValueError, IndexError, AttributeError, KeyError) as err:
        shapes = jax.tree.map(lambda a: a.shape, truth)
        reason = str(err).strip().splitlines()[0]
        raise ValueError(f"truth does not fit model {model.name!r} (truth shapes {shapes}): "
                         f"{reason}") from None
    if real_sampler is None and jax.tree.structure(params) != treedef:
        raise ValueError(f"truth must be parameters of {model.name!r} with structure "
                         f"{jax.tree.structure(params)}, got {treedef}")


def run(key: jax.Array, model: GenerativeModel, truth: Any, plan: LoopPlan, metric: Metric, *,
        replicas: int, batch_size: int = 256, real_sampler: Callable | None = None,
        reduce: bool = False, progress: bool | None = None, devices=None,
        nonfinite: str = "raise") -> Any:
    """Run ``replicas`` independent self-consuming loops and measure every generation.

    Args:
      key: base PRNG key; replica ``r`` uses ``fold_in(key, r)``.
      model: the generative model (build it with a cached factory to reuse compilations).
      truth: parameters of ``p0`` (see ``trajectory``). Its values are traced: changing
        them does not recompile.
      plan: from ``sims.make_plan``. Its sizes ``m_i`` are traced too: plans with the
        same ``plan.layout`` (scheme, ``n``, capacity, generations) share one compiled
        loop, so give a grid over ``m`` or ``lam`` one ``capacity``.
      metric: ``(key, Generation, truth) -> pytree``; pass the same function object
        across calls to reuse the compiled loop.
      replicas: number of independent loops, ``>= 1``.
      batch_size: replicas per device per chunk (the unit of peak memory). Replicas
        are padded up to a whole chunk; padded replicas are computed and discarded,
        never counted.
      real_sampler: ``(key, truth, n) -> data`` for real data (default ``model.sample``).
      reduce: if True, return running ``Moments`` (memory flat in ``replicas``);
        otherwise the full trajectories.
      progress: show a progress bar over chunks (``None``: as ``chunk_progress`` says).
      devices: devices to shard replicas over (default: all of ``jax.devices()``).
      nonfinite: ``"raise"`` (default): a NaN/Inf is an error. ``"return"``: hand the
        trajectories back with their NaN/Inf, for a caller that gives a diverged replica a
        defined outcome (B2-loop's 2-D fully synthetic loop overflows; docs/diffusion.md §7).
        Not with ``reduce`` (running moments cannot hold a NaN meaningfully).

    Returns:
      The metric pytree with leading axes ``(replicas, generations)``, or ``Moments``.

    Raises:
      ValueError: invalid sizes. NonFiniteError: a NaN/Inf appeared (names the
      quantity, generation and replica). MemoryError: a chunk or the requested
      trajectories would not fit; the message suggests a batch size.
    """
    if not callable(metric):
        raise TypeError(f"metric must be a function (key, Generation, truth) -> pytree, got "
                        f"{type(metric).__name__}")
    check_loop_inputs(key, model, truth, plan, real_sampler)
    layout = plan.layout
    return run_replicas(
        key, lambda k, data: trajectory(k, model, data[0], layout, metric, real_sampler, data[1]),
        ("trajectory", model, layout, metric, real_sampler), (truth, plan.sizes()),
        replicas=replicas, batch_size=batch_size, reduce=reduce, progress=progress,
        devices=devices, description=f"{model.name}/{plan.scheme}", nonfinite=nonfinite)


_CHUNK_PROGRESS = contextvars.ContextVar("chunk_progress", default=False)


@contextlib.contextmanager
def chunk_progress(show: bool = True) -> Iterator[None]:
    """Within the block, every ``run_replicas`` call that does not say otherwise shows a bar
    over its chunks (``verify.all`` turns it on for a claim it runs in its own process on a
    terminal: a ``--full`` point can run for minutes in one call)."""
    token = _CHUNK_PROGRESS.set(bool(show))
    try:
        yield
    finally:
        _CHUNK_PROGRESS.reset(token)


def run_replicas(key: jax.Array, replica_fn: Callable[[jax.Array, Any], Any], static_key: tuple,
                 truth: Any, *, replicas: int, batch_size: int = 256, reduce: bool = False,
                 progress: bool | None = None, devices=None,
                 description: str = "replicas", nonfinite: str = "raise") -> Any:
    """The driver behind ``run``: any per-replica function, chunked, sharded, compiled once.

    Args:
      key: base PRNG key; replica ``r`` gets ``fold_in(key, r)``.
      replica_fn: ``(replica_key, truth) -> pytree`` with a leading generation axis.
      static_key: hashable tuple identifying ``replica_fn`` (its compilation cache key).
      truth: the traced data of every replica (any pytree of arrays: ``p0``'s
        parameters, per-generation sizes...); new values, same shapes: no recompilation.
      replicas, batch_size, reduce, progress, devices, nonfinite: as in ``run``.
      description: progress-bar label.

    Returns:
      As ``run``: stacked trajectories, or ``Moments`` when ``reduce``.
    """
    replicas = validate.check_positive_int("replicas", replicas)
    if replicas > MAX_REPLICAS:  # replica indices are uint32: more would repeat keys
        raise ValueError(f"replicas must be an integer in [1, 2**32], got {replicas}")
    batch_size = validate.check_positive_int("batch_size", batch_size)
    if nonfinite not in ("raise", "return"):
        raise ValueError(f"nonfinite must be 'raise' or 'return', got {nonfinite!r}")
    if nonfinite == "return" and reduce:
        raise ValueError("nonfinite='return' needs the trajectories (reduce=False): running "
                         "moments cannot carry a diverged replica")
    devices = tuple(devices or jax.devices())
    chunk = batch_size * len(devices)
    compiled, sharding = _compiled_chunk(replica_fn, static_key, batch_size, devices, key, truth)
    if not reduce:
        per_replica = sum(np.prod(s.shape[1:]) * s.dtype.itemsize
                          for s in jax.tree.leaves(compiled.out_info))
        need, have = per_replica * replicas, _available_host_bytes()
        if need > 0.5 * have:
            raise MemoryError(
                f"{replicas} trajectories need {need / 2**30:.2f} GiB on the host, "
                f"{have / 2**30:.2f} GiB available: use reduce=True (running moments)")
    n_chunks = math.ceil(replicas / chunk)
    starts = range(0, n_chunks * chunk, chunk)
    if (_CHUNK_PROGRESS.get() if progress is None else progress) and n_chunks > 1:
        from tqdm.auto import tqdm
        starts = tqdm(starts, total=n_chunks, desc=description, unit="chunk", leave=False)

    def launch(start):
        # Built from a callback so that, on several hosts, each process supplies only
        # the index shards of its own devices.
        indices = jax.make_array_from_callback(
            (chunk,), sharding, lambda where: np.arange(start, start + chunk, dtype=np.uint32)[where])
        return start, compiled(key, indices, truth)

    moments, pieces, pending = None, [], None
    for start in starts:
        if pending is not None:
            # One chunk executes at a time: with two programs in flight XLA:CPU hung for
            # good (all threads idle) in the diffusion B3 sweep (docs/engine.md). The host
            # work on chunk c (copy, NaN check, moments) still overlaps chunk c+1.
            jax.block_until_ready(pending[1])
        launched = launch(start)
        if pending is not None:
            moments = _collect(pending, replicas, moments, pieces, reduce, nonfinite)
        pending = launched
    moments = _collect(pending, replicas, moments, pieces, reduce, nonfinite)
    if reduce:
        return moments
    return jax.tree.map(lambda *parts: np.concatenate(parts), *pieces)


def _collect(pending, replicas, moments, pieces, reduce, nonfinite):
    start, out = pending
    keep = min(replicas - start, jax.tree.leaves(out)[0].shape[0])
    if jax.process_count() > 1:  # every process gets the whole chunk, in replica order
        from jax.experimental import multihost_utils
        out = multihost_utils.process_allgather(out, tiled=True)
    host = jax.tree.map(lambda a: np.asarray(a)[:keep], out)
    if nonfinite == "raise":
        _first_nonfinite(host, start)
    if reduce:
        return _merge(moments, host)
    pieces.append(host)
    return moments
