"""Finished grid points on disk, so an interrupted sweep resumes where it stopped.

One file per (claim, grid point): ``ROOT/<claim id>/<point index>.json``, written
atomically (temporary sibling + ``os.replace``). A record holds the point's rows
and notes (theory already evaluated, so nothing needs the measurement's context
again), a SHA-256 checksum of them, and the hash of everything that made them:
claim ID, mode, seed, point index, the point itself, and the code version (a hash
of every source file of ``bounds``, ``sims`` and ``verify``). A record is reused
only when that hash matches; a record that does not parse or fails its checksum
is reported in ``problems`` and recomputed, never read as data.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from verify.report import atomic_write_text

__all__ = ["PointStore", "code_version"]

_PACKAGES = ("bounds", "sims", "verify")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """SHA-256 of the source of ``bounds``, ``sims`` and ``verify``: edits, committed or not."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(p for package in _PACKAGES for p in (root / package).rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _canonical(value: Any) -> str:
    # Python's json writes NaN/Infinity and reads them back: records round-trip exactly.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _digest(value: Any) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()


class PointStore:
    """``get``/``put`` of one grid point's result, keyed by the point's full identity.

    ``identity`` (as ``verify.claim.evaluate`` passes it) is a JSON-friendly dict with
    ``claim``, ``mode``, ``seed``, ``index`` and ``point``; the store adds the code version.

    Args:
      root: directory of the records (e.g. ``OUT/points``).
      fresh: ignore existing records (they are overwritten as points finish).
    """

    def __init__(self, root: str | os.PathLike, *, fresh: bool = False):
        self.root = Path(root)
        self.fresh = fresh
        self.problems: list[str] = []  # corrupted records found (and recomputed)
        self.reused_by_claim: collections.Counter = collections.Counter()

    @property
    def reused(self) -> int:
        """Records reused so far, over all claims."""
        return sum(self.reused_by_claim.values())

    def path(self, identity: Mapping[str, Any]) -> Path:
        return self.root / str(identity["claim"]) / f"{int(identity['index'])}.json"

    def config_hash(self, identity: Mapping[str, Any]) -> str:
        return _digest({**identity, "code_version": code_version()})

    def get(self, identity: Mapping[str, Any]) -> dict | None:
        """The stored result of this point, or ``None`` (missing, stale or corrupted)."""
        path = self.path(identity)
        if self.fresh or not path.exists():
            return None
        try:
            saved = json.loads(path.read_text())
            intact = saved["checksum"] == _digest(saved["result"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            return self._corrupted(path, f"unreadable: {type(err).__name__}: {err}")
        if not intact:
            return self._corrupted(path, "checksum mismatch")
        stored = saved.get("identity") if isinstance(saved.get("identity"), dict) else {}
        if any(stored.get(k) != identity[k] for k in ("claim", "index")):
            # Its path says this point; its identity says another (a copied file). Another
            # mode or seed is ordinary (same path, other run) and recomputed silently.
            self.problems.append(f"{path}: holds claim {stored.get('claim')!r} point "
                                 f"{stored.get('index')!r}, not {identity['claim']!r} point "
                                 f"{identity['index']!r} (a copied file?); recomputed")
            return None
        if saved.get("config_hash") != self.config_hash(identity):
            return None  # made by other code or settings: recompute
        self.reused_by_claim[identity["claim"]] += 1
        return saved["result"]

    def _corrupted(self, path: Path, why: str) -> None:
        self.problems.append(f"{path}: corrupted record ({why}); recomputed")
        return None

    def put(self, identity: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """Store a finished point atomically (a reader sees the whole record or none)."""
        record = {"identity": identity, "config_hash": self.config_hash(identity),
                  "checksum": _digest(result), "result": result}
        atomic_write_text(self.path(identity), _canonical(record) + "\n")
