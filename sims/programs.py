"""Lowered programs kept on disk, so that a later process skips Python tracing and lowering.

JAX's persistent compilation cache stores *executables*, keyed by the lowered program, so
every process still traces and lowers a program before the cache can answer. For the
transformer loops (claim A4) that was a third of a quick run: each program traces the
network's training under several ``vmap`` levels, about 3 s a program, and lowers it, 1-2 s
more. ``compile_program`` stores the lowered program itself (``jax.export``,
serialized StableHLO) beside the compilation cache, under a fingerprint of everything that
determines it, and compiles it through ``jax.jit(exported.call)``: on a later run the
program comes off disk and its executable out of JAX's cache.

What the fingerprint holds (docs/engine.md §6):

* the platform and the caller's ``static_key`` (which must identify the traced function, as
  it already must for ``sims.loop``'s in-process cache), described value by value: numbers,
  strings, arrays and keys (their bytes), named tuples with their type, modules by name, and
  functions by module, qualified name, bytecode, closure and defaults;
* the input shapes, dtypes, shardings and tree structure;
* the source of the ``bounds``, ``sims`` and ``verify`` packages, the versions of Python,
  JAX, jaxlib, NumPy, flax and optax, and JAX's configuration.

Anything it cannot describe stably (a function from outside those packages, whose source
is not in the fingerprint; an object without a stable description; several processes)
keeps the program in this process: it is traced again next time, never loaded wrongly. A
fresh program takes the same route as a stored one (serialize, deserialize, compile), so
both give the same executable and the same numbers.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
import pickle
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

__all__ = ["Program", "compile_program", "store_dir", "stored_count"]

# Packages whose source is in the fingerprint: a function from one of them is described by
# name. The store is wrong only if traced code outside them changes without a version bump.
_PACKAGES = ("bounds", "sims", "verify")
_LIBRARIES = ("jax", "jaxlib", "numpy", "flax", "optax")
_FORMAT = 1  # bump when what is stored changes
_FROM_STORE = [0]


class Program(NamedTuple):
    """A compiled program of flat inputs and outputs, called with the original pytrees.

    Attributes:
      compiled: the executable (``jax.stages.Compiled``) of the flattened function.
      in_tree, out_tree: the tree structures of the arguments and of the result.
    """

    compiled: Any
    in_tree: Any
    out_tree: Any

    def __call__(self, *args):
        leaves, tree = jax.tree.flatten(args)
        if tree != self.in_tree:
            raise TypeError(f"arguments have structure {tree}, the program takes {self.in_tree}")
        return jax.tree.unflatten(self.out_tree, self.compiled(*leaves))

    @property
    def out_info(self):
        """Shapes and dtypes of the result (``ShapeDtypeStruct`` leaves)."""
        return jax.tree.unflatten(self.out_tree, self.compiled.out_info)

    def memory_analysis(self):
        return self.compiled.memory_analysis()


def store_dir() -> Path | None:
    """Where lowered programs are stored: ``programs/`` inside JAX's compilation cache
    directory (``None``, no store, when that cache is off or several processes run)."""
    cache = jax.config.values.get("jax_compilation_cache_dir")
    if not cache or jax.process_count() > 1:
        return None
    return Path(cache) / "programs"


def stored_count() -> int:
    """Programs this process loaded from the store instead of tracing them (for reports)."""
    return _FROM_STORE[0]


def compile_program(fn: Callable, static_key: tuple, *specs: Any,
                    platform: str | None = None) -> Program:
    """Compile ``fn`` for argument ``specs`` (pytrees of ``ShapeDtypeStruct``), through the store.

    ``static_key`` identifies ``fn``: two calls with the same ``static_key`` and specs must
    mean the same program (in this process and, when the key can be described stably, in
    every later one with the same source and libraries). ``platform``: where it runs
    (``"cpu"``, ``"gpu"``...; default: JAX's default backend).
    """
    platform = platform or jax.default_backend()
    leaves, in_tree = jax.tree.flatten(specs)
    path = _stored_path((platform, static_key), leaves, in_tree)
    stored = _read(path) if path is not None else None
    _FROM_STORE[0] += stored is not None
    if stored is None:
        out_tree = []

        def flat(*args):
            out, tree = jax.tree.flatten(fn(*jax.tree.unflatten(in_tree, args)))
            out_tree.append(tree)
            return out

        exported = jax.export.export(jax.jit(flat), platforms=(platform,))(*leaves)
        try:
            stored = (bytes(exported.serialize()), out_tree[0])
        except ImportError:  # no flatbuffers: programs stay in the process
            stored, path = (None, out_tree[0]), None
        if path is not None:
            _write(path, stored)
    blob, out_tree = stored
    if blob is not None:  # a fresh program takes the stored one's route: the same executable
        exported = jax.export.deserialize(bytearray(blob))
    compiled = jax.jit(exported.call).lower(*leaves).compile()
    return Program(compiled, in_tree, out_tree)


def _stored_path(static_key, leaves, in_tree) -> Path | None:
    root = store_dir()
    if root is None:
        return None
    described = _describe((static_key, leaves, str(in_tree)))
    if described is None:
        return None
    digest = hashlib.sha256(repr((_FORMAT, _environment(), described)).encode()).hexdigest()
    return root / f"{digest}.pkl"


def _read(path: Path):
    try:
        with open(path, "rb") as f:
            blob, out_tree = pickle.load(f)
        return bytes(blob), out_tree
    except Exception:  # absent, torn or outdated: a miss, traced and rewritten
        return None


def _write(path: Path, stored) -> None:
    """Atomically (a reader sees the whole entry or none); a full disk costs the entry only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(stored, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass


def _source_digest() -> str:
    """SHA-256 of every ``.py`` file of the packages whose functions are described by name."""
    digest = hashlib.sha256()
    for package in _PACKAGES:
        spec = importlib.util.find_spec(package)  # found, not imported
        if spec is None or not spec.origin:
            digest.update(f"{package}: absent".encode())
            continue
        root = Path(spec.origin).parent
        for file in sorted(root.rglob("*.py")):
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def _versions() -> tuple:
    versions = []
    for name in _LIBRARIES:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((name, None))
    return (sys.version, tuple(versions))


# Read once, when the process loads the engine (with the code it runs): a file edited while a
# long run goes on must not give that run's programs the new source's name.
_SOURCE = _source_digest()
_VERSIONS = _versions()


def _environment() -> tuple:
    """What besides the key decides a program: source, libraries, JAX's configuration now."""
    config = tuple(sorted((k, repr(v)) for k, v in jax.config.values.items()))
    return (_VERSIONS, config, _SOURCE)


def _in_packages(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in _PACKAGES


_ATOMS = (type(None), bool, int, float, complex, str, bytes)


def _describe(obj, depth: int = 0):
    """A stable, hashable description of ``obj``, or ``None`` when there is none."""
    if depth > 20:
        return None
    sub = functools.partial(_describe, depth=depth + 1)
    if isinstance(obj, _ATOMS):
        return (type(obj).__name__, repr(obj))
    if isinstance(obj, enum.Enum):
        return ("enum", type(obj).__module__, type(obj).__qualname__, obj.name)
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        if isinstance(obj, jax.Array) and jax.dtypes.issubdtype(obj.dtype, jax.dtypes.prng_key):
            obj = jax.random.key_data(obj)
        array = np.asarray(obj)
        return ("array", str(array.dtype), array.shape, hashlib.sha256(array.tobytes()).hexdigest())
    if isinstance(obj, np.dtype):
        return ("dtype", str(obj))
    if isinstance(obj, jax.ShapeDtypeStruct):
        return ("spec", obj.shape, str(obj.dtype), str(obj.sharding))
    if isinstance(obj, jax.Device):
        return ("device", obj.platform, obj.device_kind, obj.id)
    if isinstance(obj, types.ModuleType):  # its source or version is in the environment
        name = obj.__name__.split(".")[0]
        return ("module", obj.__name__) if name in _PACKAGES + _LIBRARIES else None
    if isinstance(obj, type):
        if _in_packages(obj.__module__) or obj.__module__ in ("builtins", "numpy"):
            return ("type", obj.__module__, obj.__qualname__)
        return None
    if isinstance(obj, tuple):  # a named tuple carries its type, which must be described too
        kind = sub(type(obj)) if type(obj) is not tuple else "tuple"
        return _joined(kind, [sub(v) for v in obj])
    if isinstance(obj, list):
        return _joined("list", [sub(v) for v in obj])
    if isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: repr(kv[0]))
        return _joined("dict", [sub(k) for k, _ in items] + [sub(v) for _, v in items])
    if isinstance(obj, functools.partial):
        return _joined("partial", [sub(obj.func), sub(obj.args), sub(obj.keywords)])
    if isinstance(obj, types.MethodType):
        return _joined("method", [sub(obj.__self__), sub(obj.__func__)])
    if isinstance(obj, types.FunctionType):
        return _describe_function(obj, sub)
    if dataclasses.is_dataclass(obj) and getattr(type(obj), "__dataclass_params__").frozen:
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return _joined("dataclass", [sub(type(obj)), sub(fields)])
    if isinstance(obj, jax.tree_util.PyTreeDef):
        return ("treedef", str(obj))
    return None


def _joined(kind, parts: list):
    """``(kind, parts)``, or ``None`` when the kind or any part has no description."""
    if kind is None or any(p is None for p in parts):
        return None
    return (kind, tuple(parts))


def _describe_function(fn, sub):
    # Its source is in the digest only if it comes from one of the packages; its code tells
    # apart two lambdas of one scope (same qualified name), its closure and defaults what
    # they captured.
    if not _in_packages(getattr(fn, "__module__", None)):
        return None
    try:
        cells = tuple(sub(c.cell_contents) for c in fn.__closure__ or ())
    except ValueError:  # an empty cell: a closure not yet complete
        return None
    return _joined(("function", fn.__module__, fn.__qualname__, _describe_code(fn.__code__)),
                   [*cells, sub(fn.__defaults__), sub(fn.__kwdefaults__)])


def _describe_code(code: types.CodeType) -> tuple:
    consts = tuple(_describe_code(c) if isinstance(c, types.CodeType) else repr(c)
                   for c in code.co_consts)
    return (code.co_firstlineno, hashlib.sha256(code.co_code).hexdigest(), consts,
            code.co_names)
