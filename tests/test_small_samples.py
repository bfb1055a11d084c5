"""Statistics that hold at every sample size (issue 16): Student t instead of the normal tail,
vacuous bounds that are never evidence, rate rows that can fail, and guard-rails at the claim
boundary. Every test here is a negative control: it shows what the harness catches."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from verify import stats
from verify.claim import Claim, Measured, Theory, evaluate, measured_rate

ALPHA = 0.05   # a level at which a false-failure rate is measurable with few simulated runs
ROWS = 40      # the grid of issue 16
RUNS = 400     # simulated claims per replica count


def _exact_claim(replicas: int, rng: np.random.Generator) -> Claim:
    """A *correct* exact prediction: the mean of standard normal draws against 0, 40 rows."""
    draws = rng.standard_normal((replicas, ROWS))

    def measure(key, point):
        return {"mean": Measured(np.arange(ROWS), draws.mean(0),
                                 draws.std(0, ddof=1) / math.sqrt(replicas), replicas)}

    return Claim("T1", "mean of N(0,1)", lambda mode: [{"R": replicas}], measure,
                 lambda point: {"mean": Theory("exact", np.zeros(ROWS))}, alpha=ALPHA)


@pytest.mark.parametrize("replicas", [3, 5, 10])
def test_a_correct_exact_prediction_fails_at_most_alpha_of_the_time(replicas):
    rng = np.random.default_rng(replicas)
    failures = sum(evaluate(_exact_claim(replicas, rng), "quick", 0)["status"] == "fail"
                   for _ in range(RUNS))
    # Under H0 each t p-value is exactly uniform, so Holm's family-wise error is at most alpha
    # (here 1 - (1 - alpha/40)^40 = 0.0488 for independent rows). Allow 3 binomial SEs.
    assert failures / RUNS <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


@pytest.mark.parametrize("replicas", [3, 5, 10])
def test_the_normal_tail_would_exceed_alpha(replicas):
    """The same Holm test with normal p-values (the SE taken as exact) fails a correct claim
    far more often than alpha: computed exactly, since the statistic is t with R - 1 dof."""
    z = scipy_stats.norm.isf(ALPHA / ROWS / 2)  # Holm's first step, two-sided, normal tail
    per_row = 2 * scipy_stats.t.sf(z, replicas - 1)
    family_wise = 1 - (1 - per_row) ** ROWS
    assert family_wise > 2 * ALPHA
    # and the harness's own t tail at that z agrees with scipy's (an independent check)
    assert 2 * stats.t_sf(z, replicas - 1) == pytest.approx(per_row, rel=1e-12)


def test_at_the_default_alpha_too_the_t_test_holds_its_level_and_the_normal_does_not():
    """Issue 16's numbers: 3 replicas, 40 rows, alpha = 1e-3. The t law of the statistic gives
    the family-wise error of each test in closed form (independent rows)."""
    alpha, dof = 1e-3, 2
    t_crit = stats.critical_t(alpha, ROWS, dof, two_sided=True)
    z_crit = stats.critical_z(alpha, ROWS, two_sided=True)
    # Holm's first step puts alpha / (2 * 40) in each tail of t with 2 dof (scipy, independent)
    assert t_crit == pytest.approx(scipy_stats.t.isf(alpha / (2 * ROWS), dof), rel=1e-10)
    assert t_crit > 30 > z_crit  # 2 dof: the t threshold is far beyond the normal one (4.2)
    assert 1 - (1 - 2 * scipy_stats.t.sf(t_crit, dof)) ** ROWS <= alpha
    assert 1 - (1 - 2 * scipy_stats.t.sf(z_crit, dof)) ** ROWS > 0.5  # the old rule: > 50%
    # and through the harness: a correct row at t = 10 with 3 replicas is not rejected now
    rows = [{"point": 0, "quantity": "q", "x": j, "x_label": "i", "kind": "exact",
             "measured": 10.0 if j == 0 else 0.0, "se": 1.0, "replicas": 3, "dof": 2.0,
             "theory": 0.0} for j in range(ROWS)]
    from verify.claim import compare
    assert compare(rows, alpha)["rejected"] == 0


def test_a_resolved_effect_under_the_normal_tail_is_not_resolved_under_t():
    """A4's quick row: t = 5.37 from 3 replicas is p = 0.017 (2 dof), above the 0.01 level."""
    record = evaluate(Claim("E1", "effect", lambda mode: [{}],
                            lambda key, p: {"x": Measured(np.zeros(1), np.array([5.37]),
                                                          np.array([1.0]), 3)},
                            lambda p: {"x": Theory("exceeds", np.zeros(1))}), "quick", 0)
    row = record["rows"][0]
    assert row["p"] == pytest.approx(scipy_stats.t.sf(5.37, 2), rel=1e-9)
    assert record["status"] == "fail" and row["underpowered"]


def _bound_claim(bound, **kw) -> Claim:
    def measure(key, point):
        return {"TV": Measured(np.arange(3), np.full(3, 0.3), np.full(3, 0.01), 100)}

    return Claim("V1", "a TV bound", lambda mode: [{}], measure,
                 lambda point: {"TV": Theory("upper", np.full(3, bound), "bound", trivial=1.0)},
                 **kw)


def test_a_tv_bound_above_one_is_vacuous_and_never_makes_a_claim_pass():
    record = evaluate(_bound_claim(1.2), "quick", 0)
    s = record["summary"]
    assert (s["vacuous_rows"], s["evidence_rows"]) == (3, 0)
    assert record["status"] == "fail" and "3 vacuous" in record["message"]
    assert all(r["vacuous"] and "reject" not in r for r in record["rows"])
    # at the trivial value itself it cannot fail either
    assert evaluate(_bound_claim(1.0), "quick", 0)["summary"]["vacuous_rows"] == 3
    # a bound below 1 is evidence, and one the data violate fails
    assert evaluate(_bound_claim(0.5), "quick", 0)["status"] == "pass"
    assert evaluate(_bound_claim(0.25), "quick", 0)["status"] == "fail"


def test_a_report_only_declaration_says_why_and_is_untested_not_pass():
    record = evaluate(_bound_claim(1.2, report_only="the bound is vacuous at this size"),
                      "quick", 0)
    assert record["status"] == "untested"
    assert "the bound is vacuous at this size" in record["message"]


def _rate_claim(true_exponent: float, stated: float, replicas: int = 400) -> Claim:
    """Per-replica errors ``C n^b`` times log-normal noise at five n; the fitted exponent
    (SE from the replicas) against the stated upper-bound rate ``O(n^stated)``."""
    n = np.array([100, 200, 400, 800, 1600])

    def measure(key, point):
        rng = np.random.default_rng(7)
        draws = 2.0 * n ** true_exponent * np.exp(0.5 * rng.standard_normal((replicas, len(n))))
        return {"exponent": measured_rate(n, draws.mean(0),
                                          draws.std(0, ddof=1) / math.sqrt(replicas), replicas)}

    return Claim("R1", "a rate", lambda mode: [{}], measure,
                 lambda point: {"exponent": Theory("rate", stated, "O(n^-0.4)")})


def test_a_rate_row_fails_when_the_exponent_is_shallower_than_the_stated_rate():
    shallow = evaluate(_rate_claim(-0.3, -0.4), "quick", 0)
    assert shallow["status"] == "fail", shallow["rows"]
    steep = evaluate(_rate_claim(-0.5, -0.4), "quick", 0)
    assert steep["status"] == "pass", steep["message"]
    row = steep["rows"][0]
    assert row["kind"] == "rate" and row["dof"] == 399 and row["measured"] < -0.4
    # the run says beforehand how large an excess it could see
    assert steep["summary"]["power"]["rate"]["min_detectable_excess"] < 0.1
    # and the report shows the fitted exponent, its interval and the stated rate side by side
    from verify import report
    cell = report._row_stat(row)
    assert cell.startswith(f"exponent {row['measured']:.3g} [") and "vs stated ≤ -0.4" in cell


def test_per_replica_slope_is_ols_over_the_chosen_generations():
    values = np.array([[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 9.0]])
    np.testing.assert_allclose(stats.per_replica_slope(values), [1.0, 1.2])
    np.testing.assert_allclose(stats.per_replica_slope(values, start=2), [1.0, 4.0])
    # where: each replica's own generations (a diverged replica's prefix); NaN outside is unread
    gapped = np.array([[0.0, 1.0, 2.0, np.nan], [5.0, 5.0, 5.0, 9.0]])
    use = np.isfinite(gapped)
    np.testing.assert_allclose(stats.per_replica_slope(gapped, where=use), [1.0, 1.2])
    np.testing.assert_allclose(stats.per_replica_slope(values, where=np.ones((2, 4), bool)),
                               stats.per_replica_slope(values))
    with pytest.raises(ValueError, match="two generations"):
        stats.per_replica_slope(gapped, where=use & (np.arange(4) < 1))


def test_rate_exponent_takes_its_se_from_the_replicas_not_the_residuals():
    """Points exactly on a line have zero residual scatter; the SE still reflects the MC error."""
    x = np.array([1.0, 2.0, 4.0, 8.0])
    fit = stats.rate_exponent(x, x ** -0.5, 0.1 * x ** -0.5, 10)
    assert fit.slope == pytest.approx(-0.5) and fit.se > 0 and fit.dof == 9
    # the delta-method SE: a weighted LS slope with var(log y) = 0.01 at every point
    lx = np.log(x)
    assert fit.se == pytest.approx(0.1 / math.sqrt(((lx - lx.mean()) ** 2).sum()), rel=1e-9)
    with pytest.raises(ValueError, match="positive"):
        stats.rate_exponent(x, -x, x, 10)


def test_a_misspelled_kind_raises_at_construction():
    with pytest.raises(ValueError, match="'exakt'"):
        Theory("exakt", 1.0)
    with pytest.raises(ValueError, match="trivial"):
        Theory("exact", 1.0, trivial=1.0)


def test_a_theory_quantity_without_a_measured_counterpart_is_an_error_naming_both():
    claim = Claim("K1", "typo", lambda mode: [{}],
                  lambda key, p: {"E[sigma^2]": Measured(np.zeros(1), np.ones(1), np.ones(1), 10)},
                  lambda p: {"E[sigma2]": Theory("exact", np.ones(1))})
    record = evaluate(claim, "quick", 0)
    assert record["status"] == "error"
    assert "'E[sigma2]'" in record["message"] and "'E[sigma^2]'" in record["message"]


def test_a_statistic_from_one_replica_is_an_error_not_a_test():
    claim = Claim("K2", "one replica", lambda mode: [{}],
                  lambda key, p: {"q": Measured(np.zeros(1), np.ones(1), np.ones(1), 1)},
                  lambda p: {"q": Theory("exact", np.ones(1))})
    record = evaluate(claim, "quick", 0)
    assert record["status"] == "error" and "degrees of freedom" in record["message"]


def test_a_right_skewed_mean_is_tested_conservatively_only_on_its_right_tail():
    """Why A2's heavy-tailed second moments are tested one-sided (docs/statistics.md §6): for
    a right-skewed quantity (log-normal, sigma = 2, 4096 draws as A2's batch), the t statistic
    of a *correct* mean falls below -2.33 far more often than 1%, and above +2.33 far less."""
    rng = np.random.default_rng(16)
    batches, n, s = 400, 4096, 2.0
    draws = rng.lognormal(0.0, s, size=(batches, n))
    t = (draws.mean(1) - math.exp(s ** 2 / 2)) / (draws.std(1, ddof=1) / math.sqrt(n))
    assert np.mean(t < -2.326) > 0.03        # a two-sided test would reject correct means
    assert np.mean(t > 2.326) <= 0.01        # the one-sided (upper) test is conservative
    # and through the harness: the correct mean as an upper row is not rejected in any batch
    rows = [{"point": 0, "quantity": "m", "x": b, "x_label": "batch", "kind": "upper",
             "measured": float(draws[b].mean()), "se": float(draws[b].std(ddof=1) / math.sqrt(n)),
             "replicas": n, "dof": n - 1.0, "theory": math.exp(s ** 2 / 2)}
            for b in range(batches)]
    from verify.claim import compare
    assert compare(rows, 1e-3)["rejected"] == 0


def test_a_deterministic_row_from_one_replica_is_tested_exactly_not_an_error():
    """SE = 0 (a grid search, a closed-form quadrature) needs no dof: equal passes, unequal fails."""
    def claim(value):
        return Claim("K3", "deterministic", lambda mode: [{}],
                     lambda key, p: {"q": Measured(np.zeros(1), np.ones(1), np.zeros(1), 1)},
                     lambda p: {"q": Theory("exact", np.full(1, value))})
    assert evaluate(claim(1.0), "quick", 0)["status"] == "pass"
    assert evaluate(claim(1.1), "quick", 0)["status"] == "fail"
