"""Two processes (2 CPU devices each) give the same numbers as one process with 4 devices."""
import socket
import subprocess
import sys
import textwrap

import numpy as np

from conftest import ROOT

SCRIPT = textwrap.dedent("""
    import sys
    import jax
    if sys.argv[2] != "single":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{sys.argv[3]}",
                                   num_processes=2, process_id=int(sys.argv[2]))
    import verify; verify.enable_float64()  # as the CLI does
    import jax.numpy as jnp, numpy as np, sims
    from sims.models import GaussianParams, gaussian
    def metric(key, gen, truth):
        return {"var": gen.params.cov[0, 0]}
    plan = sims.make_plan("fresh", n=10, m=7, generations=6)
    out = sims.run(jax.random.key(3), gaussian(1, True), GaussianParams(jnp.zeros(1),
                   jnp.eye(1)), plan, metric, replicas=37, batch_size=8)
    assert len(jax.devices()) == 4, jax.devices()
    np.save(sys.argv[1], out["var"])
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_hosts_match_one_host(tmp_path):
    port = str(_free_port())
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path / f"p{i}.npy"), str(i),
                               port], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2"))
             for i in (0, 1)]
    logs = [p.communicate(timeout=240)[0].decode()[-3000:] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "single.npy"), "single", port],
                   cwd=ROOT, check=True, timeout=240,
                   env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    single = np.load(tmp_path / "single.npy")
    assert single.shape == (37, 6)
    for i in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / f"p{i}.npy"), single)
