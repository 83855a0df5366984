"""The main job, `thce pipeline --config configs/demo.yaml`: collect -> SFT 1 -> SFT 2 -> DPO -> evaluate.

A pipeline file names the three stage configs and how to evaluate:

    stages: [configs/demo_stage_1.yaml, configs/demo_stage_2.yaml, configs/demo_stage_3.yaml]
    evaluation_config: configs/eval.yaml
    evaluation: {datasets: [...], limit: 200, baselines: [keyword]}   # EvalConfig fields
    evaluate_base_model: true
    results_dir: results/demo

Every step is resumable (the stage layout, `thce.utils.stage_layout`, answers what is current): a
stage's data is re-collected only when missing or collected from another config, and then passes the same
quality gate as `thce collect` (the pipeline stops on a failed check); a stage is re-trained only when its
`final/` is missing or was trained from another config (an interrupted training run resumes from its newest
checkpoint), and an evaluation is re-run only when its model is newer than its results. `--force` redoes
everything. This module sits in the CLI layer because it is the one place that wires data, training and
evaluation together.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from thce.utils.config import StageConfig, apply_override, build_dataclass, load_config, read_yaml_mapping
from thce.utils.errors import UserError
from thce.utils.io import read_json, write_atomically, write_json
from thce.utils.models import EMBEDDED_MODEL_ID
from thce.utils.stage_layout import RESOLVED_CONFIG, read_training_summary, same_config

HEADLINE = ("exact_match", "category_match", "f1_micro", "validity_rate")


@dataclass
class PipelineConfig:
    stages: list[str]
    evaluation_config: str | None = "configs/eval.yaml"
    evaluation: dict[str, Any] = field(default_factory=dict)
    evaluate_base_model: bool = True
    base_model: str = EMBEDDED_MODEL_ID
    results_dir: str = "results/pipeline"


def load_pipeline_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    path = Path(path)
    raw = read_yaml_mapping(path, what="pipeline config")
    for override in overrides:
        apply_override(raw, override, path)
    config = build_dataclass(PipelineConfig, raw, section="top level", file=path)
    if not config.stages:
        raise UserError(f"{path}: 'stages' lists no stage configs")
    return config


def run_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = (), force: bool = False) -> dict:
    """Run every step of the pipeline described by `path`; return (and write) the per-stage summary."""
    pipeline = load_pipeline_config(path, overrides)
    stages = [load_config(stage_path) for stage_path in pipeline.stages]
    results_dir = Path(pipeline.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    for config in stages:
        step = time.perf_counter()
        _collect(config, force)
        timings[f"collect_stage_{config.stage}"] = time.perf_counter() - step
    finals: dict[str, Path] = {}
    for config in stages:
        step = time.perf_counter()
        finals[f"stage_{config.stage}"] = _train(config, force)
        timings[f"train_stage_{config.stage}"] = time.perf_counter() - step

    models: dict[str, str | Path] = {}
    if pipeline.evaluate_base_model:
        models["base"] = pipeline.base_model
    models.update(finals)
    datasets = [str(d) for d in pipeline.evaluation.get("datasets") or []] or [None]
    evaluations: dict[tuple[str, str | None], dict] = {}
    for name, model in models.items():
        step = time.perf_counter()
        # The base model has no retrieval settings of its own: it reads stage 1's candidates.
        retrieval = (
            dataclasses.asdict(stages[0].retrieval)
            if name == "base" and stages[0].retrieval.enabled
            else None
        )
        for dataset in datasets:
            evaluations[(name, dataset)] = _evaluate(
                pipeline, name, model, dataset, results_dir, force, len(datasets) > 1, retrieval
            )
        timings[f"evaluate_{name}"] = time.perf_counter() - step
    timings["total"] = time.perf_counter() - started

    summary = _summary(pipeline, stages, finals, evaluations, timings)
    write_json(results_dir / "summary.json", summary)
    write_atomically(results_dir / "summary.md", summary_table(summary) + "\n")
    return summary


def _collect(config: StageConfig, force: bool) -> None:
    from thce.data.data_collection import QualityGateFailed, collect
    from thce.utils.data_quality import format_summary

    layout = config.layout
    report_path = layout.quality_report
    if not force and layout.data_is_current(config) and layout.quality_report.is_file():
        logger.info(f"Stage {config.stage} data: up to date in {layout.data_dir}")
        report = read_json(layout.quality_report, "quality report")
    else:
        logger.info(f"Stage {config.stage} data: collecting into {layout.data_dir}")
        try:
            # collect writes the resolved config beside the data and runs the quality gate before the new
            # data replaces the old, so a failed check leaves the previous dataset in place.
            report = collect(config).quality
        except QualityGateFailed as failed:
            report, report_path = failed.report, failed.report_path
        logger.info(format_summary(report))
    if not report.get("passed"):
        failed = "; ".join(f"{f['check']} = {f['value']} (needs {f['threshold']})" for f in report["failed"])
        raise UserError(
            f"stage {config.stage} data in {layout.data_dir} failed the quality checks: {failed} "
            f"(full report: {report_path}); fix the sources or thresholds in {config.source_path}"
        )


def _train(config: StageConfig, force: bool) -> Path:
    from thce.post_training.run import train_stage

    layout = config.layout
    if not force and layout.is_trained(config):
        logger.info(f"Stage {config.stage}: already trained ({layout.final_dir})")
        return layout.final_dir
    # A changed config invalidates this stage's checkpoints and final/; only --force may discard them
    # (they may be a `thce train` run the user wants to keep).
    final_config = layout.final_dir / RESOLVED_CONFIG
    stale_final = final_config.is_file() and not same_config(final_config, config)
    if not force and (layout.checkpoints_stale(config) or stale_final):
        raise UserError(
            f"{layout.output_dir} holds a stage-{config.stage} run of a different config; re-run with --force "
            "to discard it, or point training.output_dir elsewhere"
        )
    return train_stage(config, force=force)


def _evaluate(
    pipeline: PipelineConfig,
    name: str,
    model: str | Path,
    dataset: str | None,
    results_dir: Path,
    force: bool,
    per_dataset: bool,
    retrieval: Any,
) -> dict:
    """One model on one dataset (each dataset is scored on its own: its own CIs and baseline comparisons)."""
    from thce.evaluation.evaluate_model import evaluate

    output = results_dir / (
        f"{name}_{Path(dataset).stem}_eval.json" if per_dataset and dataset else f"{name}_eval.json"
    )
    model_path = Path(model)
    fresh = output.is_file() and (
        not model_path.exists() or output.stat().st_mtime > model_path.stat().st_mtime
    )
    if fresh and not force:
        logger.info(f"Evaluation of {name}: up to date ({output})")
        return read_json(output, "evaluation results")
    logger.info(f"Evaluating {name} ({model}) on {dataset or 'its default datasets'}")
    options = dict(pipeline.evaluation)
    if dataset is not None:
        options["datasets"] = [dataset]
    if retrieval is not None:
        options["retrieval"] = retrieval
    return evaluate(model, output=output, config=pipeline.evaluation_config, **options)


def _summary(pipeline, stages, finals, evaluations, timings) -> dict[str, Any]:
    rows = []
    for (name, dataset), result in evaluations.items():
        row: dict[str, Any] = {"model": name, "dataset": Path(dataset).stem if dataset else None}
        if name in finals:
            training = read_training_summary(finals[name])
            row["train_loss"] = training.get("metrics", {}).get("train_loss")
            row["train_examples"] = training.get("train_examples")
            row["train_seconds"] = training.get("wall_seconds")
        metrics = result.get("metrics", {})
        row.update({key: metrics.get(key) for key in HEADLINE})
        row["examples"] = result.get("n_examples") or sum(
            d.get("n_records", 0) for d in result.get("datasets", [])
        )
        keyword = result.get("baselines", {}).get("keyword")
        if keyword:
            row["keyword_exact_match"] = keyword["metrics"].get("exact_match")
            difference = keyword.get("paired_bootstrap", {}).get("exact_match", {})
            row["vs_keyword_ci"] = difference.get("ci")
        retrieval = result.get("retrieval") or {}
        row["retriever_recall_at_k"] = retrieval.get("recall_at_k")
        rows.append(row)
    return {"pipeline": [str(p) for p in pipeline.stages], "rows": rows, "timings_seconds": timings}


def summary_table(summary: dict[str, Any]) -> str:
    """The per-stage results as a Markdown table."""
    columns = [
        "model", "dataset", "train_examples", "train_loss", "train_seconds", *HEADLINE,
        "keyword_exact_match", "vs_keyword_ci", "retriever_recall_at_k",
    ]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in summary["rows"]:
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, float):
                cells.append(f"{value:.3f}" if column != "train_seconds" else f"{value:.0f}")
            elif isinstance(value, list):
                cells.append(" .. ".join("" if v is None else f"{v:+.3f}" for v in value))
            else:
                cells.append("" if value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    total = summary["timings_seconds"].get("total")
    if total is not None:
        lines.append(f"\nTotal wall time: {total / 60:.1f} min")
    return "\n".join(lines)
