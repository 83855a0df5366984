"""The answer-only LM head: project onto the vocabulary only the positions whose next token is trained.

In our examples the prompt (system message, note, candidate list) is most of every sequence and carries no
loss, so projecting it onto the 49k-token vocabulary is wasted work: the LM head alone is ~20% of the 135M
model's FLOPs per token, and its log-softmax is the largest activation. transformers' `logits_to_keep`
accepts a boolean (batch, seq) mask and runs the head once over the kept positions (flattened), so the head
is one matmul and the loss one cross-entropy call.

TRL 1.x has its own fused LM head (`add_fused_lm_head`), but off Triton devices (any CPU) it scores every
position, prompt included, in tiles; measured ~35% slower per SFT step on CPU. SFT (`ThceSFTTrainer`) calls
`answer_logits` directly; DPO keeps TRL's loss code and gets the same head through `install_answer_only_head`,
which answers TRL's `model(..., labels=..., fused_lm_head=True)` call with the same output fields.

A DPO batch is each pair twice over the same prompt (chosen row, rejected row). `pack_pairs` makes it one row
per pair, prompt + chosen + rejected, where the rejected tokens attend to the prompt and themselves but not to
the chosen ones and continue the prompt's positions: the same log-probs, with the prompt (most of a pair) run
once instead of twice, forward and backward. The packing is host-side bookkeeping with data-dependent shapes,
so it runs in the data loader (`ThceDPOTrainer`'s collator adds it to each batch under `PACKED_PAIRS`) and
reaches the forward as tensors: a compiled forward then has no data-dependent step, and one dynamic-shape
graph serves every batch.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
PACKED_PAIRS = "packed_pairs"  # the DPO batch's key (and the forward's argument) for its packed pairs
_MARK = "_thce_answer_only_head"


def answer_positions(labels: torch.Tensor) -> torch.Tensor:
    """Boolean (batch, seq) mask of the positions whose next token carries a label (position t predicts t+1)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def answer_logits(
    forward: Any, inputs: dict[str, Any], labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Run `forward(**inputs)` with the LM head on the answer positions only.

    Returns (logits of shape (kept positions, vocab), their target token ids, the model's output object).
    The kept positions are in row-major order, i.e. the order of `labels[:, 1:][labels[:, 1:] != -100]`.
    """
    keep = answer_positions(labels)
    outputs = forward(**inputs, logits_to_keep=keep)
    logits = outputs.logits.reshape(-1, outputs.logits.size(-1))
    targets = labels[:, 1:][keep[:, :-1]].to(logits.device)
    return logits, targets, outputs


def install_answer_only_head(model: Any, outputs: tuple[str, ...] = ("log_probs",)) -> None:
    """Make TRL's fused-head call `model(..., labels=labels, fused_lm_head=True)` run the answer-only head.

    Call after TRL's `add_fused_lm_head`: calls without `fused_lm_head=True`, and pre-shifted `shift_labels`
    (context parallelism), still go to TRL's forward. The result has TRL's fields: per-token `log_probs`
    (batch, seq - 1), zero where the label is -100, and the requested metric fields (`entropy`, `mean_logits`,
    `is_top1`, `log_sum_sq_probs`), which TRL's DPO only logs or uses without gradient, so they are computed
    without gradient here. Given `packed_pairs` (what `pack_pairs` returns for this batch), the batch
    ([chosen rows; rejected rows] over the same prompts) runs as one row per pair. Installing twice is a no-op.
    """
    from trl.trainer.utils import FusedCausalLMOutput

    if getattr(model, _MARK, False):
        return
    previous = model.forward

    def forward(
        self,
        *args,
        fused_lm_head=False,
        labels=None,
        shift_labels=None,
        num_items_in_batch=None,
        packed_pairs=None,
        **kwargs,
    ):
        if not fused_lm_head or shift_labels is not None or args:
            return previous(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        mask = labels[:, 1:] != IGNORE_INDEX
        if packed_pairs is None:
            logits, targets, model_outputs = answer_logits(previous, kwargs, labels)
        else:
            packed_inputs, positions, targets = packed_pairs
            model_outputs = self.get_decoder()(**packed_inputs, use_cache=False)
            hidden = model_outputs.last_hidden_state.flatten(0, 1)[positions]
            logits = self.get_output_embeddings()(hidden)
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
