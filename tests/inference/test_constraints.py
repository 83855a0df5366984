import pytest

from thce.inference.constraints import (
    CODE,
    DONE,
    LINE,
    THINK,
    AnswerGrammar,
    build_code_trie,
    load_code_trie,
)
from thce.utils.medical_chat_templates import prepare_tokenizer

CODES = ["E11.9", "E11.65", "I10", "S72.001A", "J45.909"]


@pytest.fixture
def tokenizer(smollm2_tokenizer):
    prepare_tokenizer(smollm2_tokenizer, "stage_2", ["<think>", "</think>"])
    return smollm2_tokenizer


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


def test_trie_holds_exactly_the_codes(tokenizer):
    trie = build_code_trie("ICD10", CODES, tokenizer)
    for code in CODES:
        assert trie.contains(ids(tokenizer, f" {code}"))
    assert not trie.contains(ids(tokenizer, " E11"))  # a prefix, not a code
    assert not trie.contains(ids(tokenizer, " E11.8"))
    assert trie.walk(ids(tokenizer, " E11.6")) is not None


def test_cached_trie_is_reused(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("THCE_HOME", str(tmp_path))
    first = load_code_trie("ICD10", tokenizer, CODES)
    assert len(list((tmp_path / "tries").glob("*.json"))) == 1
    second = load_code_trie("ICD10", tokenizer, CODES)
    assert second.children == first.children
    # The cache is plain JSON: a foreign or truncated file is rebuilt, never executed.
    (cached,) = (tmp_path / "tries").glob("*.json")
    cached.write_bytes(b"\x80\x04K\x01.")  # a pickle, not JSON
    assert load_code_trie("ICD10", tokenizer, CODES).children == first.children
    assert cached.read_bytes().startswith(b"{")


def test_forced_grammar_walk(tokenizer):
    trie = build_code_trie("ICD10", CODES, tokenizer)
    grammar = AnswerGrammar(tokenizer, [trie], reasoning=True, force_format=True, think_budget=3)
    state = grammar.initial_state()
    assert grammar.allowed(state).tolist() == [grammar.think_start]
    state = grammar.advance(state, grammar.think_start)
    assert state[0] == THINK and grammar.allowed(state) == "no_eot"
    for token in ids(tokenizer, "a b c"):
        state = grammar.advance(state, token)
    assert grammar.allowed(state).tolist() == [grammar.think_end]  # budget spent
    for token in [grammar.think_end, grammar.newline]:
        state = grammar.advance(state, token)
    assert state[0] == LINE
    assert grammar.eot not in grammar.allowed(state).tolist()  # no code yet: cannot stop
    for token in ids(tokenizer, "ICD10: E11"):
        state = grammar.advance(state, token)
    assert state[0] == CODE
    assert sorted(grammar.allowed(state).tolist()) == sorted(ids(tokenizer, ".")), (
        "E11 is not a billable code"
    )
    for token in ids(tokenizer, ".9"):
        state = grammar.advance(state, token)
    allowed = grammar.allowed(state).tolist()
    assert grammar.newline in allowed and grammar.eot in allowed
    state = grammar.advance(state, grammar.newline)
    assert state[0] == LINE and state[3] == 1 and grammar.eot in grammar.allowed(state).tolist()
    assert grammar.advance(state, grammar.eot)[0] == DONE


def test_unforced_grammar_only_constrains_code_lines(tokenizer):
    trie = build_code_trie("ICD10", CODES, tokenizer)
    grammar = AnswerGrammar(tokenizer, [trie], reasoning=True, force_format=False)
    state = grammar.initial_state()
    assert grammar.allowed(state) is None
    for token in ids(tokenizer, "<think>ICD10: whatever</think>\nICD10:"):
        state = grammar.advance(state, token)
    assert state[0] == CODE and grammar.allowed(state) is not None
    free = grammar.state_of(ids(tokenizer, "The answer is"))
    assert grammar.allowed(free) is None


def test_processor_masks_rows_independently(tokenizer):
    import torch

    from thce.inference.constraints import make_logits_processor

    trie = build_code_trie("ICD10", CODES, tokenizer)
    grammar = AnswerGrammar(tokenizer, [trie], reasoning=False, force_format=False)
    processor = make_logits_processor(grammar, prompt_length=2)
    line = ids(tokenizer, "ICD10:")
    free = ids(tokenizer, "Hello world")[:1]
    scores = torch.zeros(2, len(tokenizer))
    for step in range(len(line)):
        batch = torch.tensor([[5, 6, *line[:step]], [5, 6, *(free * step)]])
        out = processor(batch, scores.clone())
    batch = torch.tensor([[5, 6, *line], [5, 6, *(free * len(line))]])
    out = processor(batch, scores.clone())
    allowed = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert sorted(allowed) == sorted({ids(tokenizer, f" {c}")[0] for c in CODES})
    assert torch.isfinite(out[1]).all()  # the free-text row is untouched
