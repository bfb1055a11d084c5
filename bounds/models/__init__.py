"""Per-model constants and exact forms, mirroring ``sims/models/``."""
