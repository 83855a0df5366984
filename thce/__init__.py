"""THCE: Tiny Reasoning Language Model for Health Code Extraction.

The import namespace `thce` spans the repository's top-level folders (see pyproject.toml):
`thce.utils`, `thce.data`, `thce.post_training`, `thce.evaluation`, `thce.inference`, and the CLI in
`thce.cli`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("thce")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
