"""Recall@1/5/10/20 of the candidate retriever per dataset, and its speed (ms per note).

Datasets (each a canonical records JSONL, or generated):
- `official`: the FY2026 descriptions of N random billable codes (seeded), as queries;
- `ood_paraphrases`, `ood_notes`: the hand-written out-of-distribution check (data/eval/, see its README);
  `--split validation` (the default, for tuning) or `--split test` (for reporting; never tune on it);
- any `--dataset NAME=PATH` (e.g. a demo's test_unseen.jsonl / test_seen.jsonl).

    python scripts/eval_retrieval.py --split test --dataset unseen=data/artefacts/demo_stage_1_final/test_unseen.jsonl
    python scripts/eval_retrieval.py --set expand_abbreviations=false     # an ablation on validation

Prints the CPU flags and load average (timings on a shared machine are noisy) and one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OOD_DIR = REPO / "data" / "eval"


def cpu_flags() -> str:
    """The CPU features that decide bf16 speed (as PROTOCOL asks every timing to print)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = sorted(set(re.findall(r"\b(amx\w*|avx512_bf16|avx512f|avx2)\b", text)))
    return " ".join(flags) or "none of amx/avx512_bf16/avx512f/avx2"


def official_records(samples: int, seed: int) -> list[dict]:
    """One record per sampled billable code: its own description as the text."""
    from thce.utils.code_validator import billable_codes, get_code_system

    system = get_code_system("ICD10")
    codes = random.Random(seed).sample(billable_codes("ICD10"), samples)
    return [
        {
            "id": f"official-{code}",
            "text": system.description(code),
            "codes": [{"system": "ICD10", "code": code}],
        }
        for code in codes
    ]


def main(args: argparse.Namespace) -> dict:
    """Build the retriever from `--set` overrides, run it over every dataset, return the figures."""
    from thce.evaluation.eval_data import load_records
    from thce.retrieval import RetrievalConfig, get_retriever
    from thce.retrieval.recall import gold_codes, recall_at_k
    from thce.utils.config import apply_override, build_dataclass

    raw: dict = {"enabled": True}
    for override in args.set:
        apply_override(raw, override.removeprefix("retrieval."), "--set")
    config = build_dataclass(RetrievalConfig, raw, section="retrieval", file="--set")
    k_max = max(args.ks)

    datasets: dict[str, list[dict]] = {}
    if args.official:
        datasets["official"] = official_records(args.official, args.seed)
    for name in ("ood_paraphrases", "ood_notes"):
        path = OOD_DIR / f"{name}_{args.split}.jsonl"
        if path.is_file():
            datasets[f"{name}_{args.split}"] = load_records(path)
    for spec in args.dataset:
        name, _, path = spec.partition("=")
        datasets[name] = load_records(path, limit=args.limit)

    retriever = get_retriever(config)
    start = time.perf_counter()
    retriever.retrieve("warm up the index")
    index_s = time.perf_counter() - start
    figures: dict = {
        "config": {**vars(config)},
        "cpu_flags": cpu_flags(),
        "load_average": os.getloadavg(),
        "index_seconds": round(index_s, 2),
        "datasets": {},
    }
    for name, records in datasets.items():
        texts = [record["text"] for record in records]
        start = time.perf_counter()
        candidates = retriever.retrieve_batch(texts, k=k_max)
        elapsed = time.perf_counter() - start
        golds = [gold_codes(record) for record in records]
        result = recall_at_k(golds, candidates, args.ks)
        result["ms_per_note"] = round(1000 * elapsed / max(len(records), 1), 2)
        if args.misses:
            result["misses"] = [
                (record["text"][:120], code)
                for record, gold, cands in zip(records, golds, candidates, strict=True)
                for code in gold
                if code not in [c.code for c in cands[: args.misses_at]]
            ]
        figures["datasets"][name] = result
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=int, default=500, help="random billable codes (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--limit", type=int, default=None, help="first N records of each --dataset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="retrieval config")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--misses", action="store_true", help="list gold codes missed at --misses-at")
    parser.add_argument("--misses-at", type=int, default=10)
    return parser.parse_args(argv)


if __name__ == "__main__":
    result = main(parse_args())
    print(json.dumps(result, indent=1))
