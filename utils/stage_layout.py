"""Where a stage's files live and what they say about it: the one owner of the stage layout.

    data.output_dir/          (`thce collect`)      training.output_dir/      (`thce train`)
        train.parquet                                   thce_config.yaml      the run's resolved config
        validation.parquet                              checkpoint-K/         while training
        test_seen.jsonl, test_unseen.jsonl              final/                model, tokenizer, card,
        dataset_metadata.json, README.md                    thce_config.yaml, training_summary.json
        quality_report.json, thce_config.yaml

`StageLayout` (also `StageConfig.layout`) gives the paths and answers "is the data current?", "is this
stage trained?" and "are its checkpoints from another config?" by comparing the saved resolved config with
the current one. `checkpoint_config` reads what a model directory says about itself (its own
`thce_config.yaml`, or its training run's), so evaluation never guesses a stage from a path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thce.utils.errors import UserError
from thce.utils.io import read_json, read_yaml

if TYPE_CHECKING:
    from thce.utils.config import StageConfig

RESOLVED_CONFIG = "thce_config.yaml"
TRAINING_SUMMARY = "training_summary.json"
QUALITY_REPORT = "quality_report.json"
DATASET_METADATA = "dataset_metadata.json"
TEST_SPLITS = ("test_unseen", "test_seen")
FINAL = "final"
MODEL_WEIGHTS = "model.safetensors"


def default_training_output_dir(stage: int) -> str:
    """`training.output_dir` when a config leaves it out."""
    return f"outputs/stage_{stage}"


def same_config(saved: str | os.PathLike, config: StageConfig) -> bool:
    """Whether the resolved config saved at `saved` is the one `config` resolves to (False if none)."""
    saved = Path(saved)
    if not saved.is_file():
        return False
    try:
        return read_yaml(saved, "resolved config") == config.to_dict()
    except UserError:
        return False  # a damaged copy is not this config


@dataclass(frozen=True)
class StageLayout:
    """The files of one stage: its dataset (`data_dir`) and its training run (`output_dir`)."""

    stage: int
    data_dir: Path
    output_dir: Path

    @classmethod
    def of(cls, config: StageConfig) -> StageLayout:
        return cls(
            stage=config.stage,
            data_dir=Path(config.data.output_dir),
            output_dir=Path(config.training.get("output_dir") or default_training_output_dir(config.stage)),
        )

    # -- the dataset ---------------------------------------------------------------------------------
    @property
    def train_file(self) -> Path:
        return self.data_dir / "train.parquet"

    @property
    def validation_file(self) -> Path:
        return self.data_dir / "validation.parquet"

    @property
    def test_files(self) -> list[Path]:
        """The held-out test splits that exist, unseen first."""
        return [self.data_dir / f"{s}.jsonl" for s in TEST_SPLITS if (self.data_dir / f"{s}.jsonl").is_file()]

    @property
    def quality_report(self) -> Path:
        return self.data_dir / QUALITY_REPORT

    def data_is_current(self, config: StageConfig) -> bool:
        """The dataset exists and was collected from this very config."""
        return self.train_file.is_file() and same_config(self.data_dir / RESOLVED_CONFIG, config)

    # -- the training run ----------------------------------------------------------------------------
    @property
    def final_dir(self) -> Path:
        return self.output_dir / FINAL

    @property
    def run_config(self) -> Path:
        """The resolved config of the run that wrote (or is writing) the checkpoints."""
        return self.output_dir / RESOLVED_CONFIG

    @property
    def summary_file(self) -> Path:
        return self.final_dir / TRAINING_SUMMARY

    def is_trained(self, config: StageConfig) -> bool:
        """`final/` holds a model trained from this very config."""
        return (self.final_dir / MODEL_WEIGHTS).is_file() and same_config(
            self.final_dir / RESOLVED_CONFIG, config
        )

    def checkpoints_stale(self, config: StageConfig) -> bool:
        """The output directory holds a run of another config (its checkpoints must not be resumed)."""
        return self.run_config.is_file() and not same_config(self.run_config, config)

    def training_summary(self) -> dict[str, Any]:
        """`final/training_summary.json`, or {} when the stage has none."""
        return read_training_summary(self.final_dir)


def read_training_summary(model_dir: str | os.PathLike) -> dict[str, Any]:
    """A model directory's `training_summary.json`, or {} when it has none."""
    path = Path(model_dir) / TRAINING_SUMMARY
    if not path.is_file():
        return {}
    try:
        summary = read_json(path, "training summary")
    except UserError:
        return {}
    return summary if isinstance(summary, dict) else {}


def checkpoint_config(model: str | os.PathLike) -> dict[str, Any] | None:
    """The resolved stage config a model directory was trained from: its own `thce_config.yaml`, else
    its training run's (a `checkpoint-K` sits inside the run's output directory); None for a hub id or
    a directory THCE did not train."""
    path = Path(model)
    for directory in (path, path.parent):
        saved = directory / RESOLVED_CONFIG
        if path.is_dir() and saved.is_file():
            try:
                raw = read_yaml(saved, "resolved config")
            except UserError:
                return None
            return raw if isinstance(raw, dict) else None
    return None


def checkpoint_stage(model: str | os.PathLike) -> int | None:
    """The stage a model was trained as, from its saved config or training summary; None if unknown."""
    saved = checkpoint_config(model)
    stage = saved.get("stage") if saved else read_training_summary(model).get("stage")
    return stage if isinstance(stage, int) and not isinstance(stage, bool) else None


def checkpoint_data_dir(model: str | os.PathLike) -> Path | None:
    """The dataset directory a model was trained on (its config's `data.output_dir`), or None."""
    saved = checkpoint_config(model)
    data = saved.get("data") if saved else None
    output_dir = data.get("output_dir") if isinstance(data, dict) else None
    return Path(output_dir) if isinstance(output_dir, str) and output_dir else None
