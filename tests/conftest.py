"""Shared test set-up: float64 everywhere, the persistent compilation cache, and the repository root."""
import pathlib

import jax

from verify.cache import enable_compilation_cache

jax.config.update("jax_enable_x64", True)
enable_compilation_cache()  # a loop compiled by one test session is loaded by the next

ROOT = pathlib.Path(__file__).resolve().parent.parent
