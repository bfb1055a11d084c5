"""Paper A's generic closed forms: recursive stability (R2) and the STL gap bound (R3).

The per-model constants of THEORY section 4 live beside the other models, mirroring
``sims/models/``: ``bounds.models.mean_estimation``, ``bounds.models.categorical`` and
``bounds.models.ridge``.

Every formula here is proved in ``docs/paper_a.md``; each docstring names the
section. None of the constants is "the paper's": the paper's full text is not
available, so each is derived from first principles for a concrete model.

Conventions (THEORY section 1): generation ``i = 0, 1, ...``; ``G_0`` is fit on
the ``n`` real samples alone; ``G_i`` (``i >= 1``) on ``n`` real plus ``m``
synthetic samples from ``G_{i-1}``; ``N = n + m``; ``lam = n / N``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from bounds import validate
from bounds.validate import check_nonnegative, check_positive, check_positive_int, check_proportion

__all__ = [
    "recursive_stability_bound",
    "recursive_stability_closed_form",
    "recursive_stability_sup",
    "stability_contraction",
    "is_uniformly_bounded",
    "GapBound",
    "expected_gap_bound",
    "real_proportion",
]

_check_sizes = validate.check_integer_at_least  # the generic input checks live in validate.py


# --------------------------------------------------------------------------- #
# R2: recursive stability.
# --------------------------------------------------------------------------- #
def _base_case(eps_N, gamma_0):
    return eps_N if gamma_0 is None else gamma_0


def recursive_stability_bound(eps_N: ArrayLike, m: ArrayLike, generations: int,
                              gamma_0: ArrayLike | None = None) -> jax.Array:
    """R2 recursion ``gamma_i <= eps_N (1 + m gamma_{i-1})``, for i = 0..generations-1.

    Claim A1/A2, result R2. Kind: upper (each entry bounds the recursive
    stability ``gamma_i`` of docs/paper_a.md section 3.1).

    Base case: ``gamma_0 = eps_N`` by default. This is the recursion's own step
    from ``gamma_{-1} = 0`` (nothing depends on S0 before the first fit), and it
    is valid when the first fit's replace-one constant is at most ``eps_N``.
    Under THEORY section 1 (``G_0`` fit on the ``n`` real points alone) the
    honest base case is ``eps_n``; for ``eps_N = c/N`` that is
    ``c/n = eps_N / lam``: pass it as ``gamma_0`` (paper_a.md section 3.2).

    Assumptions: every fit ``A`` on ``N`` points is ``eps_N`` replace-one stable
    in TV on the whole data domain; loops share randomness through a maximal
    coupling of synthetic draws (paper_a.md section 3.1).

    Args:
      eps_N: replace-one TV constant of one fit on ``N`` points, ``>= 0``.
      m: synthetic samples per generation, ``>= 0``.
      generations: number of entries returned, integer ``>= 1``.
      gamma_0: optional base case ``>= 0`` (default ``eps_N``).

    Returns:
      float64 array of shape ``(generations,)``: ``gamma_0, ..., gamma_{generations-1}``.
    """
    check_nonnegative("eps_N", eps_N)
    check_nonnegative("m", m)
    generations = check_positive_int("generations", generations)
    if gamma_0 is not None:
        check_nonnegative("gamma_0", gamma_0)
    eps_N = jnp.asarray(eps_N, jnp.float64)
    m = jnp.asarray(m, jnp.float64)
    start = jnp.asarray(_base_case(eps_N, gamma_0), jnp.float64)

    def step(gamma_prev, _):
        gamma = eps_N * (1.0 + m * gamma_prev)
        return gamma, gamma

    _, rest = jax.lax.scan(step, start, None, length=generations - 1)
    return jnp.concatenate([start[None], rest])


def recursive_stability_closed_form(eps_N: ArrayLike, m: ArrayLike, generation: ArrayLike,
                                    gamma_0: ArrayLike | None = None) -> jax.Array:
    """Closed form of the R2 recursion at generation(s) ``generation``.

    Claim A1/A2, result R2. Kind: exact (solves the recursion of
    ``recursive_stability_bound`` exactly; the value is an upper bound on
    ``gamma_i``). With ``b = m eps_N``:
    ``gamma_i = b^i gamma_0 + eps_N (1 - b^i) / (1 - b)`` (``b != 1``) and
    ``gamma_0 + i eps_N`` (``b = 1``). Default ``gamma_0 = eps_N`` gives
    ``eps_N (1 - b^{i+1}) / (1 - b)``. Proof: docs/paper_a.md section 3.2.

    Args:
      eps_N: replace-one TV constant of one fit on ``N`` points, ``>= 0``.
      m: synthetic samples per generation, ``>= 0``.
      generation: generation index/indices ``i >= 0`` (int or integer array).
      gamma_0: optional base case ``>= 0`` (default ``eps_N``).

    Returns:
      float64 array broadcast over the inputs.
    """
    check_nonnegative("eps_N", eps_N)
    check_nonnegative("m", m)
    _check_sizes("generation", generation, 0)
    if gamma_0 is not None:
        check_nonnegative("gamma_0", gamma_0)
    eps_N = jnp.asarray(eps_N, jnp.float64)
    b = jnp.asarray(m, jnp.float64) * eps_N
    i = jnp.asarray(generation, jnp.float64)
    start = jnp.asarray(_base_case(eps_N, gamma_0), jnp.float64)
    at_one = jnp.abs(1.0 - b) < 1e-12
    safe = jnp.where(at_one, 0.5, b)  # keeps the unused branch finite
    geometric_sum = jnp.where(at_one, i, (1.0 - safe ** i) / (1.0 - safe))
    return b ** i * start + eps_N * geometric_sum


def recursive_stability_sup(eps_N: ArrayLike, m: ArrayLike,
                            gamma_0: ArrayLike | None = None) -> jax.Array:
    """Supremum over all generations of the R2 recursion bound.

    Claim A2/A3, result R2. Kind: upper. When ``b = m eps_N < 1`` the recursion
    converges monotonically to ``eps_N / (1 - b)`` from ``gamma_0``, so the
    supremum is ``max(gamma_0, eps_N / (1 - b))``; otherwise the bound is
    unbounded (``inf``; the true gamma_i is still <= 1 since it is a TV).
    With ``eps_N = c/N``: ``eps_N/(1-b) = c / (N (1 - c (1-lam)))``.
    Proof: docs/paper_a.md section 3.3.

    Args:
      eps_N: replace-one TV constant on ``N`` points, ``>= 0``.
      m: synthetic samples per generation, ``>= 0``.
      gamma_0: optional base case ``>= 0`` (default ``eps_N``).

    Returns:
      float64 array; ``inf`` where ``m eps_N >= 1`` (and ``eps_N > 0``).
    """
    check_nonnegative("eps_N", eps_N)
    check_nonnegative("m", m)
    if gamma_0 is not None:
        check_nonnegative("gamma_0", gamma_0)
    eps_N = jnp.asarray(eps_N, jnp.float64)
    b = jnp.asarray(m, jnp.float64) * eps_N
    start = jnp.asarray(_base_case(eps_N, gamma_0), jnp.float64)
    contracting = b < 1.0
    limit = eps_N / jnp.where(contracting, 1.0 - b, 1.0)
    bounded = jnp.maximum(start, limit)
    return jnp.where(contracting | (eps_N == 0), bounded, jnp.inf)


def stability_contraction(c: ArrayLike, lam: ArrayLike) -> jax.Array:
    """The R2 contraction factor ``m eps_N = c (1 - lam)`` for ``eps_N = c / N``.

    Claim A2 (the architecture enters only through ``c``), result R2.
    Kind: exact (``m c / N = c (1 - lam)`` because ``m / N = 1 - lam``).
    Proof: docs/paper_a.md section 3.3.

    Args:
      c: model constant with ``eps_N <= c / N``, ``>= 0``.
      lam: real proportion ``n / N`` in ``[0, 1]``.

    Returns:
      float64 array ``c (1 - lam)``.
    """
    check_nonnegative("c", c)
    check_proportion("lam", lam)
    return jnp.asarray(c, jnp.float64) * (1.0 - jnp.asarray(lam, jnp.float64))


def is_uniformly_bounded(c: ArrayLike, lam: ArrayLike) -> jax.Array:
    """Whether the R2 bound stays ``O(1/N)`` uniformly in i: ``c (1 - lam) < 1``.

    Claim A2/A3, result R2. Kind: exact (a dichotomy of the recursion bound:
    uniformly bounded by ``max(gamma_0, c / (N (1 - c(1-lam))))`` when true,
    growing linearly (``= 1``) or geometrically (``> 1``) otherwise).
    Proof: docs/paper_a.md section 3.3.

    Args:
      c: model constant with ``eps_N <= c / N``, ``>= 0``.
      lam: real proportion ``n / N`` in ``[0, 1]``.

    Returns:
      boolean array.
    """
    return stability_contraction(c, lam) < 1.0


# --------------------------------------------------------------------------- #
# R3: expected generalisation gap in the loop.
# --------------------------------------------------------------------------- #
class GapBound(NamedTuple):
    """The R3 bound split by cause (A1). Fields broadcast like the inputs.

    Attributes:
      real_stability: ``lam beta_N``: the learner's stability on the real part.
      recursive_stability: ``lam beta_N m gamma_{i-1}``: one replaced real point
        also changes ~``m gamma_{i-1}`` synthetic points through the generator.
      distribution_shift: ``(1-lam) M E TV(p0, G_{i-1})``: synthetic points
        are drawn from ``G_{i-1}``, not ``p0``.
      synthetic_stability: ``(1-lam) beta_N``: the learner's stability on the
        synthetic part (as an i.i.d. sample from ``G_{i-1}``).
      concentration: ``0`` for this expectation bound; a concentration term only
        appears in a high-probability version (docs/paper_a.md section 4.3).
    """
    real_stability: jax.Array
    recursive_stability: jax.Array
    distribution_shift: jax.Array
    synthetic_stability: jax.Array
    concentration: jax.Array

    @property
    def stability(self) -> jax.Array:
        """A1 cause 1, the learner's uniform stability: ``lam beta_N + (1-lam) beta_N``."""
        return self.real_stability + self.synthetic_stability

    @property
    def total(self) -> jax.Array:
        """The R3 bound: the sum of all terms."""
        return (self.real_stability + self.recursive_stability + self.distribution_shift
                + self.synthetic_stability + self.concentration)


def expected_gap_bound(beta_N: ArrayLike, m: ArrayLike, gamma_prev: ArrayLike, lam: ArrayLike,
                       loss_bound: ArrayLike, tv_prev: ArrayLike) -> GapBound:
    """R3: ``E[R_p0(h_i) - R_hat_{S_i}(h_i)]`` bounded term by term.

    Claim A1, result R3. Kind: upper, in expectation over S0 and all sampling
    randomness, for generation ``i >= 1``:
    ``lam beta_N (1 + m gamma_{i-1}) + (1-lam) M E TV(p0, G_{i-1}) + (1-lam) beta_N``.

    Assumptions: ``reuse`` scheme; ``S_i`` = the ``n`` real points of S0 plus
    ``m`` i.i.d. draws from ``G_{i-1}``; ``R_hat`` is the plain average over
    the ``N`` points, so ``lam = n / N`` (pass that value); the learner is
    replace-one ``beta_N``-uniformly stable on size-``N`` sets over the whole
    data domain; loss in ``[0, M]``; ``gamma_prev`` is the generator's recursive
    stability at ``i-1`` (maximal-coupling sense). Proof: docs/paper_a.md section 4.

    Args:
      beta_N: learner's replace-one uniform stability on ``N`` points, ``>= 0``.
      m: synthetic samples per generation, ``>= 0``.
      gamma_prev: recursive stability ``gamma_{i-1}``, ``>= 0``.
      lam: real proportion in ``[0, 1]``.
      loss_bound: ``M``, the loss lies in ``[0, M]``; ``> 0``.
      tv_prev: ``E TV(p0, G_{i-1})`` (or an upper bound on it) in ``[0, 1]``.

    Returns:
      ``GapBound`` with the five terms; ``.total`` is the bound.
    """
    check_nonnegative("beta_N", beta_N)
    check_nonnegative("m", m)
    check_nonnegative("gamma_prev", gamma_prev)
    check_proportion("lam", lam)
    check_positive("loss_bound", loss_bound)
    check_proportion("tv_prev", tv_prev)
    beta_N, m, gamma_prev, lam, loss_bound, tv_prev = (
        jnp.asarray(v, jnp.float64)
        for v in (beta_N, m, gamma_prev, lam, loss_bound, tv_prev))
    real = lam * beta_N
    return GapBound(
        real_stability=real,
        recursive_stability=real * m * gamma_prev,
        distribution_shift=(1.0 - lam) * loss_bound * tv_prev,
        synthetic_stability=(1.0 - lam) * beta_N,
        concentration=jnp.zeros_like(real),
    )



def real_proportion(n: int, m: int, lam: float | None = None) -> float:
    """``lam = n / (n + m)`` of a loop with ``n`` real and ``m`` synthetic points, or ``lam``
    itself when given (checked to be a proportion)."""
    if lam is None:
        return float(n) / float(n + m)
    check_proportion("lam", lam)
    return float(lam)
