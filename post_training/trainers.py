"""TRL trainers as THCE runs them.

`ThceSFTTrainer` is TRL's SFTTrainer with one change: with `model_loss=True` the LM head runs in one matmul
over only the positions whose next token is trained (the answer), through transformers' `logits_to_keep`
mask, and the loss is one cross-entropy call. TRL's fused LM-head kernel also skips untrained positions,
but tiles the work into many small ops, which on CPU is ~35% slower; and the prompt makes up most of each
example, so projecting it onto the 49k-token vocabulary would be wasted work. Loss, normalisation over
gradient accumulation and the logged metrics (`mean_token_accuracy`, `num_tokens`) are the same as TRL's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer, SFTTrainer


class ThceSFTTrainer(SFTTrainer):
    def __init__(self, *args: Any, model_loss: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_loss = model_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.model_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        # No KV cache in training; with padding-free batches on sdpa it would also let packed sequences
        # attend to each other.
        inputs["use_cache"] = False
        labels = inputs.pop("labels")
        # Position t predicts token t+1: keep the positions whose next token carries a label.
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != -100
        outputs = model(**inputs, logits_to_keep=keep)
        logits = outputs.logits.reshape(-1, outputs.logits.size(-1))  # (kept positions, vocab)
        targets = labels[:, 1:][keep[:, :-1]].to(logits.device)
        loss_sum = F.cross_entropy(logits.float(), targets, reduction="sum")
        num_tokens = targets.numel() if num_items_in_batch is None else num_items_in_batch
        loss = loss_sum / torch.as_tensor(num_tokens, device=loss_sum.device).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes

        with torch.no_grad():
            correct = (logits.argmax(-1) == targets).sum()
            gathered_valid = self.accelerator.gather_for_metrics(
                torch.tensor(targets.numel(), device=logits.device)
            ).sum()
            gathered_correct = self.accelerator.gather_for_metrics(correct).sum()
            accuracy = (gathered_correct / gathered_valid).item() if gathered_valid > 0 else 0.0
            self._metrics[mode]["mean_token_accuracy"].append(accuracy)
            if mode == "train":
                if "attention_mask" in inputs:
                    batch_tokens = inputs["attention_mask"].sum()
                else:
                    batch_tokens = torch.tensor(
                        inputs["input_ids"].numel(), device=inputs["input_ids"].device
                    )
                self._total_train_tokens += self.accelerator.gather_for_metrics(batch_tokens).sum().item()
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return (loss, outputs) if return_outputs else loss


__all__ = ["DPOTrainer", "ThceSFTTrainer"]
