"""Every formula in ``bounds/`` is exercised (issue 8, item 7).

Each public function of every ``bounds`` module (subpackages such as ``bounds/models/``
included) must feed a check of ``python -m verify.all`` or be tested in ``tests/``
against Monte Carlo or an independent computation; a function that does neither is
removed. This is a *static* check by name: the function must be used (called, passed,
read as an attribute, or imported) in the syntax tree of some ``verify/**/*.py`` or
``tests/**/*.py`` file other than this one; comments, docstrings and definitions do not
count. It catches dead formulas; it cannot tell whether the use is a real comparison
(reviewers and the negative controls do that), nor whether a use in ``verify/`` runs
under ``--quick``, and an unrelated local variable of the same name would count.
Use by another ``bounds`` function does not count: a public formula is tested itself,
or made private.

``bounds.validate`` is left out: it holds input validators, not formulas, and the
bad-input tests of each public function exercise them.
"""
import ast
import importlib
import pkgutil

import pytest

import bounds
from conftest import ROOT


def _public_functions():
    """``(module, name)`` for each public function defined in a ``bounds`` module."""
    found = []
    for info in pkgutil.walk_packages(bounds.__path__, prefix="bounds."):
        if info.name == "bounds.validate":
            continue
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", None) or [n for n in vars(module)
                                                     if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name)
            if (callable(obj) and not isinstance(obj, type)
                    and getattr(obj, "__module__", None) == module.__name__):
                found.append((module.__name__, name))
    return found


def _used_names():
    """Names loaded, read as attributes or imported anywhere in verify/ and tests/."""
    this = ROOT / "tests" / "test_bounds_coverage.py"
    used = set()
    for path in [*(ROOT / "verify").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        if path == this:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.ImportFrom):
                used.update(alias.name for alias in node.names)
    return used


FUNCTIONS = _public_functions()
USED = _used_names()


def test_the_enumeration_finds_the_bounds_modules():
    modules = {m for m, _ in FUNCTIONS}
    assert {"bounds.peers", "bounds.tv", "bounds.stability", "bounds.kde"} <= modules
    assert len(FUNCTIONS) > 50
    assert "fits_after_generation" in USED and "eps_rate" in USED  # imports and calls count


@pytest.mark.parametrize("module,name", FUNCTIONS, ids=[f"{m}.{n}" for m, n in FUNCTIONS])
def test_every_public_bounds_function_is_referenced_by_verify_or_tests(module, name):
    assert name in USED, (
        f"{module}.{name} is referenced nowhere in verify/ or tests/: make it feed a claim, "
        f"test it against Monte Carlo or an independent computation, make it private, or "
        f"remove it")
