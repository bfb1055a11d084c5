"""The worked example of docs/adding_a_claim.md runs, passes, and its negative controls fail.

The example lives in ``docs/examples/my_claims.py`` and registers claim ``X1`` when
imported, as a researcher's module would. Here it is imported under a private module
name with a private registry, so the global ``REGISTRY`` that other tests (and the
committed baseline) see never contains ``X1``.
"""
import dataclasses
import functools
import importlib.util
import re

import numpy as np
import pytest

import verify.claim
from verify.claim import Theory, evaluate, measured

from conftest import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "my_claims.py"
DOC = ROOT / "docs" / "adding_a_claim.md"


@functools.lru_cache(maxsize=None)
def example():
    """The example module, imported once with ``register`` writing to a throwaway registry."""
    saved = verify.claim.REGISTRY
    verify.claim.REGISTRY = {k: v for k, v in saved.items() if k != "X1"}
    try:
        spec = importlib.util.spec_from_file_location("_stl_docs_example_my_claims", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        verify.claim.REGISTRY = saved
    if saved.get("X1") is getattr(module, "X1", None):  # a registry that ignored the swap
        del saved["X1"]
    return module


@functools.lru_cache(maxsize=None)
def quick(**overrides):
    claim = example().X1
    if overrides:
        claim = dataclasses.replace(claim, **overrides)
    return evaluate(claim, "quick", seed=0)


def naive_theory(point):
    """Wrong on purpose: "fresh real data, so nothing compounds": E sigma_i^2 = (N-1)/N sigma0^2."""
    n, m, generations = point["n"], point["m"], point["generations"]
    shrink = np.where(np.arange(generations) == 0, (n - 1) / n, (n + m - 1) / (n + m))
    return {"E[sigma^2]": Theory("exact", shrink * point["sigma0_sq"], "(N-1)/N sigma0^2")}


def reuse_measure(key, point):
    """A broken simulator: the same loop under ``reuse`` (S0 kept) instead of ``fresh``."""
    import jax.numpy as jnp

    import sims
    from sims.models import GaussianParams, gaussian

    plan = sims.make_plan("reuse", n=point["n"], m=point["m"], generations=point["generations"])
    truth = GaussianParams(jnp.zeros(1), point["sigma0_sq"] * jnp.eye(1))
    moments = sims.run(key, gaussian(1), truth, plan, example()._metric,
                       replicas=point["replicas"], batch_size=min(point["replicas"], 4096),
                       reduce=True)
    i = np.arange(point["generations"])
    return {"E[sigma^2]": measured(moments, "var", i),
            "E[(mu-mu0)^2]": measured(moments, "bias_sq", i)}


def test_example_is_short_and_quoted_verbatim_by_the_doc():
    source = EXAMPLE.read_text()
    assert len(source.splitlines()) <= 50, "the doc promises a claim in at most 50 lines"
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert source in blocks, "docs/adding_a_claim.md must quote docs/examples/my_claims.py as is"


def test_example_does_not_touch_the_global_registry():
    example()
    assert "X1" not in verify.claim.REGISTRY


def test_closed_form_matches_its_limits():
    """m = 0 is the one-shot MLE; every generation keeps E[sigma^2 + (mu - mu0)^2] = sigma0^2."""
    fresh = example().fresh_mle_moments
    bias_sq, var = fresh(np.arange(5), 7, 0, 2.0)
    np.testing.assert_allclose(var, 2.0 * 6 / 7)
    np.testing.assert_allclose(bias_sq, 2.0 / 7)
    bias_sq, var = fresh(np.arange(40), 4, 12, 1.0)
    np.testing.assert_allclose(var + bias_sq, 1.0)
    np.testing.assert_allclose(bias_sq[-1], 16 / (256 - 132))  # b* = sigma0^2 N / (N^2 - m(m-1))


def test_example_claim_passes_in_quick_mode():
    record = quick()
    assert record["status"] == "pass", record["message"]
    kinds = {row["kind"] for row in record["rows"]}
    assert kinds == {"exact"}
    assert record["summary"]["evidence_rows"] == 16
    assert not record["summary"]["power"]["weak"]


@pytest.mark.parametrize("control", ["naive theory", "reuse simulator"])
def test_example_negative_controls_fail(control):
    overrides = ({"theory": naive_theory} if control == "naive theory"
                 else {"measure": reuse_measure})
    record = quick(**overrides)
    assert record["status"] == "fail", record["message"]
