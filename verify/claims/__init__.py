"""Claim declarations. Importing this package registers every built-in claim.

The list is explicit: a renamed or missing module is an import error, never a silent
loss of its claims. Claims from outside the repository are loaded by ``verify.plugins``.
"""
from verify.claims import attention, diffusion, paper_a, paper_b, peers, transformer  # noqa: F401

BUILTIN = ("peers", "paper_a", "attention", "transformer", "paper_b", "diffusion")
