"""Paper A figures, drawn from saved result records only (never recomputing a number).

* ``terms_figure`` (A1): per grid point, each R3 term (a bound, dashed) beside the measured
  quantity it bounds (the parts of the gap, the coupled-loop gamma, the measured TV), and the
  total bound against the measured gap;
* ``error_vs_generation_figure`` (A3-<model>): the error against the generation for
  every ``lam``, with the exact curve (dotted) and the uniform-in-i bound (dashed), and
  for ``lam = 0`` the paired growth ``err_i - err_0`` that the collapse rows test.

Styles (measured solid with ± 2 SE band, bounds dashed, exact dotted, references dash-dot):
``verify.figures``.
"""
from __future__ import annotations

import numpy as np

from verify.figures import (StyleKey, axis_label, colour, figure_legend, math_label,
                            panel_grid, rows_of, series, suptitle)

__all__ = ["terms_figure", "error_vs_generation_figure"]

TERM_PREFIX = "term "
GAP = "gap <= R3 bound"


def _short(quantity: str) -> str:
    """``term recursive: ...`` -> ``recursive`` (plus a report marker)."""
    label = quantity.split(":")[0][len(TERM_PREFIX):] if quantity.startswith(TERM_PREFIX) \
        else "gap (total)"
    return label + (" [report]" if "report" in quantity else "")


def terms_figure(record):
    """A1: each R3 term (dashed) beside the measured quantity it bounds (solid, ± 2 SE band),
    and the total bound against the measured gap (black), log scale, one panel per point."""
    points = record["points"]
    fig, axes = panel_grid(len(points), max_cols=5, size=(2.9, 2.5))
    quantities = [GAP] + list(dict.fromkeys(r["quantity"] for r in record["rows"]
                                            if r["quantity"].startswith(TERM_PREFIX)))
    colour_of = {}
    for quantity in quantities:
        name = _short(quantity).replace(" [report]", "")
        colour_of.setdefault(name, "k" if quantity == GAP else colour(len(colour_of) - 1))
    key = StyleKey()
    for index, (ax, point) in enumerate(zip(axes, points)):
        for quantity in quantities:
            rows = rows_of(record, index, quantity)
            if not rows or rows[0]["theory"] is None:
                continue
            name = _short(quantity).replace(" [report]", "")
            x, mean, se, theory = series(rows)
            # a measured mean <= 0 has no place on a log axis
            key.measured(ax, x, np.where(mean > 0, mean, np.nan), se, colour_of[name], name)
            key.theory(ax, x, theory, rows[0]["kind"], colour_of[name])
            key.rejected(ax, rows)
        gap = [r for r in rows_of(record, index, GAP) if "ratio" in r]  # vacuous rows: no ratio
        ratio = max(r["ratio"] for r in gap) if gap else float("nan")
        ax.set_yscale("log")
        ax.set_title(f"{point['model']}, $n = {point['n']}$, $\\lambda = {point['lam']}$\n"
                     f"max gap/bound {ratio:.2g}")
        ax.set_xlabel("generation $i$")
    suptitle(fig, record, "black: the total bound against the measured gap; colours: each "
             "term against the quantity it bounds")
    figure_legend(fig, axes, key)
    return fig


def error_vs_generation_figure(record):
    """A3: error against generation, one curve per ``lam`` (exact dotted, uniform-in-i bound
    dashed); (b) the paired increments ``err_i - err_0`` and ``err_i - err_1`` of the
    ``lam = 0`` loop (the collapse rows, each tested > 0); (c) any other bound of the record
    (ridge: ``E ||w_i||^2 <= u_i^2``)."""
    import matplotlib.pyplot as plt

    drawn = {"E err_i", "E err_i <= sup_i bound", *INCREMENTS}
    others = [q for q in dict.fromkeys(r["quantity"] for r in record["rows"]) if q not in drawn]
    has_increments = any(r["quantity"] in INCREMENTS for r in record["rows"])
    panels = 1 + has_increments + len(others)
    fig, axes = plt.subplots(1, panels, figsize=(3.7 * panels, 3.6), squeeze=False)
    axes = list(axes.flat)
    ax = axes[0]
    key = StyleKey()
    for index, point in enumerate(record["points"]):
        label = f"$\\lambda = {point['lam']}$"
        rows = rows_of(record, index, "E err_i")
        if rows:
            key.rows(ax, rows, colour(index), label)
        bound = rows_of(record, index, "E err_i <= sup_i bound")
        if bound:
            x, _, _, theory = series(bound)
            key.theory(ax, x, theory, bound[0]["kind"], colour(index))
            key.rejected(ax, bound)
        if has_increments:
            for quantity, marker in INCREMENTS.items():
                inc = rows_of(record, index, quantity)
                if inc:
                    x, mean, se, theory = series(inc)
                    key.measured(axes[1], x, mean, se, colour(index), label, marker=marker)
                    key.theory(axes[1], x, theory, inc[0]["kind"], colour(index))
                    key.rejected(axes[1], inc)
        for panel, quantity in zip(axes[1 + has_increments:], others):
            rows = rows_of(record, index, quantity)
            if rows:
                key.rows(panel, rows, colour(index), label)
    ax.set_xlabel("generation $i$")
    ax.set_title(r"(a) error $\mathbb{E}\,\mathrm{err}_i$")
    if has_increments:
        axes[1].set_xlabel("generation $i$")
        axes[1].set_title("(b) paired growth (tested $> 0$)\n"
                          r"○: $\mathbb{E}[\mathrm{err}_i - \mathrm{err}_0]$, "
                          r"□: $\mathbb{E}[\mathrm{err}_i - \mathrm{err}_1]$")
    for n, (panel, quantity) in enumerate(zip(axes[1 + has_increments:], others)):
        first = next(r for r in record["rows"] if r["quantity"] == quantity)
        panel.set_xlabel(axis_label(first["x_label"]))
        panel.set_title(f"({chr(ord('c') + n)}) {math_label(quantity)}")
    suptitle(fig, record)
    figure_legend(fig, axes, key)
    return fig


INCREMENTS = {"collapse: E[err_i - err_0] (paired) > 0": "o",
              "growth: E[err_i - err_1] (paired) > 0": "s"}
