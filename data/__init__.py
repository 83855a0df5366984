"""Data pipeline: synthetic generation, collection, PHI-safe preprocessing (`thce.data`)."""
