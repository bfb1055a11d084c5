"""The diffusion family's loops give the same per-replica values on 1 and 4 host devices."""
from forced_devices import same_on_devices


def test_diffusion_sweeps_and_loop_are_the_same_on_one_and_four_devices(tmp_path):
    """Tiny versions of the three quick loops (one-shot sweep, B3's m-sweep, the engine's loop
    with the averaged estimator), 6 replicas in chunks of 2 per device (padding included).
    Measured: 4 devices differ from 1 by at most 2e-15 relative (reduction order), so
    rtol = 1e-12; a replica given another key would differ at O(1)."""
    same_on_devices("""
        import jax.numpy as jnp
        import sims
        from sims import diffusion_sweeps as S, metrics
        from sims.models import diffusion as D
        from sims.models.kde import Mixture, gaussian_mixture_sampler
        truth = Mixture(jnp.asarray([-2.0, 2.0]), jnp.asarray([0.5, 0.5]), jnp.asarray([1.0, 1.0]))
        one = S.oneshot(jax.random.key(1), truth, sizes=(12, 24), taus=(1e2, 1e4), width=8,
                        replicas=6, nodes=4, steps=8, cells=32, with_bound=False, batch_size=2)
        for name in ("tv", "kl"):
            save("oneshot_" + name, one[name])
        model = D.diffusion(8, 50.0, steps=8, estimator="averaged", nodes=4, rule="early")
        b3 = S.b3_loop(jax.random.key(2), truth, model, n=10, m_grid=(0, 10), generations=2,
                       replicas=6, cells=32, steps=8, batch_size=2)
        save("b3_tv", b3["tv"])
        plan = sims.make_plan("reuse", n=10, m=10, generations=3)
        loop = sims.run(jax.random.key(3), S.with_synthetic_shift(model, 1.5), truth, plan,
                        D.diffusion_tv_metric(S.grid(32), 4.0, 8, 4), replicas=6, batch_size=2,
                        real_sampler=gaussian_mixture_sampler)
        save("loop_tv", loop["tv"]); save("loop_disc", loop["disc"])
    """, tmp_path, rtol=1e-12)   # sums over a sharded batch may differ in the last bit
