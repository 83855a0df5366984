"""Recall@k of retrieved candidates against gold codes: the ceiling of a model that picks among them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from thce.retrieval.retriever import Candidate

DEFAULT_KS = (1, 5, 10, 20)


def gold_codes(record: Mapping[str, Any], system: str = "ICD10") -> list[str]:
    """The record's codes of `system`, in order, without duplicates."""
    codes = [c.get("code") for c in record.get("codes") or [] if c.get("system") == system]
    return list(dict.fromkeys(code for code in codes if code))


def recall_at_k(
    golds: Sequence[Sequence[str]], candidates: Sequence[Sequence[Candidate]], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float | int]:
    """Share of gold codes found in the top k candidates of their note, for each k (micro over codes),
    plus `top1_exact`: share of notes whose first candidate is one of their gold codes (the evaluator's
    exact match of the keyword baseline). Notes without gold codes are skipped."""
    found = dict.fromkeys(ks, 0)
    total = notes = top1 = 0
    for gold, cands in zip(golds, candidates, strict=True):
        if not gold:
            continue
        notes += 1
        ranked = [c.code for c in cands]
        top1 += bool(ranked) and ranked[0] in gold
        for code in gold:
            total += 1
            for k in ks:
                found[k] += code in ranked[:k]
    result: dict[str, float | int] = {f"recall@{k}": found[k] / total if total else 0.0 for k in ks}
    result["top1_exact"] = top1 / notes if notes else 0.0
    result["notes"] = notes
    result["gold_codes"] = total
    return result
