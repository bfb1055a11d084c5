"""A small claim with several grid points, for the resume and fault tests.

Run as a script it registers the claim and runs ``verify.all`` with the given
arguments. ``STL_TOY_SIGNAL=INT|KILL`` and ``STL_TOY_AT=k`` make the process send
itself that signal when it reaches grid point ``k``: an interruption midway,
at a known place. ``STL_TOY_FAIL_AT=k`` makes point ``k`` raise instead.
"""
import os
import signal
import sys

import jax.numpy as jnp
import numpy as np

import sims
from sims.models import GaussianParams, gaussian
from verify.claim import Claim, Measured, Theory

ID = "TOY-sweep"
POINTS = 4
N = 5


def _variance(key, gen, truth):
    return {"var": gen.params.cov[0, 0]}


def measure(key, point):
    index = point["k"]
    if os.environ.get("STL_TOY_AT") == str(index):
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ["STL_TOY_SIGNAL"]))
    if os.environ.get("STL_TOY_FAIL_AT") == str(index):
        raise RuntimeError(f"deliberate failure at k={index}")
    plan = sims.make_plan("synthetic", n=N, generations=3)  # one compiled loop for every point
    truth = GaussianParams(jnp.zeros(1), point["variance"] * jnp.eye(1))
    moments = sims.run(key, gaussian(1), truth, plan, _variance, replicas=64, batch_size=64,
                       reduce=True)
    return {"var": Measured(np.arange(3), moments.mean["var"], moments.se["var"], moments.count)}


def theory(point):
    shrink = ((N - 1) / N) ** np.arange(1, 4)
    return {"var": Theory("exact", point["variance"] * shrink, "MLE shrinkage")}


CLAIM = Claim(ID, "toy: MLE variance shrinks by (n-1)/n per fit",
              lambda mode: [{"k": k, "variance": 1.0 + k} for k in range(POINTS)], measure, theory)


if __name__ == "__main__":
    from verify.claim import register
    from verify import all as verify_all

    register(CLAIM)
    sys.exit(verify_all.main(sys.argv[1:]))
