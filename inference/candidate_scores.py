"""Scoring the offered candidates, and fusing the model's ranking with the retriever's (docs/architecture.md, "Retrieval-augmented coding").

`score_codes` gives, per example, the model's log-probability of each offered code as the FIRST answer code,
continuing from the KV cache of the prompt plus what the model generated before its first code line (`ICD10:`
for a stage-1 model, `<think>...</think>\\nICD10:` for a reasoning model): that cache is repeated for the
candidates and only their few code tokens are run. The cache is the one greedy generation already filled
(`generated_prefixes`, no second prefill); `score_first_code` prefills text prefixes instead (beam search,
answers without a code line). `rerank_first_code` puts the chosen candidate first:
`model` takes the model's best-scored code, `fusion` the best after adding the retriever's order as a prior:
log p_model(code) - weight * log(retriever rank). (Reciprocal-rank fusion of two lists would tie on every swap
and so always side with the retriever; the prior lets a confident model overrule it.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any


def first_code_prefix(raw: str, system: str = "ICD10") -> str | None:
    """The generated text up to and including the first `SYSTEM:` of an answer line, or None."""
    marker = f"{system}:"
    index = raw.find(marker)
    return raw[: index + len(marker)] if index >= 0 else None


@dataclasses.dataclass
class Prefixes:
    """Where scoring continues from: the KV cache of each row's prefix (prompt plus the answer up to its first
    `ICD10:`), which cache row holds it, and the log-probabilities of the code's first token."""

    cache: Any  # the model's KV cache; a prefix may leave gaps (mask 0) and extra rows
    rows: list[int]  # cache row of each prefix
    mask: Any  # (prefixes, cache length): 1 where the prefix has a token
    next_position: Any  # (prefixes,): position id of the code's first token
    first_logprobs: Any  # (prefixes, vocab)


def prefill_prefixes(model: Any, tokenizer: Any, prefixes: Sequence[str], device: str = "cpu") -> Prefixes:
    """Run the prefixes (left-padded) through the model once."""
    import torch

    encoded = tokenizer(list(prefixes), return_tensors="pt", padding=True, add_special_tokens=False)
    mask = encoded["attention_mask"].to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        out = model(
            input_ids=encoded["input_ids"].to(device),
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
    return Prefixes(out.past_key_values, list(range(len(prefixes))), mask, mask.sum(-1), first)


def generated_prefixes(
    cache: Any, prompt_mask: Any, step_logits: Sequence[Any], rows: Sequence[int], spent: Sequence[int]
) -> Prefixes:
    """The prefixes a greedy `generate` call already ran: batch row `rows[i]` wrote its prefix in its first
    `spent[i]` new tokens. `cache` is the call's KV cache, `prompt_mask` its prompts' attention mask and
    `step_logits` its raw logits per step. No second prefill: scoring reads the generation's cache."""
    import torch

    device = prompt_mask.device
    index = torch.tensor(list(rows), device=device)
    spent_t = torch.tensor(list(spent), device=device)
    written = torch.arange(max(spent), device=device)[None, :] < spent_t[:, None]
    mask = torch.cat([prompt_mask[index], written.long()], dim=1)
    first = torch.stack([step_logits[n][row] for row, n in zip(rows, spent, strict=True)])
    next_position = prompt_mask[index].sum(-1) + spent_t
    return Prefixes(cache, list(rows), mask, next_position, torch.log_softmax(first.float(), dim=-1))


def score_codes(
    model: Any,
    tokenizer: Any,
    prefixes: Prefixes,
    candidates: Sequence[Sequence[str]],
    max_rows: int = 128,
) -> list[list[float]]:
    """Sum of the log-probabilities of each candidate code's tokens (`" " + code`) after its prefix. Only the
    code tokens run, all of a prefix's candidates in one row (`_score_chunk`), `max_rows` (prefix x
    candidate) pairs at a time: memory stays bounded whatever the batch."""
    width = max((len(c) for c in candidates), default=0)
    step = max(1, max_rows // max(width, 1))
    scores: list[list[float]] = []
    for start in range(0, len(candidates), step):
        chunk = range(start, min(start + step, len(candidates)))
        scores += _score_chunk(model, tokenizer, prefixes, chunk, candidates[chunk.start : chunk.stop])
    return scores


def score_first_code(
    model: Any,
    tokenizer: Any,
    prefixes: Sequence[str],
    candidates: Sequence[Sequence[str]],
    device: str = "cpu",
    max_rows: int = 128,
) -> list[list[float]]:
    """`score_codes` after prefilling text prefixes."""
    if not prefixes:
        return []
    return score_codes(
        model, tokenizer, prefill_prefixes(model, tokenizer, prefixes, device), candidates, max_rows
    )


def _score_chunk(
    model: Any, tokenizer: Any, prefixes: Prefixes, chunk: range, candidates: Sequence[Sequence[str]]
) -> list[list[float]]:
    """One forward pass for a chunk of prefixes: each prefix's row holds all its candidates' tokens side by
    side after its cached prefix, and a block mask lets each candidate see the prefix and itself only (tree
    attention), so the cache is read once per prefix instead of copied once per candidate."""
    import torch
    from transformers import DynamicCache

    rows = len(chunk)
    width = max((len(c) for c in candidates), default=0)
    if rows == 0 or width == 0:
        return [[] for _ in candidates]
    device = prefixes.mask.device
    code_ids = [
        tokenizer([f" {c}" for c in codes], add_special_tokens=False).input_ids if codes else []
        for codes in candidates
    ]
    length = max(len(t) for row in code_ids for t in row)
    tokens = torch.full((rows, width, length), tokenizer.pad_token_id or 0, dtype=torch.long)
    valid = torch.zeros((rows, width, length), dtype=torch.bool)
    for r, row in enumerate(code_ids):
        for c, sequence in enumerate(row):
            tokens[r, c, : len(sequence)] = torch.tensor(sequence)
            valid[r, c, : len(sequence)] = True
    tokens, valid = tokens.to(device), valid.to(device)
    cache_rows = torch.tensor(prefixes.rows[chunk.start : chunk.stop], device=device)
    prefix_mask = prefixes.mask[chunk.start : chunk.stop].bool()
    kept = prefix_mask.shape[1]  # the cache may hold more (tokens generated after the prefix): not read
    cache = DynamicCache(
        ddp_cache_data=[
            (layer.keys[cache_rows, :, :kept], layer.values[cache_rows, :, :kept])
            for layer in prefixes.cache.layers
        ]
    )
    # query (candidate c, token j) sees the prefix, and tokens j' <= j of the same candidate
    step = torch.arange(length, device=device)
    causal = step[None, :] <= step[:, None]  # (j, j')
    own = torch.eye(width, dtype=torch.bool, device=device)[:, None, :, None] & causal[None, :, None, :]
    sees = torch.cat(
        [
            prefix_mask[:, None, :].expand(rows, width * length, kept),
            own.reshape(1, width * length, width * length).expand(rows, -1, -1),
        ],
        dim=-1,
    )
    dtype = model.get_input_embeddings().weight.dtype
    attention = torch.zeros(sees.shape, dtype=dtype, device=device).masked_fill(~sees, torch.finfo(dtype).min)
    positions = prefixes.next_position[chunk.start : chunk.stop, None] + step.repeat(width)[None, :]
    with torch.inference_mode():
        out = model(
            input_ids=tokens.view(rows, width * length),
            attention_mask=attention[:, None],
            position_ids=positions,
            past_key_values=cache,
            use_cache=False,
        )
        logits = out.logits.view(rows, width, length, -1)[:, :, :-1]  # predicts tokens 1..length-1
        rest = torch.log_softmax(logits.float(), dim=-1).gather(3, tokens[:, :, 1:, None]).squeeze(3)
    first = prefixes.first_logprobs[chunk.start : chunk.stop].gather(1, tokens[:, :, 0])  # (rows, width)
    totals = first + (rest * valid[:, :, 1:]).sum(-1)
    return [totals[r, : len(candidates[r])].tolist() for r in range(rows)]


def fused_order(model_scores: Sequence[float], weight: float = 1.0) -> list[int]:
    """Candidate indices (retriever order 0..n-1) ranked by model log-probability plus the retriever prior
    -weight * log(rank); ties keep the retriever's order."""
    fused = [score - weight * math.log(i + 1) for i, score in enumerate(model_scores)]
    return sorted(range(len(fused)), key=lambda i: (-fused[i], i))


def rerank_first_code(
    codes: list[dict[str, Any]],
    offered_codes: Sequence[str],
    scores: Sequence[float],
    mode: str,
    weight: float = 1.0,
) -> list[dict[str, Any]]:
    """The answer's codes with the reranked choice first (the rest keep their order, without it)."""
    if not offered_codes or not scores:
        return codes
    best = (
        fused_order(scores, weight)[0]
        if mode == "fusion"
        else max(range(len(scores)), key=lambda i: scores[i])
    )
    chosen = offered_codes[best]
    first = next((dict(code) for code in codes if code["code"] == chosen), None)
    if first is None:
        from thce.inference.output_parser import parse_answer

        first = parse_answer(f"ICD10: {chosen}")["codes"][0]
    return [first, *[code for code in codes if code["code"] != chosen]]
