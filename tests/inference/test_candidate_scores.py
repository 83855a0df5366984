"""Scoring the offered candidates with one prefill and a reused KV cache, and the fused ranking."""

import pytest

from thce.inference.candidate_scores import fused_order, rerank_first_code, score_first_code


def test_cached_scores_equal_full_forward_scores(tiny_llama, smollm2_tokenizer, full_forward_score):

    smollm2_tokenizer.pad_token = "<|endoftext|>"
    smollm2_tokenizer.padding_side = "left"
    prefixes = [
        "Note: high blood pressure.\nICD10:",
        "A much longer note about diabetes and its care.\nICD10:",
    ]
    candidates = [["I10", "I15.0", "E11.9"], ["E11.9", "E11.65"]]
    scores = score_first_code(tiny_llama, smollm2_tokenizer, prefixes, candidates)
    for prefix, codes, row in zip(prefixes, candidates, scores, strict=True):
        assert len(row) == len(codes)
        ids = smollm2_tokenizer(prefix, add_special_tokens=False).input_ids
        for code, score in zip(codes, row, strict=True):
            assert score == pytest.approx(full_forward_score(ids, code), abs=1e-3)
    # scored two (prefix x candidate) rows at a time: the same scores
    chunked = score_first_code(tiny_llama, smollm2_tokenizer, prefixes, candidates, max_rows=2)
    for chunk_row, row in zip(chunked, scores, strict=True):
        assert chunk_row == pytest.approx(row, abs=1e-4)


def test_fusion_and_rerank():
    # retriever order A, B, C; the model prefers C strongly: the rank prior (log 3 = 1.1) does not overrule it
    assert fused_order([-3.0, -2.0, -0.1])[0] == 2
    # ... but it does overrule a weak preference, and a heavier weight sides with the retriever
    assert fused_order([-1.0, -0.8, -5.0])[0] == 0
    assert fused_order([-3.0, -2.0, -0.1], weight=5.0)[0] == 0
    assert fused_order([-0.1, -5.0, -6.0])[0] == 0  # both agree
    codes = [
        {"system": "ICD10", "code": "A00.0", "confidence": 0.9},
        {"system": "ICD10", "code": "I10", "confidence": 0.5},
    ]
    reranked = rerank_first_code(codes, ["A00.0", "I10", "E11.9"], [-2.0, -1.0, -3.0], "model")
    assert [c["code"] for c in reranked] == ["I10", "A00.0"]
    reranked = rerank_first_code(codes, ["A00.0", "I10", "E11.9"], [-9.0, -9.0, -0.1], "model")
    assert [c["code"] for c in reranked] == ["E11.9", "A00.0", "I10"] and reranked[0]["valid"]
