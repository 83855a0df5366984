import math

import pytest

from thce.inference.predictor import Predictor, is_reasoning_tokenizer
from thce.utils.code_validator import validate_code
from thce.utils.errors import UserError
from thce.utils.medical_chat_templates import SYSTEM_MESSAGES, chat_template, prepare_model, prepare_tokenizer

TEXTS = [
    "Patient has hypertension.",
    "Type 2 diabetes mellitus without complications.",
    "Closed fracture of the right femoral neck, initial encounter, after a fall at home.",
    "Asthma exacerbation",
]


def test_constrained_random_model_emits_only_billable_codes(tiny_llama, smollm2_tokenizer):
    texts = [f"{TEXTS[i % 4]} Visit {i}." for i in range(500)]
    constrained = Predictor(model=tiny_llama, tokenizer=smollm2_tokenizer, precision="fp32", batch_size=64)
    results = constrained.predict(texts)
    codes = [c for r in results for c in r["codes"]]
    assert len(results) == 500 and all(r["codes"] for r in results)
    assert all(
        c["system"] == "ICD10" and validate_code(c["code"], "ICD10", require_billable=True) for c in codes
    )
    # confidences come from the raw logits, not the constrained ones: a random model is never confident
    assert all(0 <= r["confidence"] < 1e-6 for r in results)

    free = Predictor(
        model=tiny_llama, tokenizer=smollm2_tokenizer, precision="fp32", constrained=False, batch_size=64
    )
    unconstrained = free.predict(texts[:64])
    valid = [c for r in unconstrained for c in r["codes"] if c["valid"]]
    assert len(valid) < 64  # a random model does not write valid code lines by itself


def test_reasoning_checkpoint_roundtrip(tiny_llama, smollm2_tokenizer, tmp_path):
    prepare_tokenizer(smollm2_tokenizer, "stage_2", ["<think>", "</think>"])
    prepare_model(tiny_llama, smollm2_tokenizer)
    tiny_llama.save_pretrained(tmp_path)
    smollm2_tokenizer.save_pretrained(tmp_path)
    predictor = Predictor(tmp_path, precision="fp32", max_new_tokens=30, num_beams=2)
    assert predictor.reasoning and predictor.think_budget == 1
    [result] = predictor.predict(["Patient has hypertension."])
    assert result["raw"].startswith("<think>") and "</think>" in result["raw"]
    assert result["codes"] and all(
        validate_code(c["code"], "ICD10", require_billable=True) for c in result["codes"]
    )
    assert result["candidates"][0] == {"system": "ICD10", "code": result["code"]}


def test_base_tokenizer_gets_stage_1_template(tiny_llama, smollm2_tokenizer):
    assert not is_reasoning_tokenizer(smollm2_tokenizer)
    predictor = Predictor(model=tiny_llama, tokenizer=smollm2_tokenizer, precision="fp32", constrained=False)
    # The base model's own template is replaced by THCE's, with stage 1's system message baked in.
    assert predictor.tokenizer.chat_template == chat_template("stage_1")
    assert SYSTEM_MESSAGES["stage_1"] in predictor.prompt("Patient has hypertension.")
    assert not predictor.reasoning


def test_not_a_model(tmp_path):
    with pytest.raises(UserError, match="not a model checkpoint"):
        Predictor(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="not a loadable"):
        Predictor(tmp_path)


@pytest.mark.slow
def test_real_base_model_constrained():
    predictor = Predictor("HuggingFaceTB/SmolLM2-135M-Instruct", batch_size=8)
    results = predictor.predict(TEXTS * 2)
    assert all(r["codes"] for r in results)
    assert all(validate_code(c["code"], "ICD10", require_billable=True) for r in results for c in r["codes"])


def _offered(codes):
    return [{"system": "ICD10", "code": c, "description": f"code {c}", "score": 1.0} for c in codes]


@pytest.mark.parametrize("stage", ["stage_1", "stage_2"])
def test_candidate_decoding_emits_only_offered_codes(tiny_llama, smollm2_tokenizer, stage):
    import random

    if stage == "stage_2":
        prepare_tokenizer(smollm2_tokenizer, stage, ["<think>", "</think>"])
        prepare_model(tiny_llama, smollm2_tokenizer)
    rng = random.Random(0)
    pool = ["E11.9", "E11.65", "I10", "S72.001A", "S72.002A", "J45.909", "M54.50", "F32.9", "Z00.00", "E78.5"]
    texts = [f"{TEXTS[i % 4]} Visit {i}." for i in range(96)]
    offered = [_offered(rng.sample(pool, rng.randint(1, 5))) for _ in texts]
    predictor = Predictor(
        model=tiny_llama, tokenizer=smollm2_tokenizer, precision="fp32", batch_size=32, max_new_tokens=40,
        num_beams=2 if stage == "stage_2" else 1,
    )  # fmt: skip
    results = predictor.predict(texts, candidates=offered)
    for result, offer in zip(results, offered, strict=True):
        allowed = {c["code"] for c in offer}
        assert result["codes"] and {c["code"] for c in result["codes"]} <= allowed
        assert [c["code"] for c in result["offered"]] == [c["code"] for c in offer]
        assert len(result["codes"]) <= len(allowed) or len(result["codes"]) <= predictor.max_codes
    # A random model spreads its picks: the constraint, not luck, keeps them inside each list.
    assert len({c["code"] for r in results for c in r["codes"]}) > 3


def test_checkpoint_retrieval_settings_are_used(tiny_llama, smollm2_tokenizer, tmp_path):
    import yaml

    from thce.inference.predictor import checkpoint_retrieval

    prepare_tokenizer(smollm2_tokenizer, "stage_1")
    tiny_llama.save_pretrained(tmp_path)
    smollm2_tokenizer.save_pretrained(tmp_path)
    assert checkpoint_retrieval(tmp_path) is None
    (tmp_path / "thce_config.yaml").write_text(
        yaml.safe_dump({"stage": 1, "retrieval": {"enabled": True, "k": 3}})
    )
    predictor = Predictor(tmp_path, precision="fp32")
    assert predictor.retrieval.k == 3 and predictor.describe()["retrieval"]["k"] == 3
    # the checkpoint's retrieval section also says how the first code is re-chosen (default: fusion)
    assert (predictor.rerank, predictor.fusion_weight) == ("fusion", 1.0)
    assert Predictor(tmp_path, precision="fp32", rerank="none").rerank == "none"
    [result] = predictor.predict(["Type 2 diabetes mellitus without complications"])
    assert len(result["offered"]) == 3
    assert {c["code"] for c in result["codes"]} <= {c["code"] for c in result["offered"]}
    assert "E11.9" in {c["code"] for c in result["offered"]}
    # an explicit setting wins over the checkpoint's
    from thce.utils.config import RetrievalConfig

    assert Predictor(tmp_path, precision="fp32", retrieval=RetrievalConfig(enabled=False)).retrieval is None


@pytest.mark.parametrize("mode", ["model", "fusion"])
def test_rerank_puts_the_best_scored_offered_code_first(tiny_llama, smollm2_tokenizer, mode):
    offered = [_offered(["E11.9", "E11.65", "I10"]), _offered(["S72.001A", "S72.002A"])]
    predictor = Predictor(
        model=tiny_llama, tokenizer=smollm2_tokenizer, precision="fp32", rerank=mode, fusion_weight=0.5
    )
    results = predictor.predict(TEXTS[:2], candidates=offered)
    for result, offer in zip(results, offered, strict=True):
        if mode == "fusion" and "candidate_scores" not in result:
            # the model wrote the retriever's first code: fusion keeps it without scoring the row
            assert result["code"] == offer[0]["code"]
            continue
        scores = result["candidate_scores"]
        assert list(scores) == [c["code"] for c in offer]
        fused = {
            code: s - (0.5 * math.log(i + 1) if mode == "fusion" else 0)
            for i, (code, s) in enumerate(scores.items())
        }
        assert result["codes"][0]["code"] == max(fused, key=fused.get) == result["code"]
        assert {c["code"] for c in result["codes"]} <= set(scores)


def test_rerank_scores_continue_from_the_decoding_cache(tiny_llama, smollm2_tokenizer, full_forward_score):
    """Greedy rows are scored from the decoding's own KV cache (no second prefill): each score equals a plain
    forward pass over the prompt, the tokens the model generated up to `ICD10:`, and the code."""

    offered = [_offered(["E11.9", "E11.65", "I10"]), _offered(["S72.001A", "S72.002A"])]
    predictor = Predictor(model=tiny_llama, tokenizer=smollm2_tokenizer, precision="fp32", rerank="model")
    prompts = [predictor.prompt(text, offer) for text, offer in zip(TEXTS[:2], offered, strict=True)]
    token_ids = smollm2_tokenizer(prompts, add_special_tokens=False).input_ids
    results, decoded = predictor._predict_batch(token_ids, offered)
    spent = [predictor._prefix_tokens(decoded, row) for row in range(2)]
    assert all(n is not None for n in spent)  # the forced answer format writes `ICD10:` first
    predictor._rerank(prompts, offered, results, decoded)
    for row in range(len(prompts)):
        prefix = token_ids[row] + decoded.tokens[row][: spent[row]]
        for code, score in results[row]["candidate_scores"].items():
            assert score == pytest.approx(full_forward_score(prefix, code), abs=1e-3)
