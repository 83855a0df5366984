"""Training throughput of the real 135M model: THCE's trainers vs TRL's defaults, and MFU, in one run.

    python scripts/bench_train.py                          # every section below
    python scripts/bench_train.py --sections sft,dpo       # some of them
    python scripts/bench_train.py --profile --sections dpo # where a THCE step's time goes (first section)

Each section trains three ways, each in a fresh subprocess (peak memory and compile state its own): `thce` (the
stage config as the demo runs it, eager), `thce_compiled` (the same with `model.compile: true`, as the full-scale
configs run it: dynamic-shape torch.compile) and `trl_defaults`. The compiled run's first step includes compiling;
the report says after how many steps compiling has paid that back. (In DPO only the training steps compile; the
reference pass, before training, stays eager.)

Sections:
- gemm:     the machine's matmul rate: square 2048 GEMMs (fp32, bf16), and bf16 at the model's own matmul
            shapes (every projection of one layer and the LM head, forward and both backward GEMMs, for the
            tokens of one batch of ~96-token examples), the realistic ceiling. Each SFT section measures the
            latter again at its own tokens per batch, for its MFU.
- sft:      stage-1 chat examples from the synthetic generator (~90 tokens): THCE (the stage config) vs
            `SFTConfig(use_cpu=True)`, non-padding tokens/s, and MFU = 6 x params x tokens/s over both rates.
- sft_long: stage-1 rows as `thce collect` builds them for retrieval-augmented training (configs/stage_1.yaml:
            the note, then the retriever's k numbered candidates; ~250-token prompts): same comparison.
- dpo:      stage-3 preference pairs as `thce collect` builds them (configs/stage_3.yaml: candidate prompts,
            contrastive traces, retriever-confusion rejections): THCE (precomputed reference log-probs,
            answer-only head, each pair one row with its prompt once, length-grouped batches) vs
            `DPOConfig(use_cpu=True)`, pairs/s. THCE's reference pass over the dataset is timed and charged
            per pair: pairs/s = 1 / (train s/pair + reference s/pair).
The collected rows are built once per section, before the runs, so both runs train on the same rows.
A speed-up is a ratio of two runs of the same invocation, so machine load between invocations cancels out.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
CONFIGS = {
    "sft": "configs/demo_stage_1.yaml",
    "sft_long": "configs/demo_stage_1.yaml",
    "dpo": "configs/demo_stage_3.yaml",
}
# Sections whose rows are the training data `thce collect` builds from this config's first source.
COLLECTED = {"sft_long": "configs/stage_1.yaml", "dpo": "configs/stage_3.yaml"}
RUNS = ("thce", "thce_compiled", "trl_defaults")


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _rate(matmuls: list[tuple[int, int, int]], dtype_name: str, seconds: float) -> float:
    """FLOP/s of running the (m, k, n) matmuls in turn for about `seconds`."""
    import torch

    from thce.utils.models import default_device

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    device = default_device()
    pairs = [
        (torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, n, dtype=dtype, device=device))
        for m, k, n in matmuls
    ]
    flops = sum(2 * m * k * n for m, k, n in matmuls)
    for a, b in pairs:
        a @ b
    _sync()
    rounds, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for a, b in pairs:
            a @ b
        rounds += 1
    _sync()
    return flops * rounds / (time.perf_counter() - start)


def model_matmuls(config, tokens: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of one layer's projections and the LM head for `tokens` rows: forward, input and weight grads."""
    hidden, inter = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    forward = [(tokens, hidden, n) for n in (hidden, kv, kv, hidden, inter, inter)]
    forward += [(tokens, inter, hidden), (tokens, hidden, config.vocab_size)]
    grads = [(m, n, k) for m, k, n in forward] + [(k, m, n) for m, k, n in forward]
    return forward + grads


def gemm_section(tokens: int, seconds: float) -> dict[str, float]:
    square = [(2048, 2048, 2048)]
    return {
        "square_fp32": _rate(square, "fp32", seconds),
        "square_bf16": _rate(square, "bf16", seconds),
        "model_shapes_bf16": model_shapes_rate(tokens, seconds),
    }


def model_shapes_rate(tokens: int, seconds: float) -> float:
    """bf16 FLOP/s of the model's own matmuls for a batch of `tokens` rows."""
    from transformers import AutoConfig

    from thce.utils.models import resolve_model

    config = AutoConfig.from_pretrained(resolve_model(BASE_MODEL).path)
    return _rate(model_matmuls(config, tokens), "bf16", seconds)


# --- data ------------------------------------------------------------------------------------------------


def sft_rows(count: int, seed: int) -> list[dict]:
    """Stage-1 prompt/completion rows from the synthetic generator (mixed lengths, no candidates)."""
    from thce.data.synthetic_generation import generate_records
    from thce.utils.medical_chat_templates import assistant_messages, prompt_messages

    options = {"multi_code_rate": 0.6, "max_codes": 3}
    return [
        {"prompt": prompt_messages(r["text"], "stage_1"), "completion": assistant_messages(r["codes"])}
        for r in generate_records("icd10cm", count, seed=seed, options=options)
    ]


def collected_rows(section: str, count: int, directory: Path) -> Path:
    """`count` training rows exactly as `thce collect` builds them for the section's stage (retrieval,
    candidates, traces, pairs), from the config's first (synthetic) source; returns their parquet file."""
    from thce.data.data_collection import collect
    from thce.utils.config import load_config

    config = load_config(REPO / COLLECTED[section])
    source = config.data.sources[0]
    source.entries = count
    config.data.sources = [source]
    split = config.data.split  # every row to train
    split.heldout_code_fraction = split.test_seen_fraction = split.validation_fraction = 0.0
    output = directory / section
    collect(config, output_dir=output, progress=False, quality=False)
    return output / "train.parquet"


# --- one measured run (in its own subprocess) ---------------------------------------------------------------


def run_single(section: str, name: str, args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from thce.post_training.model_setup import (
        compile_arguments,
        load_stage_model,
        precision_arguments,
        stage_precision,
    )
    from thce.utils.config import load_config, training_arguments
    from thce.utils.models import default_device

    torch.manual_seed(0)
    steps, warmup = args.steps[section], args.warmup
    count = args.batch_size * (steps + warmup)
    if args.data:
        dataset = Dataset.from_parquet(args.data)
        columns = ["prompt", "chosen", "rejected"] if section == "dpo" else ["prompt", "completion"]
        dataset = dataset.select_columns(columns).select(range(min(count, len(dataset))))
    else:
        dataset = Dataset.from_list(sft_rows(count, seed=1))
    common = {
        "per_device_train_batch_size": args.batch_size,
        "gradient_accumulation_steps": 1,
        "max_steps": steps + warmup,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "output_dir": tempfile.mkdtemp(prefix=f"bench-{section}-{name}-"),
        "dataloader_num_workers": 0,
    }
    overrides = [f"model.name_or_path={BASE_MODEL}", *args.overrides]
    if name == "thce_compiled":
        overrides.append("model.compile=true")
    config = load_config(REPO / CONFIGS[section], overrides)
    model, tokenizer = load_stage_model(config)
    reference_seconds = [0.0]
    if name.startswith("thce"):
        from thce.post_training.trainers import ThceDPOTrainer, ThceSFTTrainer

        chosen = {
            **precision_arguments(stage_precision(config), default_device()),
            **compile_arguments(config.model.compile),
        }
        training = training_arguments(config, **{**chosen, **common, "num_train_epochs": 1})
        if section == "dpo":

            class TimedDPOTrainer(ThceDPOTrainer):
                def _precompute_ref_logps(self, *a, **k):
                    start = time.perf_counter()
                    result = super()._precompute_ref_logps(*a, **k)
                    reference_seconds[0] += time.perf_counter() - start
                    return result

            trainer_class = TimedDPOTrainer
        else:
            trainer_class = ThceSFTTrainer
        trainer = trainer_class(
            model=model,
            args=training,
            train_dataset=dataset,
            processing_class=tokenizer,
            model_loss=config.run.model_loss,
        )
    else:  # TRL's own defaults, as a user would start (+ the batch/steps above)
        from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

        use_cpu = not torch.cuda.is_available()
        if section == "dpo":
            # The reference is a frozen copy of the starting model (the tokenizer's added tokens resized it,
            # so TRL's default of reloading it from the hub id would not match).
            trainer = DPOTrainer(
                model=model,
                ref_model=copy.deepcopy(model),
                args=DPOConfig(use_cpu=use_cpu, **common),
                train_dataset=dataset,
                processing_class=tokenizer,
            )
        else:
            trainer = SFTTrainer(
                model=model,
                args=SFTConfig(use_cpu=use_cpu, **common),
                train_dataset=dataset,
                processing_class=tokenizer,
            )
        training = trainer.args

    marks: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_, **__):
            _sync()
            marks.append(time.perf_counter())

    trainer.add_callback(StepClock())
    if args.profile:
        trainer.add_callback(_profiler_callback(warmup))
    started = time.perf_counter()
    trainer.train()
    first_step = marks[0] - started
    tokens = [entry["num_tokens"] for entry in trainer.state.log_history if "num_tokens" in entry]
    elapsed = marks[-1] - marks[warmup - 1]
    measured_tokens = tokens[-1] - tokens[warmup - 1]
    examples = steps * args.batch_size
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    result = {
        "section": section,
        "run": name,
        "precision": "bf16" if training.bf16 else "fp16" if training.fp16 else "fp32",
        "activation_checkpointing": bool(getattr(training, "activation_checkpointing", False)),
        "padding_free": bool(getattr(training, "padding_free", False)),
        "torch_compile": bool(training.torch_compile),
        "sampling": str(training.train_sampling_strategy),
        "answer_only_head": name.startswith("thce") and config.run.model_loss,
        "steps_measured": steps,
        "first_step_seconds": first_step,
        "tokens_per_second": measured_tokens / elapsed,
        "tokens_per_example": measured_tokens / examples,
        "examples_per_second": examples / elapsed,
        "peak_memory_gib": peak,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if section == "dpo":
        reference_per_pair = reference_seconds[0] / len(dataset)
        result["reference_seconds_per_pair"] = reference_per_pair
        result["train_seconds_per_pair"] = elapsed / examples
        result["pairs_per_second"] = 1 / (elapsed / examples + reference_per_pair)
        result["precompute_ref_log_probs"] = bool(getattr(training, "precompute_ref_log_probs", False))
    return result


def _profiler_callback(warmup: int):
    """Profile two optimizer steps after the warm-up and print the ops that took the time."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    class Profiler(TrainerCallback):
        def __init__(self):
            self.profiler = None

        def on_step_begin(self, args, state, *_, **__):
            if state.global_step == warmup:
                self.profiler = profile(activities=[ProfilerActivity.CPU], record_shapes=False)
                self.profiler.__enter__()

        def on_step_end(self, args, state, *_, **__):
            if self.profiler is not None and state.global_step == warmup + 2:
                self.profiler.__exit__(None, None, None)
                table = self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
                print(table, file=sys.stderr)
                self.profiler = None

    return Profiler()


# --- the invocation ---------------------------------------------------------------------------------------


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return " ".join(
        sorted(f for f in flags if f.startswith("amx") or f in {"avx512_bf16", "avx512f", "avx2"})
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sections", default="gemm,sft,sft_long,dpo", help="comma list: gemm, sft, sft_long, dpo"
    )
    parser.add_argument(
        "--runs", default=",".join(RUNS), help="comma list of thce, thce_compiled, trl_defaults"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="THCE config override")
    parser.add_argument("--sft-steps", type=int, default=8, help="measured optimizer steps, short SFT")
    parser.add_argument("--long-steps", type=int, default=5, help="measured optimizer steps, long-prompt SFT")
    parser.add_argument("--dpo-steps", type=int, default=5, help="measured optimizer steps, DPO")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured steps first")
    parser.add_argument("--batch-size", type=int, default=8, help="examples (or pairs) per step, both runs")
    parser.add_argument(
        "--profile", action="store_true", help="profile THCE's run of the first section, print the top ops"
    )
    parser.add_argument("--output", help="write the results JSON here too")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.steps = {"sft": args.sft_steps, "sft_long": args.long_steps, "dpo": args.dpo_steps}

    if args.single:
        section, name = args.single.split(":")
        print("RESULT " + json.dumps(run_single(section, name, args)))
        return

    import torch

    from thce.utils.models import default_device

    sections = args.sections.split(",")
    if args.profile:
        sections, args.runs = [next(s for s in sections if s != "gemm")], "thce"
    print(f"{default_device()}, {torch.get_num_threads()} threads, CPU flags: {_cpu_flags()}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    report: dict = {
        "device": default_device(),
        "cpu_flags": _cpu_flags(),
        "load_average_start": os.getloadavg(),
    }
    gemm = None
    if "gemm" in sections or any(s.startswith("sft") for s in sections):
        gemm = gemm_section(tokens=args.batch_size * 96, seconds=3.0)
        report["gemm_flops"] = gemm
        print(f"GEMM: square fp32 {gemm['square_fp32'] / 1e9:.0f} GFLOP/s, square bf16 {gemm['square_bf16'] / 1e9:.0f}, "
              f"bf16 at the model's shapes ({args.batch_size * 96} tokens) {gemm['model_shapes_bf16'] / 1e9:.0f}")  # fmt: skip
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-train-data-"))
    for section in (s for s in sections if s != "gemm"):
        if section in COLLECTED:
            count = args.batch_size * (args.steps[section] + args.warmup)
            args.data = str(collected_rows(section, count, workdir))
        else:
            args.data = None
        by_run, shapes_rate = {}, None
        for name in args.runs.split(","):
            result = _run_subprocess(section, name, args)
            if gemm and section != "dpo":
                if shapes_rate is None:  # at this section's batch size in tokens (matmul rates grow with it)
                    tokens = round(args.batch_size * result["tokens_per_example"])
                    shapes_rate = model_shapes_rate(tokens, seconds=3.0)
                    report.setdefault("model_shapes_bf16_by_section", {})[section] = shapes_rate
                    print(
                        f"  {section}: bf16 at the model's shapes ({tokens} tokens) {shapes_rate / 1e9:.0f} GFLOP/s"
                    )
                flops = 6 * result["parameters"] * result["tokens_per_second"]
                result["mfu_square_bf16"] = flops / gemm["square_bf16"]
                result["mfu_model_shapes_bf16"] = flops / shapes_rate
            by_run[name] = result
            results.append(result)
            print(_describe(result))
        _compare(section, by_run, report, args.batch_size)
    shutil.rmtree(workdir, ignore_errors=True)
    report["runs"] = results
    report["load_average_end"] = os.getloadavg()
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.output:
        Path(args.output).write_text(json.dumps(report, indent=2))


def _compare(section: str, by_run: dict[str, dict], report: dict, batch_size: int) -> None:
    """Print and record each THCE run's speed-up over TRL's defaults, and after how many steps compiling
    has paid for its warm-up (the compiled first step against the eager one)."""
    key = "pairs_per_second" if section == "dpo" else "tokens_per_second"
    for name in ("thce", "thce_compiled"):
        if name in by_run and "trl_defaults" in by_run:
            ratio = by_run[name][key] / by_run["trl_defaults"][key]
            report.setdefault("speedups", {})[f"{section}:{name}"] = ratio
            print(f"  {section}: {name} / trl_defaults = {ratio:.2f}x {key.replace('_', ' ')}")
    if "thce" in by_run and "thce_compiled" in by_run:
        eager, compiled = by_run["thce"], by_run["thce_compiled"]
        step_seconds = {run["run"]: batch_size / run["examples_per_second"] for run in (eager, compiled)}
        saved = step_seconds["thce"] - step_seconds["thce_compiled"]
        extra = compiled["first_step_seconds"] - eager["first_step_seconds"]
        steps = extra / saved if saved > 0 else float("inf")
        report.setdefault("compile_break_even_steps", {})[section] = steps
        print(f"  {section}: compiling pays back its warm-up ({extra:.0f} s) after {steps:.0f} steps")


def _run_subprocess(section: str, name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--single", f"{section}:{name}", "--warmup", str(args.warmup),
               "--batch-size", str(args.batch_size), "--sft-steps", str(args.sft_steps),
               "--long-steps", str(args.long_steps), "--dpo-steps", str(args.dpo_steps)]  # fmt: skip
    if args.profile:
        command.append("--profile")
    if args.data:
        command += ["--data", args.data]
    for override in args.overrides:
        command += ["--set", override]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if args.profile:
        print(done.stderr[done.stderr.find("-----") :])
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"run {section}:{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def _describe(r: dict) -> str:
    line = f"{r['section']:>8} {r['run']:>12}: {r['tokens_per_second']:7.1f} tok/s  "
    if r["section"] == "dpo":
        line += (f"{r['pairs_per_second']:5.2f} pairs/s (train {r['train_seconds_per_pair']:.2f} s/pair"
                 + (f" + reference {r['reference_seconds_per_pair']:.2f} s/pair" if r["precompute_ref_log_probs"] else "")
                 + ")  ")  # fmt: skip
    else:
        line += f"{r['examples_per_second']:5.2f} examples/s  "
    line += f"({r['tokens_per_example']:.0f} tok/example)  first step {r['first_step_seconds']:.0f} s  "
    line += f"peak {r['peak_memory_gib']:.2f} GiB"
    if "mfu_square_bf16" in r:
        line += f"  MFU {100 * r['mfu_square_bf16']:.0f}% of square bf16, {100 * r['mfu_model_shapes_bf16']:.0f}% of model-shape bf16"
    line += (f"  [{r['precision']}, checkpointing={r['activation_checkpointing']}, compile={r['torch_compile']}, "
             f"sampling={r['sampling']}, answer_only_head={r['answer_only_head']}]")  # fmt: skip
    return line


if __name__ == "__main__":
    main()
