"""Claim declarations. Importing this package registers every built-in claim.

The list is explicit: a renamed or missing module is an import error, never a silent
loss of its claims. Claims from outside the repository are loaded by ``verify.plugins``.
Paper A's claims share ``paper_a_setting`` (its models, plans and closed forms), which
registers none itself.
"""
# The import order is the registry's (and the report's) claim order.
from verify.claims import attention, diffusion  # noqa: F401
from verify.claims import paper_a_setting, a1, a3, a2_gamma, a5  # noqa: F401
from verify.claims import paper_b, peers, transformer  # noqa: F401

BUILTIN = ("peers", "paper_a_setting", "a1", "a3", "a2_gamma", "a5", "attention", "transformer",
           "paper_b", "diffusion")
