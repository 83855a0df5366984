"""Train one stage from its config: the one code path behind `post_training/sft.py`, `dpo.py`,
`thce train` and `thce pipeline`.

Outputs (the layout is `thce.utils.stage_layout`'s): `training.output_dir/checkpoint-K/` while training,
then `final/` with the model, tokenizer (chat template included), the resolved config, a model card and
`training_summary.json`.
A run interrupted after a checkpoint continues from the newest one, at its step, with optimizer and
scheduler state, provided the config is unchanged.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from loguru import logger

from thce.post_training.model_card import write_model_card
from thce.post_training.model_setup import (
    compile_arguments,
    load_stage_model,
    precision_arguments,
    stage_precision,
)
from thce.post_training.training_data import load_stage_datasets
from thce.utils.config import StageConfig, save_resolved_config, training_arguments
from thce.utils.errors import UserError
from thce.utils.io import (
    check_replaceable_directory,
    is_ours,
    remove_directory,
    staged_directory,
    write_json,
    write_manifest,
)
from thce.utils.models import default_device
from thce.utils.stage_layout import RESOLVED_CONFIG, TRAINING_SUMMARY


def train_stage(config: StageConfig, resume: bool | None = None, force: bool = False) -> Path:
    """Train the stage described by `config`; return its `final/` directory.

    `resume`: None follows `run.resume` from the config. `force` deletes earlier checkpoints and `final/`
    of this stage's output directory first.
    """
    from transformers import EarlyStoppingCallback, set_seed

    layout = config.layout
    output_dir, final_dir = layout.output_dir, layout.final_dir
    if force and output_dir.exists():
        logger.warning(f"--force: removing {output_dir}")
        remove_directory(output_dir, "training", "training.output_dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    if not is_ours(output_dir, "training"):
        check_replaceable_directory(output_dir, "training", "training.output_dir")
        write_manifest(output_dir, "training")
    resume = config.run.resume if resume is None else resume
    checkpoint = _checkpoint_to_resume(config) if resume else None

    set_seed(config.seed)
    _configure_tracking(config)
    device = default_device()
    precision = stage_precision(config)
    # THCE's choices (precision, compile) unless the training section sets TRL's own fields explicitly.
    chosen = {**precision_arguments(precision, device), **compile_arguments(config.model.compile)}
    chosen = {k: v for k, v in chosen.items() if k not in config.training}
    args = training_arguments(config, output_dir=str(output_dir), **chosen)
    logger.info(
        f"Stage {config.stage} ({config.trainer_kind.upper()}) on {device}, "
        f"{'bf16' if args.bf16 else 'fp16' if args.fp16 else 'fp32'} autocast over fp32 weights"
    )

    train_dataset, eval_dataset = load_stage_datasets(config)
    if eval_dataset is not None and args.eval_strategy == "no":
        args.eval_strategy = args.save_strategy  # evaluate whenever we checkpoint
        args.eval_steps = args.save_steps
    model, tokenizer = load_stage_model(config)
    callbacks = []
    if config.run.early_stopping_patience is not None:
        if eval_dataset is None:
            raise UserError(
                f"{config.source_path}: run.early_stopping_patience needs a validation split "
                f"({config.data.output_dir}/validation.parquet)"
            )
        args.load_best_model_at_end = True
        args.metric_for_best_model = "eval_loss"
        args.greater_is_better = False
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.run.early_stopping_patience))

    try:
        trainer = _build_trainer(config, model, tokenizer, args, train_dataset, eval_dataset, callbacks)
    except Exception as err:
        if not args.push_to_hub:
            raise
        # With push_to_hub the trainer creates the hub repo on construction; the hub client raises many types.
        raise UserError(
            f"training.push_to_hub: could not reach or create the hub repository ({type(err).__name__}: {err}); "
            "check HF_TOKEN and network access, or set training.push_to_hub: false"
        ) from err
    if trainer.is_world_process_zero():
        save_resolved_config(config, output_dir, RESOLVED_CONFIG)
    if checkpoint:
        logger.info(f"Resuming stage {config.stage} from {checkpoint}")
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    elapsed = time.perf_counter() - started

    if trainer.is_world_process_zero():
        summary = {
            "stage": config.stage,
            "trainer": config.trainer_kind,
            "device": device,
            "precision": precision,
            "resumed_from": checkpoint.name if checkpoint else None,
            "resumed_at_step": _checkpoint_step(checkpoint) if checkpoint else None,
            "global_step": trainer.state.global_step,
            "train_examples": len(train_dataset),
            "wall_seconds": round(elapsed, 1),
            "metrics": result.metrics,
            "log_history": trainer.state.log_history,
        }
        _save_final(trainer, tokenizer, config, final_dir, summary)
    trainer.accelerator.wait_for_everyone()
    if args.push_to_hub:
        _push(trainer)
    return final_dir


def _build_trainer(config, model, tokenizer, args, train_dataset, eval_dataset, callbacks) -> Any:
    from thce.post_training.trainers import ThceDPOTrainer, ThceSFTTrainer

    trainer_class = ThceDPOTrainer if config.trainer_kind == "dpo" else ThceSFTTrainer
    return trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
        model_loss=config.run.model_loss,
    )


def _checkpoint_to_resume(config: StageConfig) -> Path | None:
    """The newest `checkpoint-K` of an earlier run with the same config; an error if the config changed."""
    output_dir = config.layout.output_dir
    checkpoints = sorted(
        (p for p in output_dir.glob("checkpoint-*") if p.is_dir() and _checkpoint_step(p) is not None),
        key=_checkpoint_step,
    )
    checkpoints = [p for p in checkpoints if (p / "trainer_state.json").is_file()]
    if not checkpoints:
        return None
    if config.layout.checkpoints_stale(config):
        raise UserError(
            f"{output_dir} holds checkpoints of a run with a different config ({config.layout.run_config}); "
            "re-run with --force to start over, or restore that config to resume"
        )
    return checkpoints[-1]


def _checkpoint_step(path: Path) -> int | None:
    suffix = path.name.removeprefix("checkpoint-")
    return int(suffix) if suffix.isdigit() else None


def _configure_tracking(config: StageConfig) -> None:
    """W&B: project from the config; offline when no WANDB_API_KEY (sync later with `wandb sync`)."""
    report_to = config.training.get("report_to")
    reports = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "wandb" in reports or "all" in reports:
        os.environ.setdefault("WANDB_PROJECT", config.tracking.project)
        if config.tracking.entity:
            os.environ.setdefault("WANDB_ENTITY", config.tracking.entity)
        if not os.environ.get("WANDB_API_KEY") and "WANDB_MODE" not in os.environ:
            logger.info("No WANDB_API_KEY: W&B logs offline (./wandb); sync later with `wandb sync`")
            os.environ["WANDB_MODE"] = "offline"


def _save_final(trainer, tokenizer, config: StageConfig, final_dir: Path, summary: dict[str, Any]) -> None:
    """Write final/ atomically: model (LoRA merged), tokenizer with chat template, config, card, summary."""
    model = trainer.model
    if hasattr(model, "merge_and_unload"):  # peft: ship plain weights, loadable without peft
        model = model.merge_and_unload()
    model.config.use_cache = True  # training switched it off; generation wants it
    with staged_directory(final_dir, "model", "final model directory") as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        save_resolved_config(config, staging, RESOLVED_CONFIG)
        write_json(staging / TRAINING_SUMMARY, summary)
        write_model_card(staging, config, summary)
    logger.info(f"Stage {config.stage} model saved to {final_dir}")


def _push(trainer) -> None:
    try:
        trainer.push_to_hub()
    except Exception as err:  # the hub client raises many types; all mean the same to the user
        raise UserError(
            f"push to the Hugging Face Hub failed ({type(err).__name__}: {err}); the model is saved locally, "
            "check HF_TOKEN and network access, or set training.push_to_hub: false"
        ) from err


def script_main(trainer_kind: str, argv: list[str] | None = None) -> Path | None:
    """Entry point shared by `post_training/sft.py` and `dpo.py` (plain python or `accelerate launch`)."""
    import argparse
    import sys

    from dotenv import load_dotenv

    from thce.utils.config import load_config
    from thce.utils.logging import configure_logging

    parser = argparse.ArgumentParser(
        prog=f"post_training/{trainer_kind}.py",
        description=f"Train a THCE {'SFT stage (1 or 2)' if trainer_kind == 'sft' else 'DPO stage (3)'} from its config.",
    )
    parser.add_argument("--config", required=True, help="stage YAML, e.g. configs/stage_1.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override"
    )
    parser.add_argument(
        "--resume", action=argparse.BooleanOptionalAction, default=None, help="resume (default: config)"
    )
    parser.add_argument("--force", action="store_true", help="delete this stage's earlier outputs first")
    args = parser.parse_args(argv)

    load_dotenv(Path.cwd() / ".env", override=False)  # the working directory's, as `thce` does
    configure_logging()
    try:
        config = load_config(args.config, args.overrides)
        if config.trainer_kind != trainer_kind:
            script = "dpo.py" if config.trainer_kind == "dpo" else "sft.py"
            raise UserError(
                f"{args.config} is a stage-{config.stage} config; run it with post_training/{script}"
            )
        return train_stage(config, resume=args.resume, force=args.force)
    except UserError as err:
        if os.environ.get("THCE_DEBUG") == "1":
            raise
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
