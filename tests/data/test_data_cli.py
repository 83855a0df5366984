"""The data verbs through the real CLI: generate, collect (+ quality), preprocess, quality, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _thce(*args, cwd=REPO):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "thce.cli", "-q", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def _config(tmp_path):
    raw = yaml.safe_load((REPO / "configs" / "demo_stage_1.yaml").read_text())
    raw["data"]["sources"][0]["entries"] = 120
    raw["data"]["sources"][1]["path"] = str(REPO / "data" / "samples" / "stage_1.jsonl")
    raw["data"]["preprocess"]["phi_engine"] = "rules"
    raw["data"]["output_dir"] = str(tmp_path / "stage_1_final")
    path = tmp_path / "stage_1.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_generate_collect_quality_preprocess(tmp_path):
    config = _config(tmp_path)
    generated = _thce("generate", "-c", str(config), "-o", str(tmp_path / "gen.jsonl"), "-n", "25")
    assert generated.returncode == 0, generated.stderr
    assert len((tmp_path / "gen.jsonl").read_text().splitlines()) == 25

    collected = _thce("collect", "-c", str(config))
    assert collected.returncode == 0, collected.stderr
    assert "PASSED" in collected.stdout
    report = json.loads((tmp_path / "stage_1_final" / "quality_report.json").read_text())
    assert report["passed"] and report["metrics"]["code_validity"] == 1.0

    quality = _thce(
        "quality",
        "--input",
        str(tmp_path / "stage_1_final" / "test_seen.jsonl"),
        "--set",
        "data.quality.min_english_rate=0",
    )
    assert quality.returncode == 0, quality.stdout + quality.stderr

    processed = _thce(
        "preprocess", "-c", str(config), "-i", str(tmp_path / "gen.jsonl"), "-o", str(tmp_path / "chat.jsonl")
    )
    assert processed.returncode == 0, processed.stderr
    row = json.loads((tmp_path / "chat.jsonl").read_text().splitlines()[0])
    assert set(row) == {"prompt", "completion", "id", "source"}


def test_quality_fails_with_exit_1_and_bad_input_with_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {
                "id": "1",
                "text": "Assessment: essential hypertension noted.",
                "codes": [{"system": "ICD10", "code": "I10.9"}],
            }
        )
        + "\n"
    )
    result = _thce("quality", "--input", str(bad))
    assert result.returncode == 1 and "code_validity" in result.stdout
    missing = _thce("collect", "-c", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert (
        missing.stderr.strip().startswith("thce: error: config file not found")
        and "Traceback" not in missing.stderr
    )


def test_demo_configs_load():
    from thce.utils.config import load_config

    for stage in (1, 2, 3):
        config = load_config(REPO / "configs" / f"demo_stage_{stage}.yaml")
        assert config.data.output_dir == f"data/artefacts/demo_stage_{stage}_final"
        # retrieval-augmented: the demo trains over the whole code set, with candidates in every prompt
        assert "top_n" not in config.data.sources[0].options
        assert config.retrieval.enabled and config.retrieval.k >= 5
        assert config.training["per_device_train_batch_size"] == 8
