"""The decoding attention (`attention.py`) computes what transformers' sdpa attention computes."""

import types

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from thce.inference.attention import SHORT_QUERY, grouped_attention, use_decoding_attention
from thce.inference.decoding import greedy_decode


def _inputs(rows, heads, kv_heads, length, cached, dtype, boolean):
    torch.manual_seed(0)
    query = torch.randn(rows, heads, length, 16, dtype=dtype)
    key = torch.randn(rows, kv_heads, cached, 16, dtype=dtype)
    value = torch.randn(rows, kv_heads, cached, 16, dtype=dtype)
    sees = torch.rand(rows, 1, length, cached) > 0.3  # holes, as the decoding's cache has
    sees[..., -1] = True  # every query sees at least itself
    mask = (
        sees if boolean else torch.zeros(sees.shape, dtype=dtype).masked_fill(~sees, torch.finfo(dtype).min)
    )
    module = types.SimpleNamespace(num_key_value_groups=heads // kv_heads, training=False, is_causal=True)
    return module, query, key, value, mask


@pytest.mark.parametrize("boolean", [True, False])
@pytest.mark.parametrize(("heads", "kv_heads"), [(9, 3), (4, 2), (4, 4)])
@pytest.mark.parametrize("length", [1, 5])
def test_grouped_attention_matches_sdpa(boolean, heads, kv_heads, length):
    module, query, key, value, mask = _inputs(3, heads, kv_heads, length, 40, torch.float32, boolean)
    ours, _ = grouped_attention(module, query, key, value, mask, scaling=0.25)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    assert ours.shape == theirs.shape == (3, length, heads, 16)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_grouped_attention_in_bf16_is_within_bf16_rounding_of_sdpa():
    module, query, key, value, mask = _inputs(4, 9, 3, 1, 300, torch.bfloat16, True)
    ours, _ = grouped_attention(module, query, key, value, mask, scaling=0.25)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    torch.testing.assert_close(ours.float(), theirs.float(), atol=2e-2, rtol=2e-2)


def test_long_queries_and_training_take_sdpa_itself():
    module, query, key, value, mask = _inputs(2, 4, 2, SHORT_QUERY + 1, 40, torch.float32, True)
    assert torch.equal(
        grouped_attention(module, query, key, value, mask)[0],
        sdpa_attention_forward(module, query, key, value, mask)[0],
    )
    module, query, key, value, mask = _inputs(2, 4, 2, 1, 40, torch.float32, True)
    module.training = True
    assert torch.equal(
        grouped_attention(module, query, key, value, mask)[0],
        sdpa_attention_forward(module, query, key, value, mask)[0],
    )


def test_decoding_with_it_writes_what_sdpa_writes(tiny_llama, smollm2_tokenizer):
    """Greedy decoding of left-padded prompts: the same tokens, the same log-probabilities."""
    smollm2_tokenizer.padding_side = "left"
    encoded = smollm2_tokenizer(
        ["Patient has hypertension.", "Type 2 diabetes mellitus with a much longer note about its care."],
        return_tensors="pt", padding=True, add_special_tokens=False,
    )  # fmt: skip
    args = (
        encoded["input_ids"],
        encoded["attention_mask"],
        [None, None],
        12,
        -1,
        smollm2_tokenizer.pad_token_id,
    )
    tiny_llama.eval()
    before = greedy_decode(tiny_llama, *args)
    assert use_decoding_attention(tiny_llama) is tiny_llama
    assert tiny_llama.config._attn_implementation == "thce_decoding"
    after = greedy_decode(tiny_llama, *args)
    assert after.tokens == before.tokens
    for ours, theirs in zip(after.logprobs, before.logprobs, strict=True):
        assert ours == pytest.approx(theirs, abs=1e-4)


def test_a_model_set_to_another_attention_is_left_alone(tiny_llama):
    tiny_llama.set_attn_implementation("eager")
    use_decoding_attention(tiny_llama)
    assert tiny_llama.config._attn_implementation == "eager"
