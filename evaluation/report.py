"""The evaluation report: Markdown tables and PNG plots (matplotlib, Agg backend: no display needed).

Plots: accuracy per ICD-10-CM chapter (top-1 exact and category match, with the number of examples),
error categories (share of examples), and the calibration curve (reliability diagram of the first
code's confidence against top-1 exactness, with the bin sizes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from thce.evaluation.metrics import HEADLINE


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def plot_accuracy_per_chapter(by_chapter: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Grouped bars: exact and category match per chapter, labelled with n."""
    plt = _pyplot()
    labels = list(by_chapter)
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(labels) + 2), 4))
    xs = range(len(labels))
    exact = [by_chapter[label]["exact_match"] * 100 for label in labels]
    category = [by_chapter[label]["category_match"] * 100 for label in labels]
    ax.bar([x - 0.2 for x in xs], exact, width=0.4, label="exact (top-1)")
    ax.bar([x + 0.2 for x in xs], category, width=0.4, label="right category")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(
        [f"{label.split(':')[-1]}\nn={by_chapter[label]['n']}" for label in labels], fontsize=8
    )
    ax.set_ylim(0, 122)  # headroom for the legend above the 100% bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("% of examples")
    ax.set_xlabel("ICD-10-CM chapter of the gold code")
    ax.set_title("Accuracy per chapter")
    ax.legend(loc="upper right", ncol=2)
    return _save(fig, path)


def plot_error_categories(errors: Mapping[str, Mapping[str, float]], path: Path) -> Path:
    """Horizontal bars: share of examples per error category."""
    plt = _pyplot()
    names = list(errors)
    fig, ax = plt.subplots(figsize=(7, 4))
    shares = [errors[name]["share"] * 100 for name in names]
    bars = ax.barh(names, shares, color=["tab:green" if n == "exact" else "tab:red" for n in names])
    for bar, name in zip(bars, names, strict=True):
        ax.text(bar.get_width() + 0.5, bar.get_y() + bar.get_height() / 2, str(errors[name]["count"]),
                va="center", fontsize=8)  # fmt: skip
    ax.invert_yaxis()
    ax.set_xlim(0, 110)
    ax.set_xlabel("% of examples (bar labels: counts)")
    ax.set_title("Error categories (first predicted code)")
    return _save(fig, path)


def plot_calibration(reliability: list[Mapping[str, float]], ece: float | None, path: Path) -> Path:
    """Reliability diagram: accuracy against mean confidence per bin; the diagonal is perfect calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    if reliability:
        xs = [row["mean_confidence"] for row in reliability]
        ys = [row["accuracy"] for row in reliability]
        ax.plot(xs, ys, marker="o", label="model")
        for x, y, row in zip(xs, ys, reliability, strict=True):
            ax.annotate(f"n={row['count']}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the first code")
    ax.set_ylabel("top-1 exact match")
    ax.set_title(f"Calibration (ECE {ece:.3f})" if ece is not None else "Calibration (no confidences)")
    ax.legend(loc="lower right")
    return _save(fig, path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def write_plots(results: Mapping[str, Any], directory: Path) -> dict[str, str]:
    """The three plots of a results dict, as PNG files in `directory`; returns {name: file name}."""
    files = {
        "accuracy_per_chapter": plot_accuracy_per_chapter(
            results["breakdown"]["by_chapter"], directory / "accuracy_per_chapter.png"
        ),
        "error_categories": plot_error_categories(results["errors"], directory / "error_categories.png"),
        "calibration": plot_calibration(
            results["metrics"]["reliability"],
            results["metrics"]["expected_calibration_error"],
            directory / "calibration.png",
        ),
    }
    return {name: path.name for name, path in files.items()}


def markdown_report(results: Mapping[str, Any], plots: Mapping[str, str] | None = None) -> str:
    """The report: headline metrics with 95% CIs, baselines, splits, systems, chapters, errors, plots."""
    metrics, cis = results["metrics"], results.get("confidence_intervals", {})
    lines = [
        f"# Evaluation: {results['model']}",
        "",
        f"- dataset: {', '.join(d['path'] for d in results['datasets'])} ({metrics['n_examples']} examples)",
        f"- inference: {_settings(results.get('inference', {}))}",
        f"- time: {results['timing']['predict_seconds']:.1f} s predicting "
        f"({results['timing']['examples_per_second']:.2f} examples/s)",
        "",
        "## Headline metrics",
        "",
        "| metric | value | 95% CI (bootstrap) |",
        "|---|---|---|",
    ]
    for key in HEADLINE:
        ci = cis.get(key)
        label = f"top-{metrics['top_k']} accuracy" if key == "top_k_accuracy" else key
        interval = f"{_pct(ci[0])} – {_pct(ci[1])}" if ci else ""
        lines.append(f"| {label} | {_pct(metrics[key])} | {interval} |")
    for key in ("billable_rate", "no_code_rate", "reasoning_quality", "expected_calibration_error"):
        value = metrics.get(key)
        shown = (
            "n/a"
            if value is None
            else (f"{value:.3f}" if key == "expected_calibration_error" else _pct(value))
        )
        lines.append(f"| {key} | {shown} | |")
    if results.get("baselines"):
        lines += ["", "## Against baselines (same examples)", "",
                  "| baseline | exact | Δ exact (95% CI) | McNemar p | only model right | only baseline right |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for name, entry in results["baselines"].items():
            diff = entry["paired_bootstrap"]["exact_match"]
            test = entry["mcnemar"]
            lines.append(
                f"| {name} | {_pct(entry['metrics']['exact_match'])} | {100 * diff['difference']:+.1f} pts "
                f"({100 * diff['ci'][0]:+.1f} – {100 * diff['ci'][1]:+.1f}) | {test['p_value']:.3g} | "
                f"{test['only_a']} | {test['only_b']} |"
            )
    lines += _retriever_lines(results)
    if len(results.get("splits", {})) > 1:
        keyword = results.get("baselines", {}).get("keyword", {}).get("splits", {})
        recall = (results.get("retrieval") or {}).get("splits", {})
        k = (results.get("retrieval") or {}).get("k")
        lines += ["", "## Per split", "",
                  f"| split | n | exact | keyword exact | retriever recall@{k} | category | F1 micro | validity |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, split in results["splits"].items():
            lines.append(
                f"| {name} | {split['n_examples']} | {_pct(split['exact_match'])} | {_pct(keyword.get(name))} | "
                f"{_pct(recall.get(name, {}).get(f'recall@{k}'))} | {_pct(split['category_match'])} | "
                f"{_pct(split['f1_micro'])} | {_pct(split['validity_rate'])} |"
            )
    lines += ["", "## Per code system", "", "| system | precision | recall | F1 | gold codes | predicted |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for system, row in results["breakdown"]["by_system"].items():
        lines.append(
            f"| {system} | {_pct(row['precision'])} | {_pct(row['recall'])} | {_pct(row['f1'])} | "
            f"{row['gold_codes']} | {row['predicted_codes']} |"
        )
    lines += ["", "## Per ICD-10-CM chapter (of the first gold code)", "",
              "| chapter | n | exact | category | chapter |", "|---|---|---|---|---|"]  # fmt: skip
    for label, row in results["breakdown"]["by_chapter"].items():
        lines.append(
            f"| {label} | {row['n']} | {_pct(row['exact_match'])} | {_pct(row['category_match'])} | "
            f"{_pct(row['chapter_match'])} |"
        )
    lines += ["", "## Error categories", "", "| category | count | share |", "|---|---|---|"]
    for name, row in results["errors"].items():
        lines.append(f"| {name} | {row['count']} | {_pct(row['share'])} |")
    for name, examples in results.get("error_examples", {}).items():
        if name == "exact":
            continue
        lines += ["", f"**{name}**", ""]
        for example in examples:
            gold = ", ".join(f"{s}:{c}" for s, c in example["gold"])
            predicted = ", ".join(f"{s}:{c}" for s, c in example["predicted"]) or "(none)"
            lines.append(f"- `{example['id']}` gold {gold}, predicted {predicted}: {example['text']!r}")
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}](plots/{file})" for name, file in plots.items()]
    return "\n".join(lines) + "\n"


def _retriever_lines(results: Mapping[str, Any]) -> list[str]:
    """The retriever's recall@k (the ceiling of a model choosing among its candidates) and top-1."""
    retrieval = results.get("retrieval")
    if not retrieval:
        return []
    ks = sorted(int(key.split("@")[1]) for key in retrieval if key.startswith("recall@"))
    lines = ["", "## Retriever (candidates from the whole code set)", "",
             f"k = {retrieval['k']} candidates per note; {retrieval['ms_per_note']:.1f} ms per note. "
             "Recall@k is the share of gold codes among a note's first k candidates; top-1 is the keyword "
             "baseline's exact match.", "",
             "| split | n | " + " | ".join(f"recall@{k}" for k in ks) + " | top-1 exact |",
             "|---|---|" + "---|" * (len(ks) + 1)]  # fmt: skip
    rows = (
        {"all": retrieval, **retrieval.get("splits", {})}
        if len(retrieval.get("splits", {})) > 1
        else {"all": retrieval}
    )
    for name, row in rows.items():
        cells = " | ".join(_pct(row.get(f"recall@{k}")) for k in ks)
        lines.append(f"| {name} | {row['notes']} | {cells} | {_pct(row['top1_exact'])} |")
    return lines


def _settings(inference: Mapping[str, Any]) -> str:
    keys = ("precision", "batch_size", "num_beams", "constrained", "force_format", "max_new_tokens")
    return ", ".join(f"{key}={inference[key]}" for key in keys if key in inference) or "baseline"


def comparison_markdown(a: Mapping[str, Any], b: Mapping[str, Any], comparison: Mapping[str, Any]) -> str:
    """`thce compare` output: both runs' headline metrics, the paired differences and McNemar."""
    lines = [
        f"# Comparison: A = {a['model']} vs B = {b['model']}",
        "",
        f"{comparison['n_paired']} paired examples.",
        "",
        "| metric | A | B | A - B (95% CI, paired bootstrap) | P(A ≤ B) |",
        "|---|---|---|---|---|",
    ]
    for key in HEADLINE:
        diff = comparison["paired_bootstrap"][key]
        lines.append(
            f"| {key} | {_pct(a['metrics'][key])} | {_pct(b['metrics'][key])} | "
            f"{100 * diff['difference']:+.1f} pts ({100 * diff['ci'][0]:+.1f} – {100 * diff['ci'][1]:+.1f}) "
            f"| {diff['p_not_better']:.3f} |"
        )
    test = comparison["mcnemar"]
    lines += [
        "",
        f"McNemar on top-1 exact match ({test['method']}): only A right {test['only_a']}, only B right "
        f"{test['only_b']}, p = {test['p_value']:.3g}.",
    ]
    return "\n".join(lines) + "\n"
