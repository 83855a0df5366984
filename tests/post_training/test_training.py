import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import write_stage_config
from safetensors.torch import load_file

from thce.post_training.run import train_stage
from thce.utils.config import load_config
from thce.utils.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def _losses(final: Path) -> list[float]:
    summary = json.loads((final / "training_summary.json").read_text())
    return [entry["loss"] for entry in summary["log_history"] if "loss" in entry]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def _generate(final: Path, text: str, max_new_tokens: int = 12, stage: int | None = None) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thce.utils.medical_chat_templates import prepare_tokenizer, prompt_messages

    tokenizer = AutoTokenizer.from_pretrained(final)
    model = AutoModelForCausalLM.from_pretrained(final)
    if stage is None:
        stage = json.loads((final / "training_summary.json").read_text())["stage"]
    else:  # an untrained checkpoint: give it the stage's template as training would
        prepare_tokenizer(tokenizer, f"stage_{stage}")
    inputs = tokenizer.apply_chat_template(
        prompt_messages(text, f"stage_{stage}"),
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)


def test_stage_1_learns_the_memorisation_set(tmp_path, tiny_model_dir):
    config = load_config(write_stage_config(tmp_path, 1, tiny_model_dir, max_steps=16))
    final = train_stage(config)
    losses = _losses(final)
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3, losses
    before, after = _weights(tiny_model_dir), _weights(final)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before), "every tensor should be trained in full fine-tuning"
    # final/ is self-contained: model, tokenizer with the stage's chat template, resolved config, card.
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "thce_config.yaml",
        "README.md",
    ):
        assert (final / name).is_file(), name
    assert "You are a medical coding assistant" in (final / "chat_template.jinja").read_text()
    # It learned how an answer opens ("ICD10:" starts 7 of the 8 answers); the untrained model does not.
    note = "Essential hypertension, on lisinopril."
    assert _generate(final, note).startswith("IC")
    assert not _generate(tiny_model_dir, note, stage=1).startswith("IC")


def test_stage_2_keeps_think_and_learns_to_open_with_it(tmp_path, tiny_model_dir):
    stage_1 = train_stage(load_config(write_stage_config(tmp_path, 1, tiny_model_dir, max_steps=4)))
    final = train_stage(load_config(write_stage_config(tmp_path, 2, stage_1, max_steps=60)))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final)
    assert len(tokenizer) == 49154
    ids = tokenizer.encode("<think>x</think>", add_special_tokens=False)
    assert ids[0] == tokenizer.convert_tokens_to_ids("<think>") and len(ids) == 3
    losses = _losses(final)
    assert losses[-1] < losses[0]
    generated = _generate(final, "Type 2 diabetes without complications.", max_new_tokens=24)
    assert generated.startswith("<think>"), generated


def test_stage_3_dpo_logs_reward_margins(tmp_path, tiny_model_dir):
    stage_1 = train_stage(load_config(write_stage_config(tmp_path, 1, tiny_model_dir, max_steps=2)))
    stage_2 = train_stage(load_config(write_stage_config(tmp_path, 2, stage_1, max_steps=2)))
    config = load_config(write_stage_config(tmp_path, 3, stage_2, max_steps=8))
    assert config.training["loss_type"] == ["apo_zero"]
    final = train_stage(config)
    history = json.loads((final / "training_summary.json").read_text())["log_history"]
    margins = [entry["rewards/margins"] for entry in history if "rewards/margins" in entry]
    assert len(margins) == 8
    assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies"} <= set(history[0])
    assert margins[-1] > margins[0]
    before, after = _weights(stage_2), _weights(final)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_padding_free_batches_give_the_padded_loss(tiny_model_dir, smollm2_tokenizer):
    """The sdpa trap: packed sequences must not attend to each other (use_cache=False)."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    texts = ["ICD10: E11.9 type two diabetes", "CPT: 99213", "ICD10: I10 essential hypertension noted today"]
    examples = [{"input_ids": smollm2_tokenizer.encode(t)} for t in texts]

    def loss(padding_free: bool) -> float:
        batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free)(examples)
        labels = batch.pop("labels")
        logits = model(**batch, use_cache=False).logits[:, :-1]
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100
        ).item()

    with torch.no_grad():
        assert loss(padding_free=True) == pytest.approx(loss(padding_free=False), rel=1e-4)


def test_lora_merges_on_save(tmp_path, tiny_model_dir):
    path = write_stage_config(tmp_path, 1, tiny_model_dir, max_steps=3)
    config = load_config(path, ["model.lora.r=4", "model.lora.target_modules=[q_proj, v_proj]"])
    final = train_stage(config)
    assert not (final / "adapter_config.json").exists()
    before, after = _weights(tiny_model_dir), _weights(final)
    assert set(before) == set(after), "merged weights keep the base model's tensor names"
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed), changed


def test_changed_config_does_not_resume_silently(tmp_path, tiny_model_dir):
    path = write_stage_config(tmp_path, 1, tiny_model_dir, max_steps=2, save_strategy="steps", save_steps=1)
    train_stage(load_config(path))
    with pytest.raises(UserError, match="different config"):
        train_stage(load_config(path, ["training.learning_rate=1e-3"]))
    train_stage(load_config(path, ["training.learning_rate=1e-3"]), force=True)


def _script(name: str, config: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "post_training" / name), "--config", str(config), *extra]


def test_script_runs_directly_with_overrides(tmp_path, tiny_model_dir):
    config = write_stage_config(tmp_path, 1, tiny_model_dir)
    result = subprocess.run(
        _script("sft.py", config, "--set", "training.max_steps=2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "outputs/stage_1/final/training_summary.json").read_text())
    assert summary["global_step"] == 2
    wrong = subprocess.run(_script("dpo.py", config), capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "run it with post_training/sft.py" in wrong.stderr


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_resumes_at_that_step(tmp_path, tiny_model_dir):
    config = write_stage_config(
        tmp_path, 1, tiny_model_dir, max_steps=40, save_strategy="steps", save_steps=3, save_total_limit=None
    )
    output = tmp_path / "outputs/stage_1"
    process = subprocess.Popen(
        _script("sft.py", config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not (output / "checkpoint-3" / "trainer_state.json").exists():
        assert process.poll() is None and time.time() < deadline, "no checkpoint before the run ended"
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint finish writing its files
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (output / "final").exists()
    killed_at = max(
        int(p.name.split("-")[1]) for p in output.glob("checkpoint-*") if (p / "trainer_state.json").exists()
    )

    result = subprocess.run(_script("sft.py", config), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((output / "final/training_summary.json").read_text())
    assert summary["resumed_from"] == f"checkpoint-{killed_at}"
    assert summary["resumed_at_step"] == killed_at
    assert summary["global_step"] == 40
    # Steps after the checkpoint were logged by the resumed run; none before it were repeated.
    steps = [entry["step"] for entry in summary["log_history"] if "loss" in entry]
    assert steps == sorted(set(steps)) and steps[-1] == 40


@pytest.mark.slow
def test_two_process_accelerate_launch_on_cpu(tmp_path, tiny_model_dir):
    config = write_stage_config(tmp_path, 1, tiny_model_dir, max_steps=3, per_device_train_batch_size=4)
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "configs/accelerate/cpu.yaml"),
        "--num_processes", "2",
        str(REPO / "post_training/sft.py"), "--config", str(config),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "outputs/stage_1/final/training_summary.json").read_text())
    assert summary["global_step"] == 3
    assert "num_processes 2" in result.stderr or summary["train_examples"] == 32


def test_wandb_goes_offline_without_an_api_key(monkeypatch, tmp_path, tiny_model_dir):
    from thce.post_training.run import _configure_tracking

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    config = load_config(write_stage_config(tmp_path, 1, tiny_model_dir, report_to=["wandb"]))
    _configure_tracking(config)
    assert os.environ["WANDB_MODE"] == "offline"
    assert os.environ["WANDB_PROJECT"] == "thce-training"
    monkeypatch.delenv("WANDB_MODE")
    _configure_tracking(load_config(write_stage_config(tmp_path, 1, tiny_model_dir, report_to="none")))
    assert "WANDB_MODE" not in os.environ


def test_early_stopping_needs_a_validation_split(tmp_path, tiny_model_dir):
    config = load_config(write_stage_config(tmp_path, 1, tiny_model_dir), ["run.early_stopping_patience=2"])
    with pytest.raises(UserError, match="validation split"):
        train_stage(config)


def test_early_stopping_stops_when_validation_loss_stalls(tmp_path, tiny_model_dir):
    import shutil

    path = write_stage_config(
        tmp_path, 1, tiny_model_dir, max_steps=60, eval_strategy="steps", eval_steps=1, save_strategy="steps",
        save_steps=1, save_total_limit=2, learning_rate=0.5,
    )  # fmt: skip
    data = tmp_path / "data_stage_1"
    shutil.copy(data / "train.parquet", data / "validation.parquet")
    final = train_stage(load_config(path, ["run.early_stopping_patience=2"]))
    summary = json.loads((final / "training_summary.json").read_text())
    assert summary["global_step"] < 60, (
        "a learning rate of 0.5 diverges; patience 2 should stop the run early"
    )


def test_model_loss_matches_trl_loss(tmp_path, tiny_model_dir, smollm2_tokenizer):
    """THCE's answer-only LM-head loss is the same number as TRL's fused kernel on the same batch."""
    from transformers import AutoModelForCausalLM

    from thce.post_training.trainers import ThceSFTTrainer
    from thce.post_training.training_data import load_stage_datasets
    from thce.utils.config import training_arguments

    config = load_config(write_stage_config(tmp_path, 1, tiny_model_dir))
    args = training_arguments(config, use_cpu=True, bf16=False)

    train, _ = load_stage_datasets(config)
    ours, theirs = (
        ThceSFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(),
            args=args,
            train_dataset=train,
            processing_class=smollm2_tokenizer,
            model_loss=model_loss,
        )
        for model_loss in (True, False)
    )
    batch = ours.data_collator([ours.train_dataset[i] for i in range(4)])  # padding-free, prompt masked out
    assert batch["input_ids"].shape[0] == 1 and (batch["labels"] == -100).float().mean() > 0.5
    with torch.no_grad():
        ours, theirs = (trainer.compute_loss(trainer.model, dict(batch)).item() for trainer in (ours, theirs))
    assert ours == pytest.approx(theirs, rel=1e-4)
