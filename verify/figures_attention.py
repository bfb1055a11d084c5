"""Figure of claim A2 (linear attention), drawn from its saved result record.

Left: the phase diagram over ``(lam, gamma)``: the predicted boundaries (mean
square ``gamma_ms``, almost sure ``gamma_as``, and the mean ``1/(1-lam)``) as curves,
each measured cell as a marker: filled if its measured mean-square factor is
above 1, a triangle if its measured Lyapunov exponent is positive. Right: the
error across generations, ``E log |w_i - w|^2`` measured (all generations) and
``E |w_i - w|^2`` measured against the exact recursion where it was z-tested.
The boundary curves are closed forms (predictions), not results.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bounds.models import linear_attention as la  # noqa: E402
from verify.figures import rows_of  # noqa: E402

__all__ = ["phase_diagram_figure"]


def phase_diagram_figure(record):
    from verify.claims.attention import ERROR, FACTOR, LOG_ERROR, LYAPUNOV

    points = record["points"]
    fig, (phase, errors) = plt.subplots(1, 2, figsize=(11.5, 4.4))
    if points:
        d, m = points[0]["d"], points[0]["m"]
        lam = np.linspace(0.0, 0.65, 200)
        phase.plot(lam, la.mean_square_boundary(lam, d, m), "C0-", label="gamma_ms (mean square)")
        phase.plot(lam, la.almost_sure_boundary(lam, d, m), "C3-", label="gamma_as (almost sure)")
        phase.plot(lam, 1.0 / (1.0 - lam), "C7:", label="1/(1-lam) (mean)")
        phase.set_title(f"A2 phase diagram, d={d}, m={m}")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, point in enumerate(points):
        factor, exponent = rows_of(record, index, FACTOR), rows_of(record, index, LYAPUNOV)
        if not factor or not exponent:
            continue
        lam_cell = point["n"] / (point["n"] + point["m"])
        grows = factor[0]["measured"] > 1.0
        marker = "^" if exponent[0]["measured"] > 0 else "o"
        phase.scatter([lam_cell], [point["gamma"]], marker=marker, s=60,
                      facecolors="k" if grows else "none", edgecolors="k", zorder=3)
        colour = colours[index % len(colours)]
        logs = rows_of(record, index, LOG_ERROR)
        label = f"gamma={point['gamma']}, lam={lam_cell:.2g}"
        errors.plot([r["x"] for r in logs], [r["measured"] for r in logs], "-", color=colour,
                    label=label)
        exact = rows_of(record, index, ERROR)
        errors.plot([r["x"] for r in exact], [np.log(r["theory"]) for r in exact], "x",
                    color=colour)
    phase.scatter([], [], marker="o", facecolors="none", edgecolors="k",
                  label="measured: f<1, lambda<0")
    phase.scatter([], [], marker="o", facecolors="k", edgecolors="k", label="f>1, lambda<0")
    phase.scatter([], [], marker="^", facecolors="k", edgecolors="k", label="f>1, lambda>0")
    phase.set_xlabel("real proportion lam")
    phase.set_ylabel("attention scale gamma")
    phase.legend(fontsize=7)
    errors.set_xlabel("generation i")
    errors.set_ylabel("E log|w_i - w|^2 (lines);  log E|w_i - w|^2 exact (x)")
    errors.set_title("error across generations")
    errors.legend(fontsize=7)
    fig.tight_layout()
    return fig
