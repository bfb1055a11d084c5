"""Every claim family's Monte Carlo gives the same per-replica values on 1 and 4 devices.

Each snippet runs in a fresh process per device count (``forced_devices``). It wraps the
engine's one driver, ``sims.loop.run_replicas``, so that every call records its
per-replica output (and returns what the caller asked for), then runs each claim's own
``measure`` at its first quick grid point with at most ``REPLICAS`` replicas. Two things
are checked at once: the per-replica values agree bit for bit across device counts, and
every claim's Monte Carlo went through the driver (a claim that ran a hand-written
``jit(vmap)`` would record nothing and fail here).
"""
import subprocess

import pytest

from forced_devices import same_on_devices, values_on

# The wrapper: small replica counts and chunks (neither changes a replica's values:
# replica r's key is fold_in(key, r) whatever the chunk or device), every output recorded.
_RECORDER = """
import verify.claims  # noqa: F401  (registers the built-in claims)
from sims import coupled, loop, sweeps
from verify import claim as claim_lib

REPLICAS = 9
_driver = loop.run_replicas
_calls = []

def recording(key, fn, static, truth, *, replicas, batch_size=256, reduce=False, **kw):
    out = _driver(key, fn, static, truth, replicas=min(replicas, REPLICAS),
                  batch_size=min(batch_size, 4), reduce=False, **kw)
    _calls.append(out)
    return loop.Moments.of(out) if reduce else out

for module in (loop, coupled, sweeps):
    module.run_replicas = recording

def check(*claim_ids):
    for claim_id in claim_ids:
        claim = claim_lib.REGISTRY[claim_id]
        point = dict(claim.grid("quick")[0])
        start = len(_calls)
        claim.measure(claim_lib.claim_key(0, claim_id, 0), point)
        assert len(_calls) > start, f"{claim_id} ran no Monte Carlo through run_replicas"
        for k, out in enumerate(_calls[start:]):
            for path, leaf in jax.tree_util.tree_leaves_with_path(out):
                save(f"{claim_id}.{k}{jax.tree_util.keystr(path)}", leaf)
"""

# (snippet, rtol): rtol 0 is bit for bit. Fits and metrics that reduce over the training
# buffer (paper A's weighted means, OLS's normal equations) may be reduced in another order
# by the 4-device program: the issue allows the last bits to differ (measured: <= 6e-15
# relative); the KDE loops and sweeps agree bit for bit.
FAMILIES = {
    "peers": ("check('P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P8')", 1e-12),
    "paper_a": ("check('A1', 'A2-gamma', 'A3-mean', 'A3-categorical', 'A3-ridge', 'A5')", 1e-12),
    "paper_b": ("check('B1-synthetic', 'B1-reuse', 'B1-fresh', 'B1-accumulate', 'B3', "
                "'B4-density', 'B4-propagation')", 0.0),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_claim_families_give_the_same_replicas_on_1_and_4_devices(family, tmp_path):
    snippet, rtol = FAMILIES[family]
    assert same_on_devices(_RECORDER + snippet, tmp_path, rtol=rtol)


def test_a_claim_whose_monte_carlo_bypasses_the_driver_is_caught(tmp_path):
    """The recorder's check can fail: a claim with its own ``jit(vmap)`` records nothing."""
    rogue = """
import jax.numpy as jnp
from verify.claim import Claim, Measured, register

def rogue_measure(key, point):
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(9, dtype=jnp.uint32))
    draws = jax.jit(jax.vmap(lambda k: jax.random.normal(k, (3,))))(keys)
    return {"x": Measured(np.arange(3), draws.mean(0), draws.std(0), 9)}

register(Claim("ROGUE", "own driver", lambda mode: [{}], rogue_measure, lambda point: {}))
check('ROGUE')
"""
    with pytest.raises(subprocess.CalledProcessError):
        values_on(1, _RECORDER + rogue, tmp_path)
