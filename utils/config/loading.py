"""Reading a stage config: the YAML file, `--set section.key=value` overrides, and the resolved copy a run
writes beside its outputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from thce.utils.config.conversion import build_dataclass
from thce.utils.config.sections import StageConfig
from thce.utils.config.training import check_training_section
from thce.utils.errors import UserError
from thce.utils.io import load_yaml, read_yaml, write_atomically
from thce.utils.stage_layout import RESOLVED_CONFIG


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> StageConfig:
    """Read a stage YAML, apply `section.key=value` overrides, and return the typed, checked config.

    Raises `UserError` naming the file, section and key for anything unknown or of the wrong type.
    """
    path = Path(path)
    raw = read_yaml_mapping(path)
    for override in overrides:
        apply_override(raw, override, path)
    config = build_dataclass(StageConfig, raw, section="top level", file=path)
    config.training = check_training_section(config.training, config.stage, file=path)
    config.source_path = str(path)
    config.overrides = list(overrides)
    return config


def read_yaml_mapping(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is an empty one); clear errors otherwise."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{what} file not found: {path}")
    raw = read_yaml(path, what=f"{what} file")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict[str, Any], override: str, file: str | os.PathLike = "<overrides>") -> None:
    """Set `section.key[.key...]=value` in the raw config mapping; list items are addressed by index.

    The value is read as YAML (`true`, `8`, `[a, b]`, `null`), then converted to the field's type when the
    config is built, so `training.learning_rate=1e-4` ends up a float.
    """
    dotted, sep, text = override.partition("=")
    if not sep or not dotted.strip():
        raise UserError(f"override {override!r} is not of the form section.key=value")
    keys = dotted.strip().split(".")
    value = load_yaml(text, f"--set {override!r}") if text.strip() else None
    node: Any = raw
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise UserError(f"override {override!r}: {'.'.join(keys[:depth])} has no item {key}")
            key = int(key)  # type: ignore[assignment]
        elif not isinstance(node, dict):
            raise UserError(f"override {override!r}: {'.'.join(keys[:depth])} is not a section")
        if last:
            node[key] = value
        else:
            if isinstance(node, dict) and node.get(key) is None:
                node[key] = {}
            node = node[key]


def save_resolved_config(
    config: StageConfig, directory: str | os.PathLike, name: str = RESOLVED_CONFIG
) -> Path:
    """Write the fully resolved config (with the overrides that produced it) beside a run's outputs."""
    from thce import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Resolved THCE config (thce {__version__})\n"
        f"# from: {config.source_path}\n"
        f"# overrides: {config.overrides or 'none'}\n"
    )
    return write_atomically(directory / name, header + yaml.safe_dump(config.to_dict(), sort_keys=False))
