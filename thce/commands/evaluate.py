"""`thce predict`, `thce evaluate`, `thce baseline`, `thce compare`: inference and evaluation verbs."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from thce.commands.options import DEFAULT_MODEL, EvalConfigOption, ModelOption, SetOption

DatasetOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--dataset", "-d", help="Canonical records JSONL (repeatable); default: the stage's test splits."
    ),
]


def _progress_bar(total: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="ex", disable=None)


def predict(
    texts: Annotated[list[str] | None, typer.Argument(help="Clinical text(s) to code.")] = None,
    model: ModelOption = DEFAULT_MODEL,
    input_file: Annotated[
        Path | None, typer.Option("--input", "-i", help="Records JSONL (field 'text').")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write predictions JSONL here.")
    ] = None,
    constrain: Annotated[
        bool, typer.Option("--constrain/--no-constrain", help="Constrain codes to billable codes.")
    ] = True,
    force_format: Annotated[
        bool, typer.Option("--force-format/--free-format", help="Force the answer lines.")
    ] = True,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch.")] = 32,
    precision: Annotated[
        Literal["auto", "bf16", "fp16", "fp32"], typer.Option(help="Compute precision.")
    ] = "auto",
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Default 32 (256 for reasoning models).")
    ] = None,
    num_beams: Annotated[int, typer.Option(min=1, help="Beam search width (ranks candidates).")] = 1,
) -> None:
    """Predict codes: prints the seed's JSON ({"code", "reasoning", "confidence"} plus "codes")."""
    import json

    from thce.inference.predict_records import predict_records, read_text_records, write_predictions
    from thce.inference.predictor import Predictor
    from thce.utils.io import check_output

    records = read_text_records(input_file, texts or [])
    if output is not None:
        check_output(output, [input_file], "--output")
    predictor = Predictor(
        model, precision, constrain, force_format=force_format, batch_size=batch_size,
        max_new_tokens=max_new_tokens, num_beams=num_beams,
    )  # fmt: skip
    with _progress_bar(len(records), "predicting") as bar:
        lines = predict_records(predictor, records, keep_raw=output is not None, progress=bar.update)
    if output is None:
        for line in lines:
            typer.echo(json.dumps(line, indent=2 if len(lines) == 1 else None, ensure_ascii=False))
        return
    write_predictions(lines, output)
    typer.echo(f"wrote {len(lines)} predictions to {output}")


def evaluate(
    model: ModelOption = DEFAULT_MODEL,
    dataset: DatasetOption = None,
    config: EvalConfigOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Results JSON (default results/stage_N_eval.json).")
    ] = None,
    overrides: SetOption = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N records of each dataset.")
    ] = None,
) -> None:
    """Evaluate a model: results JSON, predictions.jsonl, Markdown report and plots."""
    from thce.evaluation.eval_config import load_eval_config
    from thce.evaluation.evaluate_model import evaluate as run_evaluation

    settings = load_eval_config(config, overrides or [], limit=limit)
    results = run_evaluation(model, dataset or None, output, config=settings, show_progress=True)
    _print_summary(results)


def baseline(
    method: Annotated[str, typer.Option("--method", help="random, keyword, most_frequent or rule_based.")],
    dataset: DatasetOption = None,
    train: Annotated[
        Path | None,
        typer.Option("--train", help="Training data for most_frequent (records JSONL or parquet)."),
    ] = None,
    config: EvalConfigOption = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Results JSON (default results/baseline_METHOD_eval.json)."),
    ] = None,
    overrides: SetOption = None,
) -> None:
    """Score a baseline on a dataset, written in the same shape as `thce evaluate`."""
    from thce.evaluation.evaluate_model import evaluate_baseline

    results = evaluate_baseline(
        method, dataset or None, output, config=config, overrides=overrides or [],
        train_data=str(train) if train else None,
    )  # fmt: skip
    _print_summary(results)


def compare(
    a: Annotated[Path, typer.Argument(help="Results JSON of model A.")],
    b: Annotated[Path, typer.Argument(help="Results JSON of model B.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the Markdown here.")
    ] = None,
) -> None:
    """Compare two results files on their common examples (paired bootstrap, McNemar)."""
    from thce.evaluation.compare import compare as run_compare

    typer.echo(run_compare(a, b, output)["markdown"])


def _print_summary(results: dict) -> None:
    metrics = results["metrics"]
    keys = ("exact_match", "category_match", "top_k_accuracy", "f1_micro", "f1_macro", "validity_rate")
    typer.echo(f"{results['model']} on {metrics['n_examples']} examples:")
    for key in keys:
        ci = results.get("confidence_intervals", {}).get(key)
        interval = f"  (95% CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f})" if ci else ""
        typer.echo(f"  {key:<16} {100 * metrics[key]:6.1f}%{interval}")
    artefacts = results.get("artefacts", {})
    typer.echo(f"results: {artefacts.get('predictions', '').rsplit('/', 1)[0]} (+ .json)")
