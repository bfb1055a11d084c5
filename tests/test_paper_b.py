"""Paper B claims (B1, B3, B4): they pass with the right theory and FAIL under wrong ones."""
import dataclasses
import functools

import numpy as np

from verify.claim import REGISTRY, evaluate
import verify.claims  # noqa: F401
from verify.claims import paper_b


def _small(claim, **override):
    point = dict(claim.grid("quick")[0], **override)
    return dataclasses.replace(claim, grid=lambda mode: [point])


def test_b1_passes_and_a_bound_without_the_contraction_term_is_caught():
    claim = _small(REGISTRY["B1-synthetic"], replicas=64, generations=8)
    good = evaluate(claim, "quick")
    assert good["status"] == "pass", good["message"]
    ratios = [r["measured"] for r in good["rows"] if r["quantity"].startswith("E TV(G_i,p0) /")]
    assert max(ratios) < 1.01 and min(ratios) < 0.6  # tightness is reported, and not trivial
    wrong = dataclasses.replace(claim, theory=paper_b.b1_theory(
        "B1-synthetic", recursion=paper_b.no_contraction_recursion))
    bad = evaluate(wrong, "quick")
    assert bad["status"] == "fail"


def test_b1_accumulate_uses_its_own_recursion():
    claim = _small(REGISTRY["B1-accumulate"], replicas=32, generations=6)
    record = evaluate(claim, "quick")
    assert record["status"] == "pass", record["message"]
    assert any("fitted rate" in note for note in record["notes"])


def test_b3_threshold_with_the_wrong_exponent_is_caught():
    claim = _small(REGISTRY["B3"], replicas=48, m_over_n=[0, 1, 64])
    good = evaluate(claim, "quick")
    assert good["status"] == "pass", good["message"]
    assert any("R4 predicts m*/n" in note for note in good["notes"])
    wrong = dataclasses.replace(claim, theory=paper_b.b3_theory_with(
        paper_b.wrong_exponent_threshold))
    assert evaluate(wrong, "quick")["status"] == "fail"


def test_b4_density_with_wrong_mixing_weights_is_caught():
    claim = _small(REGISTRY["B4-density"], replicas=512, generations=5)
    good = evaluate(claim, "quick")
    assert good["status"] == "pass", good["message"]
    wrong = dataclasses.replace(claim, theory=functools.partial(paper_b.b4_density_theory,
                                                                drop_factor=True))
    assert evaluate(wrong, "quick")["status"] == "fail"


def test_threshold_formula_matches_theory_numbers():
    assert np.isclose(paper_b.b3_threshold(100, 0.4, 1) / 100, 3.605, atol=1e-3)
    assert np.isclose(paper_b.b3_threshold(100, 0.2, 1) / 100, 6.4767, atol=1e-3)
