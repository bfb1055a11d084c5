"""Mixing schemes: how generation ``i``'s training set is formed (THEORY §1).

Every generation trains on a fixed-size *buffer* of samples plus a weight per
slot (1 = present, 0 = absent), so that ``lax.scan`` sees static shapes:

* ``reuse``      ``[S0 (n) | synthetic_i (m)]``: the same real set every generation.
* ``fresh``      ``[real_i (n) | synthetic_i (m)]``: new real samples every generation.
* ``synthetic``  ``[synthetic_i (m)]`` (``lam = 0``); generation 0 holds ``S0``.
* ``accumulate`` ``[S0 | synthetic_1 | ... | synthetic_i | (empty slots)]``.

Generation 0 (``G_0``) is always fit on ``n`` real samples only. ``m`` may vary
by generation (``m_i`` for ``i >= 1``); slots beyond ``m_i`` get weight 0.

Sizes are data, shapes are static. A synthetic block has ``capacity`` slots
(default: the largest ``m_i``); ``m_i`` itself only decides which slots get
weight 1, so the engine passes the per-generation sizes (``LoopPlan.sizes``) as a
traced vector and one compiled loop serves every plan with the same
``LoopPlan.layout`` (scheme, ``n``, capacity, generations). Give several plans
of a grid the same ``capacity`` to share one compilation. The generator always
draws ``capacity`` samples and the first ``m_i`` count; with JAX's counter-based
PRNG the first ``m_i`` of a larger draw are the same numbers as a draw of
``m_i``, so a loop's random numbers do not depend on the capacity (its fits agree
to rounding: sums over more zero-weight slots may round differently).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bounds import validate

SCHEMES = ("reuse", "fresh", "synthetic", "accumulate")
# Samples a training set may hold: JAX indexes them with 32-bit integers.
MAX_SAMPLES = 2**31 - 1
# Generations a plan may have: it stores one size per generation, the loop one metric each.
MAX_GENERATIONS = 2**24


class LoopPlan(NamedTuple):
    """Description of one self-consuming loop (hashable; its ``layout`` is the jit key).

    Attributes:
      scheme: one of ``SCHEMES``.
      n: real samples per generation (``S0`` size).
      m: synthetic samples for generations ``1 .. generations-1`` (a tuple; ``None``
        in a ``layout``, where the sizes are data).
      generations: number of fitted generations ``G_0 .. G_{generations-1}``.
      capacity: slots reserved for one synthetic set, ``>= max(m)``
        (``None``: ``max(m)``).
    """

    scheme: str
    n: int
    m: tuple | None
    generations: int
    capacity: int | None = None

    @property
    def block(self) -> int:
        """Slots reserved for one synthetic set (the capacity, by default the largest ``m_i``)."""
        if self.capacity is not None:
            return self.capacity
        return max(self.m) if self.m else 0

    @property
    def layout(self) -> "LoopPlan":
        """The static part of the plan, what fixes array shapes (``m`` is left out: data).

        Two plans with equal ``layout`` share one compiled loop.
        """
        return self._replace(m=None, capacity=self.block)

    def sizes(self) -> np.ndarray:
        """``m_i`` for every generation ``i`` as int32 (``m_0 = 0``: ``G_0`` sees only real data)."""
        return np.asarray((0,) + tuple(self.m), np.int32)

    @property
    def buffer_size(self) -> int:
        if self.scheme == "synthetic":
            return max(self.n, self.block)
        if self.scheme == "accumulate":
            return self.n + self.block * (self.generations - 1)
        return self.n + self.block

    def real_proportion(self) -> np.ndarray:
        """``lam_i`` for every generation ``i`` (``lam_0 = 1``: ``G_0`` sees only real data)."""
        lam = [1.0]
        synthetic_so_far = 0
        for m_i in self.m:
            synthetic_so_far += m_i
            if self.scheme == "synthetic":
                lam.append(0.0)
            elif self.scheme == "accumulate":
                lam.append(self.n / (self.n + synthetic_so_far))
            else:
                lam.append(self.n / (self.n + m_i))
        return np.asarray(lam)


def make_plan(scheme: str, *, n: int, generations: int, m: int | Sequence[int] | None = None,
              lam: float | None = None, capacity: int | None = None) -> LoopPlan:
    """Validate loop parameters and build a ``LoopPlan``.

    Args:
      scheme: ``reuse``, ``fresh``, ``synthetic`` or ``accumulate``.
      n: real sample size, ``>= 1``.
      generations: number of generations, ``>= 1`` (generation 0 is the real fit).
      m: synthetic samples per generation: an int, or one int per generation
        ``1 .. generations-1``. Give ``m`` or ``lam``, not both.
      lam: real proportion ``n / (n + m)`` in ``(0, 1]`` (``reuse``/``fresh``/
        ``accumulate``); ``m`` is then ``round(n (1 - lam) / lam)``.
        For ``synthetic`` omit both (``m = n``) or give ``m``.
      capacity: static slots per synthetic set, ``>= max(m)`` (default ``max(m)``).
        Plans that differ only in ``m`` (or ``lam``) and share ``capacity`` share
        one compiled loop; a larger capacity costs time in every generation.

    Raises:
      ValueError: on any invalid parameter, naming it and its allowed range.
    """
    validate.check_choice("scheme", scheme, SCHEMES)
    n = validate.check_positive_int("n", n)
    generations = validate.check_positive_int("generations", generations)
    if generations > MAX_GENERATIONS:  # the plan holds one size per generation
        raise ValueError(f"generations must be an integer in [1, {MAX_GENERATIONS}], got "
                         f"{generations}")
    if m is not None and lam is not None:
        raise ValueError("give either m or lam, not both")
    if lam is not None:
        validate.check_proportion("lam", lam)
        if scheme == "synthetic":
            if lam != 0:
                raise ValueError(f"scheme 'synthetic' has lam = 0 by definition, got lam={lam}")
            m = n
        else:
            validate.check_proportion("lam", lam, allow_zero=False)
            m = n * (1.0 - lam) / lam  # inf for a subnormal lam: checked before int()
            if not m <= MAX_SAMPLES:
                smallest = n / (n + MAX_SAMPLES)
                raise ValueError(f"lam={lam} gives m = n (1 - lam) / lam = {m:.3g} synthetic "
                                 f"samples per generation, more than {MAX_SAMPLES} (2**31 - 1);"
                                 f" with n={n}, lam must be >= {smallest:.3g}")
            m = int(round(m))
    if m is None:
        if scheme != "synthetic":
            raise ValueError(f"scheme {scheme!r} needs m (synthetic samples) or lam")
        m = n
    sizes = (m,) * (generations - 1) if np.ndim(m) == 0 else tuple(m)
    if len(sizes) != generations - 1:
        raise ValueError(f"m must give one size per generation 1..{generations - 1} "
                         f"({generations - 1} values), got {len(sizes)}")
    sizes = tuple(validate.check_nonnegative_int("m", s) for s in sizes)
    if scheme == "synthetic" and any(s < 1 for s in sizes):
        raise ValueError("scheme 'synthetic' needs m >= 1 in every generation")
    largest = max(sizes, default=0)
    if capacity is None:
        capacity = largest
    capacity = validate.check_nonnegative_int("capacity", capacity)
    if capacity < largest:
        raise ValueError(f"capacity must be an integer >= max(m) = {largest}, got {capacity}")
    plan = LoopPlan(scheme, n, sizes, generations, capacity)
    if plan.buffer_size > MAX_SAMPLES:  # JAX indexes samples with 32-bit integers
        what = "n + m (generations - 1)" if scheme == "accumulate" else "n + m"
        raise ValueError(f"the training set holds {what} = {plan.buffer_size} samples, more "
                         f"than {MAX_SAMPLES} (2**31 - 1): lower m (or raise lam), n or "
                         f"generations")
    return plan


def _zeros_like_rows(tree: Any, rows: int) -> Any:
    return jax.tree.map(lambda a: jnp.zeros((rows,) + a.shape[1:], a.dtype), tree)


def _write(tree: Any, rows: Any, offset: Any) -> Any:
    """Write ``rows`` into ``tree`` starting at sample ``offset`` (may be traced)."""
    return jax.tree.map(
        lambda a, r: jax.lax.dynamic_update_slice_in_dim(a, r.astype(a.dtype), offset, axis=0),
        tree, rows)


def initial_training_set(plan: LoopPlan, real: Any) -> tuple[Any, jax.Array]:
    """Buffer and weights for ``G_0``: the ``n`` real samples, every other slot empty."""
    data = _write(_zeros_like_rows(real, plan.buffer_size), real, 0)
    weights = (jnp.arange(plan.buffer_size) < plan.n).astype(jnp.float64)
    return data, weights


def next_training_set(plan: LoopPlan, data: Any, weights: jax.Array, i: jax.Array,
                      fresh_real: Any, synthetic: Any, m_i: Any = None) -> tuple[Any, jax.Array]:
    """Buffer and weights for generation ``i >= 1`` (``i`` and ``m_i`` may be traced).

    Args:
      plan: the loop (only its layout is used when ``m_i`` is given).
      data, weights: generation ``i-1``'s buffer.
      i: generation index.
      fresh_real: ``n`` new real samples (used by ``fresh`` only).
      synthetic: ``plan.block`` samples from ``G_{i-1}``; only the first ``m_i`` count.
      m_i: synthetic samples of generation ``i`` (default ``plan.m[i-1]``).
    """
    if m_i is None:
        m_i = jnp.asarray(plan.sizes())[i]
    present = (jnp.arange(plan.block) < m_i).astype(weights.dtype)
    if plan.scheme == "synthetic":
        data = _write(data, synthetic, 0)
        weights = jnp.zeros_like(weights).at[: plan.block].set(present)
        return data, weights
    offset = plan.n + (i - 1) * plan.block if plan.scheme == "accumulate" else plan.n
    if plan.scheme == "fresh":
        data = _write(data, fresh_real, 0)
    data = _write(data, synthetic, offset)
    weights = jax.lax.dynamic_update_slice_in_dim(weights, present, offset, axis=0)
    return data, weights
