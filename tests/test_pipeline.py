"""The main job end to end at toy scale: collect -> SFT 1 -> SFT 2 -> DPO -> evaluate, then resumability."""

import json
from pathlib import Path

import pytest
import yaml

from thce.pipeline import load_pipeline_config, run_pipeline, summary_table
from thce.utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def test_shipped_pipeline_config_loads_and_names_real_stage_configs():
    from thce.utils.config import load_config

    config = load_pipeline_config(REPO / "configs/demo.yaml")
    stages = [load_config(REPO / path) for path in config.stages]
    assert [s.stage for s in stages] == [1, 2, 3]
    assert stages[1].model.name_or_path == stages[0].training["output_dir"] + "/final"
    assert stages[2].model.name_or_path == stages[1].training["output_dir"] + "/final"


def test_unknown_pipeline_key_is_rejected(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("stages: [a.yaml]\nresult_dir: x\n")
    with pytest.raises(UserError, match="unknown key 'result_dir'"):
        load_pipeline_config(path)


def _stage(tmp_path: Path, stage: int, model: str, generator: str, entries: int) -> Path:
    data = {
        "sources": [
            {"kind": "synthetic", "generator": generator, "entries": entries, "options": {"top_n": 10}}
        ],
        "preprocess": {"scrub_phi": False},
        "split": {"heldout_code_fraction": 0.0, "test_seen_fraction": 0.1, "validation_fraction": 0.0},
        "quality": {"min_english_rate": 0.0},
        "output_dir": str(tmp_path / f"data/stage_{stage}"),
    }
    config = {
        "stage": stage,
        "seed": 1,
        "data": data,
        "model": {"name_or_path": model, "precision": "fp32"},
        "chat": {
            "template": f"stage_{stage}",
            "special_tokens": [] if stage == 1 else ["<think>", "</think>"],
        },
        "training": {
            "output_dir": str(tmp_path / f"outputs/stage_{stage}"),
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-3,
            "save_strategy": "no",
            "report_to": "none",
            "logging_steps": 1,
            "activation_checkpointing": False,
            **({"loss_type": ["apo_zero"]} if stage == 3 else {"max_length": None, "padding_free": True}),
        },
    }
    path = tmp_path / f"stage_{stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_pipeline_runs_end_to_end_and_skips_finished_steps(tmp_path, tiny_llama, smollm2_tokenizer):
    base = tmp_path / "tiny-base"
    tiny_llama.save_pretrained(base)
    smollm2_tokenizer.save_pretrained(base)
    stages = [
        _stage(tmp_path, 1, str(base), "icd10cm", 60),
        _stage(tmp_path, 2, str(tmp_path / "outputs/stage_1/final"), "icd10cm_reasoning", 40),
        _stage(tmp_path, 3, str(tmp_path / "outputs/stage_2/final"), "icd10cm_preference", 30),
    ]
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "stages": [str(p) for p in stages],
                "evaluation_config": str(REPO / "configs/eval.yaml"),
                "evaluation": {
                    "datasets": [str(tmp_path / "data/stage_1/test_seen.jsonl")],
                    "limit": 4,
                    "baselines": ["keyword"],
                    "max_new_tokens": 24,
                    "bootstrap_resamples": 50,
                    "report": False,
                },
                "evaluate_base_model": False,
                "results_dir": str(tmp_path / "results"),
            }
        )
    )
    summary = run_pipeline(pipeline)
    assert [row["model"] for row in summary["rows"]] == ["stage_1", "stage_2", "stage_3"]
    for row in summary["rows"]:
        assert 0.0 <= row["exact_match"] <= 1.0 and 0.0 <= row["validity_rate"] <= 1.0
        assert row["train_loss"] is not None
    for stage in (1, 2, 3):
        assert (tmp_path / f"outputs/stage_{stage}/final/model.safetensors").is_file()
        results = json.loads((tmp_path / f"results/stage_{stage}_eval.json").read_text())
        assert {"exact_match", "f1_micro", "validity_rate"} <= set(results["metrics"])
    assert "| stage_3 |" in summary_table(summary)
    assert (tmp_path / "results/summary.md").is_file()
    for stage in (1, 2, 3):  # the same quality gate as `thce collect` ran on every stage's data
        assert json.loads((tmp_path / f"data/stage_{stage}/quality_report.json").read_text())["passed"]

    # Re-running finds everything finished: no step is redone.
    model_mtime = (tmp_path / "outputs/stage_3/final/model.safetensors").stat().st_mtime
    again = run_pipeline(pipeline)
    assert (tmp_path / "outputs/stage_3/final/model.safetensors").stat().st_mtime == model_mtime
    assert again["timings_seconds"]["total"] < summary["timings_seconds"]["total"] / 2


def test_pipeline_runs_the_quality_gate_and_stops_on_a_failed_check(tmp_path):
    # Notes with phone numbers, PHI scrubbing off: collect succeeds, the PHI-residue check fails.
    records = tmp_path / "notes.jsonl"
    records.write_text(
        "".join(
            json.dumps(
                {"text": f"Essential hypertension, call 555-867-{5300 + i} to follow up.", "codes": ["I10"]}
            )
            + "\n"
            for i in range(20)
        )
    )
    stage = tmp_path / "stage_1.yaml"
    stage.write_text(
        yaml.safe_dump(
            {
                "stage": 1,
                "data": {
                    "sources": [{"kind": "jsonl", "path": str(records)}],
                    "preprocess": {"scrub_phi": False},
                    "split": {
                        "heldout_code_fraction": 0.0,
                        "test_seen_fraction": 0.0,
                        "validation_fraction": 0.0,
                    },
                    "quality": {"min_english_rate": 0.0},
                    "output_dir": str(tmp_path / "data/stage_1"),
                },
                "training": {"output_dir": str(tmp_path / "outputs/stage_1")},
            }
        )
    )
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"stages": [str(stage)], "results_dir": str(tmp_path / "results")}))
    with pytest.raises(UserError, match=r"stage 1 data .* failed the quality checks: phi_residue_rate"):
        run_pipeline(pipeline)
    # The gate runs before the new data would replace the old: nothing was swapped in, the report is beside.
    report = json.loads((tmp_path / "data/stage_1.quality_report.json").read_text())
    assert not report["passed"]
    assert not (tmp_path / "data/stage_1").exists()
    assert not (tmp_path / "outputs/stage_1").exists(), "nothing is trained on data that failed the gate"


def test_pipeline_never_discards_another_configs_training_run_without_force(tmp_path):
    from thce.pipeline import _train
    from thce.utils.config import load_config

    config = load_config(_stage(tmp_path, 1, "unused", "icd10cm", 10))
    output = tmp_path / "outputs/stage_1"
    (output / "checkpoint-2").mkdir(parents=True)
    (output / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (output / "thce_config.yaml").write_text(yaml.safe_dump({**config.to_dict(), "seed": 7}))
    with pytest.raises(UserError, match="different config.*--force"):
        _train(config, force=False)
    assert (output / "checkpoint-2" / "trainer_state.json").read_text() == "{}"
