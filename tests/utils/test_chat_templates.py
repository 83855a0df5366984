import pytest

from thce.utils.medical_chat_templates import (
    PAD_TOKEN,
    REASONING_TOKENS,
    SYSTEM_MESSAGES,
    assistant_messages,
    chat_template,
    format_answer,
    prepare_model,
    prepare_tokenizer,
    prompt_messages,
)

CODES = [{"system": "ICD10", "code": "E11.9"}, {"system": "ICD10", "code": "I10"}]
NOTE = "62M with T2DM and HTN, on metformin."
REASONING = "Endocrine chapter, E08-E13 block, category E11 (type 2); no complication documented: E11.9."

EXPECTED = {
    "stage_1": (
        "<|im_start|>system\nYou are a medical coding assistant. Convert clinical narratives to billing codes.<|im_end|>\n"
        "<|im_start|>user\n62M with T2DM and HTN, on metformin.<|im_end|>\n"
        "<|im_start|>assistant\nICD10: E11.9\nICD10: I10<|im_end|>\n"
    ),
    "stage_2": (
        "<|im_start|>system\nYou are a medical coding expert. Use <think> tags to show your reasoning.<|im_end|>\n"
        "<|im_start|>user\n62M with T2DM and HTN, on metformin.<|im_end|>\n"
        "<|im_start|>assistant\n<think>" + REASONING + "</think>\nICD10: E11.9\nICD10: I10<|im_end|>\n"
    ),
}
EXPECTED["stage_3"] = EXPECTED["stage_2"]


def _conversation(stage):
    reasoning = None if stage == "stage_1" else REASONING
    return prompt_messages(NOTE, stage) + assistant_messages(CODES, reasoning)


@pytest.mark.parametrize("stage", ["stage_1", "stage_2", "stage_3"])
def test_each_stage_renders_byte_exactly(smollm2_tokenizer, stage):
    special = REASONING_TOKENS if stage != "stage_1" else ()
    prepare_tokenizer(smollm2_tokenizer, stage, special)
    rendered = smollm2_tokenizer.apply_chat_template(_conversation(stage), tokenize=False)
    assert rendered == EXPECTED[stage]


def test_default_system_message_is_baked_into_the_template(smollm2_tokenizer):
    prepare_tokenizer(smollm2_tokenizer, "stage_1")
    user_only = [{"role": "user", "content": "Patient has hypertension"}]
    prompt = smollm2_tokenizer.apply_chat_template(user_only, tokenize=False, add_generation_prompt=True)
    assert prompt == (
        f"<|im_start|>system\n{SYSTEM_MESSAGES['stage_1']}<|im_end|>\n"
        "<|im_start|>user\nPatient has hypertension<|im_end|>\n<|im_start|>assistant\n"
    )
    custom = chat_template("stage_2", system_message='Say "codes" only.')
    smollm2_tokenizer.chat_template = custom
    prompt = smollm2_tokenizer.apply_chat_template(user_only, tokenize=False)
    assert prompt.startswith('<|im_start|>system\nSay "codes" only.<|im_end|>\n')


def test_trained_span_is_the_answer_plus_end_of_turn(smollm2_tokenizer):
    prepare_tokenizer(smollm2_tokenizer, "stage_2", REASONING_TOKENS)
    encoded = smollm2_tokenizer.apply_chat_template(
        _conversation("stage_2"), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    trained = [i for i, m in zip(ids, mask, strict=True) if m]
    untrained = [i for i, m in zip(ids, mask, strict=True) if not m]
    im_end = smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert trained[-1] == im_end, "the end-of-turn token must be trained, or the model never learns to stop"
    assert smollm2_tokenizer.decode(trained) == format_answer(CODES, REASONING) + "<|im_end|>"
    prompt_text = smollm2_tokenizer.decode(untrained)
    assert NOTE in prompt_text and SYSTEM_MESSAGES["stage_2"] in prompt_text
    assert "E11.9" not in prompt_text
    assert untrained.count(im_end) == 2  # system and user turns end untrained


def test_think_tokens_are_single_special_tokens_and_survive_decoding(smollm2_tokenizer):
    added = prepare_tokenizer(smollm2_tokenizer, "stage_2", REASONING_TOKENS)
    assert added == 2
    text = "<think>Category E11.</think>\nICD10: E11.9"
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
    think_ids = [smollm2_tokenizer.convert_tokens_to_ids(t) for t in REASONING_TOKENS]
    assert all(ids.count(t) == 1 for t in think_ids)
    assert smollm2_tokenizer.decode(ids) == text
    # Adding them twice is a no-op.
    assert prepare_tokenizer(smollm2_tokenizer, "stage_2", REASONING_TOKENS) == 0


def test_pad_token_is_not_the_end_of_turn_token(smollm2_tokenizer):
    assert smollm2_tokenizer.pad_token == smollm2_tokenizer.eos_token  # SmolLM2's own setting: the trap
    prepare_tokenizer(smollm2_tokenizer, "stage_1")
    assert smollm2_tokenizer.pad_token == PAD_TOKEN
    assert smollm2_tokenizer.pad_token_id != smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert smollm2_tokenizer.eos_token == "<|im_end|>"


def test_prepare_model_resizes_with_mean_initialised_rows(smollm2_tokenizer, tiny_llama):
    import torch

    old_rows = tiny_llama.get_input_embeddings().weight.detach().clone()
    prepare_tokenizer(smollm2_tokenizer, "stage_2", (*REASONING_TOKENS, "<extra>"))
    prepare_model(tiny_llama, smollm2_tokenizer)
    weights = tiny_llama.get_input_embeddings().weight.detach()
    assert weights.shape[0] == len(smollm2_tokenizer) == old_rows.shape[0] + 3
    assert torch.equal(weights[: old_rows.shape[0]], old_rows)
    ids = smollm2_tokenizer.convert_tokens_to_ids
    # The think tags start as the segment delimiters they stand in for (learnable in a short run) ...
    for token, source in (("</think>", "<|im_end|>"), ("<think>", "<|im_start|>")):
        offset = (weights[ids(token)] - old_rows[ids(source)]).norm() / old_rows[ids(source)].norm()
        assert 0 < offset < 0.05  # a copy, with just enough noise that the two never tie
    # ... any other new token is drawn around the mean: much closer to it than a typical old row is.
    mean = old_rows.mean(0)
    assert (weights[ids("<extra>")] - mean).norm() < (old_rows - mean).norm(dim=1).mean()
    assert tiny_llama.config.pad_token_id == smollm2_tokenizer.pad_token_id
    assert tiny_llama.config.eos_token_id == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    # Preparing a model that already has the rows (stage 3 from stage 2) keeps what was trained.
    with torch.no_grad():
        tiny_llama.get_input_embeddings().weight[ids("</think>")] += 1.0
    trained = tiny_llama.get_input_embeddings().weight.detach().clone()
    prepare_model(tiny_llama, smollm2_tokenizer)
    assert torch.equal(tiny_llama.get_input_embeddings().weight, trained)


def test_format_answer():
    assert format_answer(CODES) == "ICD10: E11.9\nICD10: I10"
    assert format_answer([{"system": "CPT", "code": "99213"}], " why ") == "<think>why</think>\nCPT: 99213"
    assert format_answer([]) == ""


def test_unknown_template_is_rejected():
    with pytest.raises(ValueError, match="unknown chat template"):
        chat_template("stage_9")


CANDIDATES = [
    {"system": "ICD10", "code": "E11.9", "description": "Type 2 diabetes mellitus without complications"},
    {"system": "ICD10", "code": "E11.65", "description": "Type 2 diabetes mellitus with  hyperglycemia"},
    {"system": "ICD10", "code": "I10", "description": "Essential (primary) hypertension"},
]


@pytest.mark.parametrize("stage", ["stage_1", "stage_2"])
def test_candidate_prompt_renders_byte_exactly(smollm2_tokenizer, stage):
    special = REASONING_TOKENS if stage != "stage_1" else ()
    prepare_tokenizer(smollm2_tokenizer, stage, special)
    reasoning = None if stage == "stage_1" else "E11.9: no complication; not E11.65."
    conversation = prompt_messages(f"  {NOTE}\n", stage, candidates=CANDIDATES) + assistant_messages(
        CODES, reasoning
    )
    rendered = smollm2_tokenizer.apply_chat_template(conversation, tokenize=False)
    answer = (
        "<think>E11.9: no complication; not E11.65.</think>\n" if reasoning else ""
    ) + "ICD10: E11.9\nICD10: I10"
    assert rendered == (
        f"<|im_start|>system\n{SYSTEM_MESSAGES[stage]}<|im_end|>\n"
        "<|im_start|>user\n62M with T2DM and HTN, on metformin.\n\nCandidates:\n"
        "1. E11.9 Type 2 diabetes mellitus without complications\n"
        "2. E11.65 Type 2 diabetes mellitus with hyperglycemia\n"  # whitespace in a description collapsed
        "3. I10 Essential (primary) hypertension<|im_end|>\n"
        f"<|im_start|>assistant\n{answer}<|im_end|>\n"
    )


def test_candidate_code_tokens_match_the_answer_line(smollm2_tokenizer):
    # The model copies a code from the list into its answer: the code's tokens are the same in both places.
    content = prompt_messages(NOTE, candidates=CANDIDATES)[1]["content"]
    for candidate in CANDIDATES:
        code_tokens = smollm2_tokenizer(f" {candidate['code']}", add_special_tokens=False).input_ids
        line = smollm2_tokenizer(content, add_special_tokens=False).input_ids
        assert any(line[i : i + len(code_tokens)] == code_tokens for i in range(len(line)))


def test_no_candidates_is_the_plain_note():
    assert prompt_messages(NOTE, candidates=[])[1]["content"] == NOTE
