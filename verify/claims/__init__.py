"""Claim declarations. Importing this package registers every claim."""
import importlib

for _module in ("peers", "paper_a", "paper_b", "transformer"):
    try:  # paper modules register themselves once they exist
        importlib.import_module(f"verify.claims.{_module}")
    except ModuleNotFoundError as err:
        if err.name != f"verify.claims.{_module}":
            raise
