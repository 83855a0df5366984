"""Loguru set-up. Libraries only call `loguru.logger`; the CLI configures it once, here."""

import sys

from loguru import logger


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Send THCE's log records to stderr at INFO (DEBUG with `verbose`, WARNING with `quiet`)."""
    level = "DEBUG" if verbose else "WARNING" if quiet else "INFO"
    logger.remove()
    logger.add(
        sys.stderr, level=level, format="<green>{time:HH:mm:ss}</green> <level>{level: <7}</level> {message}"
    )
