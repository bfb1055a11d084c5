"""Figure of claim A4 (trained softmax transformer), drawn from its saved result record only.

(a) Test error on fresh real prompts per ``lam`` (solid), beside the "real only" control
(``G_0``: the ``n`` real prompts; dotted, markers ``s``) and the "all real" control (``n + m``
real prompts; markers ``^``), with ``icl_risk(gamma*)`` and the Bayes risk as levels;
(b) the distance to the Bayes predictor ``D_i`` against the R1 bound (dashed; its constants
from separate runs); (c) the effective gamma against gamma*; (d) the coupled twins' distance
``gamma_i`` per synthetic count ``m`` against R2's prediction (dashed, its band from the
separately measured one-fit constants, ± 2 SE; vacuous where it reaches 1), one panel per
architecture whose coupled loops ran (the A4 network first; default and full also the 1-layer
one), each on its own scale up to TV's trivial 1; last, the architectures side by side:
``c = N eps_N`` per ``m`` against R2's contraction threshold ``N/m`` (a constant below it
contracts). The R2 panels only when the record has R2 rows. Styles: ``verify.figures``.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from verify.figures import (  # noqa: E402
    StyleKey, colour, figure_legend, rows_of, series, suptitle)

__all__ = ["a4_figure"]


def a4_figure(record):
    from verify.claims.transformer import (BAYES, PRODUCTION, QUALITY, architecture,
                                           architectures, constant_row, distance_row, per_lam,
                                           r2_prediction_row, r2_row)

    stability = any(p.get("stability_m") for p in record["points"])
    # architectures with coupled-loop rows in the record (every point's, the A4 network first)
    names = {r["quantity"] for r in record["rows"]}
    others = dict.fromkeys(architecture(o) for p in record["points"] for o in architectures(p)[1:])
    looped = [PRODUCTION] + [a for a in others if any(
        r2_row(m, a) in names for p in record["points"] for m in p.get("stability_m") or [])]
    panels = 4 + len(looped) if stability else 3
    constants = 3 + len(looped)  # the architectures panel
    fig, axes = plt.subplots(1, panels, figsize=(3.8 * panels, 3.6), squeeze=False)
    axes = list(axes.flat)
    key = StyleKey()
    tops = {}  # R2 panel -> highest curve (mean or bound + 2 SE) drawn
    for index, point in enumerate(record["points"]):
        for number, lam in enumerate(point["lams"]):
            c = colour(number)
            label = rf"$\lambda = {lam:g}$"
            rows = rows_of(record, index, per_lam("test error", lam))
            if rows:
                x, mean, se, _ = series(rows)
                key.measured(axes[0], x, mean, se, c, label)
            for quantity, marker in (("all-real control test error", "^"),
                                     ("real-only control test error", "s")):
                rows = rows_of(record, index, per_lam(quantity, lam))
                if rows and (quantity.startswith("all") or number == 0):
                    x, mean, se, _ = series(rows)
                    key.measured(axes[0], x, mean, se, c if quantity.startswith("all") else "k",
                                 ("all real" if quantity.startswith("all") else "real only")
                                 + (f" ({label})" if quantity.startswith("all") else ""),
                                 marker=marker, band=False)
            rows = rows_of(record, index, distance_row(lam))
            if rows:
                key.rows(axes[1], rows, c, label)
            rows = rows_of(record, index, per_lam("effective gamma", lam))
            if rows:
                x, mean, se, theory = series(rows)
                key.measured(axes[2], x, mean, se, c, label)
                if number == 0:
                    key.theory(axes[2], x, theory, "report", "k", r"$\gamma^*$")
        for panel, arch in enumerate(looped, start=3):
            for number, m in enumerate(point.get("stability_m") or []):
                c = colour(number)
                rows = rows_of(record, index, r2_row(m, arch))
                if rows:
                    x, mean, se, _ = series(rows)
                    key.measured(axes[panel], x, mean, se, c, rf"$m = {m}$")
                    tops[panel] = max(tops.get(panel, 0.0), float(np.nanmax(mean + 2 * se)))
                rows = rows_of(record, index, r2_prediction_row(m, arch))
                if rows:
                    x, bound, se, _ = series(rows)
                    key.theory(axes[panel], x, bound, "upper", c)
                    axes[panel].fill_between(x, bound - 2 * se, bound + 2 * se, color=c,
                                             alpha=0.12, lw=0)
                    tops[panel] = max(tops.get(panel, 0.0), float(np.nanmax(bound + 2 * se)))
        if point.get("stability_m"):
            for panel in range(3, constants):
                # each network on its own scale (the 1-layer twins sit ~5x lower), never past
                # TV's trivial 1, where a bound says nothing (dotted when in view)
                top = min(1.1, 1.15 * tops.get(panel, 1.0))
                if top > 1.0:
                    axes[panel].axhline(1.0, color="grey", ls=":", lw=1)
                axes[panel].set_ylim(0, top)
            for number, overrides in enumerate(architectures(point)):
                rows = rows_of(record, index, constant_row(architecture(overrides)))
                if rows:
                    x, mean, se, threshold = series(rows)
                    key.measured(axes[constants], x, mean, se, colour(number),
                                 architecture(overrides), marker="os^"[number % 3])
                    if number == 0:
                        key.theory(axes[constants], x, threshold, "report", "k",
                                   r"$N/m$ (R2 contracts below)")
            axes[constants].set_xscale("log", base=2)
            axes[constants].set_yscale("log")
        for quantity, name in ((QUALITY, r"best linear attention, $\gamma^*$"), (BAYES, "Bayes risk")):
            rows = rows_of(record, index, quantity)
            if rows and quantity == QUALITY:
                key.theory(axes[0], [0], [rows[0]["theory"]], "report", "grey", name)
            elif rows:
                axes[0].axhline(rows[0]["measured"], color="grey", ls=":", lw=1, label=name)
    titles = ["test error (fresh real prompts) and controls",
              r"$D_i = \|f_i - f_B\|$ vs. R1 (dashed)", r"effective $\gamma$ vs. $\gamma^*$"]
    if stability:
        titles += [rf"{a}: twins' TV $\gamma_i$ vs. R2 (dashed)" for a in looped]
        titles.append(r"architectures: $c = N\varepsilon_N$ vs. $N/m$")
    for n, (ax, title) in enumerate(zip(axes, titles)):
        ax.set_title(f"({chr(ord('a') + n)}) {title}", fontsize=9)
        ax.set_xlabel("synthetic prompts per generation $m$" if stability and n == constants
                      else "generation $i$")
    suptitle(fig, record, r"real only = $G_0$ on the $n$ real prompts; all real = $n + m$ real prompts, "
             "same keys; R1's constants from separately keyed runs")
    figure_legend(fig, axes, key)
    return fig
