"""Figures are paper figures: every claim's figure is drawn from a saved record with mathtext
labels, no verdict in its titles, a legend that lists only what is drawn, no empty panel, and
written as PNG (at ``PNG_DPI``) / PDF / SVG, atomically.

The records are a quick run's (``tests/data/figure_records.json``, rows thinned), so these tests
draw without computing anything."""
import json
import os
import re
import struct

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D

import verify.claims  # noqa: F401  (registers the built-in claims)
from conftest import ROOT
from verify import figures
from verify.claim import REGISTRY

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RECORDS = {r["id"]: r for r in json.loads(
    (ROOT / "tests" / "data" / "figure_records.json").read_text())["claims"]}
BUILT_IN = [cid for cid, claim in REGISTRY.items()
            if claim.measure.__module__.startswith("verify.claims.")]
VERDICT = re.compile(r"\b(pass|passed|fail|failed|failure)\b", re.I)
# ASCII formulas outside $...$ (what mathtext labels replace)
ASCII_FORMULA = re.compile(r"\b(lam|gamma|tau|sigma|eps|p0|p_hat\w*)\b|\w\^|\b[A-Za-z]+_\w")


def _texts(fig):
    """Every title, axis label and legend text of ``fig``, with where it is."""
    found = [("suptitle", fig._suptitle.get_text() if fig._suptitle else "")]
    for ax in fig.axes:
        for loc in ("left", "center", "right"):
            found.append(("title", ax.get_title(loc)))
        found += [("xlabel", ax.get_xlabel()), ("ylabel", ax.get_ylabel())]
    for legend in _legends(fig):
        found += [("legend", t.get_text()) for t in legend.texts]
    return [(where, text) for where, text in found if text]


def _legends(fig):
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]


def _drawn_lines(fig):
    return [line for ax in fig.axes for line in ax.lines
            if line.get_visible() and len(line.get_xdata())]


def _same_colour(a, b) -> bool:
    return np.allclose(matplotlib.colors.to_rgba(a), matplotlib.colors.to_rgba(b))


def _line_is_drawn(handle: Line2D, fig) -> bool:
    """A line of the figure has this legend entry's line style, marker and colour (an entry in
    the neutral key colour stands for a style, whatever the colour)."""
    key = _same_colour(handle.get_color(), figures.KEY_COLOUR)
    return any(line.get_linestyle() == handle.get_linestyle()
               and line.get_marker() == handle.get_marker()
               and (key or _same_colour(line.get_color(), handle.get_color())
                    and _same_colour(line.get_markerfacecolor(), handle.get_markerfacecolor()))
               for line in _drawn_lines(fig))


def _scatter_is_drawn(handle: PathCollection, fig) -> bool:
    def looks(c):
        return (np.round(c.get_facecolor()[:1], 3).tolist(),
                np.round(c.get_edgecolor()[:1], 3).tolist(),
                np.round(c.get_paths()[0].vertices, 3).tolist())
    return any(isinstance(c, PathCollection) and len(c.get_offsets()) and looks(c) == looks(handle)
               for ax in fig.axes for c in ax.collections)


def check_figure(fig, claim_id):
    """The paper-figure rules; returns a list of problems (empty when the figure is fine)."""
    problems = []
    for where, text in _texts(fig):
        if where in ("suptitle", "title") and VERDICT.search(text):
            problems.append(f"{claim_id}: a verdict in the {where} {text!r}")
        outside_math = re.sub(r"\$[^$]*\$", "", text).replace(claim_id, "")
        if ASCII_FORMULA.search(outside_math):
            problems.append(f"{claim_id}: an ASCII formula in the {where} {text!r}")
    for legend in _legends(fig):
        for handle, text in zip(legend.legend_handles, legend.texts):
            if isinstance(handle, Line2D):
                drawn = _line_is_drawn(handle, fig)
            elif isinstance(handle, PathCollection):
                drawn = _scatter_is_drawn(handle, fig)
            else:
                drawn = False
            if not drawn:
                problems.append(f"{claim_id}: legend entry {text.get_text()!r} "
                                f"({type(handle).__name__}) matches nothing drawn")
    renderer = fig.canvas.get_renderer()
    texts = [fig._suptitle] if fig._suptitle else []
    texts += [ax.title for ax in fig.axes] + _legends(fig)
    for artist in texts:  # a title or legend cut off by the figure's edge (P7's subtitle was)
        box = artist.get_window_extent(renderer)
        if box.width and (box.x0 < -1 or box.x1 > fig.bbox.x1 + 1 or box.y0 < -1
                          or box.y1 > fig.bbox.y1 + 1):
            problems.append(f"{claim_id}: {type(artist).__name__} "
                            f"{getattr(artist, 'get_text', lambda: '')()!r} is clipped")
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        has_data = (any(len(line.get_xdata()) for line in ax.lines)
                    or any(len(c.get_offsets()) or len(c.get_paths()) for c in ax.collections)
                    or ax.patches or ax.images)
        if not has_data:
            problems.append(f"{claim_id}: an empty panel {ax.get_title()!r}")
    return problems


def test_every_built_in_claim_has_a_record_to_draw():
    missing = sorted(set(BUILT_IN) - set(RECORDS))
    assert not missing, (f"no record of {missing} in tests/data/figure_records.json: add one "
                         "from a quick run (rows thinned) so that its figure is tested")


@pytest.mark.parametrize("claim_id", sorted(RECORDS))
def test_each_claims_figure_follows_the_paper_rules(claim_id):
    fig = figures.render(RECORDS[claim_id], REGISTRY)
    try:
        fig.canvas.draw()  # mathtext is parsed, and the layout made, only when drawn
        assert check_figure(fig, claim_id) == []
    finally:
        plt.close(fig)


def test_a_rejected_row_gets_a_legend_entry_and_none_otherwise():
    record = json.loads(json.dumps(RECORDS["P7"]))
    fig = figures.render(record, REGISTRY)
    assert not any("rejected" in t for _, t in _texts(fig))
    plt.close(fig)
    record["rows"][1]["reject"] = True
    fig = figures.render(record, REGISTRY)
    try:
        assert any("rejected" in t for _, t in _texts(fig))
        assert check_figure(fig, "P7") == []
    finally:
        plt.close(fig)


def test_a_legend_entry_without_a_drawn_artist_is_caught():
    """The check itself: a key entry for a style nothing uses, an empty scatter proxy, a verdict
    and an ASCII formula in a title too long for its figure, an empty panel."""
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], "-o", label="measured")
    ax.scatter([], [], marker="^", label="cell that was not measured")
    ax.legend(handles=[*ax.get_legend_handles_labels()[0],
                       Line2D([], [], color=figures.KEY_COLOUR, ls="--", label="bound")])
    fig.add_subplot(2, 2, 4)  # an empty panel
    fig.suptitle("P0 (pass): E TV(G_i,p0) " + "and a title far too long to fit " * 4)
    fig.canvas.draw()
    problems = check_figure(fig, "P0")
    plt.close(fig)
    assert any("'bound'" in p for p in problems)
    assert any("not measured" in p for p in problems)
    assert any("verdict" in p for p in problems)
    assert any("ASCII formula" in p for p in problems)
    assert any("empty panel" in p for p in problems)
    assert any("clipped" in p for p in problems)


def _png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize("claim_id", ["P7", "B1-fresh", "A2"])
def test_draw_all_writes_each_requested_format_and_png_at_paper_resolution(tmp_path, claim_id):
    paths = figures.draw_all([RECORDS[claim_id]], tmp_path, REGISTRY, formats="png,pdf,svg")
    assert sorted(p.name for p in paths) == sorted(f"{claim_id}.{f}" for f in figures.FORMATS)
    assert all(p.stat().st_size > 1000 for p in paths)
    assert (tmp_path / f"{claim_id}.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in (tmp_path / f"{claim_id}.svg").read_bytes()[:2000]
    fig = figures.render(RECORDS[claim_id], REGISTRY)
    width_inches = fig.get_figwidth()
    plt.close(fig)
    assert _png_size(tmp_path / f"{claim_id}.png")[0] >= 200 * width_inches - 1
    assert figures.PNG_DPI >= 200
    assert sorted(tmp_path.iterdir()) == sorted(paths)  # no temporary left behind
    mask = os.umask(0)
    os.umask(mask)
    assert {p.stat().st_mode & 0o777 for p in paths} == {0o666 & ~mask}  # not mkstemp's 0600


def test_default_format_is_png_only_and_bad_formats_fail_before_drawing(tmp_path):
    assert [p.name for p in figures.draw_all([RECORDS["P7"]], tmp_path, REGISTRY)] == ["P7.png"]
    with pytest.raises(ValueError, match="jpeg"):
        figures.draw_all([RECORDS["P7"]], tmp_path / "other", REGISTRY, formats="png,jpeg")
    assert not (tmp_path / "other").exists()
    assert figures.parse_formats(" PDF, .svg,pdf ") == ("pdf", "svg")
    with pytest.raises(ValueError):
        figures.parse_formats(",")


def test_a_failed_write_leaves_no_temporary_and_the_old_files_in_place(tmp_path, monkeypatch):
    """A full disk while writing the second format: no temporary left, no target replaced."""
    for fmt in ("png", "pdf"):
        (tmp_path / f"P7.{fmt}").write_bytes(b"old")
    real = matplotlib.figure.Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        if kwargs.get("format") == "pdf":
            raise OSError(28, "No space left on device")
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    with pytest.raises(OSError, match="No space"):
        figures.draw_all([RECORDS["P7"]], tmp_path, REGISTRY, formats="png,pdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P7.pdf", "P7.png"]
    assert (tmp_path / "P7.png").read_bytes() == b"old"


def test_math_labels_convert_the_suites_ascii_names_and_keep_mathtext():
    assert figures.math_label("E TV(G_i,p0)") == r"$\mathbb{E}\,\mathrm{TV}(G_i, p_0)$"
    assert figures.math_label("test error (lam=0.5)") == r"test error ($\lambda = 0.5$)"
    assert figures.math_label(r"my $\alpha_i$") == r"my $\alpha_i$"  # already mathtext
    assert figures.math_label("a plain label") == "a plain label"
    assert "\n" not in figures.wrap("$" + "x " * 80 + "$", 20)  # never split inside a formula
    assert figures.point_label({"lam": "n/N_i", "scheme": "accumulate"}, ["scheme", "lam"]) \
        == r"scheme = accumulate, $\lambda = n/N_i$"
    assert figures.point_label({"lam": None, "n": 20}, ["n", "lam"]) == "$n = 20$"


def test_figures_are_redrawn_from_a_saved_report_in_any_format(tmp_path, capsys):
    """``python -m verify.figures REPORT``: PDFs for a paper from the run that made the PNGs."""
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"claims": [RECORDS["P7"], RECORDS["A2"]]}))
    assert figures.main([str(report), "--format", "pdf", "--only", "P7"]) == 0
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["P7.pdf"]
    for bad in (["--format", "jpeg"], ["--only", "X9"], ["--only", ","]):
        with pytest.raises(SystemExit) as exit_:
            figures.main([str(report), *bad])
        assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        figures.main([str(tmp_path / "missing.json")])
    assert "cannot read records" in capsys.readouterr().err
