"""Medical-coding metrics: pure functions over gold and predicted code lists.

Inputs are per-example lists of codes: `{"system", "code"}` dicts, `(system, code)` pairs, or bare strings
(read as ICD-10-CM). Codes are compared after format normalisation (case, surrounding punctuation, the
ICD-10-CM dot: `e119` == `E11.9`) and de-duplication, keeping the first occurrence's rank.

Definitions (every rate is a fraction in [0, 1]):
- `exact_match` (top-1): the first predicted code is one of the gold codes.
- `set_exact_match`: the predicted code set equals the gold code set.
- `top_k_accuracy`: a gold code is among the first k ranked candidates (beams, or a baseline's ranking;
  with greedy decoding the ranking is the answer's own code list).
- `category_match` / `chapter_match` (hierarchy credit): the first predicted code shares the ICD-10-CM
  category (first 3 characters) / chapter with a gold code; for CPT/HCPCS, the category is the code.
- micro P/R/F1 over (system, code) pairs pooled over examples; macro F1 = mean per-code F1 over every
  code that occurs in the gold or the predictions (a code predicted but never gold scores 0).
- `validity_rate`: predicted codes that exist in the code set / predicted codes (0 when nothing was
  predicted: no code is not a valid code); `billable_rate` likewise for billable codes.
- `no_code_rate`: examples with no predicted code.
- `reasoning_quality` (documented formula, per example, then averaged over examples):
      (present + names_gold + consistent) / 3
  present = the reasoning has >= 20 characters; names_gold = it mentions a gold code's category code
  (`E11`) or half of the content words of that category's description; consistent = it names the
  predicted first code's category the same way. A missing reasoning scores 0. Null when no prediction
  of the run has any reasoning (stage-1 models).
- `expected_calibration_error`: 10 equal-width confidence bins of the first code's confidence against
  top-1 exactness; sum over bins of |accuracy - mean confidence| weighted by the bin's share.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from thce.utils.code_systems.registry import normalise_code_format, normalise_system
from thce.utils.code_validator import icd10_chapter

Code = tuple[str, str]
HEADLINE = (
    "exact_match",
    "set_exact_match",
    "top_k_accuracy",
    "category_match",
    "chapter_match",
    "precision_micro",
    "recall_micro",
    "f1_micro",
    "f1_macro",
    "validity_rate",
)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "as",
        "at",
        "by",
        "for",
        "from",
        "in",
        "into",
        "of",
        "on",
        "or",
        "other",
        "the",
        "to",
        "with",
        "without",
        "unspecified",
        "specified",
        "not",
        "elsewhere",
        "classified",
        "due",
    ]
)
_WORD = re.compile(r"[a-z0-9]+")
REASONING_MIN_CHARS = 20


def normalise_codes(codes: Iterable[Any] | None) -> list[Code]:
    """Canonical `(system, code)` pairs, de-duplicated, in order."""
    result: list[Code] = []
    for item in codes or ():
        if isinstance(item, Mapping):
            system, code = item.get("system") or "ICD10", item.get("code")
        elif isinstance(item, (tuple, list)):
            system, code = item[0], item[1]
        else:
            system, code = "ICD10", item
        if not isinstance(code, str) or not code.strip():
            continue
        system = normalise_system(str(system)) or str(system).upper()
        pair = (system, normalise_code_format(code, system))
        if pair not in result:
            result.append(pair)
    return result


def category(code: Code) -> Code:
    """ICD-10-CM: the 3-character category; other systems have no hierarchy, so the code itself."""
    system, value = code
    return (system, value.replace(".", "")[:3]) if system == "ICD10" else code


def chapter(code: Code, chapter_of: Callable[[str], str | None] = icd10_chapter) -> str | None:
    """Chapter label of a code (`ICD10:4`), or the system name for CPT/HCPCS, or None if unknown."""
    system, value = code
    if system != "ICD10":
        return system
    found = chapter_of(value)
    return f"ICD10:{found}" if found is not None else None


def exact_match(gold: Sequence[Code], predicted: Sequence[Code]) -> bool:
    """Top-1: the first predicted code is a gold code."""
    return bool(predicted) and predicted[0] in gold


def set_exact_match(gold: Sequence[Code], predicted: Sequence[Code]) -> bool:
    """The predicted set equals the gold set (order and duplicates ignored)."""
    return set(gold) == set(predicted)


def top_k_hit(gold: Sequence[Code], ranked: Sequence[Code], k: int) -> bool:
    """A gold code is among the first k distinct ranked candidates."""
    return any(code in gold for code in list(dict.fromkeys(ranked))[:k])


def category_match(gold: Sequence[Code], predicted: Sequence[Code]) -> bool:
    """The first predicted code is in the category of a gold code."""
    return bool(predicted) and category(predicted[0]) in {category(code) for code in gold}


def chapter_match(
    gold: Sequence[Code], predicted: Sequence[Code], chapter_of: Callable[[str], str | None] = icd10_chapter
) -> bool:
    """The first predicted code is in the chapter of a gold code."""
    if not predicted:
        return False
    predicted_chapter = chapter(predicted[0], chapter_of)
    return predicted_chapter is not None and predicted_chapter in {chapter(code, chapter_of) for code in gold}


def counts(gold: Sequence[Code], predicted: Sequence[Code]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one example's code sets."""
    gold_set, predicted_set = set(gold), set(predicted)
    tp = len(gold_set & predicted_set)
    return tp, len(predicted_set) - tp, len(gold_set) - tp


def prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall, F1 from counts (0 where a denominator is 0)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def micro_prf(
    golds: Sequence[Sequence[Code]], predictions: Sequence[Sequence[Code]]
) -> tuple[float, float, float]:
    """Micro precision, recall, F1 over all examples."""
    tp = fp = fn = 0
    for gold, predicted in zip(golds, predictions, strict=True):
        a, b, c = counts(gold, predicted)
        tp, fp, fn = tp + a, fp + b, fn + c
    return prf(tp, fp, fn)


def macro_f1(golds: Sequence[Sequence[Code]], predictions: Sequence[Sequence[Code]]) -> float:
    """Mean per-code F1 over every code in the gold or the predictions."""
    per_code: dict[Code, list[int]] = defaultdict(lambda: [0, 0, 0])
    for gold, predicted in zip(golds, predictions, strict=True):
        gold_set, predicted_set = set(gold), set(predicted)
        for code in gold_set | predicted_set:
            entry = per_code[code]
            entry[0] += code in gold_set and code in predicted_set
            entry[1] += code in predicted_set and code not in gold_set
            entry[2] += code in gold_set and code not in predicted_set
    if not per_code:
        return 0.0
    return sum(prf(*entry)[2] for entry in per_code.values()) / len(per_code)


def expected_calibration_error(
    confidences: Sequence[float | None], correct: Sequence[bool], bins: int = 10
) -> tuple[float, list[dict[str, float]]]:
    """ECE and the reliability table (bins with examples only). Examples without a confidence are skipped."""
    table: list[list[float]] = [[0, 0.0, 0.0] for _ in range(bins)]  # count, sum confidence, sum correct
    total = 0
    for confidence, is_correct in zip(confidences, correct, strict=True):
        if confidence is None:
            continue
        index = min(int(max(0.0, min(1.0, confidence)) * bins), bins - 1)
        table[index][0] += 1
        table[index][1] += confidence
        table[index][2] += bool(is_correct)
        total += 1
    ece = 0.0
    rows = []
    for index, (n, sum_confidence, sum_correct) in enumerate(table):
        if not n:
            continue
        accuracy, mean_confidence = sum_correct / n, sum_confidence / n
        ece += n / total * abs(accuracy - mean_confidence)
        rows.append(
            {"bin_low": index / bins, "bin_high": (index + 1) / bins, "count": n,
             "mean_confidence": mean_confidence, "accuracy": accuracy}
        )  # fmt: skip
    return ece, rows


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 2}


def names_category(reasoning: str, code: Code, describe: Callable[[str], str | None] | None = None) -> bool:
    """True if the reasoning names the code's category: its category code (`E11`, dot-insensitive) or at
    least half of the content words of the category's description."""
    text = reasoning.upper()
    system = code[0]
    category_code = category(code)[1]
    if re.search(rf"(?<![A-Z0-9]){re.escape(category_code)}", text.replace(".", "")):
        return True
    if system != "ICD10":
        return False
    description = (describe or _category_description)(category_code)
    words = _content_words(description or "")
    return bool(words) and len(words & _content_words(reasoning)) * 2 >= len(words)


@cache
def _category_description(category_code: str) -> str | None:
    from thce.utils.code_validator import describe_code

    details = describe_code(category_code, "ICD10")
    return details.description if details is not None else None


def reasoning_score(
    reasoning: str | None,
    gold: Sequence[Code],
    predicted: Sequence[Code],
    describe: Callable[[str], str | None] | None = None,
) -> float:
    """(present + names_gold + consistent) / 3, as defined in the module docstring."""
    if not reasoning or len(reasoning.strip()) < REASONING_MIN_CHARS:
        return 0.0
    names_gold = any(names_category(reasoning, code, describe) for code in gold)
    consistent = bool(predicted) and names_category(reasoning, predicted[0], describe)
    return (1 + names_gold + consistent) / 3


def per_example(
    gold_codes: Any,
    predicted_codes: Any,
    *,
    ranked: Any = None,
    valid: Sequence[bool] | None = None,
    billable: Sequence[bool] | None = None,
    confidence: float | None = None,
    reasoning: str | None = None,
    k: int = 5,
    chapter_of: Callable[[str], str | None] = icd10_chapter,
    describe: Callable[[str], str | None] | None = None,
) -> dict[str, Any]:
    """Every per-example statistic the aggregate metrics and the bootstrap need."""
    gold = normalise_codes(gold_codes)
    predicted = normalise_codes(predicted_codes)
    ranking = normalise_codes(ranked) if ranked is not None else predicted
    tp, fp, fn = counts(gold, predicted)
    n_valid = sum(bool(v) for v in valid) if valid is not None else None
    return {
        "gold": gold,
        "predicted": predicted,
        "exact": exact_match(gold, predicted),
        "set_exact": set_exact_match(gold, predicted),
        "top_k": top_k_hit(gold, ranking, k),
        "category": category_match(gold, predicted),
        "chapter": chapter_match(gold, predicted, chapter_of),
        "gold_chapter": chapter(gold[0], chapter_of) if gold else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_predicted": len(predicted),
        "n_valid": n_valid,
        "n_billable": sum(bool(b) for b in billable) if billable is not None else None,
        "confidence": confidence,
        "has_reasoning": bool(reasoning),
        "reasoning_score": reasoning_score(reasoning, gold, predicted, describe),
    }


def aggregate(stats: Sequence[Mapping[str, Any]], k: int = 5) -> dict[str, Any]:
    """The metrics of a list of `per_example` results."""
    n = len(stats)
    if n == 0:
        raise ValueError("no examples to compute metrics on")

    def rate(key: str) -> float:
        return sum(bool(s[key]) for s in stats) / n

    golds = [s["gold"] for s in stats]
    predictions = [s["predicted"] for s in stats]
    precision, recall, f1 = micro_prf(golds, predictions)
    n_predicted = sum(s["n_predicted"] for s in stats)
    known_validity = [s for s in stats if s["n_valid"] is not None]
    valid_total = sum(s["n_valid"] for s in known_validity)
    predicted_checked = sum(s["n_predicted"] for s in known_validity)
    billable_total = sum(s["n_billable"] or 0 for s in stats)
    ece, reliability = expected_calibration_error(
        [s["confidence"] for s in stats], [s["exact"] for s in stats]
    )
    any_reasoning = any(s["has_reasoning"] for s in stats)
    return {
        "n_examples": n,
        "exact_match": rate("exact"),
        "set_exact_match": rate("set_exact"),
        "top_k_accuracy": rate("top_k"),
        "top_k": k,
        "category_match": rate("category"),
        "chapter_match": rate("chapter"),
        "precision_micro": precision,
        "recall_micro": recall,
        "f1_micro": f1,
        "f1_macro": macro_f1(golds, predictions),
        "validity_rate": valid_total / predicted_checked if predicted_checked else 0.0,
        "billable_rate": billable_total / predicted_checked if predicted_checked else 0.0,
        "no_code_rate": sum(s["n_predicted"] == 0 for s in stats) / n,
        "mean_codes_predicted": n_predicted / n,
        "reasoning_quality": sum(s["reasoning_score"] for s in stats) / n if any_reasoning else None,
        "expected_calibration_error": ece if any(s["confidence"] is not None for s in stats) else None,
        "reliability": reliability,
    }


def breakdown_by_system(stats: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Micro P/R/F1 and support restricted to each code system's codes."""
    systems = sorted({code[0] for s in stats for code in (*s["gold"], *s["predicted"])})
    result = {}
    for system in systems:
        golds = [[c for c in s["gold"] if c[0] == system] for s in stats]
        predictions = [[c for c in s["predicted"] if c[0] == system] for s in stats]
        precision, recall, f1 = micro_prf(golds, predictions)
        result[system] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "gold_codes": sum(map(len, golds)),
            "predicted_codes": sum(map(len, predictions)),
        }
    return result


def breakdown_by_chapter(stats: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Top-1 exact, category and chapter match per chapter of the first gold code."""
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for s in stats:
        groups[s["gold_chapter"] or "unknown"].append(s)
    return {
        label: {
            "n": len(group),
            "exact_match": sum(s["exact"] for s in group) / len(group),
            "category_match": sum(s["category"] for s in group) / len(group),
            "chapter_match": sum(s["chapter"] for s in group) / len(group),
        }
        for label, group in sorted(groups.items(), key=lambda item: _chapter_sort_key(item[0]))
    }


def _chapter_sort_key(label: str) -> tuple[int, str]:
    number = label.split(":")[-1]
    return (int(number), label) if number.isdigit() else (10_000, label)


def code_frequencies(stats: Sequence[Mapping[str, Any]], top: int = 10) -> dict[str, list]:
    """The most frequent gold and predicted first codes (spotting a model stuck on one answer)."""
    gold = Counter(f"{s['gold'][0][0]}:{s['gold'][0][1]}" for s in stats if s["gold"])
    predicted = Counter(f"{s['predicted'][0][0]}:{s['predicted'][0][1]}" for s in stats if s["predicted"])
    return {"gold": gold.most_common(top), "predicted": predicted.most_common(top)}
