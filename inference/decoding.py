"""Greedy decoding under the answer grammar, jumping over forced tokens (docs/architecture.md, "Retrieval-augmented coding").

Where the grammar allows exactly one next token (the rest of `ICD10:` after its first token; the rest of a code
once the offered codes it could still become have narrowed to one), that token is appended without asking the
model, and the whole run of such tokens goes through the model in the next forward pass. A two-line answer
over ten candidates then takes about 8 model calls instead of about 27. The tokens chosen are the ones
step-by-step greedy decoding under the grammar chooses (a forced token is the argmax of a one-token set).

Rows append different numbers of tokens per step: shorter runs are padded with masked slots, so the KV cache
has holes (mask 0) and every row keeps its own position ids. Every token still gets its raw (unconstrained)
log-probability: a forced token's comes from the logits at the position before it, in the same forward pass.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass
class Decoded:
    """What `greedy_decode` leaves: the answers, and the state that reranking continues from."""

    tokens: list[list[int]]  # new tokens per row, ending with end-of-turn where the row finished
    logprobs: list[list[float]]  # raw log-probability of each new token (nan for a forced end-of-turn)
    cache: Any  # the model's KV cache over the prompts and every token fed
    mask: Any  # (rows, cache length): 1 where a row has a real token
    slots: list[list[int]]  # cache index of each new token that was fed
    prompt_tokens: Any  # (rows,): real prompt tokens; new token i of row r has position prompt_tokens[r] + i
    prompt_width: int  # cache slots of the left-padded prompts; the fed tokens come after them


def greedy_decode(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    grammars: Sequence[Any | None],
    max_new_tokens: int,
    eot_id: int,
    pad_id: int,
) -> Decoded:
    """Decode left-padded prompts greedily, each row under its own grammar (None: unconstrained)."""
    import torch

    rows = input_ids.shape[0]
    device = input_ids.device
    prompt_tokens = attention_mask.sum(-1)
    with torch.inference_mode():
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0),
            use_cache=True,
            logits_to_keep=1,
        )
    cache, mask = out.cache, attention_mask
    logits = out.logits[:, -1].float()  # (rows, vocab): the distribution of each row's next token
    states = [g.initial_state() if g is not None else None for g in grammars]
    tokens: list[list[int]] = [[] for _ in range(rows)]
    logprobs: list[list[float]] = [[] for _ in range(rows)]
    slots: list[list[int]] = [[] for _ in range(rows)]
    done = [max_new_tokens < 1] * rows
    while not all(done):
        logz = torch.logsumexp(logits, dim=-1)
        runs: dict[int, tuple[int, list[int]]] = {}  # row -> (index of its first new token, tokens to feed)
        for row in range(rows):
            if done[row]:
                continue
            grammar, state, start, run = grammars[row], states[row], len(tokens[row]), []
            token = _choose(logits[row], grammar, state, max_new_tokens - start, eot_id)
            logprobs[row].append((logits[row, token] - logz[row]).item())
            while True:
                tokens[row].append(token)
                state = grammar.advance(state, token) if grammar is not None else None
                if token == eot_id:
                    done[row] = True
                    break
                run.append(token)
                if len(tokens[row]) >= max_new_tokens:
                    done[row] = True
                    break
                token = _forced(grammar, state, max_new_tokens - len(tokens[row]))
                if token is None:
                    break
                logprobs[row].append(math.nan)  # a forced token's: from the next forward pass
            states[row] = state
            if run:
                runs[row] = (start, run)
        if not runs:
            break
        width = max(len(run) for _, run in runs.values())
        ids = torch.full((rows, width), pad_id, dtype=torch.long)
        fed = torch.zeros((rows, width), dtype=torch.long)
        positions = torch.zeros((rows, width), dtype=torch.long)
        length = mask.shape[1]
        for row, (start, run) in runs.items():
            ids[row, : len(run)] = torch.tensor(run)
            fed[row, : len(run)] = 1
            positions[row] = int(prompt_tokens[row]) + start + torch.arange(width)
            slots[row].extend(range(length, length + len(run)))
        mask = torch.cat([mask, fed.to(device)], dim=1)
        with torch.inference_mode():
            out = model(
                input_ids=ids.to(device),
                attention_mask=mask,
                position_ids=positions.to(device),
                cache=cache,
                use_cache=True,
            )
        cache = out.cache
        last = torch.zeros(rows, dtype=torch.long)
        for row, (start, run) in runs.items():
            last[row] = len(run) - 1
            if len(run) > 1:  # the forced tokens' raw log-probabilities
                step = torch.log_softmax(out.logits[row, : len(run) - 1].float(), dim=-1)
                scored = step[torch.arange(len(run) - 1), torch.tensor(run[1:])].tolist()
                logprobs[row][start + 1 : start + len(run)] = scored
        logits = out.logits[torch.arange(rows, device=device), last.to(device)].float()
    return Decoded(tokens, logprobs, cache, mask, slots, prompt_tokens, input_ids.shape[1])


def _choose(logits: Any, grammar: Any, state: Any, remaining: int, eot_id: int) -> int:
    """The greedy next token among those the grammar allows."""
    allowed = grammar.allowed(state, remaining) if grammar is not None else None
    if allowed is None:
        return int(logits.argmax())
    if isinstance(allowed, str):  # "no_eot": anything but the end of turn
        best = logits.topk(2).indices.tolist()
        return best[1] if best[0] == eot_id else best[0]
    return int(allowed[logits[allowed].argmax()])


def _forced(grammar: Any, state: Any, remaining: int) -> int | None:
    """The only token the grammar allows next, or None where it leaves a choice."""
    if grammar is None:
        return None
    allowed = grammar.allowed(state, remaining)
    if allowed is None or isinstance(allowed, str) or allowed.numel() != 1:
        return None
    return int(allowed[0])
