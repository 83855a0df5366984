"""Source readers: each turns one `data.sources` entry into a stream of canonical records.

Kinds (config `kind:`): synthetic, jsonl, json, csv, parquet, hf_disk (a `datasets` save_to_disk
directory), mtsamples (MTSamples-style CSV/JSON: `transcription` is the text), mimic (MIMIC-III/IV style
notes + diagnoses tables joined on the admission id, ICD-9 mapped to ICD-10-CM through a CMS GEM file).

Every reader streams (nothing holds a whole file except `json`, whose format needs it, and the MIMIC
diagnoses table, which is small next to the notes) and reports where each record came from
(`file:line` or `file#row`), so an error names the file and the line.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from thce.utils.config import SourceConfig
from thce.utils.errors import UserError
from thce.utils.io import iter_jsonl, iter_parquet_rows, read_json
from thce.utils.schemas import CODE_SYSTEMS, RECORD_FIELDS

_CODE_SPLIT = re.compile(r"[;,|\s]+")

# Options each kind accepts (the synthetic generators validate their own).
KIND_OPTIONS: dict[str, set[str]] = {
    "jsonl": {"name", "code_system", "phi_free"},
    "json": {"name", "code_system", "phi_free", "records_key"},
    "csv": {"name", "code_system", "phi_free", "encoding", "delimiter"},
    "parquet": {"name", "code_system", "phi_free", "batch_size"},
    "hf_disk": {"name", "code_system", "phi_free", "split"},
    "mtsamples": {"name", "code_system", "phi_free", "encoding", "code_column", "text_column"},
    "mimic": {"name", "diagnoses", "icd9_map", "note_category", "encoding", "phi_free"},
}


@dataclass
class SourceRecord:
    """One record from a source: the canonical dict and where it came from (for messages)."""

    record: dict[str, Any]
    location: str


def source_name(source: SourceConfig, index: int) -> str:
    """A short, stable name for a source: `options.name`, else generator or file stem."""
    if source.options.get("name"):
        return str(source.options["name"])
    if source.kind == "synthetic":
        return f"synthetic:{source.generator}"
    return f"{source.kind}:{Path(source.path).stem}" if source.path else f"{source.kind}:{index}"


def check_source(source: SourceConfig, index: int, config_file: str | None = None) -> None:
    """Fail early, naming the source, on a missing path, a missing generator or an unknown option."""
    where = f"{config_file or 'config'}: data.sources[{index}] ({source.kind})"
    if source.kind == "synthetic":
        if not source.generator:
            raise UserError(
                f"{where}: a synthetic source needs 'generator' (icd10cm, icd10cm_reasoning, ...)"
            )
        if source.entries is None:
            raise UserError(f"{where}: a synthetic source needs 'entries' (how many records to generate)")
        return
    if source.generator:
        raise UserError(f"{where}: 'generator' applies to synthetic sources only")
    if not source.path:
        raise UserError(f"{where}: 'path' is required")
    path = Path(source.path)
    if not path.exists():
        raise UserError(f"{where}: path does not exist: {path}")
    unknown = sorted(set(source.options) - KIND_OPTIONS[source.kind])
    if unknown:
        known = ", ".join(sorted(KIND_OPTIONS[source.kind]))
        raise UserError(f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; known: {known}")
    if source.kind == "mimic":
        diagnoses = source.options.get("diagnoses")
        if not diagnoses or not Path(diagnoses).is_file():
            raise UserError(f"{where}: option 'diagnoses' must name the diagnoses table (got {diagnoses!r})")
        icd9_map = source.options.get("icd9_map")
        if icd9_map and not Path(icd9_map).is_file():
            raise UserError(f"{where}: option 'icd9_map' file does not exist: {icd9_map}")


def read_source(source: SourceConfig, index: int, seed: int = 42) -> Iterator[SourceRecord]:
    """Stream a source as canonical records (columns renamed/dropped, codes parsed), capped at `entries`."""
    name = source_name(source, index)
    if source.kind == "synthetic":
        from thce.data.synthetic_generation import generate_records

        for n, record in enumerate(generate_records(source.generator, source.entries, seed, source.options)):
            yield SourceRecord(record, f"{name}#{n}")
        return
    raw_rows = _RAW_READERS[source.kind](source)
    produced = 0
    for raw, location in raw_rows:
        if source.entries is not None and produced >= source.entries:
            break
        yield SourceRecord(to_canonical(raw, source, name, location, produced), location)
        produced += 1
    if produced == 0:
        raise UserError(f"{source.path}: source is empty (no records)")


def to_canonical(
    raw: Mapping[str, Any], source: SourceConfig, name: str, location: str, n: int
) -> dict[str, Any]:
    """Apply drop/rename, then build a canonical (or preference) record; errors name `location`."""
    row = {k: v for k, v in raw.items() if k not in source.drop}
    for old, new in source.rename.items():
        if old in row:
            row[new] = row.pop(old)
    system = str(source.options.get("code_system", "ICD10"))
    record: dict[str, Any] = {
        "id": str(row["id"]) if row.get("id") not in (None, "") else f"{name}-{n:07d}",
        "source": str(row.get("source") or name),
    }
    if "text" not in row:
        raise UserError(
            f"{location}: record has no 'text' field (fields: {', '.join(map(str, row)) or 'none'}); "
            "map your column with rename: {your_column: text}"
        )
    if not isinstance(row["text"], str):
        raise UserError(f"{location}: field 'text' must be a string, got {type(row['text']).__name__}")
    record["text"] = row["text"]
    if "chosen" in row or "rejected" in row:
        for side in ("chosen", "rejected"):
            answer = row.get(side)
            if not isinstance(answer, Mapping) or "codes" not in answer:
                raise UserError(
                    f"{location}: preference record needs '{side}' with 'codes' (and 'reasoning')"
                )
            record[side] = {
                "codes": parse_codes(answer["codes"], system, f"{location}: field '{side}.codes'"),
                "reasoning": answer.get("reasoning"),
            }
        record["rejection_kind"] = str(row.get("rejection_kind") or "unknown")
        return record
    if "codes" not in row:
        if "code" in row:
            row["codes"] = row.pop("code")
        else:
            raise UserError(
                f"{location}: record has no 'codes' field (fields: {', '.join(map(str, row))}); "
                "map your code column with rename: {your_column: codes}"
            )
    record["codes"] = parse_codes(row["codes"], system, f"{location}: field 'codes'")
    reasoning = row.get("reasoning")
    record["reasoning"] = reasoning if isinstance(reasoning, str) and reasoning.strip() else None
    meta = row.get("meta") if isinstance(row.get("meta"), Mapping) else {}
    extra = {
        k: v for k, v in row.items() if k not in RECORD_FIELDS and isinstance(v, (str, int, float, bool))
    }
    record["meta"] = {**meta, **{k: (v[:200] if isinstance(v, str) else v) for k, v in extra.items()}}
    return record


def parse_codes(value: Any, default_system: str, where: str) -> list[dict[str, str]]:
    """Code references from a list of `{system, code}` dicts, a list of strings, or a delimited string
    ("E11.9; I10", "ICD10: E11.9"). The codes are not validated here (preprocessing does that)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
    if isinstance(value, str):
        items: list[Any] = [v for v in _CODE_SPLIT.split(value.replace(": ", ":")) if v]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif hasattr(value, "tolist"):  # numpy arrays from parquet/datasets
        items = list(value.tolist())
    else:
        raise UserError(
            f"{where} must be a list of codes or a delimited string, got {type(value).__name__}: {value!r}"
        )
    codes = []
    for item in items:
        if isinstance(item, Mapping):
            if "code" not in item:
                raise UserError(f"{where}: code entry {dict(item)!r} has no 'code'")
            codes.append(
                {"system": str(item.get("system") or default_system).upper(), "code": str(item["code"])}
            )
        elif isinstance(item, (str, int, float)) and not isinstance(item, bool):
            text = str(item).strip()
            system, sep, code = text.partition(":")
            if sep and system.strip().upper() in CODE_SYSTEMS:
                codes.append({"system": system.strip().upper(), "code": code.strip()})
            else:
                codes.append({"system": default_system, "code": text})
        else:
            raise UserError(
                f"{where}: code entry {item!r} is neither a string nor a {{system, code}} mapping"
            )
    return codes


# ---------------------------------------------------------------------------------------------------
# Raw readers: yield (row dict, location)


def _read_jsonl(source: SourceConfig) -> Iterator[tuple[dict[str, Any], str]]:
    for line_number, row in iter_jsonl(source.path, "source"):
        yield row, f"{source.path}:{line_number}"


def _read_json(source: SourceConfig) -> Iterator[tuple[dict[str, Any], str]]:
    path = Path(source.path)
    data = read_json(path, "source")
    key = source.options.get("records_key")
    if isinstance(data, dict):
        for candidate in (key, "data", "records", "examples", "rows"):
            if candidate and isinstance(data.get(candidate), list):
                data = data[candidate]
                break
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of records (or an object with a 'data' list)")
    for n, row in enumerate(data):
        if not isinstance(row, dict):
            raise UserError(f"{path}: record {n} is not a JSON object")
        yield row, f"{path}#record{n}"


def _decoded_lines(path: Path, encoding: str, position: list[int]) -> Iterator[str]:
    """Lines decoded one at a time, so an undecodable byte is reported at its physical line."""
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, 1):
            position[0] = line_number
            try:
                # utf-8-sig on the first line strips a byte-order mark, which would otherwise glue itself
                # to the first column name.
                yield raw.decode("utf-8-sig" if line_number == 1 and encoding == "utf-8" else encoding)
            except UnicodeDecodeError as err:
                raise UserError(
                    f"{path}:{line_number}: not valid {encoding} ({err.reason} at byte {err.start}); "
                    "if the file is Latin-1/Windows-1252, set options: {encoding: cp1252}"
                ) from err


def _csv_rows(path: Path, encoding: str, delimiter: str = ",") -> Iterator[tuple[dict[str, Any], str]]:
    encoding = "utf-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig") else encoding
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # clinical notes exceed csv's 128 KB default
    position = [0]
    reader = csv.DictReader(_decoded_lines(path, encoding, position), delimiter=delimiter)
    try:
        for row in reader:
            if None in row:
                raise UserError(f"{path}:{position[0]}: more fields than the header has columns")
            yield {k.strip(): v for k, v in row.items() if k is not None}, f"{path}:{position[0]}"
    except csv.Error as err:
        raise UserError(f"{path}:{position[0]}: malformed CSV ({err})") from err


def _read_csv(source: SourceConfig) -> Iterator[tuple[dict[str, Any], str]]:
    yield from _csv_rows(
        Path(source.path), source.options.get("encoding", "utf-8"), source.options.get("delimiter", ",")
    )


def _read_parquet(source: SourceConfig) -> Iterator[tuple[dict[str, Any], str]]:
    rows = iter_parquet_rows(source.path, "source", batch_size=int(source.options.get("batch_size", 4096)))
    for n, row in enumerate(rows):
        yield row, f"{source.path}#row{n}"


def _read_hf_disk(source: SourceConfig) -> Iterator[tuple[dict[str, Any], str]]:
    from datasets import DatasetDict, load_from_disk

    path = Path(source.path)
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"{path}: not a `datasets` save_to_disk directory ({err})") from err
    if isinstance(dataset, DatasetDict):
        split = source.options.get("split", "train")
        if split not in dataset:
            raise UserError(f"{path}: no split {split!r} (splits: {', '.join(dataset)}); set options.split")
        dataset = dataset[split]
    for n, row in enumerate(dataset):
        yield row, f"{path}#row{n}"


def _read_mtsamples(source: SourceConfig) -> Iterator[tuple[dict[str, Any], str]]:
    """MTSamples (transcribed notes: description, medical_specialty, sample_name, transcription, keywords).

    MTSamples carries no codes: give a column of codes you assigned (`code_column`, default `codes`);
    rows with no transcription are skipped."""
    path = Path(source.path)
    text_column = source.options.get("text_column", "transcription")
    code_column = source.options.get("code_column", "codes")
    rows = (
        _read_json(source)
        if path.suffix.lower() == ".json"
        else _csv_rows(path, source.options.get("encoding", "utf-8"))
    )
    for row, location in rows:
        if text_column not in row:
            raise UserError(
                f"{location}: MTSamples row has no '{text_column}' column (columns: {', '.join(row)})"
            )
        if code_column not in row:
            raise UserError(
                f"{location}: MTSamples has no codes; add a '{code_column}' column of assigned codes "
                "(or set options.code_column)"
            )
        if not str(row[text_column] or "").strip():
            continue
        mapped = {k: v for k, v in row.items() if k not in (text_column, code_column)}
        mapped.update(text=row[text_column], codes=row[code_column])
        yield mapped, location


def load_icd9_gem(path: str | Path) -> dict[str, str]:
    """ICD-9-CM -> ICD-10-CM from the CMS General Equivalence Mapping file (2018_I9gem.txt: `icd9 icd10
    flags`, dotless). Entries flagged "no map" or part of a combination are skipped; the first target of
    each ICD-9 code is kept (approximate matches included, as GEM users do)."""
    mapping: dict[str, str] = {}
    with Path(path).open(encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 3 or len(parts[2]) != 5 or not parts[2].isdigit():
                raise UserError(
                    f"{path}:{line_number}: expected 'ICD9 ICD10 FLAGS' (CMS GEM format), got {line.strip()!r}"
                )
            icd9, icd10, flags = parts[0], parts[1], parts[2]
            if flags[1] == "1" or flags[2] == "1":  # no map / combination
                continue
            mapping.setdefault(icd9, icd10)
    return mapping


def _read_mimic(source: SourceConfig) -> Iterator[tuple[dict[str, Any], str]]:
    """Notes (MIMIC-III NOTEEVENTS: HADM_ID, CATEGORY, TEXT; MIMIC-IV note/discharge: hadm_id, text) joined
    with diagnoses (MIMIC-III DIAGNOSES_ICD: HADM_ID, SEQ_NUM, ICD9_CODE; MIMIC-IV diagnoses_icd:
    hadm_id, seq_num, icd_code, icd_version) on the admission; ICD-9 codes go through the GEM file."""
    encoding = source.options.get("encoding", "utf-8")
    gem = load_icd9_gem(source.options["icd9_map"]) if source.options.get("icd9_map") else None
    diagnoses: dict[str, list[tuple[int, str]]] = {}
    unmapped = 0
    for row, location in _csv_rows(Path(source.options["diagnoses"]), encoding):
        row = {k.lower(): v for k, v in row.items()}
        if "hadm_id" not in row:
            raise UserError(f"{location}: diagnoses table needs a hadm_id column (columns: {', '.join(row)})")
        code = row.get("icd_code") or row.get("icd9_code") or ""
        version = str(row.get("icd_version") or ("9" if "icd9_code" in row else "10")).strip()
        if not code:
            continue
        if version == "9":
            mapped = gem.get(code.strip()) if gem else None
            if mapped is None:
                unmapped += 1
                continue
            code = mapped
        sequence = int(row.get("seq_num") or 0) if str(row.get("seq_num") or "0").isdigit() else 0
        diagnoses.setdefault(str(row["hadm_id"]).strip(), []).append((sequence, code.strip()))
    if unmapped:
        hint = "" if gem else " (no options.icd9_map: give the CMS 2018_I9gem.txt file to map ICD-9 codes)"
        logger.warning(
            f"{source.options['diagnoses']}: {unmapped} ICD-9 diagnoses had no ICD-10-CM mapping{hint}"
        )
    category = source.options.get("note_category", "Discharge summary")
    for row, location in _csv_rows(Path(source.path), encoding):
        row = {k.lower(): v for k, v in row.items()}
        if "text" not in row or "hadm_id" not in row:
            raise UserError(
                f"{location}: notes table needs hadm_id and text columns (columns: {', '.join(row)})"
            )
        if "category" in row and category and row["category"].strip() != category:
            continue
        codes = diagnoses.get(str(row["hadm_id"]).strip())
        if not codes:
            continue
        yield (
            {
                "id": f"mimic-{row.get('row_id') or row.get('note_id') or row['hadm_id']}",
                "text": row["text"],
                "codes": [code for _, code in sorted(codes)],
                "hadm_id": str(row["hadm_id"]),
            },
            location,
        )


_RAW_READERS = {
    "jsonl": _read_jsonl,
    "json": _read_json,
    "csv": _read_csv,
    "parquet": _read_parquet,
    "hf_disk": _read_hf_disk,
    "mtsamples": _read_mtsamples,
    "mimic": _read_mimic,
}
