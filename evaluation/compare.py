"""`thce compare`: two evaluation results files, paired on their common examples (paired bootstrap
differences and McNemar's test), as a dict and Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loguru import logger

from thce.evaluation.results import RESULTS_FORMAT, RESULTS_FORMAT_VERSION
from thce.utils.errors import UserError
from thce.utils.io import check_output, read_json, write_atomically


def load_results(path: str | Path) -> dict[str, Any]:
    """A results JSON written by this version of THCE (clear errors for anything else)."""
    path = Path(path)
    results = read_json(path, "results file")
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise UserError(f'{path} is not a THCE evaluation results file (no "format": "{RESULTS_FORMAT}")')
    version = results.get("format_version")
    if version != RESULTS_FORMAT_VERSION:
        raise UserError(
            f"{path} was written in results format version {version} (thce {results.get('thce_version', '?')}); "
            f"this THCE reads version {RESULTS_FORMAT_VERSION}: re-run `thce evaluate` to regenerate it"
        )
    rows = results.get("per_example")
    if not isinstance(rows, list) or not all(
        isinstance(row, dict) and {"split", "id", "exact", "gold", "predicted"} <= row.keys() for row in rows
    ):
        raise UserError(
            f"{path}: 'per_example' is missing or incomplete (re-run `thce evaluate` to regenerate it)"
        )
    if not isinstance(results.get("datasets"), list):
        raise UserError(f"{path}: 'datasets' is missing (re-run `thce evaluate` to regenerate it)")
    return results


def compare(
    a: str | Path, b: str | Path, output: str | Path | None = None, resamples: int = 1000
) -> dict[str, Any]:
    """Paired comparison of two results files on their common examples; optionally writes Markdown."""
    from thce.evaluation import significance
    from thce.evaluation.report import comparison_markdown

    if output is not None:
        check_output(output, [a, b], "--output")
    first, second = load_results(a), load_results(b)
    index = {(row["split"], row["id"]): row for row in second["per_example"]}
    pairs = [
        (row, index[(row["split"], row["id"])])
        for row in first["per_example"]
        if (row["split"], row["id"]) in index
    ]
    if not pairs:
        raise UserError(f"{a} and {b} share no examples (compare needs results on the same dataset)")
    hashes = ({d["sha256"] for d in first["datasets"]}, {d["sha256"] for d in second["datasets"]})
    if hashes[0] != hashes[1]:
        logger.warning(
            "The two results come from different dataset files; comparing their common example ids"
        )

    def arrays(rows: list[dict[str, Any]]) -> dict[str, Any]:
        stats = [
            dict(row, gold=[tuple(c) for c in row["gold"]], predicted=[tuple(c) for c in row["predicted"]])
            for row in rows
        ]
        return significance.stat_arrays(stats)

    comparison = {
        "a": str(a),
        "b": str(b),
        "n_paired": len(pairs),
        "paired_bootstrap": significance.paired_bootstrap_difference(
            arrays([p[0] for p in pairs]), arrays([p[1] for p in pairs]), resamples
        ),
        "mcnemar": significance.mcnemar([p[0]["exact"] for p in pairs], [p[1]["exact"] for p in pairs]),
    }
    comparison["markdown"] = comparison_markdown(first, second, comparison)
    if output is not None:
        write_atomically(output, comparison["markdown"])
    return comparison
