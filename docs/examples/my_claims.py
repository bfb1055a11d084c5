"""X1: Gaussian MLE under the ``fresh`` scheme (docs/adding_a_claim.md)."""
import jax.numpy as jnp
import numpy as np

import sims
from sims.models import GaussianParams, gaussian
from verify.claim import Claim, Theory, measured, register


def fresh_mle_moments(i, n, m, sigma0_sq):
    """X1 (exact): ``E (mu_i - mu0)^2`` and ``E sigma_i^2`` of the MLE Gaussian, ``fresh`` scheme.

    Assumptions: 1-D ``p0 = N(mu0, sigma0^2)``; ``G_0`` fit on ``n`` real samples, ``G_i``
    (i >= 1) on ``n`` new real samples plus ``m`` samples of ``G_{i-1}``. Proof and the
    formulas: docs/adding_a_claim.md §1.
    """
    fixed = sigma0_sq * (n + m) / ((n + m) ** 2 - m * (m - 1))  # b*, the limit of b_i
    bias_sq = fixed + (m * (m - 1) / (n + m) ** 2) ** np.asarray(i) * (sigma0_sq / n - fixed)
    return bias_sq, sigma0_sq - bias_sq


def _metric(key, gen, truth):  # (key, sims.Generation, truth) -> {name: scalar}
    return {"var": gen.params.cov[0, 0], "bias_sq": (gen.params.mean[0] - truth.mean[0]) ** 2}


def _grid(mode):
    replicas = {"quick": 4096, "default": 16384, "full": 65536}[mode]
    shapes = [(4, 12, 1.0)] + ([(10, 5, 2.0)] if mode != "quick" else [])
    return [dict(n=n, m=m, sigma0_sq=s2, generations=8, replicas=replicas) for n, m, s2 in shapes]


def _measure(key, point):
    plan = sims.make_plan("fresh", n=point["n"], m=point["m"], generations=point["generations"])
    truth = GaussianParams(jnp.zeros(1), point["sigma0_sq"] * jnp.eye(1))
    moments = sims.run(key, gaussian(1), truth, plan, _metric, replicas=point["replicas"],
                       batch_size=min(point["replicas"], 4096), reduce=True)
    i = np.arange(point["generations"])
    return {"E[sigma^2]": measured(moments, "var", i),
            "E[(mu-mu0)^2]": measured(moments, "bias_sq", i)}


def _theory(point):
    bias_sq, var = fresh_mle_moments(np.arange(point["generations"]), point["n"], point["m"],
                                     point["sigma0_sq"])
    return {"E[sigma^2]": Theory("exact", var, "sigma0^2 - b_i"),
            "E[(mu-mu0)^2]": Theory("exact", bias_sq, "b* + r^i (sigma0^2/n - b*)")}


X1 = register(Claim("X1", "Gaussian MLE, fresh scheme: E sigma_i^2 = sigma0^2 - E (mu_i - mu0)^2",
                    _grid, _measure, _theory))
