"""Figures of the diffusion claims (B2, B3-diffusion), drawn from saved result records only.

* B2-oneshot: (a) TV and KL at the best tau against n (log-log) with the fitted line, its 95%
  band (exponent ± t SE from the replicas) and the n^(-1/5) / n^(-2/5) references; (b) TV
  and its Girsanov-Pinsker bound against tau for each n (the early-stopping trade-off); (c)
  KL at held-out tau against the 3-term shape fitted on separate runs (drawn when the record
  has those rows); (d) log10 tau* per replica against n:
  the grid argmin at W = 64 and the continuous search at W = n with its fitted law and band,
  beside the n^(2/5) reference.
* B2-loop: TV across generations by scheme (``verify.figures.default_figure``).
* B3-diffusion: TV against m/n for i = 1, 2, with the tested R1 bound (symlog: m = 0 at 0).

Styles (measured solid with ± 2 SE band, bounds dashed, exact dotted, references dash-dot):
``verify.figures``.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from verify import stats  # noqa: E402
from verify.figures import (  # noqa: E402
    StyleKey, colour, figure_legend, math_label, rows_of, series, suptitle)

__all__ = ["b2_oneshot_figure", "b3_diffusion_figure"]

BEST_TAU = (("E TV(q,p0) at best tau", 1 / 5, r"$n^{-1/5}$", "C0"),
            ("E KL(p0||q) at best tau", 2 / 5, r"$n^{-2/5}$", "C1"))
BOUND = "vs Girsanov-Pinsker"
HELD_OUT = "E KL(p0||q) at held-out tau"
TAU_STAR = "log10 of the per-replica best tau (argmin TV on the tau grid)"
TAU_SEARCH = "log10 tau* per replica (continuous search, W ~ n)"
TAU_LAW = "exponent of tau* in n (sizes with a resolved minimum)"


RATES = {"E TV(q,p0) at best tau": "exponent of E TV(q,p0) at best tau in n",
         "E KL(p0||q) at best tau": "exponent of E KL(p0||q) at best tau in n"}


def _fitted_band(ax, x, log10_y, rate_row, colour_, *, log_axis):
    """The fitted power law of a ``rate``/``exact`` exponent row through the points' centre
    (in log10), solid, and its 95% band (exponent ± t SE, dotted)."""
    # Slim records (older, or the figure tests') may lack dof and replicas: the normal's 1.96.
    dof = rate_row.get("dof", rate_row.get("replicas", np.inf) - 1)
    slope, half = rate_row["measured"], float(stats.t_isf(0.025, dof)) * rate_row["se"]
    cx, cy = np.mean(np.log10(x)), np.mean(log10_y)
    for s_, style in ((slope, "-"), (slope - half, ":"), (slope + half, ":")):
        y = cy + s_ * (np.log10(x) - cx)
        ax.plot(x, 10.0 ** y if log_axis else y, style, color=colour_, lw=1,
                label=f"fit $n^{{{slope:.2f}}}$ ± {half:.2f} (95%)" if style == "-" else None)


def _tau_of(quantity: str) -> float:
    return float(quantity.split("tau=")[1])


def b2_oneshot_figure(record):
    """(a) TV and KL at the best tau vs n; (b) TV and bound vs tau for each n; (c) held-out KL."""
    quantities = list(dict.fromkeys(r["quantity"] for r in record["rows"]))
    held_out = [q for q in quantities if q.startswith(HELD_OUT)]
    tau_star = rows_of(record, 0, TAU_STAR)
    searched = [r for r in record["rows"] if r["quantity"] == TAU_SEARCH]
    panels = 2 + bool(held_out) + bool(tau_star or searched)
    fig, axes = plt.subplots(1, panels, figsize=(3.8 * panels, 3.8))
    rates, versus_tau = axes[0], axes[1]
    key = StyleKey()
    for quantity, reference, name, colour_ in BEST_TAU:
        rows = rows_of(record, 0, quantity)
        if not rows:
            continue
        x, mean, se, theory = series(rows)
        key.measured(rates, x, mean, se, colour_, math_label(quantity))
        rate = rows_of(record, 0, RATES[quantity])
        if rate:   # the fitted exponent with its band (from the replicas)
            _fitted_band(rates, x, np.log10(mean), rate[0], colour_, log_axis=True)
        else:
            key.theory(rates, x, theory, rows[0]["kind"], colour_)  # the fitted line (a rate)
        rates.plot(x, mean[0] * (x / x[0]) ** (-reference), "-.", color="0.5", lw=1,
                   label=f"{name} reference")
    rates.set(xscale="log", yscale="log", xlabel="$n$")
    rates.set_title(r"(a) one-shot error at the best $\tau$")
    rates.legend()
    bounds = sorted((q for q in quantities if BOUND in q), key=_tau_of)
    taus = np.array([_tau_of(q) for q in bounds])
    if bounds:
        sizes = series(rows_of(record, 0, bounds[0]))[0]
        for j, n in enumerate(sizes):
            picked = [rows_of(record, 0, q)[j] for q in bounds]
            _, tv, se, bound = series(picked)
            key.measured(versus_tau, taus, tv, se, colour(j), f"$n = {n:g}$")
            key.theory(versus_tau, taus, bound, picked[0]["kind"], colour(j))
            key.rejected(versus_tau, [{**r, "x": t} for r, t in zip(picked, taus)])
    versus_tau.set(xscale="log", yscale="log", xlabel=r"training time $\tau$")
    versus_tau.set_title(r"(b) $\mathbb{E}\,\mathrm{TV}(q, p_0)$ (+ budgets) and the "
                         "Girsanov–Pinsker bound")
    if held_out:
        kl = axes[2]
        for j, quantity in enumerate(held_out):
            rows = rows_of(record, 0, quantity)
            n = quantity.rsplit("n=", 1)[-1]
            key.rows(kl, rows, colour(j), f"$n = {n}$")
        kl.set(xscale="log", xlabel=r"training time $\tau$")
        kl.set_title(r"(c) $\mathbb{E}\,\mathrm{KL}(p_0\|q)$ at held-out $\tau$ vs. fitted shape")
    if tau_star or searched:   # log10 tau* per replica, mean ± 2 SE, with n^(2/5)
        ax = axes[-1]
        if tau_star:
            x, mean, se, _ = series(tau_star)
            key.measured(ax, x, mean, se, "C2", r"$\log_{10}\tau^*$ (grid argmin, $W = 64$)")
        if searched:
            point = searched[0]["point"]
            x, mean, se, _ = series(searched)
            key.measured(ax, x, mean, se, "C3", r"$\log_{10}\tau^*$ (search, $W \propto n$)")
            law = rows_of(record, point, TAU_LAW)
            if law:   # the fitted line through the geometric means, and its 95% band
                _fitted_band(ax, x, mean, law[0], "C3", log_axis=False)
        ax.plot(x, mean[0] + 0.4 * np.log10(x / x[0]), "-.", color="0.5", lw=1,
                label=r"$n^{2/5}$ reference")
        ax.set(xscale="log", xlabel="$n$", ylabel=r"$\log_{10}\tau^*$")
        ax.set_title(r"(d) best $\tau$ per replica")
        ax.legend(fontsize="small")
    suptitle(fig, record)
    figure_legend(fig, axes[1:], key)
    return fig


def b3_diffusion_figure(record):
    """E TV(G_i, p0) (+grid budget) against m/n for i = 1, 2, with the tested R1 bound
    (dashed; eps(n + m) from separate runs). The axis is linear up to the smallest m > 0 and
    logarithmic beyond it (symlog), so m = 0 is drawn at 0, where it belongs."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    key = StyleKey()
    for c, i in enumerate((1, 2)):
        x, mean, se, _ = series(rows_of(record, 0, f"E TV(G_{i},p0)"))
        if not len(x):
            continue
        linear = x[x > 0].min() if (x > 0).any() else 1.0
        key.measured(ax, x, mean, se, colour(c), f"$i = {i}$")
        tested = rows_of(record, 0, f"E TV(G_{i},p0) [+grid error] vs R1(eps from separate runs)")
        if tested:
            bx, _, _, bound = series(tested)
            key.theory(ax, bx, bound, tested[0]["kind"], colour(c))
            key.rejected(ax, tested)
        ax.set_xscale("symlog", linthresh=linear)
    ax.set(xlabel="$m/n$ (symlog: $m = 0$ at 0)",
           ylabel=r"$\mathbb{E}\,\mathrm{TV}(G_i, p_0)$")
    ax.set_title(r"$\mathbb{E}\,\mathrm{TV}(G_i, p_0)$ against $m/n$, with $R_1$ at "
                 r"$\varepsilon(n + m)$")
    suptitle(fig, record)
    figure_legend(fig, [ax], key, ncol=2)
    return fig
