"""What paper A measures in a loop, per generation and replica, exactly (A1, A2-gamma, A3, A5).

For the three models of THEORY section 4 (``sims.models.mean_estimation`` with uniform
noise, ``sims.models.categorical``, ``sims.models.ridge``): the generalisation gap
``R_p0(h_i) - R_hat_{S_i}(h_i)`` with ``R_p0`` in closed form per replica, its split as in
the proof of R3 (docs/paper_a.md 4.2, 9.1), the error, ``TV(p0, G_{i-1})``, and for coupled
pairs of loops ``TV(G_i, G'_i)`` (recursive stability, R2). For generations ``i >= 1`` of a
``reuse`` buffer ``[S0 (n) | Z_i (m)]``:

    gap = lam real_part + (1-lam) shift_part + (1-lam) synthetic_part, with
    real_part = R_p0(h_i) - R_hat_{S0}(h_i), shift_part = R_p0(h_i) - R_{G_{i-1}}(h_i),
    synthetic_part = R_{G_{i-1}}(h_i) - R_hat_{Z_i}(h_i).

Buffers without a synthetic block (``m = 0``, or ``synthetic``'s ``[Z_i]``) report zeros.
Every factory is cached: the same arguments give the same metric object, so a loop
compiles once per plan.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp

from sims.models.ridge import population_risk, ridge_spec, ridge_tv

__all__ = ["gap_parts", "mean_gap_metric", "categorical_gap_metric", "ridge_gap_metric",
           "mean_coupling_tv_metric", "categorical_coupling_tv_metric",
           "ridge_coupling_tv_metric"]


def gap_parts(n: int, size: int, risk, risk_prev, losses) -> dict:
    """The three pieces of the gap from per-slot losses (static split at ``n``)."""
    if size <= n:
        zero = jnp.zeros_like(risk)
        return {"real_part": zero, "shift_part": zero, "synthetic_part": zero}
    return {"real_part": risk - losses[:n].mean(), "shift_part": risk - risk_prev,
            "synthetic_part": risk_prev - losses[n:].mean()}


@functools.lru_cache(maxsize=None)
def mean_gap_metric(half_width: float, n: int):
    """Gap and its parts, squared error and ``TV(p0, G_{i-1})`` of the uniform-noise mean
    loop (data ``mu + U[-a, a]``, ``a = half_width``; exact per replica)."""
    s2 = half_width ** 2 / 3.0

    def metric(key, gen, truth):
        del key
        theta, weights = gen.params, gen.weights
        risk = (theta - truth) ** 2 + s2  # E_{p0} (x - theta)^2
        losses = (gen.data - theta) ** 2
        out = {"gap": risk - weights @ losses / weights.sum(), "error": (theta - truth) ** 2,
               "tv_prev": jnp.minimum(1.0, jnp.abs(gen.previous - truth) / (2.0 * half_width))}
        out.update(gap_parts(n, gen.data.shape[0], risk, (theta - gen.previous) ** 2 + s2,
                             losses))
        return out

    return metric


@functools.lru_cache(maxsize=None)
def categorical_gap_metric(n: int):
    """Gap under ``1 - p(x)`` and its parts, ``||p_hat - p0||^2`` and ``TV(p0, G_{i-1})``."""

    def metric(key, gen, truth):
        del key
        p = gen.params
        counts = jnp.zeros_like(p).at[gen.data].add(gen.weights)
        empirical = counts / gen.weights.sum()
        out = {"gap": p @ (empirical - truth), "error": jnp.sum((p - truth) ** 2),
               "tv_prev": 0.5 * jnp.sum(jnp.abs(gen.previous - truth))}
        out.update(gap_parts(n, gen.data.shape[0], 1.0 - p @ truth, 1.0 - p @ gen.previous,
                             1.0 - p[gen.data]))
        return out

    return metric


@functools.lru_cache(maxsize=None)
def ridge_gap_metric(model, n: int):
    """Gap (exact ``R_p0`` over the pool) and its parts, ``||w_i - w*||^2``, ``||w_i||^2``,
    ``R_p0`` and ``TV(p0, G_{i-1})`` of a ``sims.models.ridge`` loop."""
    spec = ridge_spec(model)

    def metric(key, gen, truth):
        del key
        w, data, weights = gen.params, gen.data, gen.weights
        risk = population_risk(spec, w, truth)
        losses = (data.y - data.x @ w) ** 2
        out = {"gap": risk - weights @ losses / weights.sum(), "error": jnp.sum((w - truth) ** 2),
               "weight_sq": jnp.sum(w ** 2), "risk": risk,
               "tv_prev": ridge_tv(spec, gen.previous, truth)}
        out.update(gap_parts(n, data.y.shape[0], risk, population_risk(spec, w, gen.previous),
                             losses))
        return out

    return metric


@functools.lru_cache(maxsize=None)
def mean_coupling_tv_metric(half_width: float):
    """``TV(G_i, G'_i)`` of two uniform-noise mean generators (exact), for ``run_coupled``."""

    def metric(key, gen, gen_prime, truth):
        del key, truth
        return {"gamma": jnp.minimum(1.0, jnp.abs(gen.params - gen_prime.params)
                                     / (2 * half_width))}

    return metric


@functools.lru_cache(maxsize=None)
def categorical_coupling_tv_metric():
    """``TV(G_i, G'_i)`` of two categorical laws (exact), for ``run_coupled``."""

    def metric(key, gen, gen_prime, truth):
        del key, truth
        return {"gamma": 0.5 * jnp.sum(jnp.abs(gen.params - gen_prime.params))}

    return metric


@functools.lru_cache(maxsize=None)
def ridge_coupling_tv_metric(model):
    """``TV(G_i, G'_i)`` of two ridge label generators (exact over the pool)."""
    spec = ridge_spec(model)

    def metric(key, gen, gen_prime, truth):
        del key, truth
        return {"gamma": ridge_tv(spec, gen.params, gen_prime.params)}

    return metric
