"""Figures of the diffusion claims (B2, B3-diffusion), drawn from saved result records only.

* B2-oneshot: TV and KL at the best tau against n (log-log) with the fitted line and the
  n^(-2/5) / n^(-1/5) references; TV and its Girsanov-Pinsker bound against tau for each n
  (the early-stopping trade-off).
* B2-loop: TV across generations by scheme (``verify.figures.default_figure``).
* B3-diffusion: TV against m/n for i = 1, 2, with the tested R1 bound.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from verify.figures import rows_of  # noqa: E402

__all__ = ["b2_oneshot_figure", "b3_diffusion_figure"]


def _series(record, point, quantity):
    rows = rows_of(record, point, quantity)
    return (np.array([r["x"] for r in rows], float), np.array([r["measured"] for r in rows]),
            np.array([r["se"] for r in rows]), [r["theory"] for r in rows])


def b2_oneshot_figure(record):
    """Left: TV and KL at the best tau vs n. Right: TV and bound vs tau for each n."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    for quantity, ref, colour in (("E TV(q,p0) at best tau", 0.2, "C0"),
                                  ("E KL(p0||q) at best tau", 0.4, "C1")):
        x, mean, se, theory = _series(record, 0, quantity)
        if not len(x):
            continue
        left.errorbar(x, mean, 2 * se, fmt="o", color=colour, label=quantity)
        if theory[0] is not None:
            left.plot(x, theory, "-", color=colour, lw=1, label="fitted line")
        left.plot(x, mean[0] * (x / x[0]) ** (-ref), ":", color=colour, label=f"n^-{ref:g} reference")
    left.set(xscale="log", yscale="log", xlabel="n", title="one-shot error at the best tau")
    left.legend(fontsize=7)
    labels = sorted({r["quantity"] for r in record["rows"] if "vs Girsanov-Pinsker" in r["quantity"]},
                    key=lambda q: float(q.split("tau=")[1]))
    taus = np.array([float(q.split("tau=")[1]) for q in labels])
    if labels:
        sizes = _series(record, 0, labels[0])[0]
        for j, n in enumerate(sizes):
            tv = np.array([_series(record, 0, q)[1][j] for q in labels])
            bound = np.array([_series(record, 0, q)[3][j] for q in labels], float)
            colour = f"C{j % 10}"
            right.plot(taus, tv, "o-", color=colour, ms=3, label=f"TV, n={n:g}")
            right.plot(taus, bound, "--", color=colour, lw=1, label=f"bound, n={n:g}")
    right.set(xscale="log", yscale="log", xlabel="training time tau",
              title="TV (+budgets) and Girsanov-Pinsker bound vs tau")
    right.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def b3_diffusion_figure(record):
    """E TV(G_i, p0) (+grid budget) against m/n for i = 1, 2, with the tested R1 bound
    (dashed; eps(n + m) from separate runs). m = 0 is drawn at the left edge."""
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    for c, i in enumerate((1, 2)):
        x, mean, se, _ = _series(record, 0, f"E TV(G_{i},p0)")
        if not len(x):
            continue
        xp = np.where(x > 0, x, x[x > 0].min() / 4)
        ax.errorbar(xp, mean, 2 * se, fmt="o-", ms=3, color=f"C{c}", label=f"i={i}")
        bx, _, _, bound = _series(record, 0, f"E TV(G_{i},p0) [+grid error] vs R1(predicted eps)")
        if len(bx):
            ax.plot(np.where(bx > 0, bx, xp.min()), np.asarray(bound, float), "--", lw=1,
                    color=f"C{c}", label=f"R1 bound, i={i}")
    ax.set(xscale="log", xlabel="m/n", ylabel="E TV(G_i, p0)", title=record["id"])
    ax.legend()
    fig.tight_layout()
    return fig
