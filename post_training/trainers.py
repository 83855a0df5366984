"""TRL trainers as THCE runs them: the answer-only LM head (`answer_head.py`) in both, and in DPO a
length column so batches can be grouped by length.

`ThceSFTTrainer` is TRL's SFTTrainer whose loss, with `model_loss=True`, projects only the answer positions
onto the vocabulary and takes one cross-entropy call. Loss, normalisation over gradient accumulation and
the logged metrics (`mean_token_accuracy`, `num_tokens`) are the same as TRL's.

`ThceDPOTrainer` is TRL's DPOTrainer, loss code untouched, with (`model_loss=True`) the same answer-only head
under TRL's fused-head call, for the policy and for the reference pass (precomputed or not); that head also
runs each pair as one row, its prompt once (`answer_head.pack_pairs`, done by the collator). TRL's own
`precompute_ref_log_probs` does the reference pass once per dataset, cached beside the dataset under a
fingerprint of the data and the model weights, so a change of either recomputes it; we only sort that pass
by length, so its batches carry little padding.

Both add NEFTune's embedding noise (`neftune_noise_alpha`) with our own hook (`_CompilableNeftune`): the
Trainer's hook makes a host sync inside the decoder, and a compiled forward then falls back to eager whole.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer, SFTTrainer

from thce.post_training.answer_head import (
    IGNORE_INDEX,
    PACKED_PAIRS,
    answer_logits,
    install_answer_only_head,
    math_attention_fits,
    pack_pairs,
    packable,
)


class _CompilableNeftune:
    """NEFTune by our hook (`_neftune_noise`) instead of the Trainer's, whose host sync breaks a compiled graph.
    Mixed into both trainers, before the TRL class."""

    def _take_over_neftune(self) -> None:
        self.neftune_alpha, self.neftune_noise_alpha = self.neftune_noise_alpha, None

    def train(self, *args: Any, **kwargs: Any):
        if self.neftune_alpha is None:
            return super().train(*args, **kwargs)
        embeddings = _policy(self.model).get_input_embeddings()
        hook = embeddings.register_forward_hook(functools.partial(_neftune_noise, self.neftune_alpha))
        try:
            return super().train(*args, **kwargs)
        finally:
            hook.remove()


class ThceSFTTrainer(_CompilableNeftune, SFTTrainer):
    def __init__(self, *args: Any, model_loss: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_loss = model_loss
        if model_loss:  # with the fields TRL's SFT loss reads, should its own fused-head call reach it
            short_rows = not self.args.padding_free and all(
                math_attention_fits(dataset, compiled=self.args.torch_compile)
                for dataset in (self.train_dataset, self.eval_dataset)
                if dataset
            )
            install_answer_only_head(
                _policy(self.model), ("log_probs", "entropy", "is_top1"), math_attention=short_rows
            )
        self._take_over_neftune()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.model_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        # No KV cache in training; with padding-free batches on sdpa it would also let packed sequences
        # attend to each other.
        inputs["use_cache"] = False
        labels = inputs.pop("labels")
        logits, targets, outputs = answer_logits(model, inputs, labels)
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


def _neftune_noise(alpha: float, module: Any, inputs: Any, embeddings: torch.Tensor) -> torch.Tensor:
    """NEFTune (Jain et al. 2023) as transformers' hook computes it, uniform noise of scale
    alpha / sqrt(seq x hidden) on the training embeddings, in tensor ops a compiled graph can hold (the
    Trainer's hook passes a tensor bound to `uniform_`, a host sync that breaks the graph)."""
    if not module.training:
        return embeddings
    scale = alpha / (embeddings.size(1) * embeddings.size(2)) ** 0.5
    return embeddings + (torch.rand_like(embeddings) * 2 - 1) * scale


def _policy(model: Any) -> Any:
    """The model whose forward TRL patched: the base model under PEFT."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


LENGTH_COLUMN = "length"


class ThceDPOTrainer(_CompilableNeftune, DPOTrainer):
    def __init__(self, *args: Any, model_loss: bool = True, **kwargs: Any) -> None:
        # Set before TRL's __init__, which already runs the reference pass when precompute_ref_log_probs is on.
        self.model_loss = model_loss
        super().__init__(*args, **kwargs)
        self._install_answer_only_heads()
        self._take_over_neftune()

    def _install_answer_only_heads(self) -> None:
        if not self.model_loss:
            return
        # The fields TRL's DPO loss reads from the policy's output (metrics; WPO weights when enabled).
        fields = ("log_probs", "entropy", "mean_logits", "is_top1")
        fields += ("log_sum_sq_probs",) if self.use_weighting else ()
        policy = _policy(self.model)
        install_answer_only_head(policy, fields)
        if self.ref_model is not None:
            install_answer_only_head(self.accelerator.unwrap_model(self.ref_model))
        if not isinstance(self.data_collator, _PairPackingCollator):
            self.data_collator = _PairPackingCollator(self.data_collator, policy)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        # group_by_length needs each pair's length: its packed row, the prompt and both completions.
        if hasattr(dataset, "column_names") and LENGTH_COLUMN not in dataset.column_names:
            dataset = dataset.map(
                lambda row: {
                    LENGTH_COLUMN: len(row["prompt_ids"]) + len(row["chosen_ids"]) + len(row["rejected_ids"])
                },
                desc=f"Measuring {dataset_name} pairs",
            )
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if LENGTH_COLUMN not in self._signature_columns:  # keep it for the length-grouped sampler
            self._signature_columns = [*self._signature_columns, LENGTH_COLUMN]

    def _precompute_ref_logps(self, dataset, name, batch_size):
        self._install_answer_only_heads()  # TRL's __init__ runs this pass before our __init__ resumes
        if hasattr(dataset, "sort") and LENGTH_COLUMN in dataset.column_names:
            dataset = dataset.sort(LENGTH_COLUMN)  # batches of similar length; the sampler reorders later
        return super()._precompute_ref_logps(dataset, name, batch_size)


class _PairPackingCollator:
    """TRL's preference collator, plus each batch's pairs packed one row per pair (`pack_pairs`) under
    `PACKED_PAIRS`, which TRL passes on to the model with the other inputs."""

    def __init__(self, collate: Any, model: Any) -> None:
        self.collate, self.model = collate, model

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collate(examples)
        if packable(self.model, batch):
            labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, IGNORE_INDEX)
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            packed = pack_pairs(inputs, labels)
            if packed is not None:
                batch[PACKED_PAIRS] = packed
        return batch


__all__ = ["ThceDPOTrainer", "ThceSFTTrainer"]
