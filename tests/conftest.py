"""Shared fixtures. No test touches the network: the hub is offline and W&B disabled for the session."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest


@pytest.fixture(scope="session")
def smollm2_path():
    """The embedded SmolLM2-135M-Instruct checkpoint (converted once into the THCE cache)."""
    from thce.utils.models import EMBEDDED_MODEL_ID, resolve_model

    return resolve_model(EMBEDDED_MODEL_ID).path


@pytest.fixture
def smollm2_tokenizer(smollm2_path):
    """A fresh copy of the real SmolLM2 tokenizer (tests mutate it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_path)


@pytest.fixture
def tiny_llama(smollm2_tokenizer):
    """A random 2-layer Llama with SmolLM2's vocabulary: fast enough for training tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smollm2_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=smollm2_tokenizer.bos_token_id,
        eos_token_id=smollm2_tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(config)
