"""Figures of paper B's claims, drawn from saved result records only (never recomputed).

* B3: E TV(G_i, p0) against m/n (log axis) for i = 1, 2, 5, the peak chosen on the selection
  replicas (stars: filled where asserted), the R4 template of the fitted rate and its m*/n.
* B4-density: the mean KDE density across generations (MC ± 2 SE) against P8.
B1 and B4-propagation use ``verify.figures.default_figure`` (TV vs generation with the bound).
"""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from verify.figures import rows_of  # noqa: E402

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
    Vertical dotted lines: R4's m*/n for the fitted alpha (the template's peak, not TV's).
    """
    points = record["points"]
    fig, axes = plt.subplots(1, len(points), figsize=(6 * len(points), 4.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for p, (ax, point) in enumerate(zip(axes.flat, points)):
        for c, i in enumerate((1, 2, 5)):
            rows = rows_of(record, p, f"E TV(G_{i},p0)")
            if not rows:
                continue
            x = np.array([r["x"] for r in rows], float)
            xp = np.where(x > 0, x, x[x > 0].min() / 4)  # m = 0 drawn at the left edge
            mean = np.array([r["measured"] for r in rows])
            se = np.array([r["se"] for r in rows])
            ax.errorbar(xp, mean, 2 * se, fmt="o-", ms=3, color=colours[c], label=f"i={i} measured")
            if rows[0]["theory"] is not None:
                ax.plot(xp, [r["theory"] for r in rows], "--", color=colours[c], lw=1,
                        label=f"R4 B_{i}(m), fitted rate")
            rises = [r for r in record["rows"] if r["point"] == p
                     and r["quantity"].startswith(f"TV(G_{i}) at peak")]
            if rises:
                k = int(np.argmin(np.abs(x - rises[0]["x"])))
                asserted = rises[0]["kind"] == "exceeds"
                failed = any(r.get("reject") for r in rises)
                ax.plot(xp[k], mean[k], "*", ms=13, color=colours[c] if asserted else "none",
                        mec="red" if failed else colours[c], mew=1.5,
                        label=f"i={i} chosen peak ({'asserted' if asserted else 'reported'})")
            note = _b3_note(record, point["rule"], i)
            match = re.search(r"m\*/n = ([0-9.]+) \(fitted alpha\)", note or "")
            if match:
                ax.axvline(float(match.group(1)), color=colours[c], ls=":", lw=1)
        ax.set_title(f"{point['rule']} h (c={point['c']}), n={point['n']}, "
                     f"{point['replicas']} replicas", fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("m / n  (m = 0 drawn at the left edge)")
        ax.set_ylabel("E TV(G_i, p0)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"{record['id']} ({record['status']}): {record['title']}\n"
                 "bars: ±2 SE; dashed: R4 template with the fitted rate; dotted: its peak m*/n; "
                 "stars: peak chosen on 1/3 of the replicas, rises tested on the rest", fontsize=9)
    fig.tight_layout()
    return fig


def b4_density_figure(record):
    """1-D points: mean KDE density at every other generation against P8."""
    points = [(k, p) for k, p in enumerate(record["points"]) if p.get("dim", 1) == 1]
    fig, axes = plt.subplots(1, max(1, len(points)), figsize=(5.5 * max(1, len(points)), 4),
                             squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (k, point) in zip(axes.flat, points):
        for c, i in enumerate(range(0, point["generations"], 2)):
            rows = rows_of(record, k, f"E p_hat_{i}(x)")
            x = np.arange(len(rows))
            ax.errorbar(x, [r["measured"] for r in rows], [2 * r["se"] for r in rows], fmt="o",
                        ms=2.5, color=colours[c % len(colours)], label=f"i={i}")
            ax.plot(x, [r["theory"] for r in rows], "-", lw=1, color=colours[c % len(colours)])
        ax.set_title(f"{point['scheme']}, lam={point['lam']}, h={point['h']} ({point['rule']})",
                     fontsize=9)
        ax.set_xlabel("grid node")
        ax.set_ylabel("E p_hat_i(x)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{record['id']} ({record['status']}): markers ±2 SE = Monte Carlo; lines = P8",
                 fontsize=9)
    fig.tight_layout()
    return fig
