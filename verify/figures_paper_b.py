"""Figures of paper B's claims, drawn from saved result records only (never recomputed).

* B3: E TV(G_i, p0) against m/n (log axis) for i = 1, 2, 5, the peak chosen on the selection
  replicas (stars: filled where asserted), the R4 template of the fitted rate and its m*/n.
* B4-density: the mean KDE density across generations (MC ± 2 SE) against P8.
B1 and B4-propagation use ``verify.figures.default_figure`` (TV vs generation with the bound).
Styles (measured solid with ± 2 SE band, bounds dashed, exact dotted, references dash-dot):
``verify.figures``.
"""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from verify.figures import (  # noqa: E402
    StyleKey, colour, default_figure, figure_legend, rows_of, series, suptitle)

__all__ = ["b3_figure", "b4_density_figure"]


def _b3_note(record, rule, i):
    """The note line of one bandwidth rule and generation (``None`` if absent)."""
    block = False
    for note in record.get("notes", []):
        if not note.startswith("  "):
            block = f"({rule} h" in note
        elif block and note.strip().startswith(f"i={i}:"):
            return note
    return None


def b3_figure(record):
    """One panel per bandwidth rule: E TV vs m/n, the chosen peak, R4's template and its m*.

    Stars mark the peak chosen on the selection replicas: filled where the rise-then-fall is
    asserted (``exceeds`` rows; red edge if it failed), open where it is only reported.
    Vertical dash-dot lines: R4's m*/n for the fitted alpha (the template's peak, not TV's).
    """
    points = record["points"]
    fig, axes = plt.subplots(1, len(points), figsize=(4.6 * len(points), 3.9), squeeze=False)
    axes = list(axes.flat)
    key = StyleKey()
    for p, (ax, point) in enumerate(zip(axes, points)):
        stars = []
        for c, i in enumerate((1, 2, 5)):
            rows = rows_of(record, p, f"E TV(G_{i},p0)")
            if not rows:
                continue
            x, mean, se, theory = series(rows)
            xp = np.where(x > 0, x, x[x > 0].min() / 4)  # m = 0 drawn at the left edge
            key.measured(ax, xp, mean, se, colour(c), f"$i = {i}$")
            key.theory(ax, xp, theory, rows[0]["kind"], colour(c))  # R4 B_i(m), fitted rate
            rises = [r for r in record["rows"] if r["point"] == p
                     and r["quantity"].startswith(f"TV(G_{i}) at peak")]
            if rises:
                k = int(np.argmin(np.abs(x - rises[0]["x"])))
                stars.append((xp[k], mean[k], colour(c), rises))
            note = _b3_note(record, point["rule"], i)
            match = re.search(r"m\*/n = ([0-9.]+) \(fitted alpha\)", note or "")
            if match:
                key.vline(ax, float(match.group(1)), "report", colour(c))
        for x_star, y_star, colour_, rises in stars:  # after the curves: legend order
            asserted = rises[0]["kind"] == "exceeds"
            failed = any(r.get("reject") for r in rises)
            ax.plot(x_star, y_star, "*", ms=12, color=colour_ if asserted else "none",
                    mec="red" if failed else colour_, mew=1.3, zorder=4,
                    label="chosen peak, rise tested" if asserted else "chosen peak, reported only")
        ax.set_title(f"{point['rule']} $h$ ($c = {point['c']}$), $n = {point['n']}$, "
                     f"{point['replicas']} replicas")
        ax.set_xscale("log")
        ax.set_xlabel("$m/n$ ($m = 0$ drawn at the left edge)")
        ax.set_ylabel(r"$\mathbb{E}\,\mathrm{TV}(G_i, p_0)$")
    suptitle(fig, record, "dash-dot: R4's template $B_i(m)$ with the fitted rate, and its peak "
             "$m^*/n$; stars: the peak chosen on 1/3 of the replicas, rises tested on the rest")
    figure_legend(fig, axes, key)
    return fig


def b4_density_figure(record):
    """1-D points: mean KDE density at every other generation (± 2 SE) against P8 (dotted)."""
    points = [(k, p) for k, p in enumerate(record["points"]) if p.get("dim", 1) == 1]
    if not points:  # 2-D points only: the generic panels, never an empty figure
        return default_figure(record)
    fig, axes = plt.subplots(1, len(points), figsize=(4.4 * len(points), 3.6), squeeze=False)
    axes = list(axes.flat)
    key = StyleKey()
    for ax, (k, point) in zip(axes, points):
        for c, i in enumerate(range(0, point["generations"], 2)):
            rows = rows_of(record, k, f"E p_hat_{i}(x)")
            if not rows:
                continue
            _, mean, se, theory = series(rows)
            x = np.arange(len(rows))
            key.measured(ax, x, mean, se, colour(c), f"$i = {i}$", marker="o")
            key.theory(ax, x, theory, rows[0]["kind"], colour(c))
            key.rejected(ax, [{**r, "x": j} for j, r in zip(x, rows)])
        lam = point["lam"]
        ax.set_title(f"{point['scheme']}, $\\lambda = {lam}$, $h = {point['h']}$ "
                     f"({point['rule']})")
        ax.set_xlabel("grid node")
        ax.set_ylabel(r"$\mathbb{E}\,\hat{p}_i(x)$")
    suptitle(fig, record)
    figure_legend(fig, axes, key)
    return fig
