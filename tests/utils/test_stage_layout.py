"""The stage layout: paths from the config, "current" by resolved-config comparison, and a checkpoint's stage
read from what it says about itself (never from its path)."""

import json

import pytest
import yaml

from thce.evaluation.eval_data import default_datasets
from thce.evaluation.results import default_output
from thce.utils.config import load_config, save_resolved_config
from thce.utils.errors import UserError
from thce.utils.stage_layout import StageLayout, checkpoint_data_dir, checkpoint_stage, same_config


def _config(tmp_path, stage=1, **data):
    path = tmp_path / f"stage_{stage}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "stage": stage,
                "data": {"output_dir": str(tmp_path / "data" / f"s{stage}"), **data},
                "training": {"output_dir": str(tmp_path / "runs" / f"s{stage}")},
            }
        )
    )
    return load_config(path)


def test_paths_come_from_the_config(tmp_path):
    config = _config(tmp_path, 2)
    layout = config.layout
    assert layout == StageLayout(2, tmp_path / "data/s2", tmp_path / "runs/s2")
    assert layout.final_dir == tmp_path / "runs/s2/final"
    assert layout.train_file == tmp_path / "data/s2/train.parquet"
    assert layout.summary_file == tmp_path / "runs/s2/final/training_summary.json"
    # Without training.output_dir: the documented default.
    assert (
        StageLayout.of(load_config(_write(tmp_path, {"stage": 3}))).output_dir.as_posix() == "outputs/stage_3"
    )


def _write(tmp_path, raw):
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_current_means_written_from_the_same_config(tmp_path):
    config = _config(tmp_path)
    layout = config.layout
    assert not layout.data_is_current(config) and not layout.is_trained(config)
    layout.data_dir.mkdir(parents=True)
    layout.train_file.write_bytes(b"")
    save_resolved_config(config, layout.data_dir)
    assert layout.data_is_current(config)
    other = load_config(config.source_path, ["seed=7"])
    assert not layout.data_is_current(other)

    layout.final_dir.mkdir(parents=True)
    (layout.final_dir / "model.safetensors").write_bytes(b"")
    save_resolved_config(config, layout.final_dir)
    save_resolved_config(config, layout.output_dir)
    assert layout.is_trained(config) and not layout.is_trained(other)
    assert not layout.checkpoints_stale(config) and layout.checkpoints_stale(other)
    (layout.output_dir / "thce_config.yaml").write_text("{ not: [yaml")
    assert not same_config(layout.output_dir / "thce_config.yaml", config)


def test_a_checkpoint_says_its_own_stage_and_dataset(tmp_path):
    config = _config(tmp_path, 2)
    # The directory is named like stage 1; its saved config says stage 2, and that wins.
    model = tmp_path / "outputs" / "stage_1" / "final"
    save_resolved_config(config, model)
    assert checkpoint_stage(model) == 2
    assert checkpoint_data_dir(model) == tmp_path / "data/s2"
    assert default_output(model).as_posix() == "results/stage_2_eval.json"
    config.layout.data_dir.mkdir(parents=True)
    (config.layout.data_dir / "test_seen.jsonl").write_text("{}\n")
    assert default_datasets(model) == [config.layout.data_dir / "test_seen.jsonl"]

    # A mid-training checkpoint has no config of its own: its run's config says what it is.
    run = tmp_path / "run"
    save_resolved_config(_config(tmp_path, 3), run)
    (run / "checkpoint-40").mkdir()
    assert checkpoint_stage(run / "checkpoint-40") == 3

    # Only a training summary: its stage is used. Nothing at all (a hub id): unknown.
    bare = tmp_path / "bare_model"
    bare.mkdir()
    (bare / "training_summary.json").write_text(json.dumps({"stage": 1}))
    assert checkpoint_stage(bare) == 1
    assert checkpoint_stage("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    (bare / "thce_config.yaml").write_text("stage: [1")
    with pytest.raises(UserError, match="not valid YAML"):
        checkpoint_stage(bare)
    assert default_output("HuggingFaceTB/SmolLM2-135M-Instruct").as_posix() == (
        "results/SmolLM2-135M-Instruct_eval.json"
    )
