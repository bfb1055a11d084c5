"""``verify.plant`` replaces a bounds function everywhere it is held, and restores it."""
import sys
import types

import pytest

from bounds import peers
from verify import plant


def test_planted_scales_float_outputs_wherever_the_function_is_held():
    holder = types.ModuleType("holder_of_c4")  # like ``from bounds.peers import c4``
    holder.c4 = peers.c4
    sys.modules[holder.__name__] = holder
    try:
        clean = float(peers.c4(5))
        with plant.planted("bounds.peers.c4", 1.1) as counter:
            assert float(peers.c4(5)) == pytest.approx(1.1 * clean, rel=1e-12)
            assert float(holder.c4(5)) == pytest.approx(1.1 * clean, rel=1e-12)
        assert counter["calls"] == 2
        assert float(peers.c4(5)) == clean and holder.c4 is peers.c4
    finally:
        del sys.modules[holder.__name__]


def test_plant_refuses_names_outside_bounds():
    with pytest.raises(ValueError, match="bounds function"):
        with plant.planted("verify.stats.normal_sf", 1.1):
            pass
    with pytest.raises(ValueError, match="no function"):
        with plant.planted("bounds.peers.no_such_thing", 1.1):
            pass
