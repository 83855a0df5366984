"""The files of a collected dataset that are not plain JSONL: byte-stable parquet, the dataset card
(README.md), and the upload to the Hugging Face hub."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from thce.utils.config import StageConfig
from thce.utils.errors import UserError
from thce.utils.schemas import trainer_arrow_schema


def write_parquet(
    rows_by_bucket: Iterator[list[dict[str, Any]]], path: Path, stage: int, row_group_size: int
) -> int:
    """Append the rows to one parquet file in fixed-size row groups; returns the number of rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = trainer_arrow_schema(stage)
    written = 0
    pending: list[dict[str, Any]] = []
    # No pandas metadata, no timestamps: the same rows give the same bytes.
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for rows in rows_by_bucket:
            pending.extend(rows)
            while len(pending) >= row_group_size:
                chunk, pending = pending[:row_group_size], pending[row_group_size:]
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema), row_group_size=row_group_size)
                written += len(chunk)
        if pending or written == 0:
            writer.write_table(pa.Table.from_pylist(pending, schema=schema), row_group_size=row_group_size)
            written += len(pending)
    return written


def dataset_card(config: StageConfig, metadata: dict[str, Any]) -> str:
    """A Markdown dataset card for the artefact directory (and the hub)."""
    stage = config.stage
    kind = {1: "non-reasoning SFT", 2: "reasoning SFT", 3: "DPO preference pairs"}[stage]
    rows = "\n".join(
        f"| {s['name']} | {s['kind']} | {s['requested'] if s['requested'] is not None else 'all'} | {s['read']} | "
        f"{s['kept']} | {', '.join(f'{k}: {v}' for k, v in s['dropped'].items()) or '-'} | "
        f"{'no (PHI-free synthetic)' if s['phi_free'] else 'yes' if s['phi_scrubbed'] else 'no'} |"
        for s in metadata["sources"]
    )
    splits = metadata["splits"]
    columns = (
        "prompt, chosen, rejected, id, source, rejection_kind"
        if stage == 3
        else "prompt, completion, id, source"
    )
    return f"""---
license: apache-2.0
language: [en]
task_categories: [text-generation]
tags: [medical-coding, icd-10-cm, thce]
pretty_name: THCE stage {stage} ({kind})
---
# THCE stage {stage} dataset ({kind})

Clinical narratives paired with ICD-10-CM (and CPT/HCPCS) billing codes, built by `thce collect` from
`{config.source_path}` (seed {config.seed}). Trainer-ready in TRL's conversational format
(`train.parquet`, `validation.parquet`: {columns}); evaluation files are canonical THCE records
(`test_seen.jsonl`: held out of train, in-distribution codes; `test_unseen.jsonl`: codes held out of
train entirely).

| split | rows |
| --- | --- |
| train | {splits["train"]} |
| validation | {splits["validation"]} |
| test_seen | {splits["test_seen"]} |
| test_unseen | {splits["test_unseen"]} |

## Sources

| source | kind | requested | read | kept | dropped | PHI scrubbed |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

Synthetic records are generated from the official CDC ICD-10-CM FY2026 tabular list (descriptions,
inclusion terms, 7th-character meanings, hierarchy and Excludes1 notes); they describe no real patient.
Every answer code was checked by the THCE code validator (billable ICD-10-CM codes only).
Duplicates dropped: {metadata["duplicates_dropped"]}; records with invalid codes dropped: {metadata["invalid_dropped"]}.
Full counts: `dataset_metadata.json`.
"""


def push_to_hub(directory: str | os.PathLike, repo_id: str, private: bool = True) -> str:
    """Upload an artefact directory as a dataset repo; a clear UserError without a token or network."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not token:
        raise UserError(
            "--push-to-hub needs a Hugging Face token: set HF_TOKEN (e.g. in .env) or run `hf auth login`"
        )
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UserError("--push-to-hub: HF_HUB_OFFLINE=1 is set; unset it to upload")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(folder_path=str(directory), repo_id=repo_id, repo_type="dataset")
    except Exception as err:  # connection, auth and HTTP errors alike
        raise UserError(
            f"--push-to-hub {repo_id}: the hub is unreachable or refused the upload ({type(err).__name__}: {err})"
        ) from err
    return f"https://huggingface.co/datasets/{repo_id}"
