"""The answer-only LM head: project onto the vocabulary only the positions whose next token is trained.

In our examples the prompt (system message, note, candidate list) is most of every sequence and carries no
loss, so projecting it onto the 49k-token vocabulary is wasted work: the LM head alone is ~20% of the 135M
model's FLOPs per token, and its log-softmax is the largest activation. The installed forward
(`install_answer_only_head`) runs the decoder, then the head on the kept positions only, given as flat
(row * width + position) indices: one matmul and one cross-entropy call. The indices are computed outside
the forward, so a compiled forward has no data-dependent step and one dynamic-shape graph serves every batch
(transformers' boolean `logits_to_keep` would run `nonzero` inside it, and break the graph).

TRL 1.x has its own fused LM head (`add_fused_lm_head`), but off Triton devices (any CPU) it scores every
position, prompt included, in tiles; measured ~35% slower per SFT step on CPU. SFT (`ThceSFTTrainer`) calls
`answer_logits`; DPO keeps TRL's loss code and gets the same head under TRL's
`model(..., labels=..., fused_lm_head=True)` call, with the same output fields.

A DPO batch is each pair twice over the same prompt (chosen row, rejected row). `pack_pairs` makes it one row
per pair, prompt + chosen + rejected, where the rejected tokens attend to the prompt and themselves but not to
the chosen ones and continue the prompt's positions: the same log-probs, with the prompt (most of a pair) run
once instead of twice, forward and backward. The packing is host-side bookkeeping with data-dependent shapes,
so it runs in the data loader (`ThceDPOTrainer`'s collator adds it to each batch under `PACKED_PAIRS`) and
reaches the forward as tensors: a compiled forward then has no data-dependent step, and one dynamic-shape
graph serves every batch.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

IGNORE_INDEX = -100
PACKED_PAIRS = "packed_pairs"  # the DPO batch's key (and the forward's argument) for its packed pairs
ANSWER_POSITIONS = "answer_positions"  # the forward's argument: flat positions to project (SFT)
_MARK = "_thce_answer_only_head"


def answer_mask(labels: torch.Tensor) -> torch.Tensor:
    """Boolean (batch, seq) mask of the positions whose next token carries a label (position t predicts t+1)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def answer_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat (row * width + position) indices of the positions that predict a label, and those labels, both
    in the row-major order of `labels[:, 1:][labels[:, 1:] != -100]`."""
    keep = answer_mask(labels)
    return keep.flatten().nonzero().squeeze(1), labels[:, 1:][keep[:, :-1]]


def answer_logits(
    forward: Any, inputs: dict[str, Any], labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Run `forward(**inputs)` (a model with `install_answer_only_head`) with the LM head on the answer
    positions only. Returns (logits of shape (kept positions, vocab), their target token ids, the model's
    output object)."""
    positions, targets = answer_positions(labels)
    outputs = forward(**inputs, **{ANSWER_POSITIONS: positions})
    return outputs.logits, targets, outputs


def _head_at(
    model: Any, inputs: dict[str, Any], positions: torch.Tensor, math_attention: bool
) -> tuple[torch.Tensor, Any]:
    """The decoder over `inputs`, then the LM head on the flat `positions` of its hidden states only."""
    on_cpu = inputs["input_ids"].device.type == "cpu" if "input_ids" in inputs else False
    with sdpa_kernel([SDPBackend.MATH]) if math_attention and on_cpu else contextlib.nullcontext():
        outputs = model.get_decoder()(**{**inputs, "use_cache": False})
    hidden = outputs.last_hidden_state.flatten(0, 1)[positions]
    return model.get_output_embeddings()(hidden), outputs


# On CPU, sdpa's math kernel (matmuls and a softmax, which a compiled graph fuses) is faster than its flash
# kernel, whose backward is slow on short rows. Measured, forward and backward of the 135M model on 8 rows
# (2-core AMX Xeon), math / flash time at 87, 160, 235 and 320 tokens: compiled 0.77, 0.80, 0.90, 1.05; eager
# 0.93, 0.95, 1.03, 1.14. So math pays up to about these row lengths (the crossovers, interpolated):
MATH_ATTENTION_CROSSOVER = {"compiled": 288, "eager": 208}


def math_attention_fits(dataset: Any, compiled: bool) -> bool:
    """Whether a run over `dataset` (a map-style dataset with `input_ids`) is faster with sdpa's math kernel:
    its rows are at most the crossover length on average, and none is twice that (math attention's cost grows
    with the square of the row). Chosen once per run, not per batch: a per-batch choice would compile a second
    graph when batches fall on both sides. False when the lengths cannot be read without iterating."""
    import pyarrow.compute as pc

    try:
        rows = dataset.data.column("input_ids")
    except (AttributeError, KeyError):
        return False
    if len(rows) == 0:
        return False
    lengths = pc.list_value_length(rows)
    crossover = MATH_ATTENTION_CROSSOVER["compiled" if compiled else "eager"]
    return pc.mean(lengths).as_py() <= crossover and pc.max(lengths).as_py() <= 2 * crossover


def install_answer_only_head(
    model: Any, outputs: tuple[str, ...] = ("log_probs",), math_attention: bool = False
) -> None:
    """Give the model's forward the answer-only head, for SFT and for TRL's DPO. Call after TRL's
    `add_fused_lm_head` (TRL's trainers add it); installing twice is a no-op. `math_attention`: attend with
    sdpa's math kernel on CPU (`math_attention_fits` says when that is faster).

    - `model(**inputs, answer_positions=flat)` (SFT, `answer_logits`): the logits of those positions only, as
      a `CausalLMOutputWithPast` whose `logits` are (positions, vocab).
    - TRL's fused-head call `model(..., labels=labels, fused_lm_head=True)`: TRL's fields, per-token
      `log_probs` (batch, seq - 1), zero where the label is -100, and the requested metric fields (`entropy`,
      `mean_logits`, `is_top1`, `log_sum_sq_probs`), which TRL's DPO only logs or uses without gradient, so
      they are computed without gradient here. Given `packed_pairs` (what `pack_pairs` returns for this batch),
      the batch ([chosen rows; rejected rows] over the same prompts) runs as one row per pair.
    - Any other call (without `fused_lm_head=True`, or with pre-shifted `shift_labels` under context
      parallelism) goes to the forward it replaces.
    """
    from transformers.modeling_outputs import CausalLMOutputWithPast
    from trl.trainer.utils import FusedCausalLMOutput

    if getattr(model, _MARK, False):
        return
    previous = model.forward

    def forward(self, *args, **kwargs):
        positions = kwargs.pop(ANSWER_POSITIONS, None)
        packed_pairs = kwargs.pop(PACKED_PAIRS, None)
        if positions is not None and not args:
            kwargs.pop("labels", None)
            logits, _ = _head_at(self, kwargs, positions, math_attention)
            return CausalLMOutputWithPast(logits=logits)
        if not kwargs.get("fused_lm_head") or kwargs.get("shift_labels") is not None or args:
            return previous(*args, **kwargs)
        kwargs.pop("fused_lm_head")
        labels, num_items_in_batch = kwargs.pop("labels"), kwargs.pop("num_items_in_batch", None)
        mask = labels[:, 1:] != IGNORE_INDEX
        if packed_pairs is None:
            positions, targets = answer_positions(labels)
            logits, model_outputs = _head_at(self, kwargs, positions, math_attention)
        else:
            packed_inputs, positions, targets = packed_pairs
            logits, model_outputs = _head_at(self, packed_inputs, positions, math_attention)
        logits = logits.float()
        token_logps = -F.cross_entropy(logits, targets, reduction="none")
        fields: dict[str, torch.Tensor | None] = {
            "log_probs": token_logps.new_zeros(mask.shape).masked_scatter(mask, token_logps)
        }
        with torch.no_grad():
            log_softmax = logits.log_softmax(-1) if {"entropy", "log_sum_sq_probs"} & set(outputs) else None
            extra = {
                "entropy": lambda: -(log_softmax.exp() * log_softmax).sum(-1),
                "log_sum_sq_probs": lambda: torch.logsumexp(2 * log_softmax, dim=-1),
                "mean_logits": lambda: logits.mean(-1),
                "is_top1": lambda: logits.argmax(-1) == targets,
            }
            for name, compute in extra.items():
                if name in outputs:
                    values = compute()
                    fields[name] = values.new_zeros(mask.shape).masked_scatter(mask, values)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        loss = -fields["log_probs"].sum() / count
        return FusedCausalLMOutput(
            loss=loss, label_mask=mask, aux_loss=getattr(model_outputs, "aux_loss", None), **fields
        )

    model.forward = types.MethodType(forward, model)
    setattr(model, _MARK, True)


def packable(model: Any, batch: dict[str, Any]) -> bool:
    """Whether `pack_pairs` applies to TRL's DPO `batch`: sdpa attention (it takes a boolean block mask), and
    plain token ids."""
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None)
    model_inputs = set(batch) - {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
    return attention == "sdpa" and model_inputs <= {"input_ids", "attention_mask"}


def pack_pairs(
    inputs: dict[str, Any], labels: torch.Tensor
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor] | None:
    """One row per preference pair: its prompt once, then the chosen completion, then the rejected one, which
    attends to the prompt and itself but not to the chosen completion, and continues the prompt's positions.

    `inputs` is TRL's DPO batch: rows [chosen_1..chosen_n, rejected_1..rejected_n], right-padded, `labels`
    -100 outside the completions. Returns the packed decoder inputs (token ids, a boolean 4D mask, position
    ids); for each label of `labels[:, 1:]` in row-major order, the flat (pair * width + position) index of
    the packed position that predicts it (the head projects only those); and the labels themselves. None when
    the halves do not share their prompts.

    The prompt, most of each pair, runs once instead of twice, forward and backward; every log-prob is the
    one the two separate rows give (the test compares them).
    """
    ids, attention = inputs["input_ids"], inputs["attention_mask"]
    rows = ids.shape[0]
    if rows % 2 or rows == 0:
        return None
    half = rows // 2
    answer = labels != IGNORE_INDEX
    lengths = attention.sum(-1).tolist()
    starts = answer.int().argmax(-1).tolist()
    spans = []  # per pair: prompt length, chosen completion, rejected completion
    for pair in range(half):
        chosen, rejected = pair, half + pair
        prompt = starts[chosen]
        if (
            prompt == 0
            or starts[rejected] != prompt
            or not torch.equal(ids[chosen, :prompt], ids[rejected, :prompt])
        ):
            return None
        if not (
            answer[chosen, prompt : lengths[chosen]].all()
            and answer[rejected, prompt : lengths[rejected]].all()
        ):
            return None
        spans.append((prompt, lengths[chosen] - prompt, lengths[rejected] - prompt))
    width = max(p + c + r for p, c, r in spans)
    device = ids.device
    packed = torch.zeros((half, width), dtype=ids.dtype, device=device)
    positions = torch.zeros((half, width), dtype=torch.long, device=device)
    segment = torch.full((half, width), -1, dtype=torch.long, device=device)  # 0 prompt, 1 chosen, 2 rejected
    # (original row, column of labels[:, 1:], pair, packed position predicting it), one per label
    label_rows: list[tuple[int, int, int, int]] = []
    for pair, (p, c, r) in enumerate(spans):
        chosen, rejected = pair, half + pair
        packed[pair, : p + c] = ids[chosen, : p + c]
        packed[pair, p + c : p + c + r] = ids[rejected, p : p + r]
        positions[pair, : p + c] = torch.arange(p + c, device=device)
        positions[pair, p + c : p + c + r] = torch.arange(p, p + r, device=device)
        segment[pair, :p], segment[pair, p : p + c], segment[pair, p + c : p + c + r] = 0, 1, 2
        for j in range(c):  # chosen token j (position p + j) is predicted from position p - 1 + j
            label_rows.append((chosen, p - 1 + j, pair, p - 1 + j))
        for j in range(r):  # rejected token j from the prompt's last position, then from its own tokens
            label_rows.append((rejected, p - 1 + j, pair, p - 1 if j == 0 else p + c + j - 1))
    label_rows.sort(key=lambda label: label[:2])  # the row-major order of labels[:, 1:][mask]
    flat = torch.tensor([pair * width + at for _, _, pair, at in label_rows], device=device)
    targets = labels[:, 1:][answer[:, 1:]]
    index = torch.arange(width, device=device)
    causal = index[None, :, None] >= index[None, None, :]  # (1, query, key)
    valid = segment >= 0
    sees = causal & valid[:, None, :] & ~((segment[:, :, None] == 2) & (segment[:, None, :] == 1))
    sees |= torch.eye(width, dtype=torch.bool, device=device)[None]  # padding queries see themselves
    model_inputs = {"input_ids": packed, "attention_mask": sees[:, None], "position_ids": positions}
    return model_inputs, flat, targets
