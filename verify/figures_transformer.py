"""Figure of claim A4 (trained softmax transformer), drawn from its saved result record only.

(a) In-context test error per ``lam`` with the ICL risk (``icl_risk``) at the fitted gamma
(reported, dash-dot);
(b) the effective gamma of a probe fit against gamma* (reported, dash-dot); (c) where the run has
coupled points, the coupled twins' distance against linear attention's (reported, dash-dot).
Styles: ``verify.figures``.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from verify.figures import (  # noqa: E402
    StyleKey, colour, figure_legend, rows_of, series, suptitle)

__all__ = ["a4_figure"]

PANELS = (("test error", "in-context test error (fresh real prompts)"),
          ("effective gamma", r"effective $\gamma$ (probe fit) vs. $\gamma^*$"),
          ("coupled distance", r"coupled twins: $\mathrm{mean}_P\,(f_i - f'_i)^2$ vs. LSA"))


def a4_figure(record):
    from verify.claims.transformer import GEN, per_lam

    curves = [(index, lam, point.get("coupled")) for index, point in enumerate(record["points"])
              for lam in point["lams"]]
    # a panel only where the record has rows for it (quick runs have no coupled points)
    panels = [(q, t) for q, t in PANELS
              if any(rows_of(record, index, per_lam(q, lam)) for index, lam, _ in curves)]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.8 * max(1, len(panels)), 3.5),
                             squeeze=False)
    axes = list(axes.flat)
    key = StyleKey()
    for n, (ax, (quantity, title)) in enumerate(zip(axes, panels)):
        for number, (index, lam, coupled) in enumerate(curves):
            rows = rows_of(record, index, per_lam(quantity, lam))
            if not rows:
                continue
            label = rf"$\lambda = {lam:g}$" + (" (coupled)" if coupled else "")
            x, mean, se, theory = series(rows)
            key.measured(ax, x, mean, se, colour(number), label)
            key.theory(ax, x, theory, rows[0]["kind"], colour(number))
        if quantity == "coupled distance":
            ax.set_yscale("log")
        ax.set_title(f"({chr(ord('a') + n)}) {title}")
        ax.set_xlabel("generation $i$" if GEN == "generation i" else GEN)
    references = {"test error": r"ICL risk at the fitted $\gamma$",
                  "effective gamma": r"$\gamma^*$", "coupled distance": "linear attention"}
    suptitle(fig, record, "dash-dot (reported, not tested): " + "; ".join(
        f"({chr(ord('a') + n)}) {references[q]}" for n, (q, _) in enumerate(panels)))
    figure_legend(fig, axes, key)
    return fig
