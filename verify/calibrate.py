"""Calibration of a heavy-tailed exact row: how often does a *correct* prediction fail?

``python -m verify.calibrate a2 --batches 200`` runs A2's coupled linear-attention loops in
``batches`` independent batches of A2's own replica count (4096) per quick-grid cell, and
for each generation ``i`` computes the t statistic ``(mean - prediction) / SE`` of each
batch against the exact moment recursion (the rows A2 tests). A calibrated row has t with
SD 1 and ``|t| > 3`` in 0.27% of batches. The output, per cell and generation, sets the
kurtosis-growth limit of ``bounds.models.linear_attention.tame_generations`` (the rule
that decides which generations A2 may test): docs/statistics.md records the numbers.
A dev tool, not part of ``verify.all``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import jax
import numpy as np

import sims
from bounds.models import linear_attention as la
from sims.coupled import run_coupled
from sims.models import icl_real_sampler, icl_task, linear_attention
from verify.claims import attention

__all__ = ["a2_tame_calibration", "main"]


def _growth(gamma, lam, d, m) -> float:
    """Per-generation kurtosis growth of ``tame_generations`` (its ``g4``)."""
    second = float(la.contraction_factor(gamma, lam, d, m))
    fourth = float(la.fourth_moment_factor(gamma, lam, d, m))
    return max(fourth, 1.0) / max(second, 1.0) ** 2


def a2_tame_calibration(batches: int = 100, seed: int = 0, mode: str = "quick") -> list[dict]:
    """Per cell and generation: the SD and tail rate of A2's exact-row t over ``batches``.

    Returns one dict per (cell, quantity, generation) with ``kurtosis_growth`` (``g4^i``,
    what ``tame_generations`` compares with its limit), ``sd``, ``mean`` and
    ``tail_3`` (the fraction of batches with ``|t| > 3``; 0.0027 when calibrated), and
    the one-sided tails ``above_233`` and ``below_233`` (``t > 2.326``, ``t < -2.326``; 0.01
    each when calibrated), and the batches' ``t`` themselves.
    """
    if batches < 2:
        raise ValueError(f"batches must be >= 2, got {batches}")
    out = []
    for index, point in enumerate(attention.make_grid()(mode)):
        gamma, n, m, d, gens = (point[k] for k in ("gamma", "n", "m", "d", "generations"))
        lam = n / (n + m)
        model = linear_attention(d, point["tau"])
        plan = sims.make_plan("reuse", n=n, m=m, generations=gens)
        traj = run_coupled(jax.random.fold_in(jax.random.key(seed), index), model,
                           icl_task(attention.W_TRUE, gamma), plan,
                           attention.twin_metric(model, n), replaced_index=0,
                           replicas=batches * attention.BATCH,
                           real_sampler=icl_real_sampler(d, point["sigma"]),
                           batch_size=attention.BATCH, reduce=False)
        predictions = {
            "error": np.asarray(la.moments(gamma, n, m, attention.W_TRUE, point["sigma"],
                                           point["tau"], gens).error),
            "difference": np.asarray(la.coupled_difference_moments(
                gamma, n, m, attention.W_TRUE, point["sigma"], gens).error)}
        growth = _growth(gamma, lam, d, m)
        for quantity, prediction in predictions.items():
            values = np.asarray(traj[quantity], np.float64).reshape(batches, attention.BATCH,
                                                                    gens)
            mean = values.mean(1)
            se = values.std(1, ddof=1) / math.sqrt(attention.BATCH)
            t = (mean - prediction) / se
            for i in range(1, gens):
                out.append(dict(gamma=gamma, n=n, quantity=quantity, i=i,
                                kurtosis_growth=growth ** i, sd=float(t[:, i].std(ddof=1)),
                                mean=float(t[:, i].mean()),
                                tail_3=float(np.mean(np.abs(t[:, i]) > 3)),
                                above_233=float(np.mean(t[:, i] > 2.326)),
                                below_233=float(np.mean(t[:, i] < -2.326)),
                                t=t[:, i].tolist()))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verify.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("claim", choices=["a2"], help="the row family to calibrate")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="write every row (with its t) as JSON")
    args = parser.parse_args(argv)
    from verify import enable_float64
    enable_float64()  # the recursion is compared in float64
    rows = a2_tame_calibration(args.batches, args.seed)
    print("gamma  n  quantity    i  g4^i      sd(t)  mean(t)  P(|t|>3)  P(t>2.33)  P(t<-2.33)")
    for r in rows:
        print(f"{r['gamma']:.3f} {r['n']:2d}  {r['quantity']:10s} {r['i']:2d}  "
              f"{r['kurtosis_growth']:9.3g}  {r['sd']:.3f}  {r['mean']:+.3f}   {r['tail_3']:.3f}"
              f"     {r['above_233']:.3f}      {r['below_233']:.3f}")
    if args.save:
        import json
        Path(args.save).write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
