"""Two coupled self-consuming loops, to measure recursive stability (claim A1/A2, R2).

One replica runs a loop on ``S0`` and a twin loop on ``S0'``: ``S0`` with the
example at ``replaced_index`` replaced by an independent draw from ``p0``. The
twins share every other random draw: the same generation keys (real, synthetic,
fit and metric streams), so fresh real data and fit seeds are identical, and the
synthetic sets are drawn *jointly* by a ``coupler``:

* ``shared_keys(model)`` (default): each twin calls ``model.sample`` with the same
  key (a synchronous coupling);
* a maximal coupling (``maximal_categorical``, ``sims.models.mean_estimation_coupler``):
  each pair of synthetic points differs with probability exactly
  ``TV(G_{i-1}, G'_{i-1})``. This is the coupling under which R2 is proved
  (docs/paper_a.md section 3.1), so its ``E TV(G_i, G'_i)`` is the quantity
  ``gamma_i`` that R2 bounds (in expectation over ``S0`` and the replacement, which
  is at most the sup over neighbours).

Either way each twin, alone, is an ordinary loop: with the twin key of a replica,
the first twin's trajectory equals ``sims.loop.trajectory`` (tested).

``run_coupled`` drives replicas through ``sims.loop.run_replicas``: chunked,
sharded over devices and compiled once per static configuration.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from bounds import validate
from sims.loop import (Generation, check_loop_inputs, first_generation, generation_keys, refit,
                       run_replicas)
from sims.model import GenerativeModel
from sims.schemes import LoopPlan

__all__ = ["Coupler", "CoupledMetric", "shared_keys", "maximal_categorical", "replace_one",
           "coupled_trajectory", "run_coupled", "twin_keys"]

Coupler = Callable[[jax.Array, Any, Any, int], tuple]
CoupledMetric = Callable[[jax.Array, Generation, Generation, Any], Any]


@functools.lru_cache(maxsize=None)
def shared_keys(model: GenerativeModel) -> Coupler:
    """The synchronous coupling: both twins sample with the same key."""

    def coupler(key, params, params_prime, m):
        return model.sample(key, params, m), model.sample(key, params_prime, m)

    return coupler


@functools.lru_cache(maxsize=None)
def maximal_categorical(num_symbols: int) -> Coupler:
    """A maximal coupling of two laws on ``K`` symbols, ``m`` independent pairs.

    With ``t = TV(p, q)``: with probability ``1 - t`` both take a common draw from
    ``min(p, q) / (1 - t)``; otherwise ``x ~ (p - q)_+ / t`` and ``y ~ (q - p)_+ / t``
    independently. Marginals: ``min(p, q) + (p - q)_+ = p``. ``P(x != y) = t``
    because the residuals have disjoint supports. Proof: docs/paper_a.md section 8.1.
    """
    num_symbols = validate.check_positive_int("num_symbols", num_symbols)

    def draw(key, weights, m):
        # Normalising a zero vector is avoided: a zero residual is never selected.
        total = weights.sum()
        probs = jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0),
                          jnp.ones_like(weights) / num_symbols)
        return jax.random.choice(key, num_symbols, (m,), p=probs).astype(jnp.int32)

    def coupler(key, p, q, m):
        key_coin, key_common, key_x, key_y = jax.random.split(key, 4)
        common = jnp.minimum(p, q)
        tv = 1.0 - common.sum()
        same = jax.random.uniform(key_coin, (m,), jnp.float64) >= tv
        shared = draw(key_common, common, m)
        x = jnp.where(same, shared, draw(key_x, jnp.maximum(p - q, 0.0), m))
        y = jnp.where(same, shared, draw(key_y, jnp.maximum(q - p, 0.0), m))
        return x, y

    return coupler


def twin_keys(replica_key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(loop_key, replacement_key)`` of one coupled replica (independent streams)."""
    loop_key, replacement_key = jax.random.split(replica_key)
    return loop_key, replacement_key


def replace_one(real: Any, replacement: Any, index: int) -> Any:
    """``real`` with sample ``index`` replaced by the single sample ``replacement``."""
    return jax.tree.map(lambda a, r: a.at[index].set(r[0].astype(a.dtype)), real, replacement)


def _stack(a, b):
    return jax.tree.map(lambda u, v: jnp.stack([u, v]), a, b)


def _unstack(tree):
    return jax.tree.map(lambda a: a[0], tree), jax.tree.map(lambda a: a[1], tree)


def coupled_trajectory(key: jax.Array, model: GenerativeModel, truth: Any, plan: LoopPlan,
                       metric: CoupledMetric, replaced_index: int, coupler: Coupler,
                       real_sampler: Callable | None = None, sizes: Any = None) -> Any:
    """One coupled replica: ``metric(key, gen, gen_prime, truth)`` at every generation.

    Args:
      key: the replica's key (split by ``twin_keys``).
      model: the generator refitted in both loops.
      truth: parameters of ``p0``.
      plan: the loop (any scheme; fresh real data are shared by the twins).
      metric: ``(key, Generation, Generation', truth) -> pytree``.
      replaced_index: which of the ``n`` real examples differs, ``0 <= j < n``.
      coupler: ``(key, params, params', m) -> (synthetic, synthetic')``.
      real_sampler: ``(key, truth, n) -> data`` (default ``model.sample``).
      sizes: ``m_i`` per generation (may be traced); default ``plan.sizes()``.

    Returns:
      The metric pytree with a leading generation axis.
    """
    real_sampler = real_sampler or model.sample
    sizes = jnp.asarray(plan.sizes() if sizes is None else sizes)
    loop_key, replacement_key = twin_keys(key)
    keys0 = generation_keys(loop_key, 0)
    real = real_sampler(keys0.real, truth, plan.n)
    real_prime = replace_one(real, real_sampler(replacement_key, truth, 1), replaced_index)
    start = jax.vmap(lambda r: first_generation(model, plan, keys0, r))(_stack(real, real_prime))

    def measure(key, index, new, old):
        (a, b), (pa, pb) = _unstack(new), _unstack(old)
        return metric(key, Generation(index, a.params, pa.params, a.data, a.weights),
                      Generation(index, b.params, pb.params, b.data, b.weights), truth)

    first = measure(keys0.metric, jnp.asarray(0), start, start)
    if plan.generations == 1:
        return jax.tree.map(lambda a: a[None], first)

    def step(state, i_and_size):
        i, m_i = i_and_size
        keys = generation_keys(loop_key, i)
        a, b = _unstack(state)
        synthetic = _stack(*coupler(keys.synthetic, a.params, b.params, plan.block))
        fresh = real_sampler(keys.real, truth, plan.n) if plan.scheme == "fresh" else None

        new = jax.vmap(lambda old, synth: refit(model, plan, keys, old, i, fresh, synth, m_i))(
            state, synthetic)
        return new, measure(keys.metric, i, new, state)

    _, rest = jax.lax.scan(step, start, (jnp.arange(1, plan.generations), sizes[1:]))
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)


def run_coupled(key: jax.Array, model: GenerativeModel, truth: Any, plan: LoopPlan,
                metric: CoupledMetric, *, replaced_index: int, replicas: int,
                coupler: Coupler | None = None, batch_size: int = 256,
                real_sampler: Callable | None = None, reduce: bool = True,
                progress: bool | None = None, devices=None) -> Any:
    """Run ``replicas`` coupled pairs of loops (``S0`` vs ``S0'``) and measure them.

    Args:
      key: base key; replica ``r`` uses ``fold_in(key, r)``.
      model: the generator (from a cached factory, to reuse compilations).
      truth: parameters of ``p0``.
      plan: from ``sims.make_plan``.
      metric: ``(key, gen, gen_prime, truth) -> pytree``; pass the same function object
        across calls to reuse the compiled loop.
      replaced_index: the replaced real example, an integer in ``[0, plan.n)``.
      replicas: number of coupled pairs, ``>= 1``.
      coupler: joint sampler of the twins' synthetic sets (default ``shared_keys(model)``);
        pass a cached object to reuse compilations.
      batch_size, real_sampler, reduce, progress, devices: as ``sims.run``.

    Returns:
      ``Moments`` (``reduce=True``) or trajectories with leading ``(replica, generation)`` axes.

    Raises:
      ValueError: ``replaced_index`` outside ``[0, n)``, or invalid sizes.
      TypeError: ``replaced_index`` not an integer.
    """
    check_loop_inputs(key, model, truth, plan, real_sampler)
    index = validate.check_nonnegative_int("replaced_index", replaced_index)
    if index >= plan.n:
        raise ValueError(f"replaced_index must be an integer in [0, n) = [0, {plan.n}), "
                         f"got {replaced_index}")
    coupler = coupler or shared_keys(model)
    layout = plan.layout
    return run_replicas(
        key, lambda k, data: coupled_trajectory(k, model, data[0], layout, metric, index, coupler,
                                                real_sampler, data[1]),
        ("coupled", model, layout, metric, index, coupler, real_sampler), (truth, plan.sizes()),
        replicas=replicas, batch_size=batch_size, reduce=reduce, progress=progress,
        devices=devices, description=f"{model.name}/{plan.scheme}/coupled")
