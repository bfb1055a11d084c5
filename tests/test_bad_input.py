"""Bad input never reaches JAX's internals: one clear error naming the parameter.

Each row calls a public function of ``bounds`` or ``sims`` (or the CLI) with one
bad argument and states which parameter the error must name. A row passes only if
the error is a ``ValueError``/``TypeError`` raised by our own code (the innermost
frame of its traceback is outside the ``jax`` package), and names the parameter.
CLI rows must exit 2 with a one-line message and leave no file behind.
"""
import dataclasses
import errno
import functools
import math
import os
import shutil
import subprocess
import sys
import traceback

import jax
import jax.numpy as jnp
import matplotlib.figure
import numpy as np
import pytest

import sims
from bounds import kde as bkde, peers, stability, tv
from bounds.models import categorical as categorical_bounds
from bounds.models import mean_estimation as mean_bounds
from bounds.models import ridge as ridge_bounds
from sims import coupled, metrics, sweeps
from sims.models import (GaussianParams, Mixture, categorical, gaussian, kde, ols_fixed_design,
                         ridge_pool)
from sims.models import diffusion as rf_diffusion
from verify import all as verify_all, figures
from verify.claim import REGISTRY, evaluate
from verify.store import PointStore

from conftest import ROOT

KEY = jax.random.key(0)
NAN, INF = math.nan, math.inf
PLAN = sims.make_plan("synthetic", n=5, generations=3)
TRUTH1 = GaussianParams(jnp.zeros(1), jnp.eye(1))
MIXTURE = Mixture(jnp.zeros(1), jnp.ones(1), jnp.ones(1))
GRID = metrics.make_grid(-8.0, 8.0, 64)


def _var(key, gen, truth):
    return {"v": gen.params.cov[0, 0]}


def _pair(key, gen, gen_prime, truth):
    return {"d": gen.params.mean[0] - gen_prime.params.mean[0]}


def run(**overrides):
    """``sims.run`` of a tiny Gaussian loop with one argument replaced."""
    args = dict(key=KEY, model=gaussian(1), truth=TRUTH1, plan=PLAN, metric=_var, replicas=4,
                batch_size=4, reduce=True)
    args.update(overrides)
    return sims.run(args.pop("key"), args.pop("model"), args.pop("truth"), args.pop("plan"),
                    args.pop("metric"), **args)


P = functools.partial
# (case name, call, the parameter the message must name)
CASES = [
    # bounds.peers
    ("peers: negative generation g", P(peers.mle_variance_chain, -1, 10), "g"),
    ("peers: sample size M = 0", P(peers.mle_variance_chain, 3, 0), "M"),
    ("peers: non-integer M", P(peers.mle_variance_chain, 3, 2.5), "M"),
    ("peers: NaN sigma0_sq", P(peers.mle_variance_chain, 3, 10, NAN), "sigma0_sq"),
    ("peers: c4 needs M >= 2", P(peers.c4, 1), "M"),
    ("peers: negative sigma", P(peers.ols_replace_error, 3, -1.0, 0.5), "sigma"),
    ("peers: OLS rows T < d + 2", P(peers.gaussian_design_trace, 3, 5), "T"),
    ("peers: n = 0 symbols drawn", P(peers.categorical_collision_chain, 3, 0, 0.5), "n"),
    ("peers: collision0 > 1", P(peers.categorical_collision_chain, 3, 10, 1.5), "collision0"),
    ("peers: lam > 1", P(peers.kde_excess_variance, 2, 1.5, 0.1), "lam"),
    ("peers: bandwidth h = 0", P(peers.kde_excess_variance, 2, 0.5, 0.0), "h"),
    ("peers: empty sizes", P(peers.w2_squared_unbiased_chain, []), "sizes"),
    ("peers: Inf in sizes", P(peers.w2_squared_unbiased_chain, [10, INF]), "sizes"),
    # bounds.tv
    ("tv: Inf in eps", P(tv.tv_recursion_bound, jnp.array([0.1, INF]), 0.5), "eps"),
    ("tv: lam < 0", P(tv.tv_recursion_bound, jnp.array([0.1, 0.2]), -0.1), "lam"),
    ("tv: negative kl", P(tv.pinsker_tv_bound, -1.0), "kl"),
    ("tv: n = 0", P(tv.accumulate_sizes, 0, 3), "n"),
    ("tv: NaN alpha", P(tv.eps_rate, 100, 1.0, NAN), "alpha"),
    ("tv: string alpha", P(tv.eps_rate, 100, 1.0, "0.4"), "alpha"),
    ("tv: threshold with n = 0", P(tv.threshold_m_star, 0, 0.4, 3), "n"),
    ("tv: negative m", P(tv.phase_transition_bound, -1.0, 100, 1.0, 0.4, 3), "m"),
    # bounds.stability
    ("stability: zero generations", P(stability.recursive_stability_bound, 0.1, 3, 0),
     "generations"),
    ("stability: Inf eps_N", P(stability.recursive_stability_bound, INF, 3, 5), "eps_N"),
    ("stability: lam = 2", P(stability.stability_contraction, 1.0, 2.0), "lam"),
    ("stability: scale = 0", P(mean_bounds.gaussian_shift_tv, 1.0, 0.0), "scale"),
    ("stability: n = 0", P(mean_bounds.mean_estimation_exact_variance, 1.0, 0, 1, 2), "n"),
    ("stability: probs not summing to 1", P(categorical_bounds.categorical_loop_mse, [0.5, 0.6], 10, 5,
                                            2), "probs"),
    ("stability: probs of the wrong shape", P(categorical_bounds.categorical_loop_mse, [[0.5, 0.5]], 10,
                                              5, 2), "probs"),
    ("stability: rho = 0", P(ridge_bounds.ridge_loss_bound, 1.0, 1.0, 0.0), "rho"),
    # bounds.kde
    ("kde: p0_weight shape differs from p0_loc",
     P(bkde.expected_density, jnp.zeros(3), jnp.array([0.0, 1.0]), jnp.array([1.0]), 1.0, 0.5,
       0.1), "p0_weight"),
    ("kde: N = 0", P(bkde.kde_bandwidth, 0), "N"),
    ("kde: non-integer generation", P(bkde.constant_lam_components, 0.5, 0.1, 1.5),
     "generation"),
    ("kde: lam of dtype str", P(bkde.bias_amplification_factor, "0.5", 2), "lam"),
    # sims: plans, models, grids
    ("make_plan: unknown scheme", P(sims.make_plan, "bogus", n=5, generations=3), "scheme"),
    ("make_plan: n = 0", P(sims.make_plan, "reuse", n=0, generations=3, m=2), "n"),
    ("make_plan: non-integer n", P(sims.make_plan, "reuse", n=5.0, generations=3, m=2), "n"),
    ("make_plan: lam = 1.5", P(sims.make_plan, "reuse", n=5, generations=3, lam=1.5), "lam"),
    ("make_plan: one m for two generations", P(sims.make_plan, "reuse", n=5, generations=3,
                                               m=[1]), "m"),
    ("make_plan: NaN lam", P(sims.make_plan, "fresh", n=5, generations=3, lam=NAN), "lam"),
    ("make_plan: lam so small that m overflows",
     P(sims.make_plan, "reuse", n=5, generations=3, lam=1e-12), "lam"),
    ("make_plan: subnormal lam (m = inf)",
     P(sims.make_plan, "fresh", n=5, generations=3, lam=5e-324), "lam"),
    ("make_plan: m beyond 32-bit indices", P(sims.make_plan, "reuse", n=5, generations=3,
                                             m=2**31), "m"),
    ("make_plan: accumulated set beyond 32-bit indices",
     P(sims.make_plan, "accumulate", n=5, generations=5, m=2**30), "m"),
    ("make_plan: 2**40 generations", P(sims.make_plan, "reuse", n=5, generations=2**40, m=1),
     "generations"),
    ("make_plan: NaN capacity", P(sims.make_plan, "reuse", n=5, generations=3, m=2,
                                  capacity=NAN), "capacity"),
    ("make_plan: negative m", P(sims.make_plan, "reuse", n=5, generations=3, m=-1), "m"),
    ("gaussian: dim = 0", P(gaussian, 0), "dim"),
    ("categorical: one symbol", P(categorical, 1), "num_symbols"),
    ("kde: negative bandwidth", P(kde, -1.0), "bandwidth"),
    ("ols: design with fewer rows than columns", P(ols_fixed_design, np.ones((2, 5)), 1.0), "T"),
    ("ridge_pool: size = 0", P(ridge_pool, 0, 3), "size"),
    ("make_grid: size = 0", P(metrics.make_grid, -1.0, 1.0, 0), "size"),
    ("make_grid: lo > hi", P(metrics.make_grid, 1.0, -1.0, 16), "lo"),
    ("kde_one_generation_tv: empty sizes",
     P(sweeps.kde_one_generation_tv, KEY, MIXTURE, [], 0.3, "fixed", GRID, replicas=4), "sizes"),
    ("kde_one_generation_tv: non-integer size",
     P(sweeps.kde_one_generation_tv, KEY, MIXTURE, [10, 2.5], 0.3, "fixed", GRID, replicas=4),
     "sizes"),
    ("kde_reuse_tv_sweep: empty m_grid",
     P(sweeps.kde_reuse_tv_sweep, KEY, MIXTURE, n=10, m_grid=[], generations=2, bandwidth=0.3,
       rule="fixed", grid=GRID, replicas=4), "m_grid"),
    # sims.models.diffusion (random-feature score diffusion, B2)
    ("diffusion: width W = 0", P(rf_diffusion.diffusion, 0, 1.0), "width"),
    ("diffusion: non-integer width", P(rf_diffusion.diffusion, 8.5, 1.0), "width"),
    ("diffusion: training time tau = 0", P(rf_diffusion.diffusion, 8, 0.0), "tau"),
    ("diffusion: NaN tau", P(rf_diffusion.diffusion, 8, NAN), "tau"),
    ("diffusion: horizon T < 0", P(rf_diffusion.diffusion, 8, 1.0, horizon=-1.0), "T"),
    ("diffusion: steps = 0", P(rf_diffusion.diffusion, 8, 1.0, steps=0), "steps"),
    ("diffusion: dim = 3", P(rf_diffusion.diffusion, 8, 1.0, dim=3), "dim"),
    ("diffusion: draws = 0", P(rf_diffusion.diffusion, 8, 1.0, draws=0), "draws"),
    ("diffusion: sampler with steps = 0",
     P(rf_diffusion.sample_sde, KEY, rf_diffusion.random_features(KEY, 4), 10, 4.0, 0), "steps"),
    ("diffusion: grid density in dim 3",
     P(rf_diffusion.sde_density_for_score, lambda x, t: x, jnp.linspace(-1, 1, 16), 4.0, 10,
       dim=3), "dim"),
    # sims.run and run_coupled
    ("run: replicas = 0", P(run, replicas=0), "replicas"),
    ("run: non-integer batch_size", P(run, batch_size=2.5), "batch_size"),
    ("run: truth of the wrong dimension", P(run, model=gaussian(2)), "truth"),
    ("run: truth too large for the model", P(run, truth=GaussianParams(jnp.zeros(2), jnp.eye(2))),
     "truth"),
    ("run: NaN in truth", P(run, truth=GaussianParams(jnp.zeros(1), jnp.full((1, 1), NAN))),
     "truth"),
    ("run: truth of integer dtype", P(run, truth=GaussianParams(jnp.zeros(1, int),
                                                                jnp.eye(1, dtype=int))), "truth"),
    ("run: truth not a parameter value", P(run, truth=(0.0, 1.0)), "truth"),
    ("run: categorical truth of the wrong length",
     P(run, model=categorical(4), truth=jnp.ones(3) / 3), "truth"),
    ("run: an int as key", P(run, key=0), "key"),
    ("run: a batch of keys", P(run, key=jax.random.split(KEY, 2)), "key"),
    ("run: plan not from make_plan", P(run, plan=(5, 3)), "plan"),
    ("run: model not a GenerativeModel", P(run, model=lambda x: x), "model"),
    ("run: metric not a function", P(run, metric=3), "metric"),
    ("run: real_sampler not a function", P(run, real_sampler="gaussian"), "real_sampler"),
    ("run: more replicas than uint32 indices", P(run, replicas=2**33), "replicas"),
    ("run: NaN replicas", P(run, replicas=NAN), "replicas"),
    ("run: Inf in truth", P(run, truth=GaussianParams(jnp.zeros(1), jnp.full((1, 1), INF))),
     "truth"),
    ("gaussian: NaN dim", P(gaussian, NAN), "dim"),
    ("make_grid: NaN lo", P(metrics.make_grid, NAN, 1.0, 16), "lo"),
    ("run_coupled: replaced_index = n", P(coupled.run_coupled, KEY, gaussian(1), TRUTH1, PLAN,
                                          _pair, replaced_index=5, replicas=4), "replaced_index"),
    ("run_coupled: truth of the wrong dimension",
     P(coupled.run_coupled, KEY, gaussian(2), TRUTH1, PLAN, _pair, replaced_index=0, replicas=4),
     "truth"),
]


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_bad_input_gives_one_clear_error(name):
    _, call, parameter = next(c for c in CASES if c[0] == name)
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    innermost = traceback.extract_tb(info.value.__traceback__)[-1].filename
    assert f"{os.sep}jax{os.sep}" not in innermost, f"raised inside JAX: {innermost}: {info.value}"
    message = str(info.value)
    assert parameter in message.replace("(", " ").replace(",", " ").replace("=", " ").split() \
        or message.startswith(f"{parameter} ") or f" {parameter} " in message, message


CLI_CASES = [
    ("unknown claim ID", ["--only", "P99"], "P99"),
    ("empty claim list", ["--only", ","], "--only"),
    ("unknown skipped claim ID", ["--skip", "P99"], "P99"),
    ("empty skip list", ["--skip", ""], "--skip"),
    ("skip leaves nothing", ["--only", "P1", "--skip", "P1"], "--skip"),
    ("negative seed", ["--seed", "-1"], "--seed"),
    ("non-integer seed", ["--seed", "1.5"], "--seed"),
    ("zero jobs", ["--jobs", "0"], "--jobs"),
    ("non-integer jobs", ["--jobs", "two"], "--jobs"),
    ("unwritable output directory", ["--out", "/proc/x"], "--out"),
    ("output path is a file", ["--out", str(ROOT / "README.md")], "--out"),
    ("unwritable figures directory", ["--figures-dir", "/proc/x"], "--figures-dir"),
    ("--quick with --full", ["--quick", "--full"], "--full"),
    ("--fresh with --resume", ["--fresh", "--resume"], "--resume"),
    ("unknown flag", ["--bogus"], "--bogus"),
    ("flag without its value", ["--out"], "--out"),
    # Empty values: an unset shell variable, not "the default"
    ("empty --only", ["--only", ""], "--only"),
    ("blank --only", ["--only", " "], "--only"),
    ("empty --out", ["--out", ""], "--out"),
    ("empty --figures-dir", ["--figures-dir", ""], "--figures-dir"),
    ("unknown --figure-format", ["--figure-format", "jpeg"], "--figure-format"),
    ("empty --figure-format", ["--figure-format", ","], "--figure-format"),
    ("empty --claims", ["--claims", ""], "--claims"),
    ("empty --baseline", ["--baseline", "", "--check-baseline"], "--baseline"),
    # jax.random.key takes a signed 64-bit seed
    ("seed beyond 64 bits", ["--seed", str(2**64)], "--seed"),
    ("seed of 2**63", ["--seed", str(2**63)], "--seed"),
    # --claims that name nothing (a module's own errors are the user's traceback)
    ("--claims: unknown module", ["--claims", "no_such_module_h19"], "--claims"),
    ("--claims: missing file", ["--claims", "/nonexistent/claims.py"], "--claims"),
    ("--claims: a directory", ["--claims", str(ROOT / "tests") + "/"], "--claims"),
    # The baseline is checked before anything is computed
    ("--check-baseline: missing file", ["--check-baseline", "--baseline", "/nonexistent.json"],
     "--check-baseline"),
    ("--check-baseline: corrupt file", ["--check-baseline", "--baseline",
                                         str(ROOT / "README.md")], "--check-baseline"),
    ("--check-baseline: not a baseline", ["--check-baseline", "--baseline",
                                           str(ROOT / "tests" / "bad_baseline.json")],
     "--check-baseline"),
    ("--check-baseline: another seed", ["--check-baseline", "--seed", "1"], "--check-baseline"),
    ("--write-baseline --only: another seed than the file's",
     ["--write-baseline", "--only", "P7", "--seed", "1", "--baseline",
      str(ROOT / "tests" / "empty_baseline.json")], "--write-baseline"),
]


@pytest.mark.parametrize("name", [c[0] for c in CLI_CASES])
def test_bad_cli_usage_exits_2_with_one_line(name, tmp_path, capsys, monkeypatch):
    _, argv, parameter = next(c for c in CLI_CASES if c[0] == name)
    monkeypatch.chdir(tmp_path)  # any file written by mistake would land here
    argv = argv if "--out" in argv else [*argv, "--out", str(tmp_path / "out")]
    assert verify_all.main(["--quick", "--no-compile-cache", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m verify.all: error:"), captured.err
    assert parameter in lines[0] and "Traceback" not in captured.err
    assert captured.out == "" and list(tmp_path.iterdir()) in ([], [tmp_path / "out"])
    assert not any((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True


def test_unknown_claim_lists_the_known_ones(capsys):
    assert verify_all.main(["--only", "P99"]) == 2
    err = capsys.readouterr().err
    assert all(claim_id in err for claim_id in REGISTRY)


@pytest.mark.parametrize("only, expected", [
    ("B1", ["B1-synthetic", "B1-reuse", "B1-fresh", "B1-accumulate"]),
    ("A2", ["A2", "A2-gamma"]),
    ("B3", ["B3", "B3-diffusion"]),
    ("P7,B1-fresh", ["P7", "B1-fresh"]),
    ("P1,P1", ["P1"]),
    ("P1", ["P1"]),  # not P1x: a family is ID-*
])
def test_only_selects_an_exact_id_and_its_family(only, expected):
    assert [c.id for c in verify_all.select(only)] == expected


def test_skip_leaves_out_an_exact_id_and_its_family():
    ids = [c.id for c in verify_all.select(None, "A2,B1,P7")]
    assert set(ids) == set(REGISTRY) - {"A2", "A2-gamma", "P7"} - {
        i for i in REGISTRY if i.startswith("B1-")}
    assert [c.id for c in verify_all.select("P1,P2", "P2")] == ["P1"]


def test_only_selects_the_exact_id_first_then_its_family(monkeypatch):
    monkeypatch.setitem(REGISTRY, "A2", dataclasses.replace(REGISTRY["A2-gamma"], id="A2"))
    assert [c.id for c in verify_all.select("A2")] == ["A2", "A2-gamma"]
    assert [c.id for c in verify_all.select("A2-gamma")] == ["A2-gamma"]


def test_the_cli_error_has_no_traceback_in_a_real_process():
    result = subprocess.run([sys.executable, "-m", "verify.all", "--quick", "--out", "/proc/x"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "python -m verify.all: error: --out /proc/x: not a writable directory "
        "(No such file or directory)"], result.stderr


def test_a_claim_with_an_empty_grid_is_an_error_not_a_pass():
    empty = dataclasses.replace(REGISTRY["P7"], grid=lambda mode: [])
    record = evaluate(empty, "quick", 0)
    assert record["status"] == "error" and "grid('quick') is empty" in record["message"]


def test_there_are_at_least_forty_cases():
    assert len(CASES) + len(CLI_CASES) >= 40


def test_a_raw_prngkey_and_a_typed_key_share_one_process():
    """The compiled-loop cache keys on the key's type: PRNGKey(0) after key(0) runs, and
    both give the same numbers (the same bits)."""
    typed = run(key=jax.random.key(0))
    raw = run(key=jax.random.PRNGKey(0))
    np.testing.assert_array_equal(typed.mean["v"], raw.mean["v"])
    assert run(key=jax.random.key(0)).mean["v"].tolist() == typed.mean["v"].tolist()


def test_a_point_record_copied_from_another_claim_is_reported(tmp_path):
    """A valid record in the wrong place (e.g. copied from P1/0.json to P7/3.json) is
    recomputed with a problem saying so; another seed in the same place is not a problem."""
    store = PointStore(tmp_path)
    identity = {"claim": "P1", "mode": "quick", "seed": 0, "index": 0, "point": {"M": 20}}
    store.put(identity, {"rows": [], "notes": []})
    target = {**identity, "claim": "P7", "index": 3}
    store.path(target).parent.mkdir(parents=True)
    shutil.copy(store.path(identity), store.path(target))
    assert store.get(target) is None
    assert len(store.problems) == 1 and "holds claim 'P1' point 0, not 'P7' point 3" in \
        store.problems[0], store.problems
    assert store.get({**identity, "seed": 1}) is None and len(store.problems) == 1
    assert store.get(identity) == {"rows": [], "notes": []}


def test_a_full_disk_leaves_no_temporary_figure(tmp_path, monkeypatch):
    record = evaluate(REGISTRY["P7"], "quick", 0)

    def full_disk(self, fname, *args, **kwargs):
        if hasattr(fname, "write"):  # figures.save hands savefig an open temporary file
            fname.write(b"\x89PNG partial")  # a partly written file, as on a full disk
        else:
            with open(fname, "wb") as f:
                f.write(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    with pytest.raises(OSError, match="No space left"):
        figures.draw_all([record], tmp_path, REGISTRY)
    assert list(tmp_path.iterdir()) == []
