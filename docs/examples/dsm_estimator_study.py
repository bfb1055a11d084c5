"""J fixed DSM draws per point against Li et al.'s averaged loss (docs/diffusion.md §1.1).

One setting: n = 400 points of ½N(−2, 1) + ½N(2, 1), W = 64, T = 4, t_min = 1e-3. Each replica
draws data and a first layer once; every estimator trains that same network (common random
numbers), so differences are the estimator's. Per τ: the score error
``∫_0^T E_{p_t}(s − ∇log p_t)² dt`` (the Girsanov term, bounds.models.diffusion), the one-shot
TV of the 100-step SDE sampler on the 128-cell grid, and the distance to the averaged
estimator's score ``∫ E_{p_t}(s − s_avg)² dt``.

Run: ``PYTHONPATH=. python docs/examples/dsm_estimator_study.py [replicas]`` (about 10 s a replica).
"""
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from bounds.models import diffusion as B
from sims import metrics
from sims.models import diffusion as D
from sims.models.kde import Mixture, sample_mixture
from verify import enable_float64

enable_float64()
LOC, WEIGHT, SCALE = jnp.array([-2.0, 2.0]), jnp.array([0.5, 0.5]), jnp.array([1.0, 1.0])
TRUTH = Mixture(LOC, WEIGHT, SCALE)
N, WIDTH, HORIZON, T_MIN, STEPS = 400, 64, 4.0, 1e-3, 100
TAUS = (1e2, 1e3, 1e4, 1e5, 1e6, 1e7)
GRID = metrics.make_grid(-7.0, 7.0, 128)
NODES = jnp.asarray(metrics.grid_nodes(GRID))
ESTIMATORS = ("J=4", "J=32", "J=256", "avg16", "avg32", "avg64")


def _exact(x, t):
    return B.mixture_score(x, LOC, WEIGHT, SCALE, t)


@jax.jit
def _evaluate(params, reference):
    """Score error, TV and squared score distance to ``reference`` (one readout)."""
    score = lambda x, t: D.score(params, x, t)                                  # noqa: E731
    error = B.girsanov_kl_bound(score, LOC, WEIGHT, SCALE, HORIZON, NODES).score
    shifted = lambda x, t: score(x, t) - D.score(reference, x, t) + _exact(x, t)  # noqa: E731
    distance = B.girsanov_kl_bound(shifted, LOC, WEIGHT, SCALE, HORIZON, NODES).score
    density, _ = D.sde_density_on_grid(params, NODES, HORIZON, STEPS)
    tv, _ = metrics.tv_on_grid(GRID, density, metrics.mixture_density(GRID, TRUTH))
    return error, tv, distance


def replica(seed):
    k_data, k_features, k_draws = jax.random.split(jax.random.key(seed), 3)
    data, weights = sample_mixture(k_data, TRUTH, N), jnp.ones(N)
    params = D.random_features(k_features, WIDTH)
    quads = {}
    for name in ESTIMATORS:
        if name.startswith("J="):
            t, eps = D.dsm_draws(k_draws, N, int(name[2:]), HORIZON, T_MIN)
            quads[name] = D.dsm_quadratic(params, data, weights, t, eps)
        else:
            quads[name] = D.dsm_quadratic_averaged(params, data, weights, HORIZON, T_MIN,
                                                   int(name[3:]))
    out = {}
    for tau in TAUS:
        readouts = {k: D.train_exact(q, tau) for k, q in quads.items()}
        reference = params._replace(readout=readouts["avg64"])
        for name, readout in readouts.items():
            out[name, tau] = np.array(_evaluate(params._replace(readout=readout), reference))
    return out


def main(replicas=4):
    start = time.time()
    runs = [replica(seed) for seed in range(replicas)]
    print(f"n={N} W={WIDTH} T={HORIZON} t_min={T_MIN}, {replicas} replicas "
          f"({time.time() - start:.0f} s); mean (SE) over replicas")
    for col, label in enumerate(("score error", "TV", "distance to avg64")):
        print(f"\n{label}: " + "  ".join(f"tau=1e{int(np.log10(t))}" for t in TAUS))
        for name in ESTIMATORS:
            cells = []
            for tau in TAUS:
                v = np.array([r[name, tau][col] for r in runs])
                cells.append(f"{v.mean():.3g} ({v.std(ddof=1) / np.sqrt(len(v)):.2g})")
            print(f"{name:6s} " + "  ".join(cells))
    print("\nbest tau (TV) per replica:")
    for name in ESTIMATORS:
        best = [TAUS[int(np.argmin([r[name, t][1] for t in TAUS]))] for r in runs]
        tvs = [min(r[name, t][1] for t in TAUS) for r in runs]
        print(f"{name:6s} taus {[f'{b:g}' for b in best]}  best TV {np.mean(tvs):.4f} "
              f"({np.std(tvs, ddof=1) / np.sqrt(len(tvs)):.4f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4)
