import pytest


@pytest.fixture
def full_forward_score(tiny_llama, smollm2_tokenizer):
    """`score(prefix_ids, code)`: the log-probability of `" " + code` after the prefix tokens, from one plain
    forward pass of the tiny model; what cached and tree-attention scoring must equal."""
    import torch

    def score(prefix_ids: list[int], code: str) -> float:
        code_ids = smollm2_tokenizer(f" {code}", add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = tiny_llama(torch.tensor([prefix_ids + code_ids])).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)
        return sum(logprobs[len(prefix_ids) - 1 + j, t].item() for j, t in enumerate(code_ids))

    return score
