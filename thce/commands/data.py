"""`thce generate | collect | preprocess | quality`: the data pipeline verbs (thin; logic in thce.data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thce.commands.options import SetOption, StageConfigOption


def _load(config: Path, overrides: list[str] | None):
    from thce.utils.config import load_config

    return load_config(config, overrides or [])


def generate(
    config: StageConfigOption,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="JSONL to write (default data/raw/stage_N_synthetic.jsonl)."),
    ] = None,
    entries: Annotated[
        int | None,
        typer.Option("--entries", "-n", min=1, help="Records per synthetic source (default: the config's)."),
    ] = None,
    overrides: SetOption = None,
) -> None:
    """Generate the config's synthetic sources as canonical (or preference) JSONL records."""
    from thce.data.synthetic_generation import write_records
    from thce.utils.errors import UserError
    from thce.utils.io import check_output

    stage_config = _load(config, overrides)
    sources = [s for s in stage_config.data.sources if s.kind == "synthetic"]
    if not sources:
        raise UserError(f"{config}: no synthetic source in data.sources")
    target = output or Path(f"data/raw/stage_{stage_config.stage}_synthetic.jsonl")
    check_output(target, [config], "--output")
    written = write_records(target, sources, stage_config.seed, entries)
    typer.echo(f"wrote {written} records to {target}")


def collect(
    config: StageConfigOption,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", help="Default: the config's data.output_dir.")
    ] = None,
    push_to_hub: Annotated[
        str | None, typer.Option("--push-to-hub", help="Upload the result to this hub dataset repo.")
    ] = None,
    skip_quality: Annotated[
        bool, typer.Option("--skip-quality", help="Do not run the quality checks afterwards.")
    ] = False,
    overrides: SetOption = None,
) -> None:
    """Read, preprocess, split and shuffle the config's sources into data/artefacts/stage_N_final/.

    The quality checks run before the new dataset replaces the previous one: a failing check leaves the
    previous dataset as it was and exits 1."""
    from thce.data.data_collection import QualityGateFailed
    from thce.data.data_collection import collect as run_collect
    from thce.data.dataset_files import push_to_hub as upload
    from thce.utils.data_quality import format_summary

    stage_config = _load(config, overrides)
    try:
        result = run_collect(stage_config, output_dir, quality=not skip_quality)
    except QualityGateFailed as failed:
        typer.echo(format_summary(failed.report))
        typer.echo(f"thce: error: {failed}", err=True)
        raise typer.Exit(1) from failed
    splits = result.metadata["splits"]
    typer.echo(f"wrote {result.output_dir}: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
    if result.quality is not None:
        typer.echo(format_summary(result.quality))
    if push_to_hub:
        typer.echo(f"uploaded to {upload(result.output_dir, push_to_hub)}")


def preprocess(
    config: StageConfigOption,
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Canonical or preference JSONL.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL to write.")],
    output_format: Annotated[
        str,
        typer.Option("--format", help="chat: trainer-ready rows for the stage; canonical: cleaned records."),
    ] = "chat",
    overrides: SetOption = None,
) -> None:
    """Normalise, PHI-scrub, validate codes and chat-format one JSONL file (what collect does per source)."""
    from thce.data.preprocess_medical import preprocess_file

    kept, counts = preprocess_file(_load(config, overrides), input_path, output, output_format)
    typer.echo(f"wrote {kept} records to {output} ({counts})")


def quality(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Stage config: checks its output_dir with its thresholds."),
    ] = None,
    input_path: Annotated[
        Path | None, typer.Option("--input", "-i", help="A JSONL/parquet file or an artefact directory.")
    ] = None,
    report_path: Annotated[Path | None, typer.Option("--report", help="Write the JSON report here.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the JSON report instead of the summary.")
    ] = False,
    overrides: SetOption = None,
) -> None:
    """Check a dataset (schema, code validity, length, language, reasoning, pairs, duplicates, PHI residue).

    Exits 1 when a configured threshold fails."""
    import json

    from thce.utils.data_quality import check_dataset, format_summary, quality_thresholds
    from thce.utils.errors import UserError
    from thce.utils.io import check_output, write_json

    if config is None and input_path is None:
        raise UserError("quality needs --config or --input")
    stage, seed = None, 42
    target = input_path
    if config is not None:
        stage_config = _load(config, overrides)
        stage, thresholds, seed = stage_config.stage, stage_config.data.quality, stage_config.seed
        target = target or Path(stage_config.data.output_dir) / "train.parquet"
    else:
        thresholds = quality_thresholds(overrides or [])
    if report_path:
        check_output(report_path, [target, config], "--report")
    report = check_dataset(target, stage, thresholds, seed)
    if report_path:
        write_json(report_path, report)
    typer.echo(json.dumps(report, indent=2) if json_output else format_summary(report))
    if not report["passed"]:
        raise typer.Exit(1)
