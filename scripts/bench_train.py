"""Training throughput of the real 135M model: THCE's configuration vs TRL's defaults, and MFU.

    python scripts/bench_train.py                       # THCE default config vs plain SFTConfig(use_cpu=True)
    python scripts/bench_train.py --config configs/stage_1.yaml --steps 12 --batch-size 8
    python scripts/bench_train.py --runs thce           # THCE only

Each run trains a few real optimizer steps on stage-1 style chat examples (generated from the ICD-10-CM
code set, mixed lengths, ~90 tokens) in a fresh subprocess, so peak memory is its own. Reported per run:
non-padding tokens/s, samples/s, peak memory; and, measured in the same invocation, the machine's fp32 and
bf16 GEMM throughput, from which model-FLOPs utilisation = 6 x params x tokens/s / GEMM peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gemm_peak(dtype_name: str, size: int = 2048, seconds: float = 3.0) -> float:
    """Sustained matmul FLOP/s for square matrices of `size` in the given dtype, on this device."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    _sync(device)
    return 2 * size**3 * runs / (time.perf_counter() - start)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def bench_examples(count: int, seed: int, multi_code_rate: float) -> list[dict]:
    """Stage-1 prompt/completion rows from the synthetic generator (real clinical phrasing, mixed lengths).

    With the default multi-code rate of 0.6 an example averages ~90 tokens (54-150) in the chat template.
    """
    from thce.data.synthetic_generation import generate_records
    from thce.utils.medical_chat_templates import assistant_messages, prompt_messages

    rows = []
    options = {"multi_code_rate": multi_code_rate, "max_codes": 3}
    for record in generate_records("icd10cm", count, seed=seed, options=options):
        rows.append(
            {
                "prompt": prompt_messages(record["text"], "stage_1"),
                "completion": assistant_messages(record["codes"]),
            }
        )
    return rows


def run_single(name: str, args: argparse.Namespace) -> dict:
    """One measured training run (executed in its own subprocess)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from thce.post_training.model_setup import (
        load_stage_model,
        precision_arguments,
        stage_precision,
        training_device,
    )
    from thce.post_training.trainers import ThceSFTTrainer
    from thce.utils.config import load_config, training_arguments

    torch.manual_seed(0)
    dataset = Dataset.from_list(
        bench_examples(
            args.batch_size * (args.steps + args.warmup), seed=1, multi_code_rate=args.multi_code_rate
        )
    )
    output_dir = tempfile.mkdtemp(prefix=f"bench-{name}-")
    common = {
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": 1,
        "max_steps": args.steps + args.warmup,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "output_dir": output_dir,
        "dataloader_num_workers": 0,
    }
    config = load_config(args.config, args.overrides)
    model, tokenizer = load_stage_model(config)
    if name == "thce":
        device = training_device()
        training = training_arguments(
            config,
            **{**precision_arguments(stage_precision(config), device), **common, "num_train_epochs": 1},
        )
        trainer = ThceSFTTrainer(
            model=model,
            args=training,
            train_dataset=dataset,
            processing_class=tokenizer,
            model_loss=config.run.model_loss,
        )
    else:  # TRL's own defaults, as a user would start: SFTConfig(use_cpu=True) (+ the batch/steps above)
        training = SFTConfig(use_cpu=not torch.cuda.is_available(), **common)
        trainer = SFTTrainer(model=model, args=training, train_dataset=dataset, processing_class=tokenizer)

    marks: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_, **__):
            _sync("cuda" if torch.cuda.is_available() else "cpu")
            marks.append(time.perf_counter())

    trainer.add_callback(StepClock())
    trainer.train()
    tokens = [entry["num_tokens"] for entry in trainer.state.log_history if "num_tokens" in entry]
    measured_steps = len(marks) - args.warmup
    elapsed = marks[-1] - marks[args.warmup - 1]
    measured_tokens = tokens[-1] - tokens[args.warmup - 1]
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "run": name,
        "precision": "bf16" if training.bf16 else "fp16" if training.fp16 else "fp32",
        "activation_checkpointing": bool(getattr(training, "activation_checkpointing", False)),
        "padding_free": bool(getattr(training, "padding_free", False)),
        "model_loss": name == "thce" and config.run.model_loss,
        "steps_measured": measured_steps,
        "tokens_per_second": measured_tokens / elapsed,
        "tokens_per_example": measured_tokens / (measured_steps * args.batch_size),
        "samples_per_second": measured_steps * args.batch_size / elapsed,
        "peak_memory_gib": peak,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", default=str(REPO / "configs/demo_stage_1.yaml"), help="stage YAML for THCE's run"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--steps", type=int, default=8, help="measured optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--multi-code-rate", type=float, default=0.6, help="share of multi-code examples")
    parser.add_argument("--runs", default="thce,trl_defaults", help="comma list of thce, trl_defaults")
    parser.add_argument("--output", help="write the results JSON here too")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single:
        print("RESULT " + json.dumps(run_single(args.single, args)))
        return

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    peaks = {dtype: gemm_peak(dtype) for dtype in ("fp32", "bf16")}
    print(f"{device}, {torch.get_num_threads()} threads: GEMM fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")  # fmt: skip
    results = []
    for name in args.runs.split(","):
        command = [sys.executable, __file__, "--single", name, "--config", args.config, "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                   "--multi-code-rate", str(args.multi_code_rate)]  # fmt: skip
        for override in args.overrides:
            command += ["--set", override]
        done = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"}
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            sys.exit(f"run {name} failed:\n{done.stderr[-3000:]}")
        result = json.loads(lines[-1].removeprefix("RESULT "))
        peak = peaks["bf16"] if result["precision"] == "bf16" else peaks["fp32"]
        result["mfu_vs_own_precision_peak"] = 6 * result["parameters"] * result["tokens_per_second"] / peak
        result["mfu_vs_bf16_peak"] = 6 * result["parameters"] * result["tokens_per_second"] / peaks["bf16"]
        results.append(result)
        print(
            f"{name:>14}: {result['tokens_per_second']:7.1f} tok/s  {result['samples_per_second']:5.2f} samples/s  "
            f"({result['tokens_per_example']:.0f} tok/example)  "
            f"peak {result['peak_memory_gib']:.2f} GiB  MFU {100 * result['mfu_vs_bf16_peak']:.0f}% of bf16 peak  "
            f"({result['precision']}, checkpointing={result['activation_checkpointing']}, "
            f"padding_free={result['padding_free']}, model_loss={result['model_loss']})"
        )
    if len(results) == 2:
        ratio = results[0]["tokens_per_second"] / results[1]["tokens_per_second"]
        print(f"speed-up {results[0]['run']} / {results[1]['run']}: {ratio:.2f}x non-padding tokens/s")
    report = {"device": device, "gemm_flops": peaks, "runs": results}
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
