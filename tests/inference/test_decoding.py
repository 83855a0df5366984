"""Greedy decoding with forced-token runs (`decoding.py`) chooses what step-by-step greedy decoding under the
same grammar chooses, with the same raw log-probabilities."""

import pytest
import torch

from thce.inference.constraints import make_logits_processor
from thce.inference.decoding import greedy_decode
from thce.inference.predictor import Predictor

TEXTS = ["Patient has hypertension.", "Type 2 diabetes mellitus with a much longer note about its care."]
OFFERED = [["I10", "I15.0", "E11.9"], ["E11.9", "E11.65", "S72.001A", "S72.002A"]]


@pytest.mark.parametrize("stage", ["stage_1", "stage_2"])
def test_runs_of_forced_tokens_decode_like_step_by_step_greedy(tiny_llama, smollm2_tokenizer, stage):
    from transformers import LogitsProcessorList

    from thce.utils.medical_chat_templates import prepare_model, prepare_tokenizer

    if stage == "stage_2":
        prepare_tokenizer(smollm2_tokenizer, "stage_2", ["<think>", "</think>"])
        prepare_model(tiny_llama, smollm2_tokenizer)
    offered = [[{"system": "ICD10", "code": c, "description": "", "score": 1.0} for c in o] for o in OFFERED]
    predictor = Predictor(
        model=tiny_llama, tokenizer=smollm2_tokenizer, precision="fp32", max_new_tokens=40, think_budget=6
    )
    prompts = [predictor.prompt(t, o) for t, o in zip(TEXTS, offered, strict=True)]
    encoded = smollm2_tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    grammars = predictor._grammars(offered)
    calls = []
    forward = tiny_llama.forward
    tiny_llama.forward = lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs)
    ours = greedy_decode(
        tiny_llama, encoded["input_ids"], encoded["attention_mask"], grammars, 40,
        predictor.eot_id, smollm2_tokenizer.pad_token_id,
    )  # fmt: skip
    tiny_llama.forward = forward
    width = encoded["input_ids"].shape[1]
    with torch.no_grad():
        theirs = tiny_llama.generate(
            **encoded, max_new_tokens=40, do_sample=False, eos_token_id=predictor.eot_id,
            pad_token_id=smollm2_tokenizer.pad_token_id, return_dict_in_generate=True, output_logits=True,
            logits_processor=LogitsProcessorList([make_logits_processor(grammars, width, 40, 1)]),
        )  # fmt: skip
    logprobs = torch.log_softmax(torch.stack(theirs.logits, dim=1).float(), dim=-1)
    for row in range(2):
        expected = theirs.sequences[row, width:].tolist()
        expected = (
            expected[: expected.index(predictor.eot_id) + 1] if predictor.eot_id in expected else expected
        )
        assert ours.tokens[row] == expected
        for step, (token, value) in enumerate(zip(ours.tokens[row], ours.logprobs[row], strict=True)):
            if value == value:  # nan: a forced end of turn, never run through the model
                assert value == pytest.approx(logprobs[row, step, token].item(), abs=1e-4)
    # forced tokens went through the model in runs: fewer forward passes than new tokens
    assert len(calls) < max(len(t) for t in ours.tokens)
