"""Run a snippet on 1 and on 4 forced host devices and compare what it saves.

Each family of simulations has a test that calls ``same_on_devices``: the snippet
computes per-replica values with its loop and ``save(name, array)``s them; the values
must agree across device counts (``exact``), or to ``rtol`` where a reduction's order
may change the last bits. A fresh process per device count, since XLA reads the
device count once.
"""
import pathlib
import subprocess
import sys
import textwrap

import numpy as np

from verify import CPU_RUNTIME_FLAGS

ROOT = pathlib.Path(__file__).resolve().parents[1]
_PRELUDE = """
import sys, jax, numpy as np
import verify; verify.enable_float64()  # as the CLI does
from verify.cache import enable_compilation_cache
enable_compilation_cache()  # each device count's programs compile once per machine
_saved = {}
def save(name, value):
    _saved[name] = np.asarray(value)
"""
_EPILOGUE = """
assert len(jax.devices()) == int(sys.argv[2]), jax.devices()
np.savez(sys.argv[1], **_saved)
"""


def values_on(devices: int, snippet: str, tmp_path, timeout: float = 600) -> dict:
    """What ``snippet`` saved, run in a fresh process with ``devices`` CPU devices."""
    path = pathlib.Path(tmp_path) / f"devices{devices}.npz"
    script = _PRELUDE + textwrap.dedent(snippet) + _EPILOGUE
    env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {CPU_RUNTIME_FLAGS}",
           "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", script, str(path), str(devices)], check=True,
                   cwd=ROOT, env=env, timeout=timeout)
    with np.load(path) as saved:
        return dict(saved)


def same_on_devices(snippet: str, tmp_path, *, rtol: float = 0.0, devices=(1, 4)) -> dict:
    """Assert ``snippet`` saves the same per-replica values on each device count."""
    first, *others = [values_on(d, snippet, tmp_path) for d in devices]
    assert first, "the snippet saved nothing: call save(name, per_replica_values)"
    for other in others:
        assert first.keys() == other.keys()
        for name in first:
            assert np.all(np.isfinite(first[name])), name
            if rtol == 0.0:
                np.testing.assert_array_equal(first[name], other[name], err_msg=name)
            else:
                np.testing.assert_allclose(first[name], other[name], rtol=rtol, err_msg=name)
    return first
