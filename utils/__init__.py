"""Shared building blocks: code validation, chat templates, config loading, PHI scrubbing, logging.

Nothing here imports torch at import time, and nothing here imports the other `thce` packages.
"""
