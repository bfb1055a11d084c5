"""Figures drawn from saved result records only (plotting never recomputes a number).

Every figure is drawn inside one style (``paper_style``) and uses one meaning per line style:

* **measured**: solid line with markers; the shaded band is the Monte Carlo mean ± 2 SE;
* **bound** (dashed): an upper or lower bound, or a numerical budget (a bound on a numerical error);
* **exact prediction** (dotted);
* **reference** (dash-dot): drawn but not tested as a bound or a prediction (a reported value,
  the threshold an effect must exceed, a fitted rate);
* **rejected** (black ×): a row its test rejected.

Colour tells grid points (or curves) apart, never meaning. A figure's legend lists only what the
figure draws: the curves by colour, and a key of the line styles it used. Labels are matplotlib
mathtext; ``math_label`` turns the suite's ASCII quantity names (``E TV(G_i,p0)``) into it, and a
name that already contains ``$`` is taken as mathtext as it is.

``draw_all(records, directory, claims, formats=("png", "pdf"))`` writes one file per claim and
format (PNG at ``PNG_DPI``), each atomically. A claim may supply its own ``figure(record)``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects, ticker  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.mathtext import MathTextParser  # noqa: E402

__all__ = ["FORMATS", "PNG_DPI", "STYLE", "KEY_COLOUR", "StyleKey", "colour", "default_figure",
           "draw_all", "figure_title", "math_label", "paper_style", "parse_formats", "render",
           "rows_of", "save", "series", "varying_keys"]

FORMATS = ("png", "pdf", "svg")  # what ``draw_all`` can write
# TrueType subsetting for PDFs warns about the fonts' own old timestamps: not our problem.
logging.getLogger("fontTools.ttLib.tables._h_e_a_d").setLevel(logging.ERROR)
PNG_DPI = 200
KEY_COLOUR = "0.35"  # the neutral colour of the line-style key (colour never carries meaning)
REJECTED_COLOUR = "k"

# One style for every figure of the suite (sizes in points, for a figure about 7 in wide).
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "figure.constrained_layout.use": True,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "figure.titlesize": 10,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.3,
    "lines.markersize": 3.5,
    "mathtext.fontset": "dejavusans",
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text, accepted by publishers
    "svg.hashsalt": "stl-verify",  # stable ids: equal records give equal SVGs
    "axes.prop_cycle": matplotlib.cycler(color=plt.get_cmap("tab10").colors),
}

BAND_ALPHA = 0.2
MEASURED_LW = 1.0  # thinner than theory lines (1.5), which are drawn on top
# kind of a theory row -> meaning -> line style
MEANING_OF_KIND = {"exact": "exact", "upper": "bound", "lower": "bound", "numerical": "bound",
                   "exceeds": "reference", "report": "reference", "rate": "reference"}
LINESTYLE = {"measured": "-", "bound": "--", "exact": ":", "reference": "-."}


@contextlib.contextmanager
def paper_style():
    """The one style every figure is drawn in (``draw_all`` enters it around each figure)."""
    with plt.rc_context(STYLE):
        yield


def colour(index: int) -> str:
    """The ``index``-th colour of the style's cycle (colours only tell curves apart)."""
    colours = STYLE["axes.prop_cycle"].by_key()["color"]
    return colours[index % len(colours)]


# ---------------------------------------------------------------------------------------------
# Math text: the suite's quantity names are ASCII (``E TV(G_i,p0)``); figures show mathtext.

_GREEK = {"sigma": r"\sigma", "lambda": r"\lambda", "lam": r"\lambda", "gamma": r"\gamma",
          "tau": r"\tau", "eps": r"\varepsilon", "Delta": r"\Delta", "beta": r"\beta",
          "alpha": r"\alpha", "pi": r"\pi", "mu": r"\mu"}
_OPERATORS = {"TV": r"\mathrm{TV}", "KL": r"\mathrm{KL}", "err": r"\mathrm{err}",
              "log": r"\log", "int": r"\int", "tr": r"\mathrm{tr}", "sup": r"\sup"}


def _tex(expr: str) -> str:
    """An ASCII formula (``E TV(G_i,p0)``, ``E||w_g - w*||^2``) as mathtext, without ``$``."""
    s = expr.strip()
    s = re.sub(r"\bp_hat_(\w+)", r"\\hat{p}_{\1}", s)
    s = re.sub(r"\bw_hat\b", r"\\hat{w}", s)
    s = re.sub(r"\bE\[", r"\\mathbb{E}[", s)
    s = re.sub(r"\bE_test\b", r"E_{\\mathrm{test}}", s)
    s = re.sub(r"\bE(?=\s*(?:\|\||\||log|TV|KL|int|err|eps|\\hat|sigma|S_|W))\s*",
               r"\\mathbb{E}\\,", s)
    s = s.replace("||", r"\|")
    s = re.sub(r"_([A-Za-z])0\b", r"_{\1_0}", s)  # R_p0 -> R_{p_0}
    s = re.sub(r"\b([pqS])0\b", r"\1_0", s)
    s = re.sub(r"\bW2\b", "W_2", s)
    s = re.sub(r"\bR([1-4])\b", r"R_\1", s)
    s = re.sub(r"\b(\w)\*", r"\1^*", s)
    s = re.sub(r"\b(gamma|lam|tau|eps)\*", r"\1^*", s)
    s = re.sub(r"([_^])\(([^)]*)\)", r"\1{\2}", s)  # G_(i-1) -> G_{i-1}, ^(G/2) -> ^{G/2}
    s = re.sub(r"_(last|test)\b", r"_{\\mathrm{\1}}", s)
    s = re.sub(r"\b(\w+)_(\w+)/(\w+)", r"\1_{\2/\3}", s)  # q_K/2 -> q_{K/2}
    for word, tex in {**_GREEK, **_OPERATORS}.items():
        s = re.sub(rf"(?<![\\A-Za-z]){word}(?![A-Za-z])", lambda _m, t=tex: t + " ", s)
    s = s.replace(").", r")\cdot ")  # (w_hat - w).w_hat
    s = re.sub(r"\s*(<=|>=|=|<|>)\s*", lambda m: {"<=": r" \leq ", ">=": r" \geq "}.get(
        m.group(1), f" {m.group(1)} "), s)
    s = re.sub(r",(?=\S)", ", ", s)
    s = re.sub(r"\s+([)\]|^_,(])", r"\1", s)  # no space before a bracket or a script
    s = s.replace(r"\, ", r"\,")
    return re.sub(r"\s+", " ", s).strip()


# Formula spans inside a quantity name (everything else stays text), longest forms first.
_SPANS = [
    r"E\s*\[[^\]]*\]",                                   # E[sigma^2], E[err_i - err_0]
    r"E\s*\|\|[^|]*\|\|(?:\^\d)?",                       # E||w_g - w*||^2
    r"E\s*(?:log\s*)?\|[^|]*\|(?:\^\d)?",                # E|w_i - w|^2, E log|Au|
    r"E\s+int\s+\|?x\|?\^2\s+p_hat_\w+",                 # E int |x|^2 p_hat_i
    r"(?:E\s+)?(?:TV|KL)\((?:[^()]|\([^()]*\))*\)",      # E TV(G_i,p0), TV(E p_hat_i, p0)
    r"E\s+p_hat_\w+\(x\)", r"p_hat_\w+(?:\(x\))?",
    r"E\s+eps_\w+", r"E\s+err_\w+", r"E_test", r"err_\w+",
    r"\(1-lam\)(?:\^\(G/2\))?", r"m\*/n", r"m/n(?:\s*=\s*[0-9.]+)?", r"\bm\*",
    r"sigma_\w+\^2", r"sigma0\^2", r"mean_P\s*\(f_i - f'_i\)\^2", r"\bf'?_i\b",
    r"\bE TV\b(?!\()", r"\bS0'?", r"\bR[1-4]\b", r"eps\((?:N|n \+ m)\)", r"\bbeta_N\b",
    r"\bsup_\w+",
    r"\b(?:lambda|lam|gamma|tau|eps)\*?(?:_\w+|_\([^)]*\))?(?:\s*[=<>]\s*[-+0-9.e]+)?",
    r"\b[a-zA-Z]_[a-zA-Z0-9](?:\^\d)?\b", r"\b[mnNigKd]\s*=\s*[-+0-9.e]+\b", r"\bf\s*[<>]\s*1\b",
]
_SPAN = re.compile("|".join(f"(?:{s})" for s in _SPANS))
_TEXT_FIXES = [(r"\[\+grid error\]", "(+ grid error)"), (r"\[-grid errors?\]", "(− grid error)"),
               (r"\[\+grid \+disc\]", "(+ grid + discretisation)"), (r" vs ", " vs. "),
               (r"(\$R_\d\$)\(", r"\1 ("), (r" <= ", " ≤ "), (r" >= ", " ≥ "),
               (r" -> ", " → ")]
_PARSER = MathTextParser("agg")


def _is_valid_math(text: str) -> bool:
    try:
        for segment in re.findall(r"\$[^$]+\$", text):
            _PARSER.parse(segment)
    except ValueError:
        return False
    return True


def math_label(text: str) -> str:
    """``text`` with its ASCII formulas as mathtext (``E TV(G_i,p0)`` -> E TV(G_i, p_0) in math).

    A label that already contains ``$`` is mathtext already and is returned unchanged, so a
    claim may name its quantities in mathtext. A label the conversion would break stays ASCII.
    """
    if "$" in text:
        return text
    out, last = [], 0
    for match in _SPAN.finditer(text):
        out.append(text[last:match.start()])
        out.append(f"${_tex(match.group(0))}$")
        last = match.end()
    out.append(text[last:])
    label = "".join(out)
    # adjacent formulas (joined by a space or an operator) become one formula
    label = re.sub(r"\$\s*(<=|>=|=|-|\+|)\s*\$", lambda m: {
        "<=": r" \leq ", ">=": r" \geq ", "": " "}.get(m.group(1), f" {m.group(1)} "), label)
    for pattern, repl in _TEXT_FIXES:
        label = re.sub(pattern, repl, label)
    return label if _is_valid_math(label) else text


_AXIS_LABELS = {"generation i": "generation $i$", "fits g": "fits $g$", "gamma": r"$\gamma$",
                "lam": r"$\lambda$", "tau": r"training time $\tau$", "n": "$n$", "m/n": "$m/n$",
                "synthetic size m": "synthetic size $m$", "grid node": "grid node"}


def axis_label(text: str) -> str:
    """An ``x_label`` of the records as mathtext."""
    return _AXIS_LABELS.get(text, math_label(text))


# Claim titles as mathtext (built-in claims; other claims show their own title, converted).
TITLES = {
    "P1": r"Gaussian MLE variance, fully synthetic: "
          r"$\mathbb{E}\,\sigma_g^2 = ((M-1)/M)^g\,\sigma_0^2$",
    "P2": r"Gaussian unbiased variance: $\mathbb{E}\,\sigma_g^2$ constant, "
          r"yet $\mathbb{E}\,\sigma_g = c_4^g\,\sigma_0 \to 0$",
    "P3": r"Unbiased Gaussian chain with per-fit sizes $M_k$: $\mathbb{E}\,W_2^2$ to the truth",
    "P4": r"OLS, fixed design, replace: "
          r"$\mathbb{E}\|w_g - w^*\|^2 = g\,\sigma^2\,\mathrm{tr}((X^\top X)^{-1})$",
    "P5": r"OLS, fixed design, accumulate: $\mathbb{E}\|w_g - w^*\|^2 = \sigma^2\,"
          r"\mathrm{tr}((X^\top X)^{-1}) \sum_{k=1}^{g} 1/k^2$, bounded with $\pi^2/6$",
    "P6": r"OLS, fresh design each generation, then a downstream fit: $E_{\mathrm{test}}$",
    "P7": r"Categorical, fully synthetic: $\mathbb{E}\,S_g = 1 - (1 - 1/n)^g\,(1 - S_0)$",
    "P8": r"Gaussian KDE, constant $\lambda$ and accumulate: second moment of "
          r"$\mathbb{E}\,\hat{p}_i$",
    "A1": r"$R_3$ term by term: each term of the bound on "
          r"$\mathbb{E}[R_{p_0}(h_i) - \hat{R}_{S_i}(h_i)]$ against what it bounds",
    "A4": r"Trained softmax transformer in context, in THEORY §1's loop: learns as well as the "
          r"best linear attention, grows at $\lambda = 0$, under $R_1$ for $\lambda > 0$; "
          r"$R_2$ predicts the coupled loops' $\gamma_i$ (two architectures)",
}


def figure_title(record: dict) -> str:
    """``ID: title`` (no verdict: a figure shows data; the report says pass or fail)."""
    title = TITLES.get(record["id"]) or math_label(record.get("title", ""))
    return f"{record['id']}: {title}" if title else record["id"]


def wrap(text: str, width: int) -> str:
    """``text`` wrapped at about ``width`` characters, never inside a ``$...$`` formula."""
    glued = re.sub(r"\$[^$]*\$", lambda m: m.group(0).replace(" ", "\0"), text)
    lines, line, length = [], [], 0
    for word in glued.split():
        word = word.replace("\0", " ")
        visible = _visible_length(word)
        if line and length + 1 + visible > width:
            lines.append(" ".join(line))
            line, length = [], 0
        line.append(word)
        length += visible + (1 if length else 0)
    if line:
        lines.append(" ".join(line))
    return "\n".join(lines)


def panel_title(ax, text: str) -> str:
    """``text`` wrapped to the width of its panel (a long title must not run off the figure)."""
    width = ax.get_position().width * ax.figure.get_figwidth()
    return wrap(text, max(20, int(width * 72 / (STYLE["axes.titlesize"] * 0.55))))


def suptitle(fig, record: dict, subtitle: str = "") -> None:
    """The figure's title (and an optional second line), wrapped to the figure's width."""
    width = int(fig.get_figwidth() * 72 / (STYLE["figure.titlesize"] * 0.55))
    text = wrap(figure_title(record), width)
    if subtitle:
        text += "\n" + wrap(subtitle, int(width * 1.1))
    fig.suptitle(text)


# ---------------------------------------------------------------------------------------------
# Records

def rows_of(record: dict, point: int, quantity: str) -> list[dict]:
    """The saved rows of one grid point and one quantity, in axis order."""
    return [r for r in record["rows"] if r["point"] == point and r["quantity"] == quantity]


def series(rows: Sequence[dict]):
    """``x, measured, se, theory`` arrays of saved rows (a missing theory is NaN)."""
    x = np.array([r["x"] for r in rows], float)
    mean = np.array([r["measured"] for r in rows], float)
    se = np.array([r["se"] for r in rows], float)
    theory = np.array([np.nan if r.get("theory") is None else r["theory"] for r in rows], float)
    return x, mean, se, theory


def varying_keys(points: list[dict]) -> list[str]:
    """Parameters that differ between grid points (what a legend must say)."""
    keys = [k for k in points[0] if k != "replicas"] if points else []
    return [k for k in keys if len({repr(p.get(k)) for p in points}) > 1] or keys[:2]


_PARAMETERS = {"sigma0_sq": r"\sigma_0^2", "sigma0": r"\sigma_0", "sigma": r"\sigma",
               "lam": r"\lambda", "gamma": r"\gamma", "tau": r"\tau", "T0": "T_0",
               "m_over_n": "m/n", "sizes_cycle": "M_k"}


def point_label(point: dict, keys: Iterable[str]) -> str:
    """``lam=0.5, n=50`` as mathtext (``lam`` -> λ); other names as words."""
    parts = []
    for k in keys:
        value = point.get(k)
        if value is None:  # not a parameter of this point (accumulate has no lam)
            continue
        if k in _PARAMETERS or len(k) <= 2:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            if isinstance(value, str):  # a formula (lam = n/N_i) or a word
                shown = _tex(value) if re.fullmatch(r"[\w/*+.-]+", value) else None
            parts.append(f"${_PARAMETERS.get(k, k)}$ = {value}" if shown is None else
                         f"${_PARAMETERS.get(k, k)} = {shown}$".replace("[", "(").replace("]", ")"))
        else:
            parts.append(f"{k.replace('_', ' ')} = {value}")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Drawing with one meaning per line style, and a key of exactly the styles drawn

class StyleKey:
    """Draws measured curves, theory curves and rejections in the suite's styles and remembers
    which it drew, so that the key (``handles``) lists those and nothing else."""

    def __init__(self) -> None:
        self.kinds: dict[str, set[str]] = {}

    def _used(self, meaning: str, kind: str = "") -> None:
        self.kinds.setdefault(meaning, set()).add(kind)

    def measured(self, ax, x, mean, se=None, colour_=None, label=None, marker="o", line=True,
                 band=True):
        """The Monte Carlo mean (solid, markers) and its ± 2 SE band; returns the line."""
        x, mean = np.asarray(x, float), np.asarray(mean, float)
        (artist,) = ax.plot(x, mean, ls="-" if line else "", marker=marker, color=colour_,
                            label=label, lw=MEASURED_LW)
        if band and se is not None and len(x) > 1:
            se = np.asarray(se, float)
            ax.fill_between(x, mean - 2 * se, mean + 2 * se, color=artist.get_color(),
                            alpha=BAND_ALPHA, lw=0)
        elif band and se is not None and len(x) == 1:  # one value: a ± 2 SE bar, not a band
            se = np.asarray(se, float)
            ax.plot([x[0], x[0]], [mean[0] - 2 * se[0], mean[0] + 2 * se[0]], "-",
                    color=artist.get_color(), lw=2.5, alpha=0.5, solid_capstyle="butt")
        self._used("measured", "band" if band and se is not None else "")
        return artist

    def theory(self, ax, x, value, kind: str, colour_=None, label=None, lw=1.5):
        """A theory curve in the style of its kind (bound dashed, exact dotted, else dash-dot)."""
        meaning = MEANING_OF_KIND.get(kind, "reference")
        value = np.asarray(value, float)
        if not np.isfinite(value).any():
            return None
        # a white edge keeps a theory curve visible where it lies on the measured one
        style = dict(color=colour_, lw=lw, label=label, zorder=3,
                     path_effects=[patheffects.Stroke(linewidth=lw + 1.6, foreground="w"),
                                   patheffects.Normal()])
        if np.size(value) == 1:  # one value (a threshold, a level): a line across the panel
            artist = ax.axhline(float(np.ravel(value)[0]), ls=LINESTYLE[meaning], **style)
        else:
            (artist,) = ax.plot(np.asarray(x, float), value, LINESTYLE[meaning], **style)
        self._used(meaning, kind)
        return artist

    def vline(self, ax, x, kind: str, colour_=None):
        """A vertical theory line (a predicted location) in the style of its kind."""
        meaning = MEANING_OF_KIND.get(kind, "reference")
        ax.axvline(x, ls=LINESTYLE[meaning], color=colour_, lw=1)
        self._used(meaning, kind)

    def rejected(self, ax, rows: Sequence[dict]) -> None:
        """A black × on each row its test rejected (nothing, and no key entry, if none)."""
        bad = [r for r in rows if r.get("reject")]
        if bad:
            ax.plot([r["x"] for r in bad], [r["measured"] for r in bad], "x",
                    color=REJECTED_COLOUR, ms=8, mew=2)
            self._used("rejected")

    def rows(self, ax, rows: Sequence[dict], colour_=None, label=None):
        """Saved rows: measured with band, their theory in its kind's style, rejections."""
        x, mean, se, theory = series(rows)
        line = self.measured(ax, x, mean, se, colour_, label)
        if rows and rows[0].get("kind"):
            self.theory(ax, x, theory, rows[0]["kind"], line.get_color())
        self.rejected(ax, rows)
        return line

    def handles(self):
        """Key entries (neutral colour) for the styles drawn, in a fixed order."""
        entries = []
        if "measured" in self.kinds:
            band = "band" in self.kinds["measured"]
            entries.append((Line2D([], [], color=KEY_COLOUR, ls="-", marker="o"),
                            "measured mean" + (" (band: ± 2 SE)" if band else "")))
        if "bound" in self.kinds:
            kinds = self.kinds["bound"]
            what = ("bound" if kinds <= {"upper", "lower"} else "numerical budget"
                    if kinds == {"numerical"} else "bound / numerical budget")
            entries.append((Line2D([], [], color=KEY_COLOUR, ls="--"), what))
        if "exact" in self.kinds:
            entries.append((Line2D([], [], color=KEY_COLOUR, ls=":"), "exact prediction"))
        if "reference" in self.kinds:
            kinds = self.kinds["reference"]
            what = ("threshold the effect must exceed" if kinds == {"exceeds"}
                    else "reported reference (not tested)" if "exceeds" not in kinds
                    else "reference: reported, or threshold an effect must exceed")
            entries.append((Line2D([], [], color=KEY_COLOUR, ls="-."), what))
        if "rejected" in self.kinds:
            entries.append((Line2D([], [], color=REJECTED_COLOUR, ls="", marker="x", ms=8,
                                   mew=2), "rejected by its test"))
        return [h for h, _ in entries], [label for _, label in entries]


def labelled_handles(axes) -> tuple[list, list[str]]:
    """The labelled artists of ``axes`` (one per label, first seen first)."""
    found: dict[str, object] = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    return list(found.values()), list(found.keys())


def _visible_length(label: str) -> float:
    """About how many characters ``label`` shows (mathtext commands count as one)."""
    return len(re.sub(r"\\[A-Za-z]+|[{}$^_]", "", label)) + label.count("\\")


def figure_legend(fig, axes, key: StyleKey, ncol: int | None = None) -> None:
    """One legend below the panels: the drawn curves by colour, then the key of the styles,
    in as many columns as fit the figure's width."""
    handles, labels = labelled_handles(axes)
    key_handles, key_labels = key.handles()
    handles, labels = handles + key_handles, labels + key_labels
    if not handles:
        return
    if ncol is None:
        room = fig.get_figwidth() * 72 / (STYLE["legend.fontsize"] * 0.55)
        column = max(_visible_length(label) for label in labels) + 8  # + handle and padding
        ncol = max(1, min(len(handles), int(room // column)))
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol)


def panel_grid(count: int, max_cols: int = 3, size=(3.4, 2.7)):
    """A figure with ``count`` panels and no empty slot (a short last row is centred)."""
    cols = count if count <= max_cols else 2 if count == 4 else max_cols
    rows = -(-count // cols)
    fig = plt.figure(figsize=(size[0] * cols, size[1] * rows + 1.2))
    grid = fig.add_gridspec(rows, 2 * cols)
    axes = []
    for k in range(count):
        row, col = divmod(k, cols)
        in_row = min(cols, count - row * cols)
        start = (cols - in_row) + 2 * col  # centred: (2*cols - 2*in_row) / 2 half-columns
        axes.append(fig.add_subplot(grid[row, start:start + 2]))
    return fig, axes


def plot_measured(ax, rows: list[dict], colour_, label: str, marker: str = "o",
                  alpha: float = BAND_ALPHA) -> np.ndarray:
    """Saved rows' Monte Carlo mean with a ± 2 SE band; returns their ``x`` (kept for callers
    outside this module; new figures use ``StyleKey``)."""
    x, mean, se, _ = series(rows)
    ax.plot(x, mean, marker, color=colour_, label=label)
    ax.fill_between(x, mean - 2 * se, mean + 2 * se, color=colour_, alpha=alpha, lw=0)
    return x


def tidy_log_axes(fig) -> None:
    """Log axes label 1, 2, 5 x 10^k as plain numbers when they span under two decades (no
    overlapping minor labels such as ``3x10^-1 4x10^-1``), powers of ten otherwise."""
    for ax in fig.axes:
        for axis, scale, limits in ((ax.xaxis, ax.get_xscale(), ax.get_xlim()),
                                    (ax.yaxis, ax.get_yscale(), ax.get_ylim())):
            if scale != "log":
                continue
            axis.set_minor_formatter(ticker.NullFormatter())
            low, high = sorted(limits)
            if low > 0 and np.log10(high / low) < 2:
                axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def default_figure(record: dict):
    """Simulation mean ± 2 SE against theory, one panel per quantity, one colour per point."""
    quantities = list(dict.fromkeys(r["quantity"] for r in record["rows"]))
    fig, axes = panel_grid(len(quantities))
    keys = varying_keys(record["points"])
    key = StyleKey()
    for ax, quantity in zip(axes, quantities):
        for index, point in enumerate(record["points"]):
            rows = rows_of(record, index, quantity)
            if rows:
                key.rows(ax, rows, colour(index), point_label(point, keys))
        first = next(r for r in record["rows"] if r["quantity"] == quantity)
        ax.set_title(panel_title(ax, math_label(quantity)))
        ax.set_xlabel(axis_label(first["x_label"]))
    suptitle(fig, record)
    figure_legend(fig, axes, key)
    return fig


# ---------------------------------------------------------------------------------------------
# Writing

def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"png,pdf"`` (or a sequence) as a tuple of formats; ValueError names a bad one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    formats = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in items if f.strip()))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"figure format {', '.join(bad) or '(none)'} is not one of "
                         f"{', '.join(FORMATS)}")
    return formats


def _save(fig, out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    """Every format to a temporary sibling, then all renamed into place; on any error the
    temporaries are removed and the targets are left as they were."""
    temps: list[tuple[str, Path]] = []
    try:
        for fmt in formats:
            fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{stem}.", suffix=f".tmp.{fmt}")
            temps.append((tmp, out_dir / f"{stem}.{fmt}"))
            os.chmod(tmp, 0o666 & ~_umask())  # as a plain open() would (mkstemp gives 0600)
            with os.fdopen(fd, "wb") as f:
                fig.savefig(f, format=fmt, dpi=PNG_DPI, metadata=_metadata(fmt))
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    return [path for _, path in temps]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _metadata(fmt: str) -> dict:
    # No creation date: equal records give byte-identical vector files.
    if fmt == "pdf":
        return {"CreationDate": None}
    if fmt == "svg":
        return {"Date": None}
    return {}


def render(record: dict, claims: dict | None = None):
    """The figure of one record, drawn in ``paper_style`` (the claim's own ``figure`` if it has
    one, else ``default_figure``). The caller closes it (``plt.close``)."""
    claim = (claims or {}).get(record["id"])
    draw = claim.figure if claim is not None and claim.figure is not None else default_figure
    with paper_style():
        fig = draw(record)
        tidy_log_axes(fig)
    return fig


def save(fig, out_dir: str | os.PathLike, stem: str, formats: Sequence[str] | str = ("png",)
         ) -> list[Path]:
    """``fig`` as ``out_dir/stem.<format>`` for each format, atomically (see ``_save``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with paper_style():
        return _save(fig, out_dir, stem, parse_formats(formats))


def draw_all(records: list[dict], out_dir: str | os.PathLike, claims: dict | None = None,
             formats: Sequence[str] | str = ("png",)) -> list[Path]:
    """Draw every record that has rows, one file per format; returns the written paths.

    Args:
      records: result records (``report.json``'s ``claims``).
      out_dir: directory of the figures (created if missing).
      claims: ``id -> Claim``; a claim's ``figure`` replaces ``default_figure``.
      formats: any of ``FORMATS`` (``"png,pdf"`` works too); PNGs at ``PNG_DPI``.
    """
    formats = parse_formats(formats)  # a bad format fails before anything is drawn
    written = []
    for record in records:
        if not record.get("rows"):
            continue
        fig = render(record, claims)
        try:
            written += save(fig, out_dir, record["id"], formats)
        finally:
            plt.close(fig)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m verify.figures REPORT``: redraw figures from a saved ``report.json`` (any
    format, no recomputation), e.g. PDFs for a paper from the run that made the PNGs."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m verify.figures", description=main.__doc__)
    parser.add_argument("report", help="a report.json written by python -m verify.all")
    parser.add_argument("--out", default=None, help="directory (default: figures/ beside REPORT)")
    parser.add_argument("--format", default="png",
                        help=f"comma-separated, any of {', '.join(FORMATS)} (default: png)")
    parser.add_argument("--only", default=None, help="comma-separated claim IDs")
    args = parser.parse_args(argv)
    try:
        formats = parse_formats(args.format)
    except ValueError as error:
        parser.error(str(error))
    try:
        records = json.loads(Path(args.report).read_text())["claims"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        parser.error(f"cannot read records from {args.report}: {error}")
    if args.only is not None:
        wanted = {c.strip() for c in args.only.split(",") if c.strip()}
        unknown = wanted - {r["id"] for r in records}
        if not wanted or unknown:
            parser.error(f"--only: no record of {', '.join(sorted(unknown)) or '(nothing)'} in "
                         f"{args.report}")
        records = [r for r in records if r["id"] in wanted]
    import verify.claims  # noqa: F401  (registers the built-in claims and their figures)
    from verify.claim import REGISTRY

    out = Path(args.out) if args.out else Path(args.report).parent / "figures"
    for path in draw_all(records, out, REGISTRY, formats):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
