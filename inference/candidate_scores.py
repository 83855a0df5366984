"""Scoring the offered candidates, and fusing the model's ranking with the retriever's (docs/architecture.md, "Retrieval-augmented coding").

`score_codes` gives, per example, the model's log-probability of each offered code as the FIRST answer code,
continuing from the KV cache of the prompt plus what the model generated before its first code line (`ICD10:`
for a stage-1 model, `<think>...</think>\\nICD10:` for a reasoning model). Only the candidates' tokens run,
all of an example's candidates as one trie in one row under tree attention (`_score_chunk`). The cache is the one
greedy decoding already filled (`generated_prefixes`, no second prefill); `score_first_code` prefills text
prefixes instead (beam search, answers without a code line). `rerank_first_code` puts the chosen candidate first:
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
    """Where scoring continues from. A prefix is the prompt plus the answer up to its first `ICD10:`; the KV
    cache holds all of it but its last token, which is run again in front of every candidate (its logits
    give the code's first token)."""

    cache: Any  # the model's KV cache; may have holes (mask 0) and rows or slots a prefix does not use
    rows: list[int]  # cache row of each prefix
    mask: Any  # (prefixes, cache length): 1 where the prefix has a token in the cache
    last_token: list[int]  # each prefix's last token
    last_position: Any  # (prefixes,): its position id


def prefill_prefixes(model: Any, tokenizer: Any, prefixes: Sequence[str], device: str = "cpu") -> Prefixes:
    """Run the text prefixes (left-padded), all but their last token, through the model once."""
    import torch

    encoded = tokenizer(list(prefixes), return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
    with torch.inference_mode():
        out = model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=(mask[:, :-1].cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
            logits_to_keep=1,
        )
    rows = list(range(len(prefixes)))
    return Prefixes(out.cache, rows, mask[:, :-1], ids[:, -1].tolist(), mask.sum(-1) - 1)


def generated_prefixes(decoded: Any, rows: Sequence[int], spent: Sequence[int]) -> Prefixes:
    """The prefixes `greedy_decode` already ran (`decoding.py`): batch row `rows[i]` wrote its prefix in its
    first `spent[i]` new tokens. Scoring reads the decoding's own cache: no second prefill."""
    import torch

    # the cache up to the prefix's second-to-last token: the prompt, and the new tokens before it
    ends = [
        decoded.slots[row][n - 2] + 1 if n >= 2 else decoded.prompt_width
        for row, n in zip(rows, spent, strict=True)
    ]
    mask = decoded.mask[list(rows), : max(ends)].clone()
    for i, end in enumerate(ends):
        mask[i, end:] = 0
    last = [decoded.tokens[row][n - 1] for row, n in zip(rows, spent, strict=True)]
    positions = decoded.prompt_tokens[list(rows)] + torch.tensor([n - 1 for n in spent], device=mask.device)
    return Prefixes(decoded.cache, list(rows), mask, last, positions)


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
    """One forward pass for a chunk of prefixes. Each prefix's row holds, after its cache, the trie of its
    candidates' tokens (rooted at the prefix's last token; codes sharing a start share its nodes), and a mask
    lets each node see the cache and its own ancestors only (tree attention): the cache is read once per
    prefix, not copied per candidate, and a shared token is run once."""
    import torch
    from transformers import DynamicCache

    rows = len(chunk)
    if rows == 0 or not any(candidates):
        return [[] for _ in candidates]
    device = prefixes.mask.device
    tries = [
        _CandidateTrie(
            prefixes.last_token[chunk.start + r],
            tokenizer([f" {c}" for c in codes], add_special_tokens=False).input_ids if codes else [],
        )
        for r, codes in enumerate(candidates)
    ]
    width = max(len(trie.tokens) for trie in tries)
    tokens = torch.full((rows, width), tokenizer.pad_token_id or 0, dtype=torch.long)
    depth = torch.zeros((rows, width), dtype=torch.long)
    sees_node = torch.zeros((rows, width, width), dtype=torch.bool)
    for r, trie in enumerate(tries):
        n = len(trie.tokens)
        tokens[r, :n] = torch.tensor(trie.tokens)
        depth[r, :n] = torch.tensor(trie.depth)
        for node, ancestors in enumerate(trie.ancestors):
            sees_node[r, node, ancestors] = True
        sees_node[r, range(n, width), range(n, width)] = True  # padding nodes see themselves (no empty row)
    cache_rows = torch.tensor(prefixes.rows[chunk.start : chunk.stop], device=device)
    prefix_mask = prefixes.mask[chunk.start : chunk.stop].bool()
    kept = prefix_mask.shape[1]  # the cache may hold more (tokens generated after the prefix): not read
    cache = DynamicCache(
        ddp_cache_data=[
            (layer.keys[cache_rows, :, :kept], layer.values[cache_rows, :, :kept])
            for layer in prefixes.cache.layers
        ]
    )
    sees = torch.cat([prefix_mask[:, None, :].expand(rows, width, kept), sees_node.to(device)], dim=-1)
    dtype = model.get_input_embeddings().weight.dtype
    attention = torch.zeros(sees.shape, dtype=dtype, device=device).masked_fill(~sees, torch.finfo(dtype).min)
    with torch.inference_mode():
        out = model(
            input_ids=tokens.to(device),
            attention_mask=attention[:, None],
            position_ids=prefixes.last_position[chunk.start : chunk.stop, None] + depth.to(device),
            cache=cache,
            use_cache=False,
        )
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)  # node i's distribution of its children
        scores = []
        for r, trie in enumerate(tries):
            parents, children = torch.tensor(trie.edges[0]), torch.tensor(trie.edges[1])
            edge = logprobs[r, parents, tokens[r, children]].tolist() if trie.edges[0] else []
            scores.append([sum(edge[e] for e in path) for path in trie.paths])
    return scores


class _CandidateTrie:
    """The candidates' token sequences as a trie under a root token, flattened for one forward pass: node
    tokens, depths, each node's ancestors (itself included), the parent -> child edges, and each candidate's
    path as edge indices."""

    def __init__(self, root: int, sequences: Sequence[Sequence[int]]) -> None:
        self.tokens, self.depth, self.ancestors = [root], [0], [[0]]
        self.edges: tuple[list[int], list[int]] = ([], [])
        self.paths: list[list[int]] = []
        index: dict[tuple[int, int], int] = {}  # (parent node, token) -> edge
        for sequence in sequences:
            node, path = 0, []
            for token in sequence:
                edge = index.get((node, token))
                if edge is None:
                    child = len(self.tokens)
                    self.tokens.append(token)
                    self.depth.append(self.depth[node] + 1)
                    self.ancestors.append([*self.ancestors[node], child])
                    edge = index[(node, token)] = len(self.edges[0])
                    self.edges[0].append(node)
                    self.edges[1].append(child)
                node = self.edges[1][edge]
                path.append(edge)
            self.paths.append(path)


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
