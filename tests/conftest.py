"""Shared test set-up: float64 everywhere, the persistent compilation cache, measurements
shared across tests, and the repository root."""
import pathlib

import pytest

import verify

verify.configure_cpu_runtime()  # before JAX's backend exists (the XLA:CPU pool hang, docs/engine.md)

from verify.cache import enable_compilation_cache  # noqa: E402
from verify.claim import reuse_measurements  # noqa: E402

verify.enable_float64()  # the library never switches it on by itself (docs/api.md)
enable_compilation_cache()  # a loop compiled by one test session is loaded by the next

ROOT = pathlib.Path(__file__).resolve().parent.parent

_SHARED = reuse_measurements()


def pytest_configure(config):
    config.addinivalue_line("markers", "fresh_measurements: measure again, never reuse "
                            "another test's measurement (determinism, environment-driven faults)")
    _SHARED.__enter__()  # one claim measured once per session: negative controls swap theory


@pytest.fixture(autouse=True)
def _measurements(request):
    """Tests share measurements (``verify.claim.reuse_measurements``) unless marked fresh."""
    if request.node.get_closest_marker("fresh_measurements"):
        with reuse_measurements(False):
            yield
    else:
        yield
