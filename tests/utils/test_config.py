from pathlib import Path

import pytest
import yaml

from thce.utils.config import (
    StageConfig,
    load_config,
    save_resolved_config,
    training_arguments,
)
from thce.utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]
STAGE_CONFIGS = sorted((REPO / "configs").glob("stage_*.yaml"))


def test_stage_configs_are_shipped():
    assert [p.name for p in STAGE_CONFIGS] == ["stage_1.yaml", "stage_2.yaml", "stage_3.yaml"]


@pytest.mark.parametrize("path", STAGE_CONFIGS, ids=lambda p: p.name)
def test_every_stage_config_loads_and_builds_trl_arguments(path):
    config = load_config(path)
    assert isinstance(config, StageConfig)
    args = training_arguments(config, use_cpu=True)
    expected_class = "DPOConfig" if config.stage == 3 else "SFTConfig"
    assert type(args).__name__ == expected_class
    assert isinstance(args.learning_rate, float)


def test_seed_hyper_parameters_are_the_defaults():
    s1, s2, s3 = (load_config(p) for p in STAGE_CONFIGS)
    assert [c.training["num_train_epochs"] for c in (s1, s2, s3)] == [3, 1, 1]
    assert [c.training["learning_rate"] for c in (s1, s2, s3)] == [3e-4, 3e-4, 1e-5]
    assert [c.training.get("neftune_noise_alpha") for c in (s1, s2)] == [0.01, 0.02]
    assert s3.training["loss_type"] == ["apo_zero"]
    assert s3.training["beta"] == 0.1 and s3.training["max_grad_norm"] == 0.2
    # Stage chaining is explicit.
    assert s2.model.name_or_path == "outputs/stage_1/final"
    assert s3.model.name_or_path == "outputs/stage_2/final"
    assert s2.chat.special_tokens == ["<think>", "</think>"]


def _write(tmp_path, data) -> Path:
    path = tmp_path / "stage.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _minimal(stage=1):
    return {"stage": stage, "training": {"output_dir": "outputs/x"}}


@pytest.mark.parametrize(
    ("section", "patch"),
    [
        ("top level", {"modle": {}}),
        ("data", {"data": {"sorces": []}}),
        ("data.preprocess", {"data": {"preprocess": {"scrub": True}}}),
        ("data.sources[0]", {"data": {"sources": [{"kind": "jsonl", "paht": "x.jsonl"}]}}),
        ("model", {"model": {"name": "x"}}),
        ("model.lora", {"model": {"lora": {"rank": 8}}}),
        ("chat", {"chat": {"templat": "stage_1"}}),
        ("tracking", {"tracking": {"projct": "x"}}),
        ("training", {"training": {"output_dir": "o", "learning_rat": 1e-4}}),
    ],
)
def test_unknown_key_is_rejected_with_its_name_section_and_file(tmp_path, section, patch):
    path = _write(tmp_path, {**_minimal(), **patch})
    with pytest.raises(UserError) as err:
        load_config(path)
    message = str(err.value)
    bad_key = {
        "top level": "modle",
        "data": "sorces",
        "data.preprocess": "scrub",
        "data.sources[0]": "paht",
        "model": "name",
        "model.lora": "rank",
        "chat": "templat",
        "tracking": "projct",
        "training": "learning_rat",
    }[section]
    assert f"'{bad_key}'" in message
    assert f"section '{section}'" in message
    assert str(path) in message


def test_seed_era_training_names_are_rejected_with_the_trl1_name(tmp_path):
    path = _write(tmp_path, {"stage": 1, "training": {"max_seq_length": 512}})
    with pytest.raises(UserError, match="max_length"):
        load_config(path)
    path = _write(tmp_path, {"stage": 1, "training": {"warmup_ratio": 0.1}})
    with pytest.raises(UserError, match="warmup_steps"):
        load_config(path)


def test_dpo_only_keys_are_rejected_for_sft_stages(tmp_path):
    with pytest.raises(UserError, match="'beta'.*SFTConfig"):
        load_config(_write(tmp_path, {"stage": 1, "training": {"beta": 0.1}}))
    assert load_config(_write(tmp_path, {"stage": 3, "training": {"beta": 0.1}})).training["beta"] == 0.1


def test_wrong_types_and_choices_are_rejected(tmp_path):
    with pytest.raises(UserError, match=r"'model.precision' must be one of"):
        load_config(_write(tmp_path, {**_minimal(), "model": {"precision": "int8"}}))
    with pytest.raises(UserError, match=r"'training.num_train_epochs' must be a number"):
        load_config(_write(tmp_path, {"stage": 1, "training": {"num_train_epochs": "lots"}}))
    with pytest.raises(UserError, match="'stage' must be one of"):
        load_config(_write(tmp_path, {"stage": 4}))
    with pytest.raises(UserError, match="missing required key"):
        load_config(_write(tmp_path, {"seed": 1}))


def test_yaml_scientific_notation_becomes_a_float(tmp_path):
    # YAML 1.1 reads `3e-4` (no dot) as a string; the loader converts it by the field's type.
    path = tmp_path / "s.yaml"
    path.write_text("stage: 1\ntraining:\n  learning_rate: 3e-4\n")
    assert load_config(path).training["learning_rate"] == pytest.approx(3e-4)


@pytest.mark.parametrize(
    ("override", "getter", "expected"),
    [
        ("training.learning_rate=1e-4", lambda c: c.training["learning_rate"], 1e-4),
        ("training.num_train_epochs=2", lambda c: c.training["num_train_epochs"], 2.0),
        ("training.per_device_train_batch_size=8", lambda c: c.training["per_device_train_batch_size"], 8),
        ("training.activation_checkpointing=false", lambda c: c.training["activation_checkpointing"], False),
        ("training.report_to=none", lambda c: c.training["report_to"], "none"),
        ("seed=7", lambda c: c.seed, 7),
        ("model.precision=fp32", lambda c: c.model.precision, "fp32"),
        ("model.lora.r=8", lambda c: c.model.lora.r, 8),
        ("data.preprocess.scrub_phi=false", lambda c: c.data.preprocess.scrub_phi, False),
        ("data.sources.0.entries=100", lambda c: c.data.sources[0].entries, 100),
        ("data.output_dir=/tmp/x", lambda c: c.data.output_dir, "/tmp/x"),
    ],
)
def test_overrides_are_typed(override, getter, expected):
    config = load_config(STAGE_CONFIGS[0], [override])
    value = getter(config)
    assert value == expected
    assert type(value) is type(expected)


def test_bad_overrides_are_clear_errors():
    with pytest.raises(UserError, match="section.key=value"):
        load_config(STAGE_CONFIGS[0], ["training.learning_rate"])
    with pytest.raises(UserError, match="'training.learning_rate' must be a number"):
        load_config(STAGE_CONFIGS[0], ["training.learning_rate=fast"])
    with pytest.raises(UserError, match="no item 9"):
        load_config(STAGE_CONFIGS[0], ["data.sources.9.entries=1"])
    with pytest.raises(UserError, match="unknown key 'lerning_rate'"):
        load_config(STAGE_CONFIGS[0], ["training.lerning_rate=1e-4"])


def test_missing_or_broken_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("stage: [1\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(broken)


def test_trl_rejection_on_construction_is_a_user_error(tmp_path):
    config = load_config(_write(tmp_path, {"stage": 1, "training": {"lr_scheduler_type": "wobbly"}}))
    with pytest.raises(UserError, match="rejected by trl.SFTConfig"):
        training_arguments(config, use_cpu=True)


def test_resolved_config_round_trips(tmp_path):
    config = load_config(STAGE_CONFIGS[1], ["training.learning_rate=1e-4"])
    written = save_resolved_config(config, tmp_path / "run")
    text = written.read_text()
    assert "training.learning_rate=1e-4" in text  # the override is recorded in the header
    reloaded = load_config(written)
    assert reloaded.to_dict() == config.to_dict()
