"""The negative-control convention: a claim's parts are swapped from outside."""
import dataclasses

import numpy as np
import pytest

from verify import claim as claim_lib


@dataclasses.dataclass(frozen=True)
class _Measure:
    shift: float = 0.0

    def __call__(self, key, point):
        x = np.arange(3.0)
        return {"q": claim_lib.Measured(x, x + self.shift, np.full(3, 0.01), 100)}


@dataclasses.dataclass(frozen=True)
class _Theory:
    scale: float = 1.0

    def __call__(self, point):
        return {"q": claim_lib.Theory("exact", self.scale * np.arange(3.0))}


CLAIM = claim_lib.Claim("X-control", "toy", lambda mode: [{}], _Measure(), _Theory())


def test_parts_are_the_fields_of_measure_and_theory():
    assert claim_lib.parts(CLAIM) == {"shift": 0.0, "scale": 1.0}


def test_the_production_claim_passes_and_each_swapped_part_fails():
    assert claim_lib.evaluate(CLAIM, "quick")["status"] == "pass"
    for swap in ({"shift": 0.5}, {"scale": 1.1}):
        control = claim_lib.control(CLAIM, **swap)
        assert control.id == CLAIM.id and control.grid is CLAIM.grid
        assert claim_lib.evaluate(control, "quick")["status"] == "fail", swap
    assert claim_lib.parts(CLAIM) == {"shift": 0.0, "scale": 1.0}  # the original is untouched


def test_unknown_or_missing_parts_are_clear_errors():
    with pytest.raises(ValueError, match=r"no part 'model'.*its parts: scale, shift"):
        claim_lib.control(CLAIM, model=None)
    with pytest.raises(ValueError, match="at least one part"):
        claim_lib.control(CLAIM)
    plain = claim_lib.Claim("X-plain", "toy", lambda mode: [{}], lambda k, p: {}, lambda p: {})
    with pytest.raises(ValueError, match="its parts: none"):
        claim_lib.control(plain, scale=2.0)
