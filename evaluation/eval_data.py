"""The test records an evaluation reads: loading and checking them, and by default the held-out test files
of the dataset the model was trained on."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from thce.evaluation.eval_config import EvalConfig
from thce.utils.config import DataConfig
from thce.utils.errors import UserError
from thce.utils.io import iter_jsonl
from thce.utils.schemas import canonical_problem
from thce.utils.stage_layout import TEST_SPLITS, checkpoint_data_dir, checkpoint_stage


def load_records(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Canonical records with a non-empty `text` and at least one `{system, code}`; clear errors otherwise."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of records, got {limit}")
    records = []
    for number, record in iter_jsonl(path, "dataset"):
        where = f"{path}:{number}"
        problem = canonical_problem(record)
        if problem:
            hint = " (evaluation needs gold codes)" if problem.startswith("field 'codes'") else ""
            raise UserError(f"{where}: {problem}{hint}")
        record.setdefault("id", f"{path.stem}-{number}")
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise UserError(f"dataset {path} holds no records")
    return records


def model_data_dir(model: str | Path | None) -> Path:
    """The dataset a model was trained on, as its own saved config says; for a model THCE did not train
    (the base model id), stage 1's default `data.output_dir`."""
    return (model is not None and checkpoint_data_dir(model)) or Path(DataConfig().output_dir)


def default_datasets(model: str | Path | None) -> list[Path]:
    """The held-out test files of the dataset the model was trained on (`model_data_dir`)."""
    directory = model_data_dir(model)
    found = [
        directory / f"{split}.jsonl" for split in TEST_SPLITS if (directory / f"{split}.jsonl").is_file()
    ]
    if not found:
        stage = (checkpoint_stage(model) if model is not None else None) or 1
        raise UserError(
            f"no --dataset given and no test files in {directory} (expected {', '.join(TEST_SPLITS)}.jsonl; "
            f"run `thce collect --config configs/stage_{stage}.yaml` first)"
        )
    return found


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (identifies the dataset a result was computed on)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_datasets(
    dataset: str | Path | Sequence[str | Path] | None, model: str | Path | None, config: EvalConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records of every dataset (each tagged with its `_split`, the file's stem) and a description of
    each file (path, split, SHA-256, count); no `dataset`: the config's `datasets`, else `default_datasets`."""
    if dataset is None or (isinstance(dataset, (list, tuple)) and not dataset):
        paths = [Path(p) for p in config.datasets] or default_datasets(model)
    elif isinstance(dataset, (str, os.PathLike)):
        paths = [Path(dataset)]
    else:
        paths = [Path(p) for p in dataset]
    records, described = [], []
    for path in paths:
        loaded = load_records(path, config.limit)
        for record in loaded:
            record["_split"] = path.stem
        records.extend(loaded)
        described.append(
            {"path": str(path), "split": path.stem, "sha256": file_sha256(path), "n_records": len(loaded)}
        )
    return records, described


def default_train_data(model: str | Path | None) -> Path | None:
    """The train split of the model's dataset (the most_frequent baseline counts it), if it exists."""
    path = model_data_dir(model) / "train.parquet"
    return path if path.is_file() else None
