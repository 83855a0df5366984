import json
from pathlib import Path

import pytest

from thce.evaluation.compare import compare
from thce.evaluation.eval_config import load_eval_config
from thce.evaluation.eval_data import load_records
from thce.evaluation.evaluate_model import evaluate, evaluate_baseline
from thce.utils.errors import UserError
from thce.utils.medical_chat_templates import prepare_model, prepare_tokenizer

ASSETS = Path(__file__).resolve().parents[1] / "assets"
RECORDS = ASSETS / "eval_records.jsonl"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "eval.yaml"
KEYS = ("exact_match", "category_match", "validity_rate", "precision_micro", "recall_micro", "f1_micro",
        "f1_macro", "top_k_accuracy")  # fmt: skip


@pytest.fixture
def tiny_checkpoint(tiny_llama, smollm2_tokenizer, tmp_path):
    """A 'trained' tiny stage-1 checkpoint, saved the way the trainer saves one."""
    prepare_tokenizer(smollm2_tokenizer, "stage_1")
    prepare_model(tiny_llama, smollm2_tokenizer)
    path = tmp_path / "outputs" / "stage_1" / "final"
    tiny_llama.save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return path


def test_evaluate_writes_everything(tiny_checkpoint, tmp_path):
    output = tmp_path / "results" / "stage_1_eval.json"
    results = evaluate(
        tiny_checkpoint,
        RECORDS,
        output,
        config=CONFIG,
        bootstrap_resamples=50,
        train_data=str(RECORDS),
        precision="fp32",
    )
    assert output.is_file()
    on_disk = json.loads(output.read_text())
    for key in KEYS:
        assert 0 <= on_disk["metrics"][key] <= 1, key
        assert key in on_disk["confidence_intervals"], key
    assert on_disk["metrics"]["validity_rate"] == 1.0  # constrained: every code is real
    assert set(on_disk["baselines"]) == {"random", "keyword", "most_frequent", "rule_based"}
    assert on_disk["datasets"][0]["sha256"] and on_disk["metrics"]["n_examples"] == 8
    side = output.with_suffix("")
    rows = [json.loads(line) for line in (side / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all(row["error_category"] for row in rows)
    report = (side / "report.md").read_text()
    assert "## Headline metrics" in report and "keyword" in report
    # The retriever's figures sit beside the model's: recall@k overall and per split, and its top-1 is
    # exactly what the keyword baseline scored.
    retrieval = on_disk["retrieval"]
    assert (
        retrieval["k"] == 10
        and 0 < retrieval["recall@1"] <= retrieval["recall@10"] <= retrieval["recall@20"] <= 1
    )
    assert retrieval["recall_at_k"] == retrieval["recall@10"] and retrieval["notes"] == 8
    assert set(retrieval["splits"]) == {"eval_records"}
    assert retrieval["top1_exact"] == on_disk["baselines"]["keyword"]["metrics"]["exact_match"]
    assert on_disk["baselines"]["keyword"]["splits"] == {"eval_records": retrieval["top1_exact"]}
    assert "## Retriever" in report and "recall@10" in report
    for name in ("accuracy_per_chapter", "error_categories", "calibration"):
        assert (side / "plots" / f"{name}.png").stat().st_size > 5000
    assert results["metrics"] == on_disk["metrics"]


def test_baseline_and_compare(tmp_path):
    keyword = evaluate_baseline("keyword", RECORDS, tmp_path / "keyword.json", report=False)
    rules = evaluate_baseline("rule_based", RECORDS, tmp_path / "rules.json", report=False)
    assert keyword["metrics"]["exact_match"] >= 0.5
    assert rules["metrics"]["exact_match"] >= 0.5  # the rule table knows hypertension, diabetes, UTI ...
    comparison = compare(tmp_path / "keyword.json", tmp_path / "rules.json", tmp_path / "cmp.md")
    assert comparison["n_paired"] == 8 and "McNemar" in (tmp_path / "cmp.md").read_text()


def test_bad_inputs(tmp_path, tiny_checkpoint):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="holds no records"):
        load_records(empty)
    no_codes = tmp_path / "no_codes.jsonl"
    no_codes.write_text(json.dumps({"id": "x", "text": "Hypertension", "codes": []}) + "\n")
    with pytest.raises(UserError, match=r"no_codes.jsonl:1: field 'codes'"):
        load_records(no_codes)
    with pytest.raises(UserError, match="not a model checkpoint"):
        evaluate(tmp_path, RECORDS, tmp_path / "x.json")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"format": "thce-eval", "format_version": 0, "metrics": {}}))
    with pytest.raises(UserError, match="format version 0"):
        compare(old, old)
    with pytest.raises(UserError, match="malformed JSON"):
        compare(RECORDS, RECORDS)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(UserError, match="not a THCE evaluation results file"):
        compare(foreign, foreign)
    with pytest.raises(UserError, match="unknown key 'beams' in section 'eval'"):
        load_eval_config(CONFIG, ["beams=3"])


def test_failed_run_keeps_earlier_results(tiny_checkpoint, tmp_path, monkeypatch):
    output = tmp_path / "r.json"
    output.write_text("earlier")
    import thce.evaluation.report as report

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "write_plots", broken)
    with pytest.raises(RuntimeError):
        evaluate(tiny_checkpoint, RECORDS, output, baselines=[], bootstrap_resamples=10, precision="fp32")
    assert output.read_text() == "earlier"
    assert not list(tmp_path.glob(".r.*"))


def test_shipped_eval_config_loads():
    config = load_eval_config(CONFIG)
    assert config.batch_size == 32 and config.constrained and config.top_k == 5


def test_eval_overrides_are_typed_like_stage_configs():
    config = load_eval_config(CONFIG, ["batch_size=16", "baselines=[keyword]", "limit=null", "eval.top_k=3"])
    assert (config.batch_size, config.baselines, config.limit, config.top_k) == (16, ["keyword"], None, 3)
    with pytest.raises(UserError, match="'eval.batch_size' must be an integer"):
        load_eval_config(CONFIG, ["batch_size=lots"])
    with pytest.raises(UserError, match="'eval.precision' must be one of"):
        load_eval_config(CONFIG, ["precision=int4"])
