"""Typer options shared by several verbs, declared once (help text, short flags, the default model)."""

from pathlib import Path
from typing import Annotated

import typer

from thce.utils.models import EMBEDDED_MODEL_ID

DEFAULT_MODEL = EMBEDDED_MODEL_ID

StageConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Stage config YAML (configs/stage_N.yaml).")
]
EvalConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Eval config (configs/eval.yaml).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a config value: key=value, section.key=value when nested (repeatable)."
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Discard earlier outputs and start over.")]
ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="A stage's final/ directory, a checkpoint, or the base model id.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
