"""Scoring predictions against gold codes, and the results dict built from the scores
(`thce.evaluation.results` describes it and writes it)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from thce.evaluation.eval_config import EvalConfig
from thce.evaluation.results import RESULTS_FORMAT, RESULTS_FORMAT_VERSION


def score_predictions(
    records: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]], top_k: int = 5
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-example statistics (`metrics.per_example`) and prediction rows (with error category)."""
    from thce.evaluation.error_analysis import answer_without_reasoning, categorise
    from thce.evaluation.metrics import normalise_codes, per_example

    stats, rows = [], []
    for record, prediction in zip(records, predictions, strict=True):
        codes = prediction.get("codes") or []
        valid = [bool(c.get("valid")) for c in codes] if all("valid" in c for c in codes) else None
        billable = [_billable(c) for c in codes]
        stat = per_example(
            record["codes"],
            codes,
            ranked=prediction.get("candidates"),
            valid=valid,
            billable=billable,
            confidence=prediction.get("confidence"),
            reasoning=prediction.get("reasoning"),
            k=top_k,
        )
        first_valid = bool(codes[0].get("valid")) if codes and "valid" in codes[0] else None
        error = categorise(
            stat["gold"],
            stat["predicted"],
            first_valid=first_valid,
            answer_text=answer_without_reasoning(prediction.get("raw")),
        )
        stat["error_category"] = error
        stats.append(stat)
        rows.append(
            {
                "id": record.get("id"),
                "split": record.get("_split"),
                "text": record["text"],
                "gold": [list(c) for c in stat["gold"]],
                "predicted": [list(c) for c in stat["predicted"]],
                "candidates": [list(c) for c in normalise_codes(prediction.get("candidates") or [])],
                "codes": codes,
                "confidence": prediction.get("confidence"),
                "reasoning": prediction.get("reasoning"),
                "raw": prediction.get("raw"),
                "offered": [[c["system"], c["code"]] for c in prediction["offered"]]
                if prediction.get("offered")
                else None,
                "exact": stat["exact"],
                "error_category": error,
            }
        )
    return stats, rows


def _billable(code: Mapping[str, Any]) -> bool:
    if "billable" in code:
        return bool(code["billable"])
    if not code.get("valid"):
        return False
    from thce.utils.code_validator import validate_code

    return validate_code(code["code"], code["system"], require_billable=True)


def build_results(
    stats: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    config: EvalConfig,
    *,
    model: str,
    datasets: Sequence[Mapping[str, Any]],
    inference: Mapping[str, Any],
    timing: Mapping[str, float],
    baselines: Mapping[str, Sequence[dict[str, Any]]] | None = None,
    retrieval: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The results dict (`thce.evaluation.results`) from scored examples, with CIs, baseline comparisons
    and the retriever's figures (`evaluate_model.run_retriever`)."""
    from thce import __version__
    from thce.evaluation import error_analysis, metrics, significance

    k = config.top_k
    headline = metrics.aggregate(stats, k)
    arrays = significance.stat_arrays(stats)
    splits = {}
    for split in dict.fromkeys(row["split"] for row in rows):
        subset = [s for s, row in zip(stats, rows, strict=True) if row["split"] == split]
        split_metrics = metrics.aggregate(subset, k)
        split_metrics.pop("reliability")
        splits[str(split)] = split_metrics
    compared = {}
    for name, baseline_stats in (baselines or {}).items():
        baseline_metrics = metrics.aggregate(baseline_stats, k)
        baseline_metrics.pop("reliability")
        compared[name] = {
            "metrics": baseline_metrics,
            "splits": {
                str(split): metrics.aggregate(
                    [b for b, row in zip(baseline_stats, rows, strict=True) if row["split"] == split], k
                )["exact_match"]
                for split in dict.fromkeys(row["split"] for row in rows)
            },
            "paired_bootstrap": significance.paired_bootstrap_difference(
                arrays, significance.stat_arrays(baseline_stats), config.bootstrap_resamples, config.seed
            ),
            "mcnemar": significance.mcnemar(
                [s["exact"] for s in stats], [s["exact"] for s in baseline_stats]
            ),
        }
    categories = [s["error_category"] for s in stats]
    return {
        "format": RESULTS_FORMAT,
        "format_version": RESULTS_FORMAT_VERSION,
        "thce_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "inference": dict(inference),
        "datasets": list(datasets),
        "config": dataclasses.asdict(config),
        "metrics": headline,
        "confidence_intervals": significance.bootstrap_cis(arrays, config.bootstrap_resamples, config.seed),
        "splits": splits,
        "breakdown": {
            "by_system": metrics.breakdown_by_system(stats),
            "by_chapter": metrics.breakdown_by_chapter(stats),
        },
        "errors": error_analysis.summarise(categories),
        "error_examples": error_analysis.examples_by_category(rows),
        "frequencies": metrics.code_frequencies(stats),
        "baselines": compared,
        "retrieval": dict(retrieval) if retrieval is not None else None,
        "timing": dict(timing),
        "per_example": [_compact(s, row) for s, row in zip(stats, rows, strict=True)],
    }


def _compact(stat: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("exact", "set_exact", "top_k", "category", "chapter", "tp", "fp", "fn", "n_predicted", "n_valid")
    return {"id": row["id"], "split": row["split"], "gold": row["gold"], "predicted": row["predicted"]} | {
        key: stat[key] for key in keys
    }
