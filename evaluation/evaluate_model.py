"""The model evaluator: predict on canonical test records, score, compare with baselines, write it all.

    evaluate("outputs/stage_3/final", "data/artefacts/stage_3_final/test_unseen.jsonl")

writes (docs/data_contracts.md for the record format):
- `results/stage_3_eval.json` (or `output`): format marker, model, inference settings, datasets with their
  SHA-256, the resolved config, `metrics` (every rate a fraction in [0, 1]), 95% bootstrap intervals,
  per-split / per-system / per-chapter breakdowns, error categories, baselines scored on the same
  examples (paired bootstrap differences and McNemar), timings, and per-example results (for `compare`);
- beside it, a folder of the same name: `predictions.jsonl` (one line per example: id, split, text,
  gold, predicted, candidates, confidence, reasoning, raw answer, error category), `report.md` and
  `plots/*.png`.
Everything is written under temporary names and renamed into place at the end, so a failed run leaves
earlier results intact. `evaluate_predictions` does the same for predictions made elsewhere (baselines).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loguru import logger

from thce.utils.config import (
    DataConfig,
    RetrievalConfig,
    apply_override,
    bounded,
    build_dataclass,
    read_yaml_mapping,
)
from thce.utils.errors import UserError
from thce.utils.io import (
    check_output,
    check_replaceable_directory,
    iter_jsonl,
    staged_directory,
    write_atomically,
    write_json,
    write_jsonl,
)
from thce.utils.schemas import canonical_problem
from thce.utils.stage_layout import TEST_SPLITS, checkpoint_data_dir, checkpoint_stage

RESULTS_FORMAT = "thce-eval"
RESULTS_FORMAT_VERSION = 1


@dataclass
class EvalConfig:
    """`configs/eval.yaml`: how `thce evaluate` predicts and scores (every key overridable by `--set`)."""

    datasets: list[str] = field(default_factory=list)
    batch_size: int = 32
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    max_new_tokens: int | None = bounded(None, 1)
    num_beams: int = 1
    top_k: int = 5
    constrained: bool = True
    force_format: bool = True
    max_codes: int = 5
    think_budget: int | None = bounded(None, 0)
    rerank: Literal["none", "model", "fusion"] = (
        "none"  # with candidates: re-choose the first code (Predictor)
    )
    fusion_weight: float = 1.0  # rerank=fusion: weight of the retriever's -log(rank) prior
    baselines: list[str] = field(default_factory=lambda: ["random", "keyword", "most_frequent", "rule_based"])
    train_data: str | None = None
    bootstrap_resamples: int = 1000
    seed: int = 42
    limit: int | None = bounded(None, 1)
    report: bool = True
    # Candidate retrieval: its recall@k is reported beside the model (a checkpoint's own section wins).
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)

    def __post_init__(self) -> None:
        from thce.evaluation.baseline import METHODS

        for name in ("batch_size", "num_beams", "top_k", "max_codes", "bootstrap_resamples"):
            if getattr(self, name) < 1:
                raise UserError(f"eval config: {name} must be at least 1 (got {getattr(self, name)})")
        unknown = [m for m in self.baselines if m not in METHODS]
        if unknown:
            raise UserError(
                f"eval config: unknown baseline {unknown[0]!r}; expected some of {', '.join(METHODS)}"
            )
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise UserError(
                f"eval config: precision must be auto, bf16, fp16 or fp32 (got {self.precision!r})"
            )


def load_eval_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), **options: Any
) -> EvalConfig:
    """Read `path` (or the defaults), apply `key=value` overrides, then keyword `options`.

    Parsed by the same typed loader as the stage configs: unknown keys and wrong types are errors naming
    the key and the file, and values are converted to each field's type (`--set batch_size=16` is an int).
    """
    where = str(path) if path else "eval defaults"
    values = read_yaml_mapping(path, what="eval config") if path is not None else {}
    for override in overrides:
        apply_override(values, override.removeprefix("eval."), where)
    values.update({k: v for k, v in options.items() if v is not None})
    return build_dataclass(EvalConfig, values, section="eval", file=where)


# -- datasets -------------------------------------------------------------------------------------


def load_records(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Canonical records with a non-empty `text` and at least one `{system, code}`; clear errors otherwise."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of records, got {limit}")
    records = []
    for number, record in iter_jsonl(path, "dataset"):
        where = f"{path}:{number}"
        problem = canonical_problem(record)
        if problem:
            hint = " (evaluation needs gold codes)" if problem.startswith("field 'codes'") else ""
            raise UserError(f"{where}: {problem}{hint}")
        record.setdefault("id", f"{path.stem}-{number}")
        records.append(record)
        if limit is not None and len(records) >= limit:
            break
    if not records:
        raise UserError(f"dataset {path} holds no records")
    return records


def model_data_dir(model: str | Path | None) -> Path:
    """The dataset a model was trained on, as its own saved config says; for a model THCE did not train
    (the base model id), stage 1's default `data.output_dir`."""
    return (model is not None and checkpoint_data_dir(model)) or Path(DataConfig().output_dir)


def default_datasets(model: str | Path | None) -> list[Path]:
    """The held-out test files of the dataset the model was trained on (`model_data_dir`)."""
    directory = model_data_dir(model)
    found = [
        directory / f"{split}.jsonl" for split in TEST_SPLITS if (directory / f"{split}.jsonl").is_file()
    ]
    if not found:
        stage = (checkpoint_stage(model) if model is not None else None) or 1
        raise UserError(
            f"no --dataset given and no test files in {directory} (expected {', '.join(TEST_SPLITS)}.jsonl; "
            f"run `thce collect --config configs/stage_{stage}.yaml` first)"
        )
    return found


def default_output(model: str | Path) -> Path:
    """`results/stage_N_eval.json` for a THCE checkpoint of stage N, else `results/<model name>_eval.json`."""
    stage = checkpoint_stage(model)
    name = f"stage_{stage}" if stage else re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(model)).name)
    return Path("results") / f"{name}_eval.json"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (identifies the dataset a result was computed on)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- scoring --------------------------------------------------------------------------------------


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
    """The results dict (module docstring) from scored examples, with CIs, baseline comparisons and the
    retriever's figures (`run_retriever`)."""
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


def check_results_output(output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Refuse, before any work, a results path that would overwrite an input or a folder THCE did not write.

    A results file `P/NAME.json` comes with a folder `P/NAME/`; that folder is replaced only if an earlier
    THCE run wrote it (it holds THCE's manifest)."""
    output = Path(output)
    if output.suffix.lower() != ".json":
        raise UserError(f"--output {output}: a results file name must end in .json")
    check_output(output, inputs, "--output")
    side = check_output(output.with_suffix(""), inputs, "results folder", directory=True)
    check_replaceable_directory(side, "results", "results folder")
    return output


def write_results(
    results: dict[str, Any],
    rows: Sequence[Mapping[str, Any]],
    output: str | Path,
    report: bool = True,
    inputs: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Write the JSON, and beside it a folder with predictions.jsonl, report.md and plots (atomically)."""
    from thce.evaluation.report import markdown_report, write_plots

    output = check_results_output(output, inputs)
    side = output.with_suffix("")
    with staged_directory(side, "results", "results folder") as staging:
        write_jsonl(staging / "predictions.jsonl", rows)
        results["artefacts"] = {"predictions": str(side / "predictions.jsonl")}
        if report:
            plots = write_plots(results, staging / "plots")
            write_atomically(staging / "report.md", markdown_report(results, plots))
            results["artefacts"]["report"] = str(side / "report.md")
            results["artefacts"]["plots"] = {name: str(side / "plots" / file) for name, file in plots.items()}
    write_json(output, results)
    logger.info(f"Wrote {output} and {side}/")
    return results


# -- the evaluator --------------------------------------------------------------------------------


def _load_datasets(
    dataset: str | Path | Sequence[str | Path] | None, model: str | Path | None, config: EvalConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if dataset is None or (isinstance(dataset, (list, tuple)) and not dataset):
        paths = [Path(p) for p in config.datasets] or default_datasets(model)
    elif isinstance(dataset, (str, os.PathLike)):
        paths = [Path(dataset)]
    else:
        paths = [Path(p) for p in dataset]
    records, described = [], []
    for path in paths:
        loaded = load_records(path, config.limit)
        for record in loaded:
            record["_split"] = path.stem
        records.extend(loaded)
        described.append(
            {"path": str(path), "split": path.stem, "sha256": file_sha256(path), "n_records": len(loaded)}
        )
    return records, described


def run_baselines(
    records: Sequence[Mapping[str, Any]],
    config: EvalConfig,
    model: str | Path | None = None,
    candidates: Sequence[Sequence[Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Each configured baseline's per-example statistics on `records` (most_frequent is skipped, with a
    warning, when no training data is found). `candidates`: the retriever's lists, reused by `keyword`."""
    from thce.evaluation.baseline import load_training_codes, run_baseline

    texts = [r["text"] for r in records]
    scored = {}
    for method in config.baselines:
        training_codes = None
        if method == "most_frequent":
            train = config.train_data or _default_train_data(model)
            if train is None:
                logger.warning("Skipping the most_frequent baseline: no training data (set train_data)")
                continue
            training_codes = load_training_codes(train)
        predictions = run_baseline(
            method, texts, training_codes=training_codes, seed=config.seed, top_k=config.top_k,
            retrieval=config.retrieval, candidates=candidates,
        )  # fmt: skip
        scored[method] = score_predictions(records, predictions, config.top_k)[0]
    return scored


RECALL_KS = (1, 5, 10, 20)


def run_retriever(
    records: Sequence[Mapping[str, Any]], retrieval: RetrievalConfig
) -> tuple[list[list[Any]], dict[str, Any]]:
    """The retriever's candidates for every record (best first, at least 20) and its figures: recall@1/5/
    10/20 and @k, the top-1 exact match (the keyword baseline), ms per note, overall and per split. The
    recall is the ceiling of a model that picks among the candidates."""
    from thce.retrieval import get_retriever
    from thce.retrieval.recall import gold_codes, recall_at_k

    ks = tuple(sorted({*RECALL_KS, retrieval.k}))
    retriever = get_retriever(retrieval)
    retriever.retrieve("")  # builds the index outside the timing
    started = time.perf_counter()
    candidates = retriever.retrieve_batch([r["text"] for r in records], k=max(ks))
    elapsed = time.perf_counter() - started
    golds = [gold_codes(r, retrieval.system) for r in records]
    figures: dict[str, Any] = {"k": retrieval.k, **recall_at_k(golds, candidates, ks)}
    figures["recall_at_k"] = figures[f"recall@{retrieval.k}"]
    figures["ms_per_note"] = 1000 * elapsed / max(len(records), 1)
    figures["config"] = dataclasses.asdict(retrieval)
    figures["splits"] = {}
    for split in dict.fromkeys(r.get("_split") for r in records):
        chosen = [i for i, r in enumerate(records) if r.get("_split") == split]
        figures["splits"][str(split)] = recall_at_k(
            [golds[i] for i in chosen], [candidates[i] for i in chosen], ks
        )
    return candidates, figures


def _default_train_data(model: str | Path | None) -> Path | None:
    path = model_data_dir(model) / "train.parquet"
    return path if path.is_file() else None


def evaluate(
    model: str | Path,
    dataset: str | Path | Sequence[str | Path] | None = None,
    output: str | Path | None = None,
    *,
    config: str | Path | EvalConfig | None = None,
    overrides: Sequence[str] = (),
    predictor: Any = None,
    progress: Callable[[int], None] | None = None,
    show_progress: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate a model on canonical test records and write results, predictions and report.

    Args:
        model: a checkpoint directory (a stage's `final/`) or the base model id.
        dataset: one or more canonical records JSONL files; default: the config's `datasets`, else the
            stage's `test_unseen.jsonl` and `test_seen.jsonl` under `data/artefacts/stage_N_final/`.
        output: the results JSON path (default `results/stage_N_eval.json`).
        config: `configs/eval.yaml`-style file or an `EvalConfig`; `overrides` are `key=value` strings.
        predictor: an already-built `Predictor` (the training pipeline reuses its model).
        progress: called with the number of examples each predicted batch adds; `show_progress` draws
            a progress bar instead.
        options: any `EvalConfig` field (batch_size=..., baselines=[...], limit=...).
    Returns the results dict (top-level `metrics`).
    """
    from thce.inference.predictor import Predictor

    if isinstance(config, EvalConfig):
        config = dataclasses.replace(config, **options) if options else config
    else:
        config = load_eval_config(config, overrides, **options)
    records, datasets = _load_datasets(dataset, model, config)
    output = check_results_output(output or default_output(model), [d["path"] for d in datasets])
    started = time.perf_counter()
    if predictor is None:
        from thce.inference.predictor import checkpoint_retrieval

        # A checkpoint's own retrieval settings reproduce its training prompts; the config's serve the rest.
        retrieval = checkpoint_retrieval(model) or config.retrieval
        predictor = Predictor(
            model,
            config.precision,
            config.constrained,
            retrieval=retrieval,
            force_format=config.force_format,
            batch_size=config.batch_size,
            max_new_tokens=config.max_new_tokens,
            num_beams=config.num_beams,
            max_codes=config.max_codes,
            think_budget=config.think_budget,
            rerank=config.rerank,
            fusion_weight=config.fusion_weight,
        )
    loaded = time.perf_counter()
    logger.info(f"Predicting {len(records)} examples with {predictor.name}")
    if show_progress:
        from tqdm import tqdm

        with tqdm(total=len(records), desc="evaluating", unit="ex", disable=None) as bar:
            predictions = predictor.predict([r["text"] for r in records], progress=bar.update)
    else:
        predictions = predictor.predict([r["text"] for r in records], progress=progress)
    predicted = time.perf_counter()
    stats, rows = score_predictions(records, predictions, config.top_k)
    # The retriever the model reads from (a checkpoint's own settings), else the eval config's.
    retrieval_config = getattr(predictor, "retrieval", None) or config.retrieval
    candidates, retriever_figures = run_retriever(records, retrieval_config)
    baselines = run_baselines(
        records, dataclasses.replace(config, retrieval=retrieval_config), model, candidates
    )
    timing = {
        "load_seconds": loaded - started,
        "predict_seconds": predicted - loaded,
        "examples_per_second": len(records) / max(predicted - loaded, 1e-9),
    }
    results = build_results(
        stats, rows, config, model=str(model), datasets=datasets, inference=predictor.describe(),
        timing=timing, baselines=baselines, retrieval=retriever_figures,
    )  # fmt: skip
    results["timing"]["total_seconds"] = time.perf_counter() - started
    return write_results(results, rows, output, config.report, [d["path"] for d in datasets])


def evaluate_baseline(
    method: str,
    dataset: str | Path | Sequence[str | Path] | None = None,
    output: str | Path | None = None,
    *,
    config: str | Path | EvalConfig | None = None,
    overrides: Sequence[str] = (),
    **options: Any,
) -> dict[str, Any]:
    """`thce baseline`: one baseline scored like a model, written in the same results shape."""
    from thce.evaluation.baseline import load_training_codes, run_baseline

    if isinstance(config, EvalConfig):
        config = dataclasses.replace(config, **options) if options else config
    else:
        config = load_eval_config(config, overrides, **options)
    records, datasets = _load_datasets(dataset, None, config)
    output = output or Path("results") / f"baseline_{method}_eval.json"
    inputs = [d["path"] for d in datasets] + ([config.train_data] if config.train_data else [])
    check_results_output(output, inputs)
    training_codes = None
    if method == "most_frequent":
        train = config.train_data or _default_train_data(None)
        if train is None:
            raise UserError(
                "the most_frequent baseline needs training data: pass --train FILE (records or parquet)"
            )
        training_codes = load_training_codes(train)
    started = time.perf_counter()
    predictions = run_baseline(
        method,
        [r["text"] for r in records],
        training_codes=training_codes,
        seed=config.seed,
        top_k=config.top_k,
        retrieval=config.retrieval,
    )
    elapsed = time.perf_counter() - started
    stats, rows = score_predictions(records, predictions, config.top_k)
    config = dataclasses.replace(config, baselines=[])
    retrieval = run_retriever(records, config.retrieval)[1] if method == "keyword" else None
    results = build_results(
        stats, rows, config, model=f"baseline:{method}", datasets=datasets, inference={"baseline": method},
        timing={"predict_seconds": elapsed, "examples_per_second": len(records) / max(elapsed, 1e-9)},
        retrieval=retrieval,
    )  # fmt: skip
    return write_results(results, rows, output, config.report, inputs)
