"""The loop engine: schemes, determinism, batching, sharding, compilation, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sims
from sims import loop, schemes
from sims.models import GaussianParams, gaussian
from forced_devices import same_on_devices

from conftest import ROOT

TRUTH = GaussianParams(jnp.zeros(1), jnp.eye(1))


def mean_var_metric(key, gen, truth):
    return {"mean": gen.params.mean[0], "var": gen.params.cov[0, 0]}


def _run(key=0, replicas=37, batch_size=16, scheme="accumulate", reduce=False, **kw):
    plan = sims.make_plan(scheme, n=10, m=7, generations=5) if scheme != "synthetic" else \
        sims.make_plan("synthetic", n=10, generations=5)
    return sims.run(jax.random.key(key), gaussian(1, True), TRUTH, plan, mean_var_metric,
                    replicas=replicas, batch_size=batch_size, reduce=reduce, **kw)


# --- schemes --------------------------------------------------------------------------

@pytest.mark.parametrize("scheme, size, weights_after_2", [
    ("reuse", 5, [1, 1, 1, 1, 1]),
    ("fresh", 5, [1, 1, 1, 1, 1]),
    ("synthetic", 3, [1, 1, 1]),
    ("accumulate", 2 + 3 * 3, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]),
])
def test_training_buffers(scheme, size, weights_after_2):
    plan = schemes.make_plan(scheme, n=2, m=3, generations=4)
    assert plan.buffer_size == size
    real = jnp.array([10.0, 11.0])
    data, w = schemes.initial_training_set(plan, real)
    np.testing.assert_array_equal(w, [1, 1] + [0] * (size - 2))
    np.testing.assert_array_equal(data[:2], real)
    fresh = jnp.array([20.0, 21.0])
    for i, synth in ((1, jnp.array([1.0, 2, 3])), (2, jnp.array([4.0, 5, 6]))):
        data, w = schemes.next_training_set(plan, data, w, jnp.asarray(i), fresh, synth)
    np.testing.assert_array_equal(w, weights_after_2)
    if scheme == "reuse":
        np.testing.assert_array_equal(data, [10, 11, 4, 5, 6])
    if scheme == "fresh":
        np.testing.assert_array_equal(data, [20, 21, 4, 5, 6])
    if scheme == "synthetic":
        np.testing.assert_array_equal(data, [4, 5, 6])
    if scheme == "accumulate":
        np.testing.assert_array_equal(data[:8], [10, 11, 1, 2, 3, 4, 5, 6])


def test_per_generation_sizes_mask_the_unused_slots():
    plan = schemes.make_plan("synthetic", n=4, m=[2, 4], generations=3)
    data, w = schemes.initial_training_set(plan, jnp.arange(4.0))
    data, w = schemes.next_training_set(plan, data, w, jnp.asarray(1), None, jnp.ones(4))
    np.testing.assert_array_equal(w, [1, 1, 0, 0])


def test_real_proportion_per_scheme():
    np.testing.assert_allclose(schemes.make_plan("reuse", n=10, m=30, generations=3)
                               .real_proportion(), [1, 0.25, 0.25])
    np.testing.assert_allclose(schemes.make_plan("accumulate", n=10, m=10, generations=3)
                               .real_proportion(), [1, 0.5, 1 / 3])
    np.testing.assert_allclose(schemes.make_plan("synthetic", n=10, generations=3)
                               .real_proportion(), [1, 0, 0])
    assert schemes.make_plan("reuse", n=10, lam=0.2, generations=2).m == (40,)


@pytest.mark.parametrize("kwargs, message", [
    (dict(scheme="reuse", n=10, lam=1.5, generations=3), "lam must lie in \\[0"),
    (dict(scheme="reuse", n=10, lam=-0.5, generations=3), "lam must lie in \\[0"),
    (dict(scheme="reuse", n=10, lam=0.0, generations=3), "lam must lie in \\(0"),
    (dict(scheme="reuse", n=0, m=3, generations=3), "n must be an integer >= 1"),
    (dict(scheme="reuse", n=5, m=3, generations=0), "generations must be an integer >= 1"),
    (dict(scheme="reuse", n=5, m=-3, generations=3), "m must be an integer >= 0"),
    (dict(scheme="reuse", n=5, m=[1, 2, 3], generations=3), "one size per generation"),
    (dict(scheme="reuse", n=5, generations=3), "needs m"),
    (dict(scheme="bogus", n=5, m=1, generations=3), "scheme must be one of"),
    (dict(scheme="reuse", n=5, m=1, lam=0.5, generations=3), "not both"),
])
def test_make_plan_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        schemes.make_plan(**kwargs)


# --- the driver -----------------------------------------------------------------------

def test_same_seed_same_numbers_and_batch_size_does_not_matter():
    a = _run(replicas=37, batch_size=16)
    b = _run(replicas=37, batch_size=16)
    c = _run(replicas=37, batch_size=5)
    assert a["var"].shape == (37, 5)
    np.testing.assert_array_equal(a["var"], b["var"])
    np.testing.assert_allclose(a["var"], c["var"], rtol=1e-12)
    assert not np.allclose(a["var"], _run(key=1)["var"])


def test_padding_never_drops_or_adds_replicas():
    small = _run(replicas=37, batch_size=16)
    large = _run(replicas=64, batch_size=16)
    np.testing.assert_array_equal(small["mean"], large["mean"][:37])


def test_running_moments_match_the_trajectories():
    traj = _run(replicas=100, batch_size=16)
    moments = _run(replicas=100, batch_size=16, reduce=True)
    assert moments.count == 100
    np.testing.assert_allclose(moments.mean["var"], traj["var"].mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.se["var"], traj["var"].std(0, ddof=1) / 10, rtol=1e-10)


def test_no_recompilation_for_a_new_seed_or_replica_count():
    compiles = []
    _run(key=0, replicas=20, batch_size=8)  # warm: compiles once
    key = jax.random.key(5)
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.append(event)
        if event == "/jax/core/compile/backend_compile_duration" else None)
    before = loop.compile_count()
    plan = sims.make_plan("accumulate", n=10, m=7, generations=5)
    for replicas in (3, 20, 41):
        sims.run(key, gaussian(1, True), TRUTH, plan, mean_var_metric, replicas=replicas,
                 batch_size=8)
    assert compiles == [] and loop.compile_count() == before


def test_one_device_and_four_devices_give_identical_results(tmp_path):
    same_on_devices("""
        import jax.numpy as jnp
        import sims
        from sims.models import GaussianParams, gaussian
        def metric(key, gen, truth):
            return {"var": gen.params.cov[0, 0], "mean": gen.params.mean[0]}
        plan = sims.make_plan("fresh", n=10, m=7, generations=6)
        out = sims.run(jax.random.key(3), gaussian(1, True), GaussianParams(jnp.zeros(1),
                       jnp.eye(1)), plan, metric, replicas=37, batch_size=8)
        save("var", out["var"]); save("mean", out["mean"])
    """, tmp_path)


def test_nonfinite_values_name_the_generation():
    def exploding(key, gen, truth):
        return {"x": jnp.where(gen.index >= 3, jnp.nan, 1.0)}
    plan = sims.make_plan("synthetic", n=10, generations=5)
    with pytest.raises(sims.NonFiniteError, match="generation 3"):
        sims.run(jax.random.key(0), gaussian(1), TRUTH, plan, exploding, replicas=4, batch_size=4)


def test_nonfinite_return_hands_back_the_nans_and_diverged_marks_them_from_then_on():
    def exploding(key, gen, truth):   # replica-dependent: the metric's mean moves per replica
        return {"x": jnp.where((gen.index >= 3) & (gen.params.mean[0] > 0), jnp.nan, 1.0),
                "y": gen.params.mean[0]}
    plan = sims.make_plan("synthetic", n=10, generations=5)
    args = (jax.random.key(0), gaussian(1), TRUTH, plan, exploding)
    out = sims.run(*args, replicas=8, batch_size=4, nonfinite="return")
    bad = ~np.isfinite(out["x"])
    assert bad.any() and not bad[:, :3].any() and np.isfinite(out["y"]).all()
    gone = sims.diverged(out)
    first = np.argmax(bad, axis=1)
    expected = bad.any(1)[:, None] & (np.arange(5) >= np.where(bad.any(1), first, 5)[:, None])
    np.testing.assert_array_equal(gone, expected)   # cumulative from the first NaN
    with pytest.raises(sims.NonFiniteError, match="generation 3"):
        sims.diverged(out, settled=4)            # a NaN in the first settled generations: error
    with pytest.raises(sims.NonFiniteError):
        sims.run(*args, replicas=8, batch_size=4)   # the default still raises
    with pytest.raises(ValueError, match="nonfinite"):
        sims.run(*args, replicas=8, batch_size=4, nonfinite="ignore")
    with pytest.raises(ValueError, match="reduce"):
        sims.run(*args, replicas=8, batch_size=4, nonfinite="return", reduce=True)


def test_impossible_memory_requests_fail_early_with_a_suggestion():
    plan = sims.make_plan("synthetic", n=10, generations=5)
    with pytest.raises(MemoryError, match="reduce=True"):
        sims.run(jax.random.key(0), gaussian(1), TRUTH, plan, mean_var_metric,
                 replicas=2 ** 32, batch_size=4)  # the most replicas allowed


def test_bad_driver_arguments():
    with pytest.raises(ValueError, match="replicas must be an integer >= 1"):
        _run(replicas=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        _run(batch_size=-2)


# --- sizes are data -------------------------------------------------------------------

def test_one_compiled_loop_serves_every_m_and_lam_of_a_capacity():
    model = gaussian(1, True)
    plans = [sims.make_plan("reuse", n=10, m=m, generations=4, capacity=32) for m in (3, 17)]
    plans += [sims.make_plan("reuse", n=10, lam=0.4, generations=4, capacity=32),
              sims.make_plan("reuse", n=10, m=[32, 0, 5], generations=4, capacity=32)]
    sims.run(jax.random.key(0), model, TRUTH, plans[0], mean_var_metric, replicas=8, batch_size=8)
    before = loop.compile_count()
    outs = [sims.run(jax.random.key(0), model, TRUTH, plan, mean_var_metric, replicas=8,
                     batch_size=8)["var"] for plan in plans]
    assert loop.compile_count() == before
    assert not np.allclose(outs[0][:, 1:], outs[1][:, 1:])  # m really changes the loop
    np.testing.assert_array_equal(outs[0][:, 0], outs[1][:, 0])  # G_0 sees real data only
    # A different capacity is a different layout: a new compilation.
    sims.run(jax.random.key(0), model, TRUTH, sims.make_plan("reuse", n=10, m=3, generations=4),
             mean_var_metric, replicas=8, batch_size=8)
    assert loop.compile_count() == before + 1


@pytest.mark.parametrize("scheme", schemes.SCHEMES)
def test_results_do_not_depend_on_the_capacity(scheme):
    """Same random numbers (prefix draws); the fits agree to rounding."""
    m = None if scheme == "synthetic" else [7, 2, 7, 5]
    outs = [sims.run(jax.random.key(2), gaussian(1, True), TRUTH,
                     sims.make_plan(scheme, n=10, m=m, generations=5, capacity=capacity),
                     mean_var_metric, replicas=16, batch_size=16)
            for capacity in (None, 13, 64)]
    for out in outs[1:]:
        np.testing.assert_allclose(out["var"], outs[0]["var"], rtol=1e-12)
        np.testing.assert_allclose(out["mean"], outs[0]["mean"], rtol=1e-12, atol=1e-15)


def test_capacity_is_checked():
    with pytest.raises(ValueError, match="capacity must be an integer >= max\\(m\\) = 7"):
        schemes.make_plan("reuse", n=10, m=[7, 2], generations=3, capacity=5)
    with pytest.raises(ValueError, match="capacity must be an integer >= 0"):
        schemes.make_plan("reuse", n=10, m=0, generations=3, capacity=-1)
    assert schemes.make_plan("reuse", n=10, m=[7, 2], generations=3).block == 7
    plan = schemes.make_plan("accumulate", n=2, m=3, generations=4, capacity=5)
    assert plan.block == 5 and plan.buffer_size == 2 + 5 * 3
    assert plan.layout == schemes.make_plan("accumulate", n=2, m=[5, 0, 1], generations=4,
                                            capacity=5).layout


def test_coupled_loops_share_a_compilation_across_m_too():
    from sims.coupled import run_coupled
    from sims.models import mean_estimation

    def gap(key, gen, gen_prime, truth):
        return {"gap": jnp.abs(gen.params - gen_prime.params)}

    model = mean_estimation("uniform", 1.0)
    runs = []
    for m in (2, 9, 9):
        plan = sims.make_plan("reuse", n=5, m=m, generations=3, capacity=9)
        runs.append(run_coupled(jax.random.key(1), model, jnp.asarray(0.0), plan, gap,
                                replaced_index=0, replicas=4, batch_size=4, reduce=False)["gap"])
        if m == 2:
            before = loop.compile_count()
    assert loop.compile_count() == before
    np.testing.assert_array_equal(runs[1], runs[2])
    assert not np.array_equal(runs[0][:, 1:], runs[1][:, 1:])


def test_moments_of_trajectories_are_what_the_reducing_driver_returns():
    plan = sims.make_plan("fresh", n=10, m=7, generations=4)
    args = (jax.random.key(5), gaussian(1, True), TRUTH, plan, mean_var_metric)
    reduced = sims.run(*args, replicas=21, batch_size=8, reduce=True)
    stacked = sims.run(*args, replicas=21, batch_size=8)
    of = loop.Moments.of(stacked)
    assert of.count == reduced.count == 21
    for q in reduced.mean:
        np.testing.assert_allclose(of.mean[q], reduced.mean[q], rtol=1e-12)
        np.testing.assert_allclose(of.se[q], reduced.se[q], rtol=1e-10)


def test_chunk_progress_shows_a_bar_over_chunks_only_where_asked(capsys):
    """A ``--full`` point can be one ``run_replicas`` call of many chunks: under
    ``chunk_progress`` it shows a bar over them; elsewhere, and for one chunk, nothing."""
    def replica(key, truth):
        return {"x": jax.random.normal(key, (1,)) + truth}

    def run(**kwargs):
        return loop.run_replicas(jax.random.key(0), replica, ("progress-test",), jnp.float64(0.0),
                                 replicas=4, description="progress-test", **kwargs)

    quiet = run(batch_size=1)
    assert "progress-test" not in capsys.readouterr().err
    with loop.chunk_progress():
        shown = run(batch_size=1)
        assert "progress-test" in capsys.readouterr().err
        run(batch_size=4)                                   # one chunk: no bar
        assert "progress-test" not in capsys.readouterr().err
        run(batch_size=1, progress=False)                   # the caller's word wins
        assert "progress-test" not in capsys.readouterr().err
    np.testing.assert_array_equal(quiet["x"], shown["x"])
