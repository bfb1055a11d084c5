"""``python -m verify.bench --device``: the accelerator table runs on CPU too (tiny sizes).

A benchmark never decides whether a test passes on its numbers; this only checks that every
entry is produced, in float64, with positive finite rates, and that the timed CLI run works.
"""
import json

import numpy as np

from verify import bench

TINY_TRANSFORMER = dict(steps=3, warmup=1, batch=8, train_prompts=64, test_prompts=16,
                        probe_prompts=16, width=8, mlp=8, layers=1)


def test_device_bench_reports_every_loop_on_cpu(tmp_path):
    info = bench.device_bench(replicas=4, generations=2, repeats=1, kde_replicas=2,
                              diffusion_replicas=2, diffusion_generations=2,
                              transformer_replicas=1, transformer_spec=TINY_TRANSFORMER,
                              only="P7", out=str(tmp_path))
    names = [row["loop"].split(" ")[0] for row in info["loops"]]
    assert names == ["gaussian", "OLS", "KDE", "linear", "diffusion"]
    rates = [row["replica_generations_per_second"] for row in info["loops"]]
    assert np.all(np.isfinite(rates)) and min(rates) > 0
    assert info["float64"] and info["transformer"][0]["dtype"] == "float64"
    assert info["transformer"][0]["train_steps_per_second"] > 0
    quick = info["verify_all"]["quick"]
    assert quick["exit_status"] == 0 and "--only P7" in quick["command"], quick
    saved = json.loads((tmp_path / "bench_device.json").read_text())
    assert saved["devices"] and len(saved["loops"]) == 5
