"""The one place for input checks at the public boundary, and their messages.

Every public entry point of ``bounds``, ``sims`` and ``verify`` validates its
parameters here *before* any computation, so a bad value fails fast with a
message that names the parameter and the allowed range. Checks run on concrete
Python/NumPy values only: inside ``jit`` the arguments are tracers and the
checks are skipped (they already ran at the boundary).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "check_positive_int",
    "check_lam_schedule",
    "check_integer_at_least",
    "check_nonnegative_int",
    "check_positive",
    "check_nonnegative",
    "check_proportion",
    "check_in_range",
    "check_whole",
    "check_ols_rows",
    "check_choice",
    "check_prng_key",
    "is_concrete",
]


def is_concrete(value: Any) -> bool:
    """True when ``value`` can be inspected eagerly (not a jax tracer)."""
    try:
        np.asarray(value)
    except Exception:  # jax raises TracerArrayConversionError; be generic.
        return False
    return True


def _values(name: str, value: Any) -> np.ndarray | None:
    if not is_concrete(value):
        return None
    arr = np.asarray(value)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return arr


def check_positive_int(name: str, value: Any) -> int:
    """Raise unless ``value`` is an integer ``>= 1``; return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def check_nonnegative_int(name: str, value: Any) -> int:
    """Raise unless ``value`` is an integer ``>= 0``; return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value}")
    return int(value)


def check_positive(name: str, value: Any) -> Any:
    """Raise unless every entry of ``value`` is finite and ``> 0``."""
    arr = _values(name, value)
    if arr is not None and np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def check_nonnegative(name: str, value: Any) -> Any:
    """Raise unless every entry of ``value`` is finite and ``>= 0``."""
    arr = _values(name, value)
    if arr is not None and np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def check_in_range(name: str, value: Any, low: float, high: float, *,
                   low_open: bool = False, high_open: bool = False) -> Any:
    """Raise unless every entry of ``value`` lies in the stated interval."""
    arr = _values(name, value)
    if arr is None:
        return value
    below = arr <= low if low_open else arr < low
    above = arr >= high if high_open else arr > high
    if np.any(below) or np.any(above):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return value


def check_whole(name: str, value: Any, low: float = 0) -> Any:
    """Raise unless ``value`` is a non-empty array of finite whole numbers ``>= low``.

    For sizes given as arrays (``M``, ``sizes``): ``10.0`` is accepted, ``2.5`` is not.
    """
    arr = _values(name, value)
    if arr is None:
        return value
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got {value!r}")
    if np.any(arr != np.round(arr)) or np.any(arr < low):
        raise ValueError(f"{name} must lie in [{low:g}, inf] and be whole numbers, "
                         f"got {value!r}")
    return value


def check_proportion(name: str, value: Any, *, allow_zero: bool = True,
                     allow_one: bool = True) -> Any:
    """Raise unless ``value`` (e.g. the real proportion ``lam``) is in [0, 1].

    ``allow_zero=False`` is for bounds that divide by ``lam`` (they need
    ``lam > 0``); the message then says so.
    """
    return check_in_range(name, value, 0.0, 1.0, low_open=not allow_zero,
                          high_open=not allow_one)


def check_ols_rows(T: Any, d: Any, *, name_rows: str = "T", extra: int = 2) -> None:
    """Raise unless ``T >= d + extra`` (``extra=2``: the Gaussian-design formulas).

    ``E tr((X^T X)^{-1}) = d / (T - d - 1)`` for Gaussian ``X`` is finite only for
    ``T >= d + 2``; a fixed design needs ``T >= d`` (``extra=0``) to be invertible.
    """
    check_positive_int(name_rows, T)
    check_positive_int("d", d)
    if T < d + extra:
        raise ValueError(
            f"{name_rows} must be >= d + {extra} (= {d + extra}) for this OLS formula, "
            f"got {name_rows}={T}, d={d}")


def check_choice(name: str, value: Any, choices) -> Any:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value




def check_prng_key(name: str, value: Any) -> Any:
    """Raise unless ``value`` is one PRNG key: ``jax.random.key(s)`` or a raw ``PRNGKey(s)``."""
    import jax  # only here: the other checks work on plain NumPy values

    dtype = getattr(value, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if np.shape(value) == ():
            return value
    elif dtype == np.uint32 and np.shape(value) == (2,):
        return value
    raise TypeError(f"{name} must be one PRNG key (e.g. jax.random.key(0)), got "
                    f"{type(value).__name__} with shape {np.shape(value)} and dtype {dtype}")


def check_lam_schedule(name: str, lam: Any) -> None:
    """Raise unless ``lam`` is a real-proportion schedule: entries in [0, 1], ``lam[..., 0] == 1``.

    ``lam[..., 0] = 1`` pins the indexing convention (``G_0`` sees real data
    only); a schedule that starts elsewhere is almost always an off-by-one.
    """
    check_proportion(name, lam)
    if is_concrete(lam):
        arr = np.asarray(lam)
        if arr.ndim == 0 or arr.shape[-1] == 0:
            raise ValueError(f"{name} must be a non-empty schedule indexed by generation "
                             f"on its last axis, got shape {arr.shape}")
        if not np.all(arr[..., 0] == 1.0):
            raise ValueError(f"{name}[0] must be 1 (G_0 is fit on real data only), "
                             f"got {name}[..., 0]={arr[..., 0]!r}")


def check_integer_at_least(name: str, value: Any, minimum: int) -> Any:
    """Raise unless ``value`` (an int or integer array) is an integer ``>= minimum`` everywhere.

    Traced values pass through unchecked (their shape is all JAX knows).
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if not is_concrete(value):
        return value
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if np.any(arr < minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_support_bound(name: str, value: Any, what: str) -> Any:
    """A support bound: must be finite and > 0, else no uniform constant exists."""
    if is_concrete(value):
        arr = np.asarray(value)
        if np.issubdtype(arr.dtype, np.number) and not np.all(np.isfinite(arr)):
            raise ValueError(
                f"{name} must be finite and > 0 ({what}); got {value!r}: "
                "without it there is no uniform (worst-case) constant")
    return check_positive(name, value)
