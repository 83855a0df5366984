"""Evaluation layer: metrics, baselines, error analysis, significance, reports (`thce.evaluation`)."""
