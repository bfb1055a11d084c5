"""Paper A figures, drawn from saved result records only (never recomputing a number).

* ``stacked_terms_figure`` (A1): per grid point, the R3 bound's terms stacked by cause
  (learner stability, recursive stability, distribution shift, concentration) against
  the measured gap with a ±2 SE bar;
* ``error_vs_generation_figure`` (A3-<model>): the error against the generation for
  every ``lam``, with the exact curve (dashed) and the uniform-in-i bound (dotted).
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from verify.figures import rows_of  # noqa: E402

__all__ = ["stacked_terms_figure", "error_vs_generation_figure"]

TERM_PREFIX = "R3 term: "


def stacked_terms_figure(record):
    """A1: the four R3 terms stacked (log scale) and the measured gap, one panel per point."""
    points = record["points"]
    cols = min(5, max(1, len(points)))
    nrows = math.ceil(len(points) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False)
    terms = list(dict.fromkeys(r["quantity"] for r in record["rows"]
                               if r["quantity"].startswith(TERM_PREFIX)))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (ax, point) in enumerate(zip(axes.flat, points)):
        gap = rows_of(record, index, "gap <= R3 bound")
        if not gap:
            ax.set_visible(False)
            continue
        x = np.array([r["x"] for r in gap], float)
        values = [np.array([r["theory"] for r in rows_of(record, index, term)], float)
                  for term in terms]
        positive = [v[v > 0] for v in values] + [np.array([r["measured"] for r in gap
                                                           if r["measured"] > 0])]
        floor = 0.3 * min(float(v.min()) for v in positive if v.size)
        lower = np.full_like(x, floor)
        for k, (term, value) in enumerate(zip(terms, values)):
            upper = lower + value
            ax.fill_between(x, lower, upper, alpha=0.45, color=colours[k], lw=0,
                            label=term[len(TERM_PREFIX):])
            lower = upper
        ax.set_ylim(bottom=floor)
        mean = np.array([r["measured"] for r in gap])
        se = np.array([r["se"] for r in gap])
        ax.errorbar(x, mean, yerr=2 * se, fmt="ko", ms=3, lw=1, label="measured gap ± 2 SE")
        ax.plot(x, [r["theory"] for r in gap], "k-", lw=0.8)
        bad = [r for r in gap if r.get("reject")]
        if bad:
            ax.plot([r["x"] for r in bad], [r["measured"] for r in bad], "rx", ms=8, mew=2)
        ratio = max(r["ratio"] for r in gap)
        ax.set_yscale("log")
        ax.set_title(f"{point['model']} n={point['n']} lam={point['lam']}\nmax gap/bound "
                     f"{ratio:.2g}", fontsize=8)
        ax.set_xlabel("generation i", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(points):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"{record['id']} ({record['status']}): R3 bound by cause (stacked) vs the "
                 "measured gap E[R_p0(h_i) - R_hat_S_i(h_i)]; concentration = 0 (expectation "
                 "bound)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig


def error_vs_generation_figure(record):
    """A3: error against generation, one curve per ``lam``; exact dashed, bound dotted."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, point in enumerate(record["points"]):
        colour = colours[index % len(colours)]
        rows = rows_of(record, index, "E err_i")
        if not rows:
            continue
        x = np.array([r["x"] for r in rows], float)
        mean = np.array([r["measured"] for r in rows])
        se = np.array([r["se"] for r in rows])
        ax.errorbar(x, mean, yerr=2 * se, fmt="o", ms=3, color=colour, lw=1,
                    label=f"lam={point['lam']}")
        if rows[0]["theory"] is not None:
            ax.plot(x, [r["theory"] for r in rows], "--", color=colour, lw=1)
        bound = rows_of(record, index, "E err_i <= sup_i bound")
        if bound and bound[0]["theory"] is not None:
            ax.plot(x, [r["theory"] for r in bound], ":", color=colour, lw=1.2)
    ax.set_xlabel("generation i")
    ax.set_ylabel("error")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{record['id']} ({record['status']}): markers MC ± 2 SE, dashed exact, "
                 "dotted uniform-in-i bound", fontsize=9)
    fig.tight_layout()
    return fig
