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
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
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
    without gradient here. Installing twice is a no-op.
    """
    from trl.trainer.utils import FusedCausalLMOutput

    if getattr(model, _MARK, False):
        return
    previous = model.forward

    def forward(
        self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs
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
        logits, targets, model_outputs = answer_logits(previous, kwargs, labels)
        mask = labels[:, 1:] != IGNORE_INDEX
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
