"""Fixtures for training tests: a tiny random Llama saved as a checkpoint, and small stage datasets."""

from pathlib import Path

import pytest
import yaml

from thce.utils.medical_chat_templates import assistant_messages, prompt_messages

# A small memorisation set: 8 notes, each with its codes (and a reasoning trace for stages 2-3).
EXAMPLES = [
    (
        "Essential hypertension, on lisinopril.",
        [("ICD10", "I10")],
        "Circulatory chapter, hypertensive diseases: I10.",
    ),
    (
        "Type 2 diabetes without complications.",
        [("ICD10", "E11.9")],
        "Endocrine chapter, category E11 (type 2): E11.9.",
    ),
    (
        "Asthma, mild intermittent, uncomplicated.",
        [("ICD10", "J45.20")],
        "Respiratory chapter, asthma J45: J45.20.",
    ),
    (
        "Hyperlipidemia, unspecified.",
        [("ICD10", "E78.5")],
        "Metabolic disorders E70-E88, category E78: E78.5.",
    ),
    (
        "Office visit, established patient, low complexity.",
        [("CPT", "99213")],
        "E/M office visit level 3: 99213.",
    ),
    (
        "Major depressive disorder, single episode.",
        [("ICD10", "F32.9")],
        "Mental chapter, category F32: F32.9.",
    ),
    ("Acute pharyngitis, unspecified.", [("ICD10", "J02.9")], "Respiratory chapter, category J02: J02.9."),
    ("Low back pain.", [("ICD10", "M54.50")], "Musculoskeletal chapter, category M54: M54.50."),
]
WRONG = {"I10": "I15.0", "E11.9": "E10.9", "J45.20": "J45.909", "E78.5": "E78.0"}


def _codes(pairs):
    return [{"system": s, "code": c} for s, c in pairs]


def write_stage_data(directory: Path, stage: int, repeat: int = 4) -> Path:
    from datasets import Dataset

    template = f"stage_{stage}"
    rows = []
    for i, (text, pairs, reasoning) in enumerate(EXAMPLES * repeat):
        prompt = prompt_messages(text, template)
        trace = reasoning if stage > 1 else None
        row = {"id": f"ex-{i}", "source": "test", "prompt": prompt}
        if stage < 3:
            row["completion"] = assistant_messages(_codes(pairs), trace)
        else:
            wrong = [(s, WRONG.get(c, "Z00.00")) for s, c in pairs]
            row["chosen"] = assistant_messages(_codes(pairs), trace)
            row["rejected"] = assistant_messages(_codes(wrong), trace)
        rows.append(row)
    directory.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).to_parquet(str(directory / "train.parquet"))
    return directory


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_llama, smollm2_tokenizer) -> Path:
    path = tmp_path / "tiny-base"
    tiny_llama.save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return path


def write_stage_config(tmp_path: Path, stage: int, model: Path | str, **training) -> Path:
    data_dir = write_stage_data(tmp_path / f"data_stage_{stage}", stage)
    config = {
        "stage": stage,
        "seed": 0,
        "data": {"output_dir": str(data_dir)},
        "model": {"name_or_path": str(model), "precision": "fp32"},
        "chat": {
            "template": f"stage_{stage}",
            "special_tokens": [] if stage == 1 else ["<think>", "</think>"],
        },
        "training": {
            "output_dir": str(tmp_path / f"outputs/stage_{stage}"),
            "per_device_train_batch_size": 8,
            "learning_rate": 2e-2 if stage < 3 else 5e-4,
            "num_train_epochs": 1,
            "max_steps": 12,
            "logging_steps": 1,
            "save_strategy": "no",
            "report_to": "none",
            "activation_checkpointing": False,
            "max_length": None if stage < 3 else 256,
            "lr_scheduler_type": "constant",
            "warmup_steps": 0,
            **({"padding_free": True} if stage < 3 else {"loss_type": ["apo_zero"], "beta": 0.1}),
            **training,
        },
    }
    path = tmp_path / f"stage_{stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
