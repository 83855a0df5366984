"""Scoring the offered candidates, and fusing the model's ranking with the retriever's (docs/architecture.md, "Retrieval-augmented coding").

`score_first_code` gives, per example, the model's log-probability of each offered code as the FIRST answer
code: one prefill of the prompt plus what the model generated before its first code line (`ICD10:` for a
stage-1 model, `<think>...</think>\\nICD10:` for a reasoning model), then that KV cache is repeated for the
candidates and only their few code tokens are run. `rerank_first_code` puts the chosen candidate first:
`model` takes the model's best-scored code, `fusion` the best after adding the retriever's order as a prior:
log p_model(code) - weight * log(retriever rank). (Reciprocal-rank fusion of two lists would tie on every swap
and so always side with the retriever; the prior lets a confident model overrule it.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def first_code_prefix(raw: str, system: str = "ICD10") -> str | None:
    """The generated text up to and including the first `SYSTEM:` of an answer line, or None."""
    marker = f"{system}:"
    index = raw.find(marker)
    return raw[: index + len(marker)] if index >= 0 else None


def score_first_code(
    model: Any,
    tokenizer: Any,
    prefixes: Sequence[str],
    candidates: Sequence[Sequence[str]],
    device: str = "cpu",
    max_rows: int = 64,
) -> list[list[float]]:
    """Sum of the log-probabilities of each candidate code's tokens (`" " + code`) after its prefix. The
    prompt's KV cache is repeated once per candidate, so prefixes go `max_rows` (prefix x candidate) rows
    at a time: memory stays bounded whatever the batch."""
    width = max((len(c) for c in candidates), default=0)
    step = max(1, max_rows // max(width, 1))
    return [
        row
        for start in range(0, len(prefixes), step)
        for row in _score_chunk(
            model, tokenizer, prefixes[start : start + step], candidates[start : start + step], device
        )
    ]


def _score_chunk(
    model: Any, tokenizer: Any, prefixes: Sequence[str], candidates: Sequence[Sequence[str]], device: str
) -> list[list[float]]:
    import torch

    rows = len(prefixes)
    width = max((len(c) for c in candidates), default=0)
    if rows == 0 or width == 0:
        return [[] for _ in prefixes]
    encoded = tokenizer(list(prefixes), return_tensors="pt", padding=True, add_special_tokens=False)
    mask = encoded["attention_mask"].to(device)
    ids = encoded["input_ids"].to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    code_ids = [
        tokenizer([f" {c}" for c in codes], add_special_tokens=False).input_ids if codes else []
        for codes in candidates
    ]
    length = max(len(t) for row in code_ids for t in row)
    pad = tokenizer.pad_token_id or 0
    tokens = torch.full((rows, width, length), pad, dtype=torch.long)
    token_mask = torch.zeros((rows, width, length), dtype=torch.long)
    for r, row in enumerate(code_ids):
        for c, sequence in enumerate(row):
            tokens[r, c, : len(sequence)] = torch.tensor(sequence)
            token_mask[r, c, : len(sequence)] = 1
    with torch.inference_mode():
        prefill = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        first = torch.log_softmax(prefill.logits[:, -1].float(), dim=-1)  # (rows, vocab)
        cache = prefill.past_key_values
        cache.batch_repeat_interleave(width)
        flat_tokens = tokens.view(rows * width, length).to(device)
        flat_mask = token_mask.view(rows * width, length).to(device)
        full_mask = torch.cat([mask.repeat_interleave(width, dim=0), flat_mask], dim=1)
        start = positions[:, -1:].repeat_interleave(width, dim=0) + 1
        steps = start + torch.arange(length, device=device)[None, :]
        out = model(
            input_ids=flat_tokens,
            attention_mask=full_mask,
            position_ids=steps,
            past_key_values=cache,
            use_cache=False,
        )
        rest = torch.log_softmax(out.logits[:, :-1].float(), dim=-1)  # predicts tokens 1..length-1
    first_scores = first.repeat_interleave(width, dim=0).gather(1, flat_tokens[:, :1]).squeeze(1)
    rest_scores = rest.gather(2, flat_tokens[:, 1:, None]).squeeze(2) * flat_mask[:, 1:]
    totals = (first_scores + rest_scores.sum(1)).view(rows, width)
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
