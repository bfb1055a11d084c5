"""Plant an error in one ``bounds`` function and see whether the claims catch it.

``python -m verify.plant bounds.peers.mle_variance_chain --only P1`` multiplies every
floating-point output of that function by ``--factor`` (1.1: a 10% error) for the
duration of a ``--quick`` run of the named claims, and reports, per claim, whether the
run caught it (status ``fail`` or ``error``) and how often the planted function was
called (0 calls: these claims never use it, so they cannot catch it).

For an upper bound, a larger value is still a valid bound: plant ``--factor 0.9`` (a
bound 10% too small) to ask whether the run would notice; for a lower bound, ``1.1``.

The function is replaced wherever a loaded module holds it (``bounds.tv.f`` and a
``from bounds.tv import f`` elsewhere alike). A dev tool: it proves that a tested
prediction can fail, it is not part of ``verify.all``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from typing import Iterator

import jax
import jax.numpy as jnp

from verify.claim import REGISTRY, evaluate
import verify.claims  # noqa: F401  (registers the claims)

__all__ = ["planted", "plant"]


def _resolve(path: str):
    module_name, _, name = path.rpartition(".")
    if not module_name.startswith("bounds"):
        raise ValueError(f"function must be a bounds function like bounds.tv.eps_rate, got {path!r}")
    module = importlib.import_module(module_name)
    if not hasattr(module, name):
        raise ValueError(f"{module_name} has no function {name!r}")
    return getattr(module, name)


def _scale(value, factor):
    if isinstance(value, (float, jax.Array)) or hasattr(value, "dtype"):
        array = jnp.asarray(value)
        return array * factor if jnp.issubdtype(array.dtype, jnp.floating) else value
    return value


@contextlib.contextmanager
def planted(path: str, factor: float) -> Iterator[dict]:
    """Within the block, ``path``'s float outputs are multiplied by ``factor``.

    Yields a dict whose ``calls`` counts the calls made (tracing counts as a call).
    """
    original = _resolve(path)
    counter = {"calls": 0}

    def wrong(*args, **kwargs):
        counter["calls"] += 1
        return jax.tree.map(lambda v: _scale(v, factor), original(*args, **kwargs))

    holders = [(m, name) for m in list(sys.modules.values()) if m is not None
               for name, value in list(vars(m).items()) if value is original]
    for module, name in holders:
        setattr(module, name, wrong)
    try:
        yield counter
    finally:
        for module, name in holders:
            setattr(module, name, original)


def plant(path: str, claim_ids: list[str], factor: float = 1.1, mode: str = "quick",
          seed: int = 0) -> list[dict]:
    """Run each claim with ``path`` planted wrong: ``[{id, status, calls, message}]``."""
    results = []
    for claim_id in claim_ids:
        jax.clear_caches()  # a jitted caller traced before must see the planted function
        with planted(path, factor) as counter:
            record = evaluate(REGISTRY[claim_id], mode, seed)
        results.append({"id": claim_id, "status": record["status"], "calls": counter["calls"],
                        "caught": record["status"] in ("fail", "error"),
                        "message": record["message"]})
    return results


def main(argv=None) -> int:
    import verify

    verify.enable_float64()  # importing the library leaves JAX's settings alone
    parser = argparse.ArgumentParser(prog="python -m verify.plant", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", help="dotted path, e.g. bounds.peers.mle_variance_chain")
    parser.add_argument("--only", required=True, help="comma-separated claim IDs to run")
    parser.add_argument("--factor", type=float, default=1.1, help="multiplier (default 1.1)")
    parser.add_argument("--mode", default="quick", choices=("quick", "default", "full"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ids = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [i for i in ids if i not in REGISTRY]
    if unknown:
        parser.error(f"unknown claim ID(s) {unknown}; known: {sorted(REGISTRY)}")
    try:
        results = plant(args.function, ids, args.factor, args.mode, args.seed)
    except ValueError as err:
        parser.error(str(err))
    for r in results:
        verdict = ("CAUGHT" if r["caught"] else "not used" if not r["calls"] else "MISSED")
        print(f"{r['id']:16s} {verdict:8s} status={r['status']:8s} calls={r['calls']:<4d} "
              f"{r['message'][:160]}")
    caught = any(r["caught"] for r in results)
    print(f"{args.function} x{args.factor}: " + (
        f"caught by {', '.join(r['id'] for r in results if r['caught'])}" if caught
        else f"NOT caught by {', '.join(ids)}"))
    return 0 if caught else 1


if __name__ == "__main__":
    sys.exit(main())
