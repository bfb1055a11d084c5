"""The public API: exports, precision left alone at import, packaging, and the example of
docs/api.md, executed so that the page cannot rot."""
import re
import subprocess
import sys

import pytest

import bounds
import sims
import verify

from conftest import ROOT


def _python_blocks(path):
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_the_api_page_example_runs():
    blocks = _python_blocks(ROOT / "docs" / "api.md")
    assert len(blocks) >= 3
    namespace = {"__name__": "docs_api"}
    for block in blocks:  # one namespace: the page reads as one notebook
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert namespace["record"]["status"] == "pass"


@pytest.mark.parametrize("package", [bounds, sims, verify])
def test_every_exported_name_exists(package):
    assert package.__all__ and len(set(package.__all__)) == len(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    assert set(package.__all__) <= set(dir(package))


def test_importing_the_library_leaves_jax_settings_alone():
    code = ("import jax, bounds, sims, verify, verify.all, verify.claims, sims.models, "
            "bounds.peers, bounds.tv, bounds.kde, bounds.stability, bounds.models\n"
            "verify.Claim, bounds.peers, sims.metrics\n"
            "assert not jax.config.jax_enable_x64, 'x64 switched on by an import'\n"
            "verify.enable_float64()\n"
            "assert jax.config.jax_enable_x64 and jax.numpy.ones(1).dtype == 'float64'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={"PATH": "/usr/bin:/bin",
                                                         "JAX_PLATFORMS": "cpu",
                                                         "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]


def test_import_verify_is_cheap():
    """``import verify`` (for enable_float64) must not pull in the harness or JAX."""
    code = "import sys, verify; assert 'jax' not in sys.modules and 'verify.claim' not in " \
           "sys.modules, sorted(m for m in sys.modules if m.startswith(('jax', 'verify')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_packaging_declares_the_console_script_and_typed_packages():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["stl-verify"] == "verify.all:main"
    package_data = project["tool"]["setuptools"]["package-data"]
    for package in ("bounds", "sims", "verify"):
        assert (ROOT / package / "py.typed").is_file()
        assert "py.typed" in package_data[package]


def test_public_bounds_functions_carry_informative_type_hints():
    """Every public function of bounds annotates its parameters and return, never with Any."""
    import inspect

    import bounds.models.categorical
    import bounds.models.diffusion
    import bounds.models.linear_attention
    import bounds.models.mean_estimation
    import bounds.models.ridge

    modules = [bounds.peers, bounds.tv, bounds.stability, bounds.kde, bounds.models.diffusion,
               bounds.models.linear_attention, bounds.models.mean_estimation,
               bounds.models.categorical, bounds.models.ridge]
    missing = []
    for module in modules:
        for name in module.__all__:
            function = getattr(module, name)
            if not inspect.isfunction(function):
                continue
            signature = inspect.signature(function)
            hints = [p.annotation for p in signature.parameters.values()]
            hints.append(signature.return_annotation)
            if any(h is inspect.Signature.empty or "Any" in str(h) for h in hints):
                missing.append(f"{module.__name__}.{name}{signature}")
    assert not missing, "\n".join(missing)


def test_cpu_runtime_flags_are_added_once_and_a_users_choice_is_kept(monkeypatch):
    import os
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    verify.configure_cpu_runtime()
    verify.configure_cpu_runtime()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=2",
                                               *verify.CPU_RUNTIME_FLAGS.split()]
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    verify.configure_cpu_runtime()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_cpu_multi_thread_eigen=true",
                                               "--xla_cpu_experimental_ynn_fusion_type="]
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")
    verify.configure_cpu_runtime()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_cpu_experimental_ynn_fusion_type=dot",
                                               "--xla_cpu_multi_thread_eigen=false"]
