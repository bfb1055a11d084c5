"""Paper A figures, drawn from saved result records only (never recomputing a number).

* ``terms_figure`` (A1): per grid point, each R3 term beside the measured quantity it
  bounds (the parts of the gap, the coupled-loop gamma, the measured TV), and the total
  bound against the measured gap;
* ``error_vs_generation_figure`` (A3-<model>): the error against the generation for
  every ``lam``, with the exact curve (dashed) and the uniform-in-i bound (dotted), and
  for ``lam = 0`` the paired growth ``err_i - err_0`` that the collapse rows test.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from verify.figures import rows_of  # noqa: E402

__all__ = ["terms_figure", "error_vs_generation_figure"]

TERM_PREFIX = "term "
GAP = "gap <= R3 bound"


def _short(quantity: str) -> str:
    """``term recursive: ...`` -> ``recursive`` (plus a report marker)."""
    label = quantity.split(":")[0][len(TERM_PREFIX):] if quantity.startswith(TERM_PREFIX) \
        else "gap (total)"
    return label + (" [report]" if "report" in quantity else "")


def terms_figure(record):
    """A1: each R3 term (line) beside the measured quantity it bounds (markers ± 2 SE),
    and the total bound against the measured gap, log scale, one panel per point."""
    points = record["points"]
    cols = min(5, max(1, len(points)))
    nrows = math.ceil(len(points) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols, 3.2 * nrows + 1.2), squeeze=False)
    quantities = [GAP] + list(dict.fromkeys(r["quantity"] for r in record["rows"]
                                            if r["quantity"].startswith(TERM_PREFIX)))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour_of = {}
    for quantity in quantities:
        key = _short(quantity).replace(" [report]", "")
        colour_of.setdefault(key, "k" if quantity == GAP else colours[len(colour_of) % 10])
    for index, (ax, point) in enumerate(zip(axes.flat, points)):
        for quantity in quantities:
            rows = rows_of(record, index, quantity)
            if not rows or rows[0]["theory"] is None:
                continue
            colour = colour_of[_short(quantity).replace(" [report]", "")]
            x = np.array([r["x"] for r in rows], float)
            mean = np.array([r["measured"] for r in rows])
            se = np.array([r["se"] for r in rows])
            theory = np.array([r["theory"] for r in rows], float)
            report = rows[0]["kind"] == "report"
            ax.plot(x, theory, ":" if report else "-", color=colour, lw=1.2,
                    label=f"{_short(quantity)}: term")
            ax.errorbar(x, np.where(mean > 0, mean, np.nan), yerr=2 * se, fmt="o", ms=3,
                        color=colour, lw=0.8, mfc="none" if report else colour,
                        label=f"{_short(quantity)}: measured")
            bad = [r for r in rows if r.get("reject")]
            if bad:
                ax.plot([r["x"] for r in bad], [r["measured"] for r in bad], "rx", ms=8, mew=2)
        gap = rows_of(record, index, GAP)
        ratio = max(r["ratio"] for r in gap) if gap else float("nan")
        ax.set_yscale("log")
        ax.set_title(f"{point['model']} n={point['n']} lam={point['lam']}\nmax gap/bound "
                     f"{ratio:.2g}", fontsize=8)
        ax.set_xlabel("generation i", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(points):]:
        ax.set_visible(False)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles.keys()), loc="lower center", ncol=4,
               fontsize=7, frameon=False)
    fig.suptitle(f"{record['id']} ({record['status']}): each R3 term (line; dotted = report) "
                 "beside the measured quantity it bounds (markers ± 2 SE); black: total bound "
                 "vs measured gap", fontsize=9)
    fig.tight_layout(rect=(0, 0.22 / nrows, 1, 0.95))
    return fig


def error_vs_generation_figure(record):
    """A3: error against generation, one curve per ``lam`` (exact dashed, uniform-in-i bound
    dotted); right panel: the paired increments ``err_i - err_0`` and ``err_i - err_1`` of the
    ``lam = 0`` loop (the collapse rows, each tested > 0)."""
    fig, (ax, ax_collapse) = plt.subplots(1, 2, figsize=(11.5, 4.4))
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
        for quantity, marker in (("collapse: E[err_i - err_0] (paired) > 0", "o"),
                                 ("growth: E[err_i - err_1] (paired) > 0", "s")):
            inc = rows_of(record, index, quantity)
            if not inc:
                continue
            ax_collapse.errorbar([r["x"] for r in inc], [r["measured"] for r in inc],
                                 yerr=[2 * r["se"] for r in inc], fmt=marker, ms=3, lw=1,
                                 color=colour, label=f"lam={point['lam']}: {quantity.split(':')[1]}")
            bad = [r for r in inc if r.get("reject")]
            if bad:
                ax_collapse.plot([r["x"] for r in bad], [r["measured"] for r in bad], "rx", ms=8)
    ax.set_xlabel("generation i")
    ax.set_ylabel("error")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{record['id']} ({record['status']}): markers MC ± 2 SE, dashed exact, "
                 "dotted uniform-in-i bound", fontsize=9)
    ax_collapse.axhline(0.0, color="k", lw=0.8)
    ax_collapse.set_xlabel("generation i")
    ax_collapse.set_ylabel("paired increment")
    ax_collapse.grid(alpha=0.3)
    if ax_collapse.has_data():
        ax_collapse.legend(fontsize=7)
    ax_collapse.set_title("lam = 0: paired growth on the same replicas (tested > 0)", fontsize=9)
    fig.tight_layout()
    return fig
