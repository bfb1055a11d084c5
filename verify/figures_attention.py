"""Figure of claim A2 (linear attention), drawn from its saved result record.

(a) The phase diagram over ``(lam, gamma)``: the predicted boundaries (mean square
``gamma_ms``, almost sure ``gamma_as``: exact predictions, dotted; the mean ``1/(1-lam)``: a
reference, dash-dot) and each measured cell as a marker: filled if its measured mean-square
factor is above 1, a triangle if its measured Lyapunov exponent is positive. (b) ``E|w_i - w|^2``
measured against the exact recursion, for the generations where it was z-tested. (c)
``E log|w_i - w|^2`` measured across all generations. The boundary curves are closed forms
(predictions), not results. Styles: ``verify.figures``.
"""
from __future__ import annotations

import numpy as np

from bounds.models import linear_attention as la
from verify.figures import (StyleKey, colour, figure_legend, math_label, rows_of, series,
                            suptitle)

__all__ = ["phase_diagram_figure"]

CELLS = (  # (measured factor > 1, Lyapunov exponent > 0) -> marker, face, label
    ((False, False), "o", "none", r"measured cell: $f < 1$, $\lambda_{\mathrm{Lyap}} < 0$"),
    ((True, False), "o", "k", r"measured cell: $f > 1$, $\lambda_{\mathrm{Lyap}} < 0$"),
    ((False, True), "^", "none", r"measured cell: $f < 1$, $\lambda_{\mathrm{Lyap}} > 0$"),
    ((True, True), "^", "k", r"measured cell: $f > 1$, $\lambda_{\mathrm{Lyap}} > 0$"),
)


def phase_diagram_figure(record, *, error: str, log_error: str, factor: str, lyapunov: str):
    """A2's figure from its record; the quantity names are the claim's (passed in, so that
    this module does not import the claim that imports it)."""
    import matplotlib.pyplot as plt

    ERROR, LOG_ERROR, FACTOR, LYAPUNOV = error, log_error, factor, lyapunov

    points = record["points"]
    fig, (phase, exact, logs) = plt.subplots(1, 3, figsize=(11, 3.8))
    key = StyleKey()
    if points:
        d, m = points[0]["d"], points[0]["m"]
        lam = np.linspace(0.0, 0.65, 200)
        phase.plot(lam, la.mean_square_boundary(lam, d, m), ":", color="C0", lw=1.8,
                   label=r"$\gamma_{\mathrm{ms}}$ (mean-square boundary)")
        phase.plot(lam, la.almost_sure_boundary(lam, d, m), ":", color="C3", lw=1.8,
                   label=r"$\gamma_{\mathrm{as}}$ (almost-sure boundary)")
        phase.plot(lam, 1.0 / (1.0 - lam), "-.", color="0.5", lw=1.2,
                   label=r"$1/(1-\lambda)$ (mean boundary)")
        phase.set_title(f"(a) phase diagram, $d = {d}$, $m = {m}$")
    cells = {}
    for index, point in enumerate(points):
        factor, exponent = rows_of(record, index, FACTOR), rows_of(record, index, LYAPUNOV)
        lam_cell = point["n"] / (point["n"] + point["m"])
        if factor and exponent:
            state = (factor[0]["measured"] > 1.0, exponent[0]["measured"] > 0)
            cells.setdefault(state, []).append((lam_cell, point["gamma"]))
        label = rf"$\gamma = {point['gamma']:.3g}$, $\lambda = {lam_cell:.2g}$"
        tested = rows_of(record, index, ERROR)
        if tested:
            key.rows(exact, tested, colour(index), label)
        logged = rows_of(record, index, LOG_ERROR)
        if logged:
            x, mean, se, _ = series(logged)
            key.measured(logs, x, mean, se, colour(index), label)
    for state, marker, face, label in CELLS:
        if state in cells:  # only the kinds of cell this run measured get a legend entry
            lam_cells, gammas = zip(*cells[state])
            phase.scatter(lam_cells, gammas, marker=marker, s=40, facecolors=face,
                          edgecolors="k", zorder=3, label=label)
    phase.set_xlabel(r"real proportion $\lambda$")
    phase.set_ylabel(r"attention scale $\gamma$")
    phase.legend(loc="upper left")
    exact.set_yscale("log")
    exact.set_xlabel("generation $i$")
    exact.set_title("(b) " + math_label(ERROR))
    logs.set_xlabel("generation $i$")
    logs.set_title("(c) " + math_label(LOG_ERROR))
    suptitle(fig, record)
    figure_legend(fig, [exact, logs], key)
    return fig
