"""Figures drawn from saved result records only (plotting never recomputes a number).

Each claim gets one PNG: the Monte Carlo mean with a ±2 SE band against the
theory curve (dashed for exact predictions, solid for bounds), one panel per
quantity, one colour per grid point. A claim may supply its own ``figure``.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["default_figure", "draw_all", "varying_keys", "rows_of"]


def rows_of(record: dict, point: int, quantity: str) -> list[dict]:
    """The saved rows of one grid point and one quantity, in axis order."""
    return [r for r in record["rows"] if r["point"] == point and r["quantity"] == quantity]


def varying_keys(points: list[dict]) -> list[str]:
    """Parameters that differ between grid points (what a legend must say)."""
    keys = [k for k in points[0] if k != "replicas"] if points else []
    return [k for k in keys if len({repr(p.get(k)) for p in points}) > 1] or keys[:2]


def _legend_label(point: dict, keys: list[str]) -> str:
    return ", ".join(f"{k}={point.get(k)}" for k in keys)


def plot_measured(ax, rows: list[dict], colour, label: str, marker: str = "o",
                  alpha: float = 0.25) -> np.ndarray:
    """Saved rows' Monte Carlo mean with a ± 2 SE band; returns their ``x``."""
    x = np.array([r["x"] for r in rows], float)
    mean = np.array([r["measured"] for r in rows])
    se = np.array([r["se"] for r in rows])
    ax.plot(x, mean, marker, ms=3, color=colour, label=label)
    ax.fill_between(x, mean - 2 * se, mean + 2 * se, color=colour, alpha=alpha, lw=0)
    return x


def default_figure(record: dict):
    """Simulation mean ± 2 SE against theory, one panel per quantity."""
    quantities = list(dict.fromkeys(r["quantity"] for r in record["rows"]))
    cols = min(3, max(1, len(quantities)))
    rows_n = -(-len(quantities) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(5.2 * cols, 3.9 * rows_n), squeeze=False)
    keys = varying_keys(record["points"])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, quantity in zip(axes.flat, quantities):
        for index, point in enumerate(record["points"]):
            rows = rows_of(record, index, quantity)
            if not rows:
                continue
            colour = colours[index % len(colours)]
            x = plot_measured(ax, rows, colour, _legend_label(point, keys))
            if rows[0]["theory"] is not None:
                theory = np.array([r["theory"] for r in rows], float)
                bound = rows[0]["kind"] in ("upper", "lower")
                ax.plot(x, theory, "-" if bound else "--", color=colour, lw=1.4 if bound else 1.1)
            rejected = [r for r in rows if r.get("reject")]
            if rejected:
                ax.plot([r["x"] for r in rejected], [r["measured"] for r in rejected], "x",
                        color="red", ms=8, mew=2)
        kind = next((r["kind"] for r in record["rows"] if r["quantity"] == quantity), "")
        ax.set_title(f"{quantity}  [{kind}]", fontsize=10)
        ax.set_xlabel(next(r["x_label"] for r in record["rows"] if r["quantity"] == quantity))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(quantities):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
                   frameon=False)
    fig.suptitle(f"{record['id']} ({record['status']}): {record['title']}\n"
                 "markers/band: Monte Carlo mean ± 2 SE; dashed: exact prediction; "
                 "solid: bound; red x: rejected", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def draw_all(records: list[dict], out_dir: str | os.PathLike, claims: dict | None = None) -> list[Path]:
    """Draw every record that has rows; returns the written paths (atomic renames)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for record in records:
        if not record.get("rows"):
            continue
        claim = (claims or {}).get(record["id"])
        draw = claim.figure if claim is not None and claim.figure is not None else default_figure
        fig = draw(record)
        path = out_dir / f"{record['id']}.png"
        tmp = out_dir / f".{record['id']}.tmp.png"
        try:
            fig.savefig(tmp, dpi=110)
            os.replace(tmp, path)
        except OSError:  # e.g. a full disk: leave no temporary file behind
            tmp.unlink(missing_ok=True)
            raise
        finally:
            plt.close(fig)
        written.append(path)
    return written
