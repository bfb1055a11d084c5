"""Shared test set-up: float64 everywhere, and the repository root for subprocess tests."""
import pathlib

import jax

jax.config.update("jax_enable_x64", True)

ROOT = pathlib.Path(__file__).resolve().parent.parent
