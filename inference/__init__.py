"""Inference: model loading, batched and constrained generation, output parsing (`thce.inference`)."""
