"""`thce predict` as a library call: records in (a JSONL file of `{"text", ...}` and/or plain texts),
predictions out (one `Prediction` per record, `thce.utils.schemas`, keeping the record's `id`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thce.utils.errors import UserError
from thce.utils.io import iter_jsonl, write_jsonl


def read_text_records(input_file: str | Path | None, texts: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The records of a JSONL file (each needs a non-empty `text`), then one record per plain text."""
    records: list[dict[str, Any]] = []
    if input_file is not None:
        for number, record in iter_jsonl(input_file, "--input"):
            if not isinstance(record.get("text"), str) or not record["text"].strip():
                raise UserError(f"{input_file}:{number}: field 'text' is missing or empty")
            records.append(record)
    for number, text in enumerate(texts, 1):
        if not text.strip():
            raise UserError(f"text argument {number} is empty; give the clinical text to code")
        records.append({"text": text})
    if not records:
        raise UserError("nothing to predict: give text arguments or --input records.jsonl")
    return records


def predict_records(
    predictor: Any,
    records: Sequence[dict[str, Any]],
    keep_raw: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One prediction per record, in order, with the record's `id` first when it has one."""
    results = predictor.predict([r["text"] for r in records], progress=progress)
    lines = []
    for record, result in zip(records, results, strict=True):
        if not keep_raw:
            result.pop("raw", None)
        lines.append({"id": record.get("id"), **result} if "id" in record else result)
    return lines


def write_predictions(lines: Sequence[dict[str, Any]], output: str | Path) -> Path:
    """Predictions as JSONL, written under a temporary name and renamed into place."""
    write_jsonl(output, lines)
    return Path(output)
