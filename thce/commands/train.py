"""`thce train` (one stage) and `thce pipeline` (all stages end to end, then evaluation)."""

from pathlib import Path
from typing import Annotated

import typer

from thce.commands.options import ForceOption, SetOption, StageConfigOption


def train(
    config: StageConfigOption,
    overrides: SetOption = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--no-resume", help="Continue from the newest checkpoint (default: run.resume)."
        ),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Train one stage (SFT for stages 1-2, DPO for stage 3) from its config.

    The same as `python post_training/sft.py --config ...`; use `accelerate launch post_training/sft.py`
    to train on several processes or GPUs.
    """
    from thce.post_training.run import train_stage
    from thce.utils.config import load_config

    stage_config = load_config(config, overrides or [])
    final = train_stage(stage_config, resume=resume, force=force)
    typer.echo(f"Stage {stage_config.stage} model: {final}")


def pipeline(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Pipeline YAML, e.g. configs/demo.yaml.")
    ] = Path("configs/demo.yaml"),
    overrides: SetOption = None,
    force: ForceOption = False,
) -> None:
    """Run the main job: collect all stages' data, SFT 1 -> SFT 2 -> DPO, evaluate, print a table per stage.

    Re-running skips what is finished (and resumes an interrupted stage) unless --force.
    """
    from thce.pipeline import run_pipeline, summary_table

    summary = run_pipeline(config, overrides or [], force=force)
    typer.echo(summary_table(summary))
