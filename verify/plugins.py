"""Claims from outside the repository: entry points and ``--claims`` specs.

A *spec* names a module that registers claims (``verify.claim.register``) when it is
imported: a dotted module name (``mypkg.claims``) or a path to a ``.py`` file. Installed
packages can also declare such modules in the entry-point group ``stl_verify.claims``
(``[project.entry-points."stl_verify.claims"] mine = "mypkg.claims"``).

Worker processes are spawned: they start from a fresh interpreter, so the parent hands
them its specs and they load the same modules before looking a claim up.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

from verify.claim import DuplicateClaimError

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "load_entry_points", "load_spec", "load_all"]

ENTRY_POINT_GROUP = "stl_verify.claims"


class PluginError(Exception):
    """A spec or entry point that cannot be loaded (one line, naming it)."""


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _module_name(path: Path) -> str:
    # One module per resolved file, so loading the same file twice registers nothing twice.
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    return f"_stl_verify_claims_{path.stem}_{digest}"


def _load_file(spec: str):
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        why = "not a file" if path.exists() else "no such file"
        raise PluginError(f"--claims {spec}: {why}")
    name = _module_name(path)
    if name in sys.modules:
        return sys.modules[name]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise PluginError(f"--claims {spec}: not a Python file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    try:
        loader_spec.loader.exec_module(module)
    except DuplicateClaimError as err:
        del sys.modules[name]
        raise PluginError(f"--claims {spec}: {err}") from None
    except BaseException:
        del sys.modules[name]  # a half-run module must not look loaded
        raise
    return module


def load_spec(spec: str):
    """Import the module ``spec`` names (a dotted name or a ``.py`` path); returns it.

    Importing twice is harmless: a module runs once per process. An error raised by the
    module itself propagates (its traceback is the user's own code); a spec that names
    nothing is a ``PluginError``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"--claims must name a module or a .py file, got {spec!r}")
    spec = spec.strip()
    if _is_path(spec):
        return _load_file(spec)
    try:
        return importlib.import_module(spec)
    except DuplicateClaimError as err:
        raise PluginError(f"--claims {spec}: {err}") from None
    except ModuleNotFoundError as err:
        if err.name is not None and spec.startswith(err.name):  # the spec itself, not inside it
            raise PluginError(f"--claims {spec}: no module named {err.name!r}") from None
        raise


def load_entry_points() -> list[str]:
    """Import every module of the ``stl_verify.claims`` entry-point group; their values."""
    loaded = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except ImportError as err:
            raise PluginError(f"entry point {entry.name} = {entry.value} "
                              f"({ENTRY_POINT_GROUP}): {err}") from None
        loaded.append(entry.value)
    return loaded


def load_all(specs=()) -> None:
    """The built-in claims, the installed entry points, then ``specs`` in order."""
    import verify.claims  # noqa: F401  (the built-in claims)

    load_entry_points()
    for spec in specs:
        load_spec(spec)
