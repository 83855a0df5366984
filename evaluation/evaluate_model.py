"""The model evaluator: predict on canonical test records, score, compare with baselines, write it all.

    evaluate("outputs/stage_3/final", "data/artefacts/stage_3_final/test_unseen.jsonl")

writes `results/stage_3_eval.json` and a folder beside it (`thce.evaluation.results` lists what they hold).
`evaluate_baseline` does the same for one baseline (`thce baseline`). The parts: `eval_config` (the
settings), `eval_data` (the test records), `scoring` (per-example scores, the results dict), `results`
(writing it).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from thce.evaluation.eval_config import EvalConfig, load_eval_config
from thce.evaluation.eval_data import default_train_data, load_datasets
from thce.evaluation.results import check_results_output, default_output, write_results
from thce.evaluation.scoring import build_results, score_predictions
from thce.utils.config import RetrievalConfig
from thce.utils.errors import UserError


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
            train = config.train_data or default_train_data(model)
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
    records, datasets = load_datasets(dataset, model, config)
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
    records, datasets = load_datasets(dataset, None, config)
    output = output or Path("results") / f"baseline_{method}_eval.json"
    inputs = [d["path"] for d in datasets] + ([config.train_data] if config.train_data else [])
    check_results_output(output, inputs)
    training_codes = None
    if method == "most_frequent":
        train = config.train_data or default_train_data(None)
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
