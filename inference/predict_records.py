"""`thce predict` as a library call: records in (a JSONL file of `{"text", ...}` and/or plain texts),
predictions out (one `Prediction` per record, `thce.utils.schemas`, keeping the record's `id`)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thce.utils.errors import UserError


def read_text_records(input_file: str | Path | None, texts: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The records of a JSONL file (each needs a non-empty `text`), then one record per plain text."""
    records: list[dict[str, Any]] = []
    if input_file is not None:
        input_file = Path(input_file)
        if not input_file.is_file():
            raise UserError(f"input file {input_file} does not exist")
        for number, line in enumerate(input_file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{input_file}, line {number}: not valid JSON ({err.msg})") from err
            if (
                not isinstance(record, dict)
                or not isinstance(record.get("text"), str)
                or not record["text"].strip()
            ):
                raise UserError(f"{input_file}, line {number}: field 'text' is missing or empty")
            records.append(record)
    records += [{"text": text} for text in texts]
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
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=output.parent, prefix=f".{output.name}.", delete=False) as tmp:
        for line in lines:
            tmp.write(json.dumps(line, ensure_ascii=False) + "\n")
    os.replace(tmp.name, output)
    return output
