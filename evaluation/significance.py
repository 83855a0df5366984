"""Significance: paired bootstrap confidence intervals and McNemar's test (numpy only).

- `bootstrap_cis(arrays, ...)`: 95% percentile intervals for every headline metric, resampling examples
  with replacement (1,000 resamples by default). Ratio metrics (micro P/R/F1, validity) are recomputed
  from resampled counts, macro F1 from resampled per-code counts, so the intervals are those of the
  metric itself, not of a per-example average.
- `paired_bootstrap_difference(a, b)`: the same resamples applied to two systems scored on the same
  examples; the interval of (a - b) and the share of resamples where a <= b.
- `mcnemar(a_correct, b_correct)`: exact binomial test on the discordant pairs when there are fewer
  than 25 of them, else the chi-squared statistic with continuity correction (1 degree of freedom).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RATE_KEYS = ("exact", "set_exact", "top_k", "category", "chapter")
RATE_METRICS = {
    "exact": "exact_match",
    "set_exact": "set_exact_match",
    "top_k": "top_k_accuracy",
    "category": "category_match",
    "chapter": "chapter_match",
}


def stat_arrays(stats: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-example numpy arrays (and per-code entries for macro F1) from `metrics.per_example` rows."""
    arrays: dict[str, Any] = {key: np.array([bool(s[key]) for s in stats], dtype=float) for key in RATE_KEYS}
    for key in ("tp", "fp", "fn", "n_predicted"):
        arrays[key] = np.array([s[key] for s in stats], dtype=float)
    arrays["n_valid"] = np.array([s["n_valid"] or 0 for s in stats], dtype=float)
    labels: dict[Any, int] = {}
    example, label, tp, fp, fn = [], [], [], [], []
    for i, s in enumerate(stats):
        gold, predicted = set(s["gold"]), set(s["predicted"])
        for code in gold | predicted:
            example.append(i)
            label.append(labels.setdefault(code, len(labels)))
            tp.append(code in gold and code in predicted)
            fp.append(code in predicted and code not in gold)
            fn.append(code in gold and code not in predicted)
    arrays["entries"] = (
        np.array(example, dtype=int),
        np.array(label, dtype=int),
        np.array(tp, dtype=float),
        np.array(fp, dtype=float),
        np.array(fn, dtype=float),
        len(labels),
    )
    arrays["n"] = len(stats)
    return arrays


def _safe_div(a: Any, b: Any) -> Any:
    return np.divide(a, b, out=np.zeros_like(a, dtype=float), where=b > 0)


def _metrics_from_weights(arrays: Mapping[str, Any], weights: Any) -> dict[str, Any]:
    """Every headline metric for resample weights of shape (resamples, n): how often each example is drawn."""
    n = arrays["n"]
    result = {name: weights @ arrays[key] / n for key, name in RATE_METRICS.items()}
    tp, fp, fn = (weights @ arrays[key] for key in ("tp", "fp", "fn"))
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    result["precision_micro"] = precision
    result["recall_micro"] = recall
    result["f1_micro"] = _safe_div(2 * precision * recall, precision + recall)
    result["validity_rate"] = _safe_div(weights @ arrays["n_valid"], weights @ arrays["n_predicted"])
    example, label, etp, efp, efn, n_labels = arrays["entries"]
    if n_labels:
        entry_weights = weights[:, example]  # (resamples, entries)
        macro = np.zeros(weights.shape[0])
        for row in range(weights.shape[0]):
            w = entry_weights[row]
            ltp = np.bincount(label, w * etp, n_labels)
            lfp = np.bincount(label, w * efp, n_labels)
            lfn = np.bincount(label, w * efn, n_labels)
            present = (ltp + lfp + lfn) > 0
            p, r = _safe_div(ltp, ltp + lfp), _safe_div(ltp, ltp + lfn)
            f1 = _safe_div(2 * p * r, p + r)
            macro[row] = f1[present].mean() if present.any() else 0.0
        result["f1_macro"] = macro
    else:
        result["f1_macro"] = np.zeros(weights.shape[0])
    return result


def _resample_weights(n: int, resamples: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    weights = np.zeros((resamples, n))
    np.add.at(weights, (np.repeat(np.arange(resamples), n), draws.ravel()), 1.0)
    return weights


def bootstrap_cis(
    arrays: Mapping[str, Any], resamples: int = 1000, seed: int = 42, level: float = 0.95
) -> dict[str, list[float]]:
    """`{metric: [low, high]}` percentile bootstrap intervals for every headline metric."""
    if arrays["n"] == 0:
        return {}
    weights = _resample_weights(arrays["n"], resamples, seed)
    tail = (1 - level) / 2 * 100
    return {
        name: [float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))]
        for name, values in _metrics_from_weights(arrays, weights).items()
    }


def paired_bootstrap_difference(
    a: Mapping[str, Any], b: Mapping[str, Any], resamples: int = 1000, seed: int = 42, level: float = 0.95
) -> dict[str, dict[str, float]]:
    """For each headline metric: observed a - b, its interval, and P(a - b <= 0) under the resamples."""
    if a["n"] != b["n"]:
        raise ValueError(f"paired bootstrap needs the same examples (got {a['n']} and {b['n']})")
    weights = _resample_weights(a["n"], resamples, seed)
    ones = np.ones((1, a["n"]))
    observed_a, observed_b = _metrics_from_weights(a, ones), _metrics_from_weights(b, ones)
    sampled_a, sampled_b = _metrics_from_weights(a, weights), _metrics_from_weights(b, weights)
    tail = (1 - level) / 2 * 100
    result = {}
    for name in sampled_a:
        diff = sampled_a[name] - sampled_b[name]
        result[name] = {
            "difference": float(observed_a[name][0] - observed_b[name][0]),
            "ci": [float(np.percentile(diff, tail)), float(np.percentile(diff, 100 - tail))],
            "p_not_better": float(np.mean(diff <= 0)),
        }
    return result


def mcnemar(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> dict[str, Any]:
    """McNemar's test on paired correctness: `b01` = only A right, `b10` = only B right."""
    if len(a_correct) != len(b_correct):
        raise ValueError(f"McNemar needs paired results (got {len(a_correct)} and {len(b_correct)})")
    only_a = sum(bool(x) and not bool(y) for x, y in zip(a_correct, b_correct, strict=True))
    only_b = sum(bool(y) and not bool(x) for x, y in zip(a_correct, b_correct, strict=True))
    discordant = only_a + only_b
    if discordant == 0:
        return {
            "only_a": 0,
            "only_b": 0,
            "statistic": 0.0,
            "p_value": 1.0,
            "method": "none (no discordant pairs)",
        }
    if discordant < 25:
        tail = sum(math.comb(discordant, i) for i in range(min(only_a, only_b) + 1)) / 2**discordant
        return {"only_a": only_a, "only_b": only_b, "statistic": float(min(only_a, only_b)),
                "p_value": min(1.0, 2 * tail), "method": "exact binomial"}  # fmt: skip
    statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
    p_value = math.erfc(math.sqrt(statistic / 2))  # chi-squared with 1 degree of freedom
    return {"only_a": only_a, "only_b": only_b, "statistic": statistic, "p_value": p_value,
            "method": "chi-squared, continuity-corrected"}  # fmt: skip
