"""Error categories: what kind of wrong a prediction is, judged on its first code.

Categories, checked in this order (the first that applies):
- `no_code`: the answer is empty (nothing but reasoning, or nothing at all);
- `format_error`: there is answer text but no `SYSTEM: CODE` line could be parsed from it;
- `exact`: the first predicted code is a gold code;
- `invalid_code`: it does not exist in the code set;
- `less_specific_parent`: it is an ancestor of the gold code (E11 for E11.9);
- `sibling`: same parent as the gold code, differing only in the last character (E11.8 for E11.9);
- `right_category_wrong_specificity`: same 3-character category otherwise (E11.65 for E11.9);
- `wrong_category`: same ICD-10-CM chapter, other category (not in the issue's list; it is the
  commonest "near miss" and would otherwise be lumped with `wrong_chapter`);
- `wrong_chapter`: another chapter (or, for CPT/HCPCS gold, another code of any system).
The gold code compared against is the first gold code of the example's system that shares the longest
prefix with the prediction (multi-code examples are judged against their closest gold code).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from thce.evaluation.metrics import Code, chapter
from thce.utils.code_systems.base import common_prefix
from thce.utils.code_validator import icd10_chapter

CATEGORIES = (
    "exact",
    "right_category_wrong_specificity",
    "sibling",
    "less_specific_parent",
    "wrong_category",
    "wrong_chapter",
    "invalid_code",
    "no_code",
    "format_error",
)


def categorise(
    gold: Sequence[Code],
    predicted: Sequence[Code],
    *,
    first_valid: bool | None = True,
    answer_text: str = "",
    chapter_of: Callable[[str], str | None] = icd10_chapter,
) -> str:
    """The error category of one example (see the module docstring)."""
    if not predicted:
        return "format_error" if answer_text.strip() else "no_code"
    first = predicted[0]
    if first in gold:
        return "exact"
    if first_valid is False:
        return "invalid_code"
    same_system = [code for code in gold if code[0] == first[0]]
    if not same_system or first[0] != "ICD10":
        return "wrong_chapter"
    guess = first[1].replace(".", "")
    target = max(same_system, key=lambda code: common_prefix(code[1].replace(".", ""), guess))
    truth = target[1].replace(".", "")
    if truth.startswith(guess) and len(guess) < len(truth):
        return "less_specific_parent"
    if len(guess) == len(truth) and guess[:-1] == truth[:-1]:
        return "sibling"
    if guess[:3] == truth[:3]:
        return "right_category_wrong_specificity"
    if chapter(first, chapter_of) is not None and chapter(first, chapter_of) == chapter(target, chapter_of):
        return "wrong_category"
    return "wrong_chapter"


def answer_without_reasoning(raw: str | None) -> str:
    """The part of a raw answer after `</think>` (or all of it when there is no reasoning)."""
    from thce.utils.medical_chat_templates import THINK_END, THINK_START

    raw = raw or ""
    if THINK_END in raw:
        return raw.split(THINK_END, 1)[1]
    return "" if raw.lstrip().startswith(THINK_START) else raw


def summarise(categories: Sequence[str]) -> dict[str, dict[str, float]]:
    """Count and share of each category (every category listed, zeros included)."""
    counted = Counter(categories)
    total = len(categories) or 1
    return {
        name: {"count": counted.get(name, 0), "share": counted.get(name, 0) / total} for name in CATEGORIES
    }


def examples_by_category(
    rows: Sequence[Mapping[str, Any]], per_category: int = 3
) -> dict[str, list[dict[str, Any]]]:
    """A few example rows (id, text excerpt, gold, predicted) per error category, for the report."""
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        bucket = found.setdefault(row["error_category"], [])
        if len(bucket) < per_category:
            bucket.append(
                {
                    "id": row.get("id"),
                    "text": (row.get("text") or "")[:160],
                    "gold": row.get("gold"),
                    "predicted": row.get("predicted"),
                }
            )
    return found
