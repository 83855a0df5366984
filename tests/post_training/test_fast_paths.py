"""The trainers' fast paths give the numbers of the slow ones: the answer-only LM head in DPO, precomputed
reference log-probs, length-grouped DPO batches, compiled SFT and DPO steps, and our NEFTune hook."""

import copy
import functools

import pytest
import torch
from conftest import write_stage_config
from transformers import TrainerCallback

from thce.post_training.model_setup import compile_arguments, load_stage_model
from thce.post_training.trainers import LENGTH_COLUMN, ThceDPOTrainer, ThceSFTTrainer, _neftune_noise
from thce.post_training.training_data import load_stage_datasets
from thce.utils.config import load_config, training_arguments


def _dpo_config(tmp_path, tiny_model_dir, *overrides):
    return load_config(write_stage_config(tmp_path, 3, tiny_model_dir), list(overrides))


def _dpo_trainer(config, model, precision, model_loss=True, ref_model=None, **training):
    args = training_arguments(config, use_cpu=True, bf16=precision == "bf16", **training)
    train, _ = load_stage_datasets(config)
    _, tokenizer = load_stage_model(config)
    return ThceDPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        model_loss=model_loss,
    )


def _perturb(model, seed=1, scale=0.05):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


def _loss(trainer, rows, precision):
    batch = trainer.data_collator(rows)
    trainer.model.eval()
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        return trainer.compute_loss(trainer.model, batch).item()


@pytest.mark.parametrize("loss_type", ["apo_zero", "sigmoid"])
def test_dpo_answer_only_head_gives_trl_full_head_loss(tmp_path, tiny_model_dir, loss_type):
    config = _dpo_config(tmp_path, tiny_model_dir, f"training.loss_type=[{loss_type}]")
    base, _ = load_stage_model(config)
    policy = copy.deepcopy(base)
    _perturb(policy)  # policy != reference, or every log-ratio is 0 and the loss a constant
    ours = _dpo_trainer(config, copy.deepcopy(policy), "fp32", ref_model=copy.deepcopy(base))
    theirs = _dpo_trainer(
        config, copy.deepcopy(policy), "fp32", model_loss=False, ref_model=copy.deepcopy(base)
    )
    assert getattr(ours.model, "_thce_answer_only_head", False)
    assert not getattr(theirs.model, "_thce_answer_only_head", False)
    rows = [ours.train_dataset[i] for i in range(6)]
    assert _loss(ours, rows, "fp32") == pytest.approx(_loss(theirs, rows, "fp32"), rel=1e-5)
    # The logged metrics come from the same per-token fields.
    for name in ("entropy", "logits/chosen", "mean_token_accuracy", "rewards/margins"):
        assert ours._metrics["eval"][name][-1] == pytest.approx(
            theirs._metrics["eval"][name][-1], rel=1e-4
        ), name


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-5), ("bf16", 2e-2)])
def test_precomputed_reference_log_probs_give_the_same_loss(tmp_path, tiny_model_dir, precision, tolerance):
    config = _dpo_config(tmp_path, tiny_model_dir)
    base, _ = load_stage_model(config)
    precomputed = _dpo_trainer(config, copy.deepcopy(base), precision, precompute_ref_log_probs=True)
    assert precomputed.ref_model is None, "with precomputed log-probs no reference copy is kept"
    assert {"ref_chosen_logps", "ref_rejected_logps"} <= set(precomputed.train_dataset.column_names)
    _perturb(precomputed.model)  # as if trained: the reference must stay the starting model
    live = _dpo_trainer(config, copy.deepcopy(precomputed.model), precision, ref_model=copy.deepcopy(base))
    rows = [precomputed.train_dataset[i] for i in range(6)]
    plain_rows = [{k: v for k, v in row.items() if not k.startswith("ref_")} for row in rows]
    with_cache = _loss(precomputed, rows, precision)
    assert with_cache == pytest.approx(_loss(live, plain_rows, precision), rel=tolerance, abs=tolerance)
    assert abs(precomputed._metrics["eval"]["rewards/margins"][-1]) > 1e-3, "policy and reference must differ"


def test_reference_cache_is_reused_and_follows_the_model(tmp_path, tiny_model_dir):
    config = _dpo_config(tmp_path, tiny_model_dir)
    base, _ = load_stage_model(config)
    first = _dpo_trainer(config, copy.deepcopy(base), "fp32", precompute_ref_log_probs=True)
    again = _dpo_trainer(config, copy.deepcopy(base), "fp32", precompute_ref_log_probs=True)
    assert again.train_dataset["ref_chosen_logps"] == first.train_dataset["ref_chosen_logps"]
    assert again.train_dataset.cache_files == first.train_dataset.cache_files, "second run reads the cache"
    changed = copy.deepcopy(base)
    _perturb(changed)
    other = _dpo_trainer(config, changed, "fp32", precompute_ref_log_probs=True)
    assert other.train_dataset["ref_chosen_logps"] != first.train_dataset["ref_chosen_logps"]


def test_dpo_batches_are_grouped_by_length(tmp_path, tiny_model_dir):
    config = _dpo_config(tmp_path, tiny_model_dir)
    base, _ = load_stage_model(config)
    trainer = _dpo_trainer(
        config, base, "fp32", train_sampling_strategy="group_by_length", per_device_train_batch_size=4
    )
    row = trainer.train_dataset[0]
    # a pair runs as one packed row: the prompt and both completions
    assert row[LENGTH_COLUMN] == len(row["prompt_ids"]) + len(row["chosen_ids"]) + len(row["rejected_ids"])
    lengths = [trainer.train_dataset[i][LENGTH_COLUMN] for i in trainer._get_train_sampler()]
    # LengthGroupedSampler: the first batch holds the longest example; batches are sorted within megabatches.
    assert lengths[0] == max(lengths)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 8  # 4 pairs: chosen and rejected rows


@pytest.mark.slow
def test_compiled_sft_step_gives_the_eager_loss_at_every_length(tmp_path, tiny_model_dir, monkeypatch):
    """One dynamic-shape graph (as `compile_arguments` makes the Trainer compile) serves batches of different
    lengths, each with the eager loss."""
    monkeypatch.setenv("ACCELERATE_DYNAMO_USE_DYNAMIC", "")  # unset now, restored after
    monkeypatch.delenv("ACCELERATE_DYNAMO_USE_DYNAMIC")
    # Padded rows, all short: the run attends with sdpa's math kernel (what the compiled graph must hold).
    config = load_config(write_stage_config(tmp_path, 1, tiny_model_dir, padding_free=False))
    train, _ = load_stage_datasets(config)
    model, tokenizer = load_stage_model(config)
    args = training_arguments(config, use_cpu=True, bf16=False, **compile_arguments(True))
    trainer = ThceSFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    assert _flash_enabled_in_attention(trainer, model) is False
    compile_kwargs = trainer.accelerator.state.dynamo_plugin.to_kwargs()  # what accelerate compiles with
    assert compile_kwargs["dynamic"] is True
    rows = sorted(
        (trainer.train_dataset[i] for i in range(len(trainer.train_dataset))),
        key=lambda r: len(r["input_ids"]),
    )
    batches = [trainer.data_collator(rows[:4]), trainer.data_collator(rows[-4:])]
    assert batches[0]["input_ids"].shape[1] < batches[1]["input_ids"].shape[1]
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    compiled = torch.compile(model, **compile_kwargs)
    model.eval()
    graphs = []  # graphs compiled so far, after each batch: the longer batch compiles nothing new
    with torch.no_grad():
        for batch in batches:
            eager = trainer.compute_loss(model, dict(batch)).item()
            assert trainer.compute_loss(compiled, dict(batch)).item() == pytest.approx(eager, rel=1e-4)
            graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[0] >= 1
    assert graphs[1] == graphs[0]
    # A training step, with the NEFTune noise the stage configs use: forward and backward, still one graph.
    model.train()
    hook = model.get_input_embeddings().register_forward_hook(functools.partial(_neftune_noise, 0.01))
    trainer.compute_loss(compiled, dict(batches[1])).backward()
    hook.remove()
    assert not counters["graph_break"], dict(counters["graph_break"])


def _flash_enabled_in_attention(trainer, model) -> bool:
    """Whether sdpa's flash kernel was enabled while the first attention layer ran, in one eager loss call."""
    seen = []
    attention = model.model.layers[0].self_attn
    hook = attention.register_forward_pre_hook(
        lambda *_: seen.append(torch.backends.cuda.flash_sdp_enabled())
    )
    rows = [trainer.train_dataset[i] for i in range(2)]
    with torch.no_grad():
        trainer.compute_loss(model, trainer.data_collator(rows))
    hook.remove()
    return seen[0]


def test_math_attention_is_chosen_when_every_row_is_short(tmp_path, tiny_model_dir):
    """sdpa's math kernel (faster on CPU for short rows) when the rows are short, chosen once per run; otherwise,
    and for padding-free batches (whose rows are whole batches), the default kernels."""
    from datasets import Dataset

    from thce.post_training.answer_head import MATH_ATTENTION_CROSSOVER, math_attention_fits

    def rows(*lengths):
        return Dataset.from_dict({"input_ids": [[1] * n for n in lengths]})

    for setup, crossover in MATH_ATTENTION_CROSSOVER.items():
        compiled = setup == "compiled"
        assert math_attention_fits(
            rows(crossover - 10, crossover + 10), compiled
        )  # on average at the crossover
        assert not math_attention_fits(rows(crossover, crossover + 10), compiled)  # above it on average
        assert not math_attention_fits(rows(*[10] * 9, 2 * crossover + 1), compiled)  # one row too long
    assert not math_attention_fits(rows(), compiled=False)
    for padding_free, flash in ((False, False), (True, True)):
        config = load_config(write_stage_config(tmp_path, 1, tiny_model_dir, padding_free=padding_free))
        train, _ = load_stage_datasets(config)
        model, tokenizer = load_stage_model(config)
        args = training_arguments(config, use_cpu=True, bf16=False)
        trainer = ThceSFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
        assert _flash_enabled_in_attention(trainer, model) is flash


def test_neftune_noise_is_bounded_by_alpha_and_on_only_while_training(tmp_path, tiny_model_dir):
    """The trainers' own NEFTune hook: uniform noise within alpha / sqrt(seq x hidden), in training mode only,
    installed by `train()` in place of the Trainer's (whose host sync breaks a compiled graph)."""
    embeddings = torch.nn.Embedding(10, 8)
    ids = torch.randint(0, 10, (2, 5))
    clean = embeddings.weight[ids].detach()
    hook = embeddings.register_forward_hook(functools.partial(_neftune_noise, 0.5))
    noise = (embeddings(ids) - clean).abs()
    assert 0 < noise.max() <= 0.5 / (5 * 8) ** 0.5
    assert noise.mean() > 0.25 * 0.5 / (5 * 8) ** 0.5  # uniform on [-b, b]: mean |x| = b / 2
    embeddings.eval()
    assert torch.equal(embeddings(ids), clean)
    hook.remove()

    config = load_config(
        write_stage_config(tmp_path, 1, tiny_model_dir, max_steps=1, neftune_noise_alpha=5.0)
    )
    train, _ = load_stage_datasets(config)
    model, tokenizer = load_stage_model(config)
    args = training_arguments(config, use_cpu=True, bf16=False)
    trainer = ThceSFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    assert (trainer.neftune_alpha, trainer.neftune_noise_alpha) == (5.0, None)
    hooks = []

    class Hooks(TrainerCallback):
        def on_step_begin(self, *_, **__):
            hooks.append(
                [getattr(h, "func", h) for h in model.get_input_embeddings()._forward_hooks.values()]
            )

    trainer.add_callback(Hooks())
    trainer.train()
    assert hooks == [[_neftune_noise]]
    assert not model.get_input_embeddings()._forward_hooks  # removed after training


def test_stage_3_trains_with_the_demo_settings_and_evaluates(tmp_path, tiny_model_dir):
    """The stage-3 configs' path end to end: cached reference pass, grouped batches, evaluation on validation."""
    import json
    import shutil

    from thce.post_training.run import train_stage

    stage_2 = train_stage(load_config(write_stage_config(tmp_path, 2, tiny_model_dir, max_steps=1)))
    path = write_stage_config(
        tmp_path, 3, stage_2, max_steps=4, precompute_ref_log_probs=True, precompute_ref_batch_size=16,
        train_sampling_strategy="group_by_length", eval_strategy="steps", eval_steps=2,
    )  # fmt: skip
    data = tmp_path / "data_stage_3"
    shutil.copy(data / "train.parquet", data / "validation.parquet")
    final = train_stage(load_config(path))
    history = json.loads((final / "training_summary.json").read_text())["log_history"]
    assert [e["step"] for e in history if "eval_loss" in e] == [2, 4]
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in history if "loss" in e)


def test_dpo_pairs_packed_on_their_shared_prompt_give_the_separate_rows_log_probs(tmp_path, tiny_model_dir):
    from thce.post_training import answer_head

    config = _dpo_config(tmp_path, tiny_model_dir)
    model, _ = load_stage_model(config)
    trainer = _dpo_trainer(config, copy.deepcopy(model), "fp32", ref_model=copy.deepcopy(model))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    packed = answer_head.pack_pairs(inputs, labels)
    assert packed[0]["input_ids"].shape[0] == 4  # one row per pair, shorter than its two rows
    assert packed[0]["input_ids"].numel() < 0.8 * batch["attention_mask"].sum()
    assert torch.equal(batch[answer_head.PACKED_PAIRS][1], packed[1])  # the trainer's collator packs them

    def log_probs_and_grads(pack):
        policy = copy.deepcopy(model)
        answer_head.install_answer_only_head(policy)
        out = policy(**inputs, labels=labels, fused_lm_head=True, packed_pairs=packed if pack else None)
        out.log_probs.sum().backward()
        return out.log_probs.detach(), [p.grad.clone() for p in policy.parameters() if p.grad is not None]

    separate, separate_grads = log_probs_and_grads(False)
    shared, shared_grads = log_probs_and_grads(True)
    assert (separate != 0).sum() > 8
    torch.testing.assert_close(shared, separate, atol=1e-4, rtol=1e-4)
    for a, b in zip(shared_grads, separate_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


@pytest.mark.slow
def test_compiled_dpo_step_gives_the_eager_log_probs_at_every_length(tmp_path, tiny_model_dir, monkeypatch):
    """The packed-pair DPO forward compiles to dynamic-shape graphs that serve pair batches of different
    lengths (no recompile), each with the eager log-probs."""
    from thce.post_training import answer_head

    monkeypatch.setenv("ACCELERATE_DYNAMO_USE_DYNAMIC", "")
    monkeypatch.delenv("ACCELERATE_DYNAMO_USE_DYNAMIC")
    config = _dpo_config(tmp_path, tiny_model_dir)
    model, _ = load_stage_model(config)
    trainer = _dpo_trainer(config, model, "fp32", ref_model=copy.deepcopy(model), **compile_arguments(True))
    compile_kwargs = trainer.accelerator.state.dynamo_plugin.to_kwargs()
    rows = sorted(
        (trainer.train_dataset[i] for i in range(len(trainer.train_dataset))), key=lambda r: r[LENGTH_COLUMN]
    )
    batches = [trainer.data_collator(rows[:4]), trainer.data_collator(rows[-4:])]
    assert batches[0]["input_ids"].shape[1] < batches[1]["input_ids"].shape[1]
    torch._dynamo.reset()
    compiled = torch.compile(model, **compile_kwargs)
    graphs = []
    with torch.no_grad():
        for batch in batches:
            inputs = {key: batch[key] for key in ("input_ids", "attention_mask", answer_head.PACKED_PAIRS)}
            labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
            eager = model(**inputs, labels=labels, fused_lm_head=True).log_probs
            torch.testing.assert_close(
                compiled(**inputs, labels=labels, fused_lm_head=True).log_probs, eager, atol=1e-4, rtol=1e-4
            )
            graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    assert graphs[0] >= 1
    assert graphs[1] == graphs[0]
