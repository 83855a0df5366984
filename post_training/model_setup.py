"""Model, tokenizer and precision for a training stage.

The model comes from the resolver (embedded SmolLM2-135M-Instruct by default, or the previous stage's
`final/`), always with fp32 master weights: the chosen precision is applied as autocast by the trainer,
because bf16 weights would round most updates away at the seed's learning rates (1e-5 .. 3e-4).
"""

from __future__ import annotations

import os
from typing import Any

from loguru import logger

from thce.utils.config import StageConfig
from thce.utils.medical_chat_templates import prepare_model, prepare_tokenizer
from thce.utils.models import default_device, resolve_model, select_precision


def stage_precision(config: StageConfig) -> str:
    """The autocast precision for this stage on this device (the one function in utils decides)."""
    return select_precision(default_device(), requested=config.model.precision)


def precision_arguments(precision: str, device: str) -> dict[str, Any]:
    """TrainingArguments fields for a precision. On CPU, bf16 means torch.autocast(cpu, bfloat16)."""
    return {"bf16": precision == "bf16", "fp16": precision == "fp16", "use_cpu": device == "cpu"}


def compile_arguments(compile: bool) -> dict[str, Any]:
    """TrainingArguments fields for `model.compile`, and the environment the Trainer's compile reads.

    Shapes are dynamic: length-grouped batches have a new sequence length nearly every step, and static shapes
    recompile for each (the warm-up never ended in 13 minutes on 2 cores); with dynamic shapes one graph serves
    every length, after a first step of ~3 minutes on 2 cores (inductor's on-disk cache did not shorten it)."""
    if compile:
        os.environ.setdefault("ACCELERATE_DYNAMO_USE_DYNAMIC", "true")
    return {"torch_compile": compile}


def load_stage_model(config: StageConfig) -> tuple[Any, Any]:
    """Load the stage's starting model and tokenizer, install the stage's chat template and special tokens,
    and (optionally) wrap the model with LoRA adapters."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(config.model.name_or_path)
    logger.info(f"Stage {config.stage}: starting from {resolved.name} ({resolved.origin}: {resolved.path})")
    tokenizer = AutoTokenizer.from_pretrained(resolved.path)
    model = AutoModelForCausalLM.from_pretrained(
        resolved.path, dtype=torch.float32, attn_implementation=config.model.attn_implementation
    )
    added = prepare_tokenizer(
        tokenizer, config.chat.template, config.chat.special_tokens, config.chat.system_message
    )
    prepare_model(model, tokenizer)
    if added:
        logger.info(f"Added {added} special token(s); embeddings resized to {len(tokenizer)}")
    model.config.use_cache = False  # training; also required for correct padding-free attention on sdpa
    if config.model.lora is not None:
        model = apply_lora(model, config, new_tokens=added > 0)
    return model, tokenizer


def apply_lora(model: Any, config: StageConfig, new_tokens: bool) -> Any:
    """Wrap the model with peft LoRA adapters; new special tokens need trainable embeddings too."""
    from peft import LoraConfig, get_peft_model

    lora = config.model.lora
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
        # A token added this stage has no trained embedding yet; train the (tied) embedding matrix in full.
        modules_to_save=["embed_tokens"] if new_tokens else None,
    )
    model = get_peft_model(model, peft_config)
    trainable, total = model.get_nb_trainable_parameters()
    logger.info(f"LoRA r={lora.r}: {trainable:,} of {total:,} parameters trainable")
    return model
