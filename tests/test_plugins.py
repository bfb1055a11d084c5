"""Claims from outside the repository (verify.plugins, ``--claims``, entry points)."""
import importlib.metadata
import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

import verify.claims
from verify import all as verify_all
from verify import plugins
from verify.claim import REGISTRY


# A researcher's file: an exact prediction on the Gaussian chain (MLE variance shrinks by
# (N-1)/N per fit), as two claims X1-a and X1-b so that `--only X1 --jobs 2` uses workers.
CLAIM_FILE = textwrap.dedent('''
    import jax.numpy as jnp
    import numpy as np

    import sims
    from sims.models import GaussianParams, gaussian
    from verify.claim import Claim, Theory, measured, register

    N, G = 10, 4


    def _variance(key, gen, truth):
        return {"var": gen.params.cov[0, 0]}


    def measure(key, point):
        plan = sims.make_plan("synthetic", n=N, generations=G)
        truth = GaussianParams(jnp.zeros(1), point["s2"] * jnp.eye(1))
        moments = sims.run(key, gaussian(1), truth, plan, _variance, replicas=512,
                           batch_size=512, reduce=True)
        return {"var": measured(moments, "var", np.arange(G))}


    def theory(point):
        shrink = ((N - 1) / N) ** np.arange(1, G + 1)
        return {"var": Theory("exact", point["s2"] * shrink, "((N-1)/N)^(i+1) s2")}


    for suffix, s2 in [("a", 1.0), ("b", 2.0)]:
        register(Claim(f"X1-{suffix}", "out-of-tree: Gaussian MLE variance shrinks",
                       lambda mode, s2=s2: [{"s2": s2}], measure, theory))
''')


@pytest.fixture
def clean_registry():
    """Claims registered by a test are removed afterwards (other tests list every claim)."""
    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)


def test_an_out_of_tree_claim_file_runs_through_the_cli_in_workers(tmp_path):
    path = tmp_path / "my_claims.py"
    path.write_text(CLAIM_FILE)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "verify.all", "--claims", str(path), "--only", "X1", "--quick",
         "--jobs", "2", "--no-figures", "--out", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert [c["id"] for c in report["claims"]] == ["X1-a", "X1-b"]
    assert all(c["status"] == "pass" and c["rows"] for c in report["claims"])
    assert report["run"]["jobs"] == 2 and report["config"]["claims"] == [str(path)]


def test_a_claim_only_the_parent_knows_is_one_clear_error_from_a_worker(tmp_path, capsys,
                                                                        clean_registry):
    """Registered in this process (as from a notebook), unknown to spawned workers."""
    namespace = {}
    exec(CLAIM_FILE, namespace)  # registers X1-a and X1-b here only
    status = verify_all.main(["--only", "X1", "--quick", "--jobs", "2", "--no-figures",
                              "--no-compile-cache", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1, err
    assert "'X1-" in err[0] and "not registered in a worker" in err[0] and "--claims" in err[0]
    assert "KeyError" not in err[0]


def test_a_file_spec_loads_once(tmp_path, clean_registry):
    path = tmp_path / "my_claims.py"
    path.write_text(CLAIM_FILE)
    first = plugins.load_spec(str(path))
    assert plugins.load_spec(str(path)) is first  # a second load registers nothing twice
    assert {"X1-a", "X1-b"} <= set(REGISTRY)


def test_a_module_spec_is_imported(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "researcher_claims_h19.py").write_text(CLAIM_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.load_spec("researcher_claims_h19")
    assert {"X1-a", "X1-b"} <= set(REGISTRY)
    monkeypatch.delitem(sys.modules, "researcher_claims_h19")


@pytest.mark.parametrize("spec, message", [
    ("", "must name a module"),
    ("no_such_module_h19", "no module named 'no_such_module_h19'"),
    ("no_such_dir_h19/claims.py", "no such file"),
])
def test_a_spec_that_names_nothing_is_a_plugin_error(spec, message):
    with pytest.raises(plugins.PluginError, match=message):
        plugins.load_spec(spec)


def test_an_import_error_inside_the_module_is_not_hidden(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import no_such_dependency_h19\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_h19"):
        plugins.load_spec(str(path))


def _entry_points(module: str):
    point = importlib.metadata.EntryPoint(name="mine", value=module,
                                          group=plugins.ENTRY_POINT_GROUP)

    def entry_points(*, group=None):
        return [point] if group == plugins.ENTRY_POINT_GROUP else []
    return entry_points


def test_entry_points_of_the_group_are_loaded(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "ep_claims_h19.py").write_text(CLAIM_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points("ep_claims_h19"))
    assert plugins.load_entry_points() == ["ep_claims_h19"]
    assert {"X1-a", "X1-b"} <= set(REGISTRY)
    monkeypatch.delitem(sys.modules, "ep_claims_h19")


def test_a_broken_entry_point_is_a_usage_error_naming_it(monkeypatch, capsys):
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points("gone_h19.claims"))
    assert verify_all.main(["--list"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "entry point mine = gone_h19.claims" in err[0], err


def test_every_built_in_claim_module_is_listed():
    """The list is explicit (a renamed module fails to import); a new file must join it."""
    files = {p.stem for p in pathlib.Path(verify.claims.__file__).parent.glob("*.py")}
    assert files - {"__init__"} == set(verify.claims.BUILTIN)


def test_a_file_reusing_a_built_in_id_is_a_plugin_error_naming_both(tmp_path):
    path = tmp_path / "clash.py"
    path.write_text("import dataclasses\nfrom verify.claim import REGISTRY, register\n"
                    "import verify.claims\nregister(dataclasses.replace(REGISTRY['P1']))\n")
    with pytest.raises(plugins.PluginError, match=r"clash.py: claim 'P1' is registered twice"):
        plugins.load_spec(str(path))
