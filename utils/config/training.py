"""The `training:` section: checked against TRL's SFTConfig (stages 1-2) or DPOConfig (stage 3).

TRL is imported only when a stage's `training:` is checked or built, so reading `thce.utils.config`
stays torch-free.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Any

from thce.utils.config.conversion import coerce, field_type
from thce.utils.config.sections import StageConfig
from thce.utils.errors import UserError

# Names from the seed's TRL 0.23-era configs that TRL 1.x no longer accepts. We reject them with the
# current name rather than mapping silently, so a config always reads the way TRL will run it.
RENAMED_TRAINING_KEYS = {
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "gradient_accumulation": "gradient_accumulation_steps",
    "lr_scheduler": "lr_scheduler_type",
    "max_seq_length": "max_length",
    "max_prompt_length": "max_length (TRL 1.x truncates the prompt+completion as a whole)",
    "evaluation_strategy": "eval_strategy",
    "warmup_ratio": "warmup_steps (a float in [0, 1) is the ratio of total steps)",
}


# TRL/transformers fields whose nonsense values would otherwise pass through to a crash deep in training,
# or to an "untrained" final/: (lowest allowed, whether the lowest itself is excluded).
TRAINING_BOUNDS: dict[str, tuple[float, bool]] = {
    "per_device_train_batch_size": (1, False),
    "per_device_eval_batch_size": (1, False),
    "gradient_accumulation_steps": (1, False),
    "num_train_epochs": (0, True),
    "learning_rate": (0, True),
    "max_length": (1, False),
    "warmup_steps": (0, False),
    "logging_steps": (0, True),
    "save_steps": (0, True),
    "eval_steps": (0, True),
    "save_total_limit": (1, False),
    "max_grad_norm": (0, False),
    "weight_decay": (0, False),
    "beta": (0, True),
    "neftune_noise_alpha": (0, False),
    "dataloader_num_workers": (0, False),
}


def check_training_section(training: dict[str, Any], stage: int, file: str | os.PathLike) -> dict[str, Any]:
    """Check `training:` against TRL's SFTConfig (stages 1-2) or DPOConfig (stage 3) and convert values.

    Every key must be a field of that class; values are converted to the field's declared type. The class
    is constructed for real (which runs TRL's own checks) by `training_arguments`.
    """
    config_class = training_config_class(stage)
    known = {f.name: f for f in dataclasses.fields(config_class) if f.init}
    checked = {}
    for key, value in training.items():
        if key not in known:
            if key in RENAMED_TRAINING_KEYS:
                hint = f"; TRL 1.x calls it '{RENAMED_TRAINING_KEYS[key]}'"
            else:
                close = difflib.get_close_matches(key, known, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(
                f"{file}: unknown key '{key}' in section 'training' (not a field of trl.{config_class.__name__}){hint}"
            )
        checked[key] = coerce(value, field_type(config_class, key), where=f"training.{key}", file=file)
        _check_training_value(key, checked[key], file)
    return checked


def _check_training_value(key: str, value: Any, file: str | os.PathLike) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if key == "max_steps":
        if value == 0 or value < -1:
            raise UserError(
                f"{file}: 'training.max_steps' must be -1 (train for num_train_epochs) or at least 1, got {value}"
            )
        return
    if key not in TRAINING_BOUNDS:
        return
    low, strict = TRAINING_BOUNDS[key]
    if value < low or (strict and value == low):
        bound = f"greater than {low}" if strict else f"at least {low}"
        raise UserError(f"{file}: 'training.{key}' must be {bound}, got {value}")


def training_config_class(stage: int) -> type:
    """TRL's config class for a stage: SFTConfig for 1-2, DPOConfig for 3 (imports TRL, so torch)."""
    if stage == 3:
        from trl import DPOConfig

        return DPOConfig
    from trl import SFTConfig

    return SFTConfig


def training_arguments(config: StageConfig, **extra: Any) -> Any:
    """Construct TRL's SFTConfig/DPOConfig from `config.training` (+ `extra`), as the trainer will."""
    config_class = training_config_class(config.stage)
    values = {**config.training, **extra}
    values.setdefault("output_dir", str(config.layout.output_dir))
    values.setdefault("seed", config.seed)
    try:
        return config_class(**values)
    except (TypeError, ValueError) as err:
        raise UserError(
            f"{config.source_path}: section 'training' rejected by trl.{config_class.__name__}: {err}"
        ) from err
