"""Inference speed: a naive batch-1 fp32 `generate` loop vs THCE's default prediction path.

    python scripts/bench_infer.py [--examples 64] [--naive-examples 16] [--max-new-tokens 12]
    python scripts/bench_infer.py --candidates [--k 10]     # retrieval-augmented path

`--candidates`: the candidate-aware path a retrieval checkpoint runs (docs/architecture.md, "Retrieval-augmented coding"): each note's
k candidates retrieved from the whole code set, listed in the prompt, decoding constrained to them.
Reports examples/s with the time split into retrieval, prefill (a run with one new token: the prompt's
forward pass, the per-note grammars and the first step) and decoding (the rest of a full run).

Real SmolLM2-135M-Instruct (the embedded copy), ~90-token chat prompts, at most 12 new tokens (with
`--candidates` the predictor's default, 32), greedy.
Rows: naive (fp32, one prompt at a time, unconstrained); THCE default (device precision, batch 32,
constrained); the same without the constraint; fp32 batch 32 unconstrained (precision's share).
One warm-up batch per configuration is excluded from the timings. Prints a table and JSON.
"""

import argparse
import json
import os
import re
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FINDINGS = [
    "Patient is a {age}-year-old with a history of poorly controlled type 2 diabetes mellitus presenting "
    "for routine follow-up; reports polyuria and fatigue, HbA1c 9.1%, no neuropathy or retinopathy noted; metformin continued and foot examination was normal today. Blood pressure 128/76 and BMI 31; lipid panel ordered, dietary counselling given, and a return visit booked in three months with a repeat HbA1c.",
    "{age}-year-old presents with three days of productive cough, fever to 38.9 C and right basal "
    "crackles; chest radiograph shows right lower lobe consolidation consistent with pneumonia; oxygen saturation 93% on room air, started on antibiotics. No recent travel or sick contacts; white cell count 14.2 with neutrophilia; amoxicillin-clavulanate started, review in 48 hours or sooner if breathless.",
    "Follow-up of essential hypertension in a {age}-year-old; home readings 150s/90s despite lisinopril, "
    "no chest pain or headache, renal function normal, counselled on diet and adherence; amlodipine added and recheck planned in four weeks. ECG shows sinus rhythm without left ventricular hypertrophy; potassium 4.3, creatinine 78; home monitoring to continue twice daily.",
    "{age}-year-old fell from standing height at home and has a shortened, externally rotated right leg; "
    "imaging confirms a displaced fracture of the right femoral neck, initial encounter; orthopaedics consulted for operative fixation tomorrow. No head strike or loss of consciousness; analgesia given, neurovascular status intact distally, and venous thromboembolism prophylaxis started.",
]


def prompts(n: int) -> list[str]:
    return [FINDINGS[i % len(FINDINGS)].format(age=30 + i % 60) for i in range(n)]


def bench_candidates(args: argparse.Namespace) -> dict:
    """The retrieval-augmented path: retrieval, prefill and decoding timed apart (module docstring)."""
    import dataclasses

    import torch

    from thce.inference.predictor import Predictor, checkpoint_retrieval
    from thce.retrieval import get_retriever
    from thce.utils.config import RetrievalConfig
    from thce.utils.models import EMBEDDED_MODEL_ID

    texts = prompts(args.examples)
    # the checkpoint's own retrieval settings (trimming, rerank), with --k candidates
    retrieval = dataclasses.replace(
        (checkpoint_retrieval(args.model) if args.model else None) or RetrievalConfig(),
        enabled=True,
        k=args.k,
    )
    retriever = get_retriever(retrieval)
    predictor = Predictor(
        args.model or EMBEDDED_MODEL_ID,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens or None,  # the predictor's default: room for a whole code line
        retrieval=retrieval,
    )
    warm = texts[: args.batch_size]
    predictor.predict(warm, candidates=retriever.retrieve_batch(warm))  # warm-up (index, kernels)

    start = time.perf_counter()
    candidates = retriever.retrieve_batch(texts)
    retrieval_s = time.perf_counter() - start
    rerank, max_new_tokens = predictor.rerank, predictor.max_new_tokens
    predictor.rerank, predictor.max_new_tokens = "none", 1
    start = time.perf_counter()
    predictor.predict(texts, candidates=candidates)
    prefill_s = time.perf_counter() - start
    predictor.max_new_tokens = max_new_tokens
    start = time.perf_counter()
    predictor.predict(texts, candidates=candidates)
    generate_s = time.perf_counter() - start
    predictor.rerank = rerank
    start = time.perf_counter()
    results = predictor.predict(texts, candidates=candidates)
    full_s = time.perf_counter() - start
    rerank_s = max(0.0, full_s - generate_s)
    total_s = retrieval_s + full_s
    note_tokens = [len(predictor.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    prompt_tokens = [
        len(predictor.tokenizer(predictor.prompt(t, c)).input_ids)
        for t, c in zip(texts, candidates, strict=True)
    ]
    offered = [{c.code for c in cands} for cands in candidates]
    emitted = [(code["code"], i) for i, r in enumerate(results) for code in r["codes"]]
    return {
        "configuration": f"candidates k={args.k}, {predictor.precision}, batch {args.batch_size}, constrained, "
        f"rerank {rerank}",
        "examples": len(texts),
        "examples_per_second": len(texts) / total_s,
        "seconds": {
            "retrieval": retrieval_s,
            "prefill": prefill_s,
            "decoding": generate_s - prefill_s,
            "rerank": rerank_s,
            "total": total_s,
        },
        "share": {
            "retrieval": retrieval_s / total_s,
            "prefill": prefill_s / total_s,
            "decoding": (generate_s - prefill_s) / total_s,
            "rerank": rerank_s / total_s,
        },
        "ms_per_note_retrieval": 1000 * retrieval_s / len(texts),
        "mean_note_tokens": sum(note_tokens) / len(note_tokens),
        "mean_prompt_tokens": sum(prompt_tokens) / len(prompt_tokens),
        "mean_new_tokens": sum(r["generated_tokens"] for r in results) / len(results),
        "codes_emitted": len(emitted),
        "codes_not_offered": sum(code not in offered[i] for code, i in emitted),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "cpu_flags": sorted(set(re.findall(r"\b(amx\w*|avx512_bf16)\b", open("/proc/cpuinfo").read()))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--naive-examples", type=int, default=16)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="default 12, or with --candidates the predictor's own (32: a 7-character code line is 14 tokens)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--candidates", action="store_true", help="the retrieval-augmented path only")
    parser.add_argument("--k", type=int, default=10, help="candidates per note (with --candidates)")
    parser.add_argument(
        "--model", default=None, help="checkpoint for --candidates (default: the embedded model)"
    )
    args = parser.parse_args()
    if args.candidates:
        summary = bench_candidates(args)
        seconds = summary["seconds"]
        print(f"{summary['configuration']}: {summary['examples_per_second']:.2f} examples/s; "
              f"retrieval {seconds['retrieval']:.2f} s, prefill {seconds['prefill']:.2f} s, "
              f"decoding {seconds['decoding']:.2f} s, rerank {seconds['rerank']:.2f} s; "
              f"prompt {summary['mean_prompt_tokens']:.0f} tokens "
              f"(note {summary['mean_note_tokens']:.0f})")  # fmt: skip
        print(json.dumps(summary, indent=2))
        return
    args.max_new_tokens = args.max_new_tokens or 12

    import torch

    from thce.inference.predictor import Predictor
    from thce.utils.models import EMBEDDED_MODEL_ID, select_precision

    texts = prompts(args.examples)
    rows = []

    def run_predictor(label: str, **kwargs) -> None:
        predictor = Predictor(
            EMBEDDED_MODEL_ID, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, **kwargs
        )
        predictor.predict(texts[: args.batch_size])  # warm-up
        start = time.perf_counter()
        results = predictor.predict(texts)
        elapsed = time.perf_counter() - start
        lengths = [len(predictor.tokenizer(predictor.prompt(t)).input_ids) for t in texts]
        rows.append({
            "configuration": label, "precision": predictor.precision, "batch_size": args.batch_size,
            "constrained": predictor.constrained, "examples": len(texts), "seconds": elapsed,
            "examples_per_second": len(texts) / elapsed,
            "mean_prompt_tokens": sum(lengths) / len(lengths),
            "mean_new_tokens": sum(r["generated_tokens"] for r in results) / len(results),
            "codes_valid": sum(c["valid"] for r in results for c in r["codes"]),
            "codes": sum(len(r["codes"]) for r in results),
        })  # fmt: skip

    # naive: fp32, batch 1, plain generate
    predictor = Predictor(EMBEDDED_MODEL_ID, precision="fp32", constrained=False)
    model, tokenizer = predictor.model, predictor.tokenizer
    eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
    naive_texts = texts[: args.naive_examples]
    encoded = [
        tokenizer(predictor.prompt(t), return_tensors="pt", add_special_tokens=False) for t in naive_texts
    ]
    with torch.inference_mode():
        model.generate(**encoded[0], max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=eot,
                       pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        start = time.perf_counter()
        new_tokens = 0
        for item in encoded:
            out = model.generate(**item, max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=eot,
                                 pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            new_tokens += out.shape[1] - item["input_ids"].shape[1]
        elapsed = time.perf_counter() - start
    rows.append({
        "configuration": "naive generate loop", "precision": "fp32", "batch_size": 1, "constrained": False,
        "examples": len(naive_texts), "seconds": elapsed, "examples_per_second": len(naive_texts) / elapsed,
        "mean_prompt_tokens": sum(e["input_ids"].shape[1] for e in encoded) / len(encoded),
        "mean_new_tokens": new_tokens / len(encoded), "codes_valid": None, "codes": None,
    })  # fmt: skip
    del predictor, model

    run_predictor("THCE default (constrained)")
    run_predictor("THCE, unconstrained", constrained=False)
    run_predictor("fp32 batched, unconstrained", precision="fp32", constrained=False)

    naive = rows[0]["examples_per_second"]
    default, free = rows[1]["examples_per_second"], rows[2]["examples_per_second"]
    summary = {
        "device_precision": select_precision(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "speedup_default_vs_naive": default / naive,
        "constraint_cost": 1 - default / free,
        "rows": rows,
    }
    print(f"{'configuration':<30} {'prec':<5} {'batch':>5} {'ex/s':>7} {'prompt tok':>10} {'new tok':>7}")
    for row in rows:
        print(f"{row['configuration']:<30} {row['precision']:<5} {row['batch_size']:>5} "
              f"{row['examples_per_second']:>7.2f} {row['mean_prompt_tokens']:>10.1f} {row['mean_new_tokens']:>7.1f}")  # fmt: skip
    print(f"speed-up of the default path over the naive loop: {summary['speedup_default_vs_naive']:.1f}x; "
          f"constraint cost at batch {args.batch_size}: {100 * summary['constraint_cost']:.0f}%")  # fmt: skip
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
