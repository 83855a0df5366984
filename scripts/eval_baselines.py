"""The four baselines on FY2026 code descriptions: description text in, code out (Soroush et al. 2024's
task, where GPT-4 scored 33.9% exact match on ICD-10-CM).

    python scripts/eval_baselines.py [--n 1000] [--seed 42] [--output-dir results/baselines_descriptions]

Draws `n` billable ICD-10-CM codes (seeded), writes them as canonical records (text = the official
description), scores every baseline with the evaluator (`thce baseline` writes the same files), and
prints a table. most_frequent counts the codes of a disjoint draw of `n` codes (there is no training
data for this task, so it can only be near 0%).
"""

import argparse
import json
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", type=Path, default=Path("results/baselines_descriptions"))
    args = parser.parse_args()

    from thce.evaluation.baseline import METHODS
    from thce.evaluation.evaluate_model import evaluate_baseline
    from thce.utils.code_validator import billable_codes, describe_code

    codes = billable_codes("ICD10")
    drawn = random.Random(args.seed).sample(codes, 2 * args.n)
    test, train = drawn[: args.n], drawn[args.n :]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    dataset = args.output_dir / "fy2026_descriptions.jsonl"
    training = args.output_dir / "fy2026_descriptions_train.jsonl"
    for path, sample in ((dataset, test), (training, train)):
        with path.open("w", encoding="utf-8") as handle:
            for code in sample:
                record = {"id": code, "text": describe_code(code, "ICD10").description,
                          "codes": [{"system": "ICD10", "code": code}], "reasoning": None,
                          "source": "fy2026-descriptions", "meta": {}}  # fmt: skip
                handle.write(json.dumps(record) + "\n")
    print(f"{'baseline':<15} {'exact':>7} {'95% CI':>15} {'category':>9} {'top-5':>7}")
    summary = {}
    for method in METHODS:
        results = evaluate_baseline(
            method, dataset, args.output_dir / f"{method}.json", train_data=str(training), seed=args.seed
        )
        m, ci = results["metrics"], results["confidence_intervals"]["exact_match"]
        summary[method] = {"exact_match": m["exact_match"], "ci": ci, "category_match": m["category_match"],
                           "top_k_accuracy": m["top_k_accuracy"]}  # fmt: skip
        print(f"{method:<15} {100 * m['exact_match']:>6.1f}% {100 * ci[0]:>6.1f}-{100 * ci[1]:<6.1f}% "
              f"{100 * m['category_match']:>8.1f}% {100 * m['top_k_accuracy']:>6.1f}%")  # fmt: skip
    (args.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
