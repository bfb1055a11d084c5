"""Claim A4: the convergence bound of the transformer loop (R1 in the L2 distance to Bayes).

A network ``f`` trained on prompts from the input law with labels whose regression
function is ``g`` lands at ``f = g + e`` (``e`` its learning error). In the loop of THEORY
§1 generation ``i`` trains on a mixture: real prompts (regression function ``f_B``, the
Bayes predictor) with weight ``lam`` and prompts labelled by ``G_{i-1}`` with weight
``1 - lam``, so its target is ``lam f_B + (1-lam) f_{i-1}`` and, with
``D_i = ||f_i - f_B||`` in ``L2`` of the prompt law, the triangle inequality gives

    D_i <= ||e_i|| + (1 - lam) D_{i-1},     D_0 = eps(n).

Assumption (tested only through its consequence): ``E||e_i|| <= eps(N)``, the mean
learning error of the same training on ``N = n + m`` real prompts. Proof and limits:
docs/transformer.md §3.
"""
from __future__ import annotations

import numpy as np
from jax.typing import ArrayLike

from bounds.validate import check_nonnegative, check_positive_int, check_proportion

__all__ = ["l2_recursion_bound"]


def l2_recursion_bound(first: ArrayLike, eps_N: ArrayLike, lam: ArrayLike,
                       generations: int) -> np.ndarray:
    """``E D_i <= (1-lam)^i E D_0 + E eps(N) (1 - (1-lam)^i) / lam`` for ``i < generations``.

    Claim A4 (A3 for a trained transformer), result R1 in ``L2``. Kind: upper, under the
    assumption ``E||e_i|| <= eps(N)`` (module docstring). ``lam = 0`` gives
    ``E D_0 + i eps(N)`` (linear growth); ``lam > 0`` a bound that tends to ``eps(N)/lam``.

    Args:
      first: ``E D_0``, the mean distance to Bayes of a network trained on the ``n`` real
        prompts, ``>= 0``.
      eps_N: ``E eps(N)``, the same on ``N`` real prompts (``N = n`` at ``lam = 0``), ``>= 0``.
      lam: real proportion in ``[0, 1)``.
      generations: entries returned, integer ``>= 1``.

    Returns:
      float64 array of shape ``(generations,)`` (broadcast over array inputs: last axis).
    """
    check_nonnegative("first", first)
    check_nonnegative("eps_N", eps_N)
    check_proportion("lam", lam, allow_one=False)
    generations = check_positive_int("generations", generations)
    first, eps_N, lam = (np.asarray(v, np.float64)[..., None] for v in (first, eps_N, lam))
    i = np.arange(generations, dtype=np.float64)
    keep = (1.0 - lam) ** i
    safe = np.where(lam > 0, lam, 1.0)
    return np.asarray(keep * first + eps_N * np.where(lam > 0, (1.0 - keep) / safe, i))
