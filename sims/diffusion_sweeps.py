"""Monte Carlo sweeps of the random-feature score diffusion (B2, B3-diffusion), run by ``run_replicas``.

Each sweep is one replica function of ``(key, truth)`` handed to ``sims.loop.run_replicas``:
replica ``r`` gets ``fold_in(key, r)``, replicas are chunked, sharded over the devices and
compiled once per configuration, and a NaN is reported with its replica (the first axis
after the replicas is named "generation" there: the training-size index of ``oneshot``, the
generation of ``b3_loop``). Results do not depend on the device count (tested).

* ``oneshot``: one generation on nested prefixes of one iid draw for every ``(n, τ)``: TV and
  KL of the SDE sampler's grid density, its grid budget, optionally the Girsanov bound and the
  discretisation budget ``TV(q_K, q_{K/2})``.
* ``b3_loop``: the ``reuse`` loop at fixed ``n`` for every ``m`` of a grid, ``G_0`` and each
  generation's keys shared across ``m`` (common random numbers for paired differences).

The model is ``sims.models.diffusion`` with Li et al.'s averaged loss (``estimator="averaged"``)
or ``J`` fixed draws per point (``"draws"``, the named variant). docs/diffusion.md §1.1, §5.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from bounds.models import diffusion as bounds_diffusion
from sims import metrics
from sims.loop import Generation, run_replicas
from sims.model import GenerativeModel
from sims.models import diffusion as D
from sims.models.kde import sample_mixture

__all__ = ["SPAN", "grid", "oneshot", "tau_search", "b3_loop", "with_synthetic_shift"]

SPAN = 7.0        # the TV grid is [-SPAN, SPAN] (per axis)


def grid(cells: int, dim: int = 1) -> metrics.Grid:
    """The claims' TV grid: ``cells`` midpoint cells on ``[-7, 7]`` (per axis)."""
    return metrics.make_grid(-SPAN, SPAN, int(cells), int(dim))


def _quadratics(params, data, weight_sets, key_draws, *, estimator, draws, nodes, horizon, t_min,
                dim):
    """The DSM quadratic for each row of ``weight_sets`` (nested prefixes), one leading axis."""
    if estimator == "averaged":
        return D.dsm_quadratic_averaged_prefixes(params, data, weight_sets, horizon, t_min, nodes)
    t, eps = D.dsm_draws(key_draws, data.shape[0], draws, horizon, t_min, dim)
    return jax.vmap(lambda w: D.dsm_quadratic(params, data, w, t, eps))(weight_sets)


def _oneshot_replica(sizes, width, estimator, draws, nodes, steps, cells, with_bound, dim,
                     horizon, t_min):
    n_max = max(sizes)
    the_grid = grid(cells, dim)
    nodes_x = jnp.asarray(metrics.grid_nodes(the_grid))
    cell = the_grid.cell_volume

    def one(key, inputs):
        truth, taus = inputs                     # traced: new training times, same program
        key_data, key_features, key_draws = jax.random.split(key, 3)
        data = sample_mixture(key_data, truth, n_max)
        params = D.random_features(key_features, width, dim=dim)
        prefixes = (jnp.arange(n_max)[None, :] < jnp.asarray(sizes)[:, None]).astype(jnp.float64)
        quads = _quadratics(params, data, prefixes, key_draws, estimator=estimator, draws=draws,
                            nodes=nodes, horizon=horizon, t_min=t_min, dim=dim)
        readouts = jax.vmap(lambda q: D.train_exact(q, taus))(quads)     # (S, T, W..)
        p0 = metrics.mixture_density(the_grid, truth)
        p0_tail = 0.5 * metrics.mixture_tail_mass(the_grid, truth)

        def at(readout):
            model = params._replace(readout=readout)
            fine, lost = D.sde_density_on_grid(model, nodes_x, horizon, steps)
            tv, quad = metrics.tv_on_grid(the_grid, fine, p0)
            kl = cell * jnp.sum(p0 * (jnp.log(p0) - jnp.log(jnp.maximum(fine, 1e-300))))
            out = dict(tv=tv, tv_error=quad + 0.5 * jnp.abs(lost) + p0_tail, kl=kl)
            if with_bound:   # the bound, and the discretisation budget it needs
                coarse, _ = D.sde_density_on_grid(model, nodes_x, horizon, steps // 2)
                out["disc"] = metrics.tv_on_grid(the_grid, fine, coarse)[0]
                bound = bounds_diffusion.girsanov_kl_bound(
                    lambda x, s: D.score(model, x, s), truth.loc, truth.weight, truth.scale,
                    horizon, nodes_x)
                out.update(bound_kl=bound.kl, bound_prior=bound.prior)
            return out

        return jax.vmap(jax.vmap(at))(readouts)                       # (S, T) per quantity

    return one


def oneshot(key, truth, *, sizes, taus, width, replicas, estimator="averaged", draws=4, nodes=16,
            steps=100, cells=128, with_bound=True, dim=1, horizon=4.0, t_min=1e-3,
            batch_size=16, devices=None) -> dict:
    """One-generation TV, KL (and bound) for every ``n`` in ``sizes`` and ``τ`` in ``taus``.

    Replica ``r`` (key ``fold_in(key, r)``): one iid draw of ``max(sizes)`` points from the
    mixture ``truth``, one random first layer (and, for ``"draws"``, one set of DSM draws)
    shared by every ``(n, τ)`` (common random numbers; each fit is exactly the model's fit on
    ``n`` iid points); all ``τ`` from one eigendecomposition per ``n``. ``with_bound`` adds
    the Girsanov bound (``bound_kl``, ``bound_prior``) and ``disc = TV(q_K, q_{K/2})``.

    Returns numpy arrays of shape ``(replicas, len(sizes), len(taus))``.
    Raises ``NonFiniteError`` naming the quantity, the size index and the replica.
    """
    sizes = tuple(int(s) for s in sizes)
    taus = tuple(float(t) for t in taus)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be positive integers, got {sizes!r}")
    if not taus:
        raise ValueError("taus (training times) must not be empty")
    for tau in taus:
        D.check_diffusion_args(width, tau, horizon, steps, draws, t_min, dim)
    D.check_estimator(estimator, nodes, horizon, t_min, dim)
    metrics.check_grid_covers(grid(cells, dim), truth, 1e-6)
    static = (sizes, int(width), estimator, int(draws), int(nodes), int(steps), int(cells),
              bool(with_bound), int(dim), float(horizon), float(t_min))
    replica = _oneshot_replica(*static)
    # The times are data (only their count is in the program): B3's eps sweep trains for a
    # law fitted per seed, and a new seed must not compile a new program.
    inputs = (truth, jnp.asarray(taus, jnp.float64))
    return run_replicas(key, replica, ("diffusion-oneshot",) + static, inputs, replicas=replicas,
                        batch_size=min(batch_size, replicas), devices=devices,
                        description="diffusion one-shot")


GOLDEN = (5 ** 0.5 - 1) / 2


def _tau_search_replica(n, width, log_taus, refine, nodes, steps, cells, horizon, t_min):
    the_grid = grid(cells)
    nodes_x = jnp.asarray(metrics.grid_nodes(the_grid))
    cell = the_grid.cell_volume
    log_taus = jnp.asarray(log_taus)
    last = len(log_taus) - 1

    def one(key, truth):
        key_data, key_features = jax.random.split(key)
        data = sample_mixture(key_data, truth, n)
        params = D.random_features(key_features, width)
        quad = D.dsm_quadratic_averaged(params, data, jnp.ones(n), horizon, t_min, nodes)
        spectrum = D.flow_spectrum(quad)        # one eigh; A(τ) for any τ from it
        p0 = metrics.mixture_density(the_grid, truth)

        def error(log_tau):
            model = params._replace(readout=D.readout_at(spectrum, 10.0 ** log_tau))
            fine, _ = D.sde_density_on_grid(model, nodes_x, horizon, steps)
            tv, _ = metrics.tv_on_grid(the_grid, fine, p0)
            kl = cell * jnp.sum(p0 * (jnp.log(p0) - jnp.log(jnp.maximum(fine, 1e-300))))
            return tv, kl

        tv_grid, kl_grid = jax.vmap(error)(log_taus)
        k = jnp.argmin(tv_grid)
        lo, hi = log_taus[jnp.maximum(k - 1, 0)], log_taus[jnp.minimum(k + 1, last)]

        def section(_, state):   # golden section on [lo, hi]: one new TV per step
            lo, hi, a, b, fa, fb = state
            left = fa < fb            # keep [lo, b] (old a becomes b) or [a, hi] (b becomes a)
            lo, hi = jnp.where(left, lo, a), jnp.where(left, b, hi)
            new = jnp.where(left, hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo))
            f_new = error(new)[0]
            return (lo, hi, jnp.where(left, new, b), jnp.where(left, a, new),
                    jnp.where(left, f_new, fb), jnp.where(left, fa, f_new))

        a, b = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
        lo, hi, a, b, fa, fb = jax.lax.fori_loop(0, refine, section,
                                                 (lo, hi, a, b, error(a)[0], error(b)[0]))
        best = jnp.where(fa < fb, a, b)
        tv, kl = error(best)
        # The grid point may still be the better one (a kink, or a minimum at the grid's end).
        better = tv_grid[k] < tv
        best = jnp.where(better, log_taus[k], best)
        tv = jnp.where(better, tv_grid[k], tv)
        kl = jnp.where(better, kl_grid[k], kl)
        return {"log_tau": best, "tv": tv, "kl": kl, "tv_grid": tv_grid,
                "depth": tv_grid[-1] - tv, "at_end": (k == last).astype(jnp.float64)}

    return one


def tau_search(key, truth, *, n, width, log_taus, replicas, refine=12, nodes=16, steps=100,
               cells=64, horizon=4.0, t_min=1e-3, batch_size=16, devices=None) -> dict:
    """Early stopping identified (B2): each replica's best training time ``τ*``, found by a
    search in the continuous ``τ`` of the closed-form flow.

    Replica ``r``: ``n`` iid points, a first layer of ``width`` features, Li et al.'s averaged
    loss (``nodes`` time nodes), one eigendecomposition. ``TV(q_τ, p0)`` (the ``steps``-step
    SDE sampler's grid density) on the dense grid ``log10 τ ∈ log_taus`` in one vmapped
    call, then ``refine`` golden-section steps on the two grid cells around the grid's argmin
    (the bracket shrinks by 0.618 a step). Returns arrays over replicas: ``log_tau`` (log10
    ``τ*``), ``tv`` and ``kl`` there, ``tv_grid`` ``(replicas, len(log_taus))``, ``depth`` =
    ``TV(largest τ) − TV(τ*)`` (how deep the minimum is) and ``at_end`` (1 where the grid's
    argmin is its largest ``τ``: the minimum is not bracketed).
    """
    log_taus = tuple(float(t) for t in log_taus)
    if len(log_taus) < 3 or any(b <= a for a, b in zip(log_taus, log_taus[1:])):
        raise ValueError(f"log_taus (log10 training times) must be >= 3 increasing values, "
                         f"got {log_taus!r}")
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
        raise ValueError(f"refine (golden-section steps) must be a non-negative integer, "
                         f"got {refine!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (training size) must be a positive integer, got {n!r}")
    for log_tau in (log_taus[0], log_taus[-1]):
        D.check_diffusion_args(width, 10.0 ** log_tau, horizon, steps, 1, t_min)
    D.check_estimator("averaged", nodes, horizon, t_min)
    metrics.check_grid_covers(grid(cells), truth, 1e-6)
    static = (int(n), int(width), log_taus, int(refine), int(nodes), int(steps), int(cells),
              float(horizon), float(t_min))
    replica = _tau_search_replica(*static)
    return run_replicas(key, replica, ("diffusion-tau-search",) + static, truth,
                        replicas=replicas, batch_size=min(batch_size, replicas),
                        devices=devices, description="diffusion tau* search")


@functools.lru_cache(maxsize=None)
def with_synthetic_shift(model: GenerativeModel, shift: float) -> GenerativeModel:
    """``model`` whose samples are moved by ``+shift`` (a broken simulator, negative controls).

    Used for the synthetic data of a loop only (real data come from their own sampler).
    Cached, so the compiled loop is reused.
    """
    if shift == 0:
        return model

    def sample(key, params, m):
        return model.sample(key, params, m) + shift

    return model._replace(name=f"{model.name}-shift{shift:g}", sample=sample)


def _b3_replica(n, m_grid, generations, model, cells, steps, horizon):
    metric = D.diffusion_tv_metric(grid(cells), horizon, steps)

    def tv_of(params, truth):
        out = metric(None, Generation(0, params, params, None, None), truth)
        return jnp.stack([out["tv"], out["tv_error"]])

    def one(key, inputs):
        truth, times = inputs          # times: None (the model's rule) or (1 + len(m_grid),)
        time = (lambda j: None) if times is None else (lambda j: times[j])
        key_real, key_loop = jax.random.split(key)
        real = sample_mixture(key_real, truth, n)
        first = model.fit(jax.random.fold_in(key_loop, 0), real, jnp.ones(n), time=time(0))
        rows = []
        for j, m in enumerate(m_grid):  # static sizes: each m trains on exactly n + m points
            params, tvs = first, [tv_of(first, truth)]
            for i in range(1, generations + 1):
                key_sample, key_fit = jax.random.split(jax.random.fold_in(key_loop, i))
                data = real if m == 0 else jnp.concatenate(
                    [real, model.sample(key_sample, params, m)])
                params = model.fit(key_fit, data, jnp.ones(n + m), time=time(j + 1))
                tvs.append(tv_of(params, truth))
            rows.append(jnp.stack(tvs))                              # (G + 1, 2)
        table = jnp.stack(rows, axis=1)                              # (G + 1, M, 2)
        return {"tv": table[..., 0], "tv_error": table[..., 1]}

    return one


def b3_loop(key, truth, model: GenerativeModel, *, n, m_grid, generations, replicas, cells=128,
            steps=100, horizon=4.0, training_times=None, batch_size=16, devices=None) -> dict:
    """The ``reuse`` loop (``n`` real points reused, ``m`` fresh synthetic ones) for every ``m``.

    Generation 0 is fit on the ``n`` real points and shared by every ``m``; generation ``i``
    of every ``m`` uses the same keys (first layer, sampler noise stream), so differences
    between ``m`` values are paired. ``m = 0`` refits on the real points alone (a fresh fit per
    generation). ``model`` must sample with ``steps`` steps (its ``sample`` is what the loop
    draws from; the grid density is that sampler's law). ``training_times``, when given, is
    ``(τ(n), τ(n + m) for m in m_grid)``, passed to ``model.fit(..., time=)`` as data (the
    diffusion model's override): B3's per-seed fitted law then reuses one compiled program.

    Returns ``tv`` and ``tv_error`` of shape ``(replicas, generations + 1, len(m_grid))``.

    ``batch_size`` 16 (one chunk at the quick size). With two chunks of this program in
    flight, the read of chunk c once never returned, every XLA thread idle (docs/diffusion.md
    §6.1); ``run_replicas`` now waits for chunk c before dispatching c+1 (docs/engine.md §4).
    """
    m_grid = tuple(int(m) for m in m_grid)
    if n < 1 or min(m_grid) < 0:
        raise ValueError(f"n must be >= 1 and every m >= 0, got n={n!r}, m_grid={m_grid!r}")
    if generations < 1:
        raise ValueError(f"generations must be >= 1, got {generations!r}")
    metrics.check_grid_covers(grid(cells), truth, 1e-6)
    if training_times is not None:
        training_times = jnp.asarray(training_times, jnp.float64)
        if training_times.shape != (1 + len(m_grid),) or not bool(
                jnp.all(jnp.isfinite(training_times) & (training_times > 0))):
            raise ValueError("training_times must be 1 + len(m_grid) positive finite times "
                             f"(tau(n), tau(n + m) for m in m_grid), got {training_times!r}")
    static = (int(n), m_grid, int(generations), model, int(cells), int(steps), float(horizon))
    replica = _b3_replica(*static)
    return run_replicas(key, replica, ("diffusion-b3",) + static, (truth, training_times),
                        replicas=replicas,
                        batch_size=min(batch_size, replicas), devices=devices,
                        description="diffusion B3")
