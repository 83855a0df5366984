"""Data collection: sources -> preprocessing -> split -> shuffle -> `data/artefacts/stage_N_final/`.

What `thce collect --config configs/stage_N.yaml` writes (docs/data_contracts.md):
    train.parquet          trainer-ready rows (TRL conversational) + id, source (+ rejection_kind)
    validation.parquet     same shape, small
    test_seen.jsonl        canonical records of in-distribution codes, kept out of train
    test_unseen.jsonl      canonical records whose codes are held out of train entirely
    dataset_metadata.json  requested vs actual per source, drops by reason, code-system counts, splits
    README.md              dataset card
    thce_config.yaml       the resolved config

Memory stays bounded whatever the size: records stream from the sources through preprocessing into
spill files, one per shuffle bucket (a seeded hash of the record id picks the bucket); each bucket is
then shuffled in memory and appended to the parquet file with a fixed row-group size. Only one bucket
(~25k rows) and a set of 8-byte text hashes (for exact-duplicate removal) are held at once.
Which split a record goes to, held-out codes included, is `thce.data.splits`; the parquet writer and the
dataset card are `thce.data.dataset_files`.

Everything is written to a temporary directory beside the output, checked by the quality gate, and
swapped into place only then (`thce.utils.io.staged_directory`), so a failed or failing run leaves the
previous `stage_N_final` intact; a directory THCE did not write is never replaced.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from thce.data.dataset_files import dataset_card, write_parquet
from thce.data.preprocess_medical import PREPROCESS_BATCH, Preprocessor, log_invalid
from thce.data.sources import check_source, read_source, source_name
from thce.data.splits import SplitWriter, shuffled_buckets
from thce.utils.config import StageConfig
from thce.utils.errors import UserError
from thce.utils.io import check_output, staged_directory, write_atomically, write_json
from thce.utils.stage_layout import QUALITY_REPORT

BUCKET_ROWS = 25_000  # target rows per shuffle bucket


@dataclass
class CollectResult:
    output_dir: Path
    metadata: dict[str, Any]
    quality: dict[str, Any] | None = None  # the quality report, when the gate ran


class QualityGateFailed(UserError):
    """The collected dataset failed a quality threshold; the previous dataset was left in place."""

    def __init__(self, report: dict[str, Any], output: Path, report_path: Path) -> None:
        failed = "; ".join(f"{f['check']} = {f['value']} (needs {f['threshold']})" for f in report["failed"])
        super().__init__(f"quality gate failed: {failed} (report: {report_path}); {output} left as it was")
        self.report = report
        self.report_path = report_path


def collect(
    config: StageConfig,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
    quality: bool = True,
) -> CollectResult:
    """Build a stage's dataset from its config; see the module docstring for what is written.

    With `quality`, the checks of `data.quality` run on the new dataset before it replaces the previous
    one; a failure raises `QualityGateFailed` (with the report, also written to
    `OUTPUT.quality_report.json` beside the output) and leaves the previous dataset intact.
    """
    from thce.utils.data_quality import quality_gate

    data = config.data
    if not data.sources:
        raise UserError(f"{config.source_path}: data.sources is empty; nothing to collect")
    for index, source in enumerate(data.sources):
        check_source(source, index, config.source_path)
    output = Path(output_dir or data.output_dir)
    inputs = [config.source_path, *(s.path for s in data.sources)]
    inputs += [s.options.get(k) for s in data.sources for k in ("diagnoses", "icd9_map")]
    check_output(output, inputs, "collect output", directory=True)
    report = None
    with staged_directory(output, "dataset", "collect output") as workdir:
        metadata = _collect_into(config, workdir, progress)
        if quality:
            report = quality_gate(config, workdir, reported_as=output)
            if not report["passed"]:
                # The failed dataset is discarded; its report is kept beside the output for a look.
                report_path = write_json(output.with_name(f"{output.name}.{QUALITY_REPORT}"), report)
                raise QualityGateFailed(report, output, report_path)
    logger.info(f"wrote {output} ({metadata['splits']})")
    return CollectResult(output, metadata, report)


def _estimated_rows(source: Any) -> int:
    """Rows a source will give (for the progress bar and the number of shuffle buckets)."""
    if source.entries is not None:
        return source.entries
    path = Path(source.path or "")
    size = path.stat().st_size if path.is_file() else 50_000_000
    return max(1, size // 500)


def _retrieve(config: StageConfig, records: list[dict[str, Any] | None]) -> list[list[Any] | None]:
    """The retriever's candidates for each kept record's text (None without retrieval or record)."""
    if not config.retrieval.enabled:
        return [None] * len(records)
    from thce.retrieval import get_retriever

    kept = [i for i, record in enumerate(records) if record is not None]
    found = get_retriever(config.retrieval).retrieve_batch([records[i]["text"] for i in kept])  # type: ignore[index]
    out: list[list[Any] | None] = [None] * len(records)
    for i, candidates in zip(kept, found, strict=True):
        out[i] = candidates
    return out


def _collect_into(config: StageConfig, workdir: Path, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    from thce.data.synthetic_generation import is_phi_free

    data = config.data
    estimate = sum(_estimated_rows(s) for s in data.sources)
    n_buckets = max(1, math.ceil(estimate / BUCKET_ROWS))
    writer = SplitWriter(config, workdir, n_buckets)
    preprocessor = Preprocessor(data.preprocess, config.stage)
    seen_texts: set[bytes] = set()
    shown_invalid: Counter[str] = Counter()
    source_reports = []
    bar = tqdm(
        total=estimate,
        desc=f"collect stage {config.stage}",
        unit="rec",
        disable=not progress,
        mininterval=1.0,
    )
    try:
        for index, source in enumerate(data.sources):
            name = source_name(source, index)
            phi_free = (
                is_phi_free(source.generator, source.options)
                if source.kind == "synthetic"
                else bool(source.options.get("phi_free", False))
            )
            counts: Counter[str] = Counter()
            first_invalid: str | None = None
            batch: list[tuple[dict[str, Any], str]] = []

            def flush(
                batch: list[tuple[dict[str, Any], str]],
                counts: Counter[str] = counts,
                name: str = name,
                phi_free: bool = phi_free,
            ) -> str | None:
                first = None
                results = preprocessor.process_batch([r for r, _ in batch], phi_free=phi_free)
                retrieved = _retrieve(config, [result.record for result in results])
                for (_, location), result, candidates in zip(batch, results, retrieved, strict=True):
                    log_invalid(location, result.invalid, shown_invalid, name)
                    if result.invalid and first is None:
                        first = f"{location} {result.invalid[0]['code']!r}"
                    if result.record is None:
                        counts[f"dropped_{result.dropped}"] += 1
                        continue
                    key = hashlib.blake2b(result.record["text"].encode(), digest_size=8).digest()
                    if key in seen_texts:
                        counts["dropped_duplicate"] += 1
                        continue
                    seen_texts.add(key)
                    counts[writer.add(result.record, candidates)] += 1
                    counts["kept"] += 1
                bar.update(len(batch))
                return first

            for item in read_source(source, index, config.seed):
                counts["read"] += 1
                batch.append((item.record, item.location))
                if len(batch) >= PREPROCESS_BATCH:
                    first_invalid = first_invalid or flush(batch)
                    batch = []
            if batch:
                first_invalid = first_invalid or flush(batch)
            if counts["kept"] == 0:
                reasons = {k: v for k, v in counts.items() if k.startswith("dropped_")}
                detail = f"; first invalid code at {first_invalid}" if first_invalid else ""
                raise UserError(
                    f"source {name} ({source.path or source.generator}) produced no usable records "
                    f"({counts['read']} read, dropped: {reasons}){detail}"
                )
            source_reports.append(
                {
                    "index": index,
                    "name": name,
                    "kind": source.kind,
                    "path": source.path,
                    "generator": source.generator,
                    "requested": source.entries,
                    "read": counts["read"],
                    "kept": counts["kept"],
                    "splits": {k: counts[k] for k in ("train", "validation", "test_seen", "test_unseen")},
                    "dropped": {
                        k.removeprefix("dropped_"): v
                        for k, v in sorted(counts.items())
                        if k.startswith("dropped_")
                    }
                    | (
                        {"heldout_overflow": counts["heldout_overflow_dropped"]}
                        if counts["heldout_overflow_dropped"]
                        else {}
                    ),
                    "phi_free": phi_free,
                    "phi_scrubbed": data.preprocess.scrub_phi and not phi_free,
                }
            )
            logger.info(f"source {name}: {counts['read']} read, {counts['kept']} kept")
    finally:
        bar.close()
        writer.close()

    train_rows = write_parquet(
        shuffled_buckets(workdir, n_buckets, config.seed),
        workdir / "train.parquet",
        config.stage,
        data.row_group_size,
    )
    if writer.validation:
        random.Random(f"validation:{config.seed}").shuffle(writer.validation)
        write_parquet(
            iter([writer.validation]), workdir / "validation.parquet", config.stage, data.row_group_size
        )
    if data.save_to_disk:
        from datasets import Dataset

        Dataset.from_parquet(str(workdir / "train.parquet")).save_to_disk(str(workdir / "hf_dataset"))

    duplicates = sum(r["dropped"].get("duplicate", 0) for r in source_reports)
    invalid = sum(r["dropped"].get("invalid_codes", 0) for r in source_reports)
    metadata = {
        "stage": config.stage,
        "seed": config.seed,
        "format": "trl-conversational-preference"
        if config.stage == 3
        else "trl-conversational-prompt-completion",
        "chat_template": config.chat.template,
        "sources": source_reports,
        "splits": {
            "train": train_rows,
            "validation": len(writer.validation),
            "test_seen": writer.counts["test_seen"],
            "test_unseen": writer.counts["test_unseen"],
        },
        "duplicates_dropped": duplicates,
        "invalid_dropped": invalid,
        "heldout": {
            "code_fraction": data.split.heldout_code_fraction,
            "codes_seen_in_sources": len(writer.heldout_codes),
            "overflow_dropped": writer.counts["heldout_overflow_dropped"],
            "rule": "blake2b('heldout', seed, code) < code_fraction; same seed -> same codes in every stage",
        },
        "code_systems": dict(sorted(writer.code_systems.items())),
        "distinct_train_codes": len(writer.train_codes),
        "top_train_codes": dict(writer.train_codes.most_common(20)),
        "rejection_kinds": dict(sorted(writer.rejection_kinds.items())),
        "candidates": _candidate_metadata(config, writer.candidate_counts),
        "preprocess": {
            "normalize_text": data.preprocess.normalize_text,
            "scrub_phi": data.preprocess.scrub_phi,
            "phi_engine": data.preprocess.phi_engine,
            "invalid_codes": data.preprocess.invalid_codes,
            "require_billable": data.preprocess.require_billable,
            "phi_note": "synthetic template sources are generated without PHI (phi_free) and are not scrubbed; "
            "every other source is scrubbed when scrub_phi is true",
        },
        "files": {},
    }
    from thce.utils.config import save_resolved_config

    save_resolved_config(config, workdir)
    write_atomically(workdir / "README.md", dataset_card(config, metadata))
    metadata["files"] = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(workdir.iterdir())
        if p.is_file() and p.suffix in (".parquet", ".jsonl")
    }
    write_json(workdir / "dataset_metadata.json", metadata)
    return metadata


def _candidate_metadata(config: StageConfig, counts: Counter[str]) -> dict[str, Any] | None:
    """Retrieval over the train rows: how often the retriever missed a gold code, how often it was inserted."""
    if not config.retrieval.enabled:
        return None
    examples = counts["examples"]
    return {
        "k": config.retrieval.k,
        "gold_insertion_rate": config.data.candidates.gold_insertion_rate,
        "reasoning": config.data.candidates.reasoning,
        "train_examples": examples,
        "gold_missed": counts["gold_missed"],
        "gold_inserted": counts["gold_inserted"],
        "gold_not_offered": counts["gold_not_offered"],
        "retriever_recall": 1 - counts["gold_missed"] / examples if examples else None,
    }
