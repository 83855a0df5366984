"""The model card written into every stage's `final/` directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from thce import __version__
from thce.utils.config import StageConfig
from thce.utils.io import read_json

_STAGE_NAMES = {1: "non-reasoning SFT", 2: "reasoning SFT (<think> traces)", 3: "DPO (apo_zero)"}
_CARD_HYPERPARAMETERS = (
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "max_length",
    "neftune_noise_alpha",
    "beta",
    "loss_type",
    "max_grad_norm",
    "padding_free",
    "activation_checkpointing",
)


def write_model_card(directory: Path, config: StageConfig, summary: dict[str, Any]) -> Path:
    """Write README.md (Hugging Face model-card front matter + data and hyper-parameter tables)."""
    metadata_file = Path(config.data.output_dir) / "dataset_metadata.json"
    data_lines = [f"- Training examples: {summary['train_examples']:,}"]
    if metadata_file.is_file():
        metadata = read_json(metadata_file, "dataset metadata")
        for key in ("total_rows", "sources", "code_system_counts"):
            if key in metadata:
                data_lines.append(
                    f"- {key.replace('_', ' ').capitalize()}: `{json.dumps(metadata[key])[:400]}`"
                )
    hyper = "\n".join(
        f"| `{key}` | `{config.training[key]}` |" for key in _CARD_HYPERPARAMETERS if key in config.training
    )
    final_loss = summary["metrics"].get("train_loss")
    card = f"""---
base_model: {config.model.name_or_path}
library_name: transformers
tags: [thce, medical-coding, icd-10-cm, trl, {summary["trainer"]}]
---

# THCE stage {config.stage}: {_STAGE_NAMES[config.stage]}

Turns clinical narratives into billing codes (ICD-10-CM, CPT, HCPCS), answering one `SYSTEM: CODE` per line
{"after a `<think>` reasoning trace " if config.stage > 1 else ""}in the ChatML template saved with this tokenizer.
Trained with THCE {__version__} from `{config.source_path}`; the resolved config is `thce_config.yaml`.

**Not for clinical or billing use without human review.** Trained on synthetic data built from the
official code sets; it has not been validated on real clinical documentation.

## Data
- Dataset: `{config.data.output_dir}`
{chr(10).join(data_lines)}

## Training
- Starting model: `{config.model.name_or_path}`; device `{summary["device"]}`, {summary["precision"]} autocast
- Steps: {summary["global_step"]}; wall time {summary["wall_seconds"]} s; final train loss {final_loss}

| hyper-parameter | value |
|---|---|
{hyper}
"""
    path = directory / "README.md"
    path.write_text(card, encoding="utf-8")
    return path
