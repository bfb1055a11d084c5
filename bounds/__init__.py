"""Closed-form predictions and bounds for self-consuming training loops.

Pure JAX functions; never imports ``sims``. Every function names its claim ID
(THEORY.md), its kind (exact / upper / lower / rate), and where its proof is.
"""
import jax

# Identities are checked in float64.
jax.config.update("jax_enable_x64", True)
