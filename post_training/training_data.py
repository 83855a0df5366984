"""Reading what `thce collect` wrote for a stage: `train.parquet` (+ optional `validation.parquet`).

Stages 1-2 are TRL prompt-completion conversations (`prompt`, `completion`); stage 3 preference pairs
(`prompt`, `chosen`, `rejected`). (Named training_data, not datasets: this folder also runs as a script
directory, where a `datasets.py` would shadow the `datasets` library.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from thce.utils.config import StageConfig
from thce.utils.errors import UserError
from thce.utils.schemas import TRAINER_COLUMNS


def load_stage_datasets(config: StageConfig) -> tuple[Any, Any | None]:
    """The stage's train dataset and validation dataset (None when there is none)."""
    directory = Path(config.data.output_dir)
    train_file = directory / "train.parquet"
    if not train_file.is_file():
        raise UserError(
            f"no training data for stage {config.stage}: {train_file} does not exist; "
            f"run `thce collect --config {config.source_path}` first"
        )
    train = _read(train_file, config)
    validation_file = directory / "validation.parquet"
    validation = _read(validation_file, config) if validation_file.is_file() else None
    return train, validation


def _read(path: Path, config: StageConfig) -> Any:
    from datasets import Dataset

    dataset = Dataset.from_parquet(str(path))
    required = TRAINER_COLUMNS[config.trainer_kind]
    missing = [c for c in required if c not in dataset.column_names]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)} for a stage-{config.stage} "
            f"({config.trainer_kind.upper()}) dataset; it has {', '.join(dataset.column_names)}"
        )
    if len(dataset) == 0:
        raise UserError(f"{path}: the dataset is empty")
    keep = [*required]
    return dataset.select_columns(keep)
