"""Paper A claims (A1, A2-gamma, A3, A5): they pass, and broken bounds are caught on the same grid."""
import dataclasses
import functools

import numpy as np
import pytest

from bounds import stability as st
from verify.claim import evaluate
from verify.claims import paper_a as pa


@functools.lru_cache(maxsize=None)
def _run(claim_id, variant=None):
    claim = {"A1": pa.A1, "A2-gamma": pa.A2_GAMMA, "A3-mean": pa.A3["mean"]}[claim_id]
    theories = {
        None: claim.theory,
        "drop-shift": functools.partial(pa.a1_theory, drop="distribution_shift"),
        "a1-squared": functools.partial(pa.a1_theory, keep_power=2),
        "a2-squared": functools.partial(pa.a2_theory, keep_power=2),
        "a2-drop": functools.partial(pa.a2_theory, drop="propagation"),
        "a3-squared": functools.partial(pa.a3_theory, keep_power=2),
    }
    return evaluate(dataclasses.replace(claim, theory=theories[variant]), "quick", seed=0)


@pytest.mark.parametrize("claim_id", ["A1", "A2-gamma", "A3-mean"])
def test_claims_pass_quick(claim_id):
    record = _run(claim_id)
    assert record["status"] == "pass", record["message"]
    assert record["notes"]


def test_a1_reports_tightness_and_exact_gap():
    record = _run("A1")
    bound_rows = [r for r in record["rows"] if r["quantity"] == "gap <= R3 bound"]
    assert all(0 < r["ratio"] < 1 for r in bound_rows)
    assert record["summary"]["max_ratio"] > 0.5  # categorical at lam = 1 is nearly tight
    assert any(r["quantity"] == "gap (exact)" for r in record["rows"])


@pytest.mark.parametrize("claim_id,variant", [
    ("A1", "drop-shift"),          # dropped term: caught where the shift dominates (lam = 0.05)
    ("A2-gamma", "a2-squared"),    # (1-lam) -> (1-lam)^2 in R2
    ("A2-gamma", "a2-drop"),       # dropped m gamma_{i-1} term in R2
    ("A3-mean", "a3-squared"),     # (1-lam) -> (1-lam)^2 in the exact variance
])
def test_negative_controls_fail(claim_id, variant):
    record = _run(claim_id, variant)
    assert record["status"] == "fail", variant


def test_a1_squared_keep_is_not_caught_by_r3():
    """Documented finding (docs/paper_a.md section 9.4): R3's shift term is loose by a
    factor > 1/(1-lam) at every grid point, so (1-lam) -> (1-lam)^2 in R3 still holds."""
    assert _run("A1", "a1-squared")["status"] == "pass"


def test_exact_gap_formulas_hand_values():
    s2 = pa.HALF_WIDTH ** 2 / 3
    assert pa.mean_gap_exact(20, 0, np.asarray([1, 5])) == pytest.approx([2 * s2 / 20] * 2)
    n, m = 10, 10
    v = lambda i: float(st.mean_estimation_exact_variance(s2, n, m, i))
    assert float(pa.mean_gap_exact(n, m, np.asarray([3]))[0]) == pytest.approx(2 * v(3) - 0.5 * v(2))
    probs = pa.category_probs()
    q = probs * (1 - probs)
    assert float(pa.categorical_error_exact(20, 0, np.asarray([4]))[0]) == pytest.approx(q.sum() / 20)
    # lam = 0: collapse towards sum_k q_k = 1 - S
    far = float(pa.categorical_error_exact(20, 20, np.asarray([10 ** 4]), lam_zero=True)[0])
    assert far == pytest.approx(q.sum(), rel=1e-9)


def test_categorical_mse_recursion_matches_monte_carlo():
    rng = np.random.default_rng(1)
    probs, n, m, gens, reps = np.array([0.5, 0.3, 0.2]), 8, 12, 4, 40_000
    real = rng.multinomial(n, probs, size=reps) / n
    p_hat = real
    for _ in range(gens):
        synthetic = np.stack([rng.multinomial(m, p) for p in p_hat]) / m
        p_hat = (n * real + m * synthetic) / (n + m)
    err = ((p_hat - probs) ** 2)
    want = np.asarray(st.categorical_loop_mse(probs, n, m, gens))
    z = (err.mean(0) - want) / (err.std(0) / np.sqrt(reps))
    assert np.all(np.abs(z) < 4.5), z


@pytest.mark.parametrize("call,param", [
    (lambda: st.ridge_gap_bound(1.0, np.inf, 1.0, 0.5, 10, 10, 1, 0.1), "label_bound"),
    (lambda: st.ridge_gap_bound(1.0, 1.0, 1.0, 0.5, 10, 10, 0, 0.1), "generation"),
    (lambda: st.categorical_loop_mse(np.array([0.5, 0.5]), 10, 0, 1, lam=0.5), "m"),
    (lambda: st.categorical_loop_mse(np.array([0.5, 0.6]), 10, 5, 1), "probs"),
    (lambda: st.categorical_gap_bound(np.array([0.5, 0.5]), 10, 5, 0), "generation"),
    (lambda: st.mean_estimation_variance_plateau(1.0, 10, 10, lam=0.0), "lam"),
    (lambda: st.mean_estimation_gap_bound(1.0, 10, 10, 0), "generation"),
])
def test_bounds_outside_assumptions_raise(call, param):
    with pytest.raises(ValueError, match=param):
        call()


def test_unclipped_ridge_model_has_no_bound():
    model = pa.ridge(pa.ridge_pool(**pa.RIDGE_POOL), 1.0, 0.5, None)
    spec = pa.ridge_spec(model)
    assert spec.label_bound is None
    with pytest.raises((ValueError, TypeError), match="label_bound"):
        st.ridge_loss_bound(spec.feature_bound, np.inf if spec.label_bound is None else 1.0, 1.0)
