"""Data quality checks for canonical, preference and trainer-ready datasets (JSONL or parquet).

Checks (the seed's list of quality checks): schema, code validity rate, text length and language
(langdetect, on a seeded sample) distribution, reasoning present (stage 2+), preference-pair consistency
(stage 3: chosen != rejected, chosen valid, rejected differs in codes), duplicate rate, PHI residue (the
pattern rules of `thce.utils.phi`), and placeholders that replaced medical words (a PHI placeholder inside a
clinical phrase, "[LOCATION], unspecified": reported, not gated, for review of the scrubber). `check_dataset` returns a JSON-able report with `passed` and the
failed thresholds; `format_summary` renders it for people.
"""

from __future__ import annotations

import random
import re
import statistics
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from thce.utils.config import QualityConfig, StageConfig, apply_override, build_dataclass
from thce.utils.errors import UserError
from thce.utils.io import iter_jsonl, iter_parquet_rows, write_json
from thce.utils.medical_chat_templates import answer_reasoning, parse_answer_codes
from thce.utils.schemas import (
    REQUIRED_FIELDS,
    canonical_problem,
    preference_problem,
    record_kind,
    trainer_row_problem,
)
from thce.utils.stage_layout import QUALITY_REPORT

MIN_LANGUAGE_CHARS = 60


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL or parquet file (an artefact directory means its train.parquet)."""
    path = Path(path)
    if path.is_dir():
        path = path / "train.parquet"
    if path.suffix == ".parquet":
        yield from iter_parquet_rows(path, "quality input")
        return
    for _, row in iter_jsonl(path, "quality input"):
        yield row


def quality_thresholds(overrides: Sequence[str]) -> QualityConfig:
    """`QualityConfig` from `--set data.quality.KEY=VALUE` overrides alone (no stage config given)."""
    raw: dict[str, Any] = {}
    for override in overrides:
        if not override.partition("=")[0].strip().startswith("data.quality."):
            raise UserError(f"--set {override!r}: without --config only data.quality.* thresholds can be set")
        apply_override(raw, override.removeprefix("data."), "--set")
    return build_dataclass(QualityConfig, raw.get("quality", {}), section="data.quality", file="--set")


def _code_refs(value: Any) -> list[Any]:
    """Codes as `{system, code}` dicts, also when written as strings or numbers ("E11.9", "CPT: 99213")."""
    if isinstance(value, str):
        value = [item for item in re.split(r"[;,|]", value) if item.strip()]
    if not isinstance(value, (list, tuple)):
        return value if value is None else [value]
    refs = []
    for item in value:
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            system, sep, code = str(item).partition(":")
            refs.append({"system": system.strip().upper(), "code": code.strip()} if sep else
                        {"system": "ICD10", "code": str(item).strip()})  # fmt: skip
        else:
            refs.append(item)
    return refs


def with_code_refs(row: Any) -> Any:
    """A canonical or preference row with its codes as `{system, code}` objects, also where they were written
    as strings or numbers ("E11.9", "CPT: 99213", "E11.9; I10"), the forms the sources accept."""
    if not isinstance(row, dict):
        return row
    kind = record_kind(row)
    if kind == "canonical" and "codes" in row:
        return {**row, "codes": _code_refs(row["codes"])}
    if kind == "preference":
        return {
            **row,
            **{
                side: {**row[side], "codes": _code_refs(row[side]["codes"])}
                for side in ("chosen", "rejected")
                if isinstance(row.get(side), dict) and "codes" in row[side]
            },
        }
    return row


def row_view(row: dict[str, Any]) -> dict[str, Any]:
    """One row, whatever its format, as {format, text, codes, reasoning, rejected_codes, rejected_reasoning}."""
    kind = record_kind(row)
    if kind.startswith("trainer"):
        text = next((m["content"] for m in row["prompt"] if m["role"] == "user"), "")
        if kind == "trainer_preference":
            chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
            return {
                "format": "trainer_preference",
                "text": text,
                "codes": parse_answer_codes(chosen),
                "reasoning": answer_reasoning(chosen),
                "rejected_codes": parse_answer_codes(rejected),
                "rejected_reasoning": answer_reasoning(rejected),
            }
        answer = row["completion"][0]["content"]
        return {
            "format": "trainer_sft",
            "text": text,
            "codes": parse_answer_codes(answer),
            "reasoning": answer_reasoning(answer),
        }
    if kind == "preference":
        return {
            "format": "preference",
            "text": row["text"],
            "codes": row["chosen"]["codes"],
            "reasoning": row["chosen"].get("reasoning"),
            "rejected_codes": row["rejected"]["codes"],
            "rejected_reasoning": row["rejected"].get("reasoning"),
        }
    return {
        "format": "canonical",
        "text": row["text"],
        "codes": row["codes"],
        "reasoning": row.get("reasoning"),
    }


_VALIDATORS = {
    "canonical": canonical_problem,
    "preference": preference_problem,
    "trainer_sft": trainer_row_problem,
    "trainer_preference": trainer_row_problem,
}


def _schema_problem(row: dict[str, Any]) -> str | None:
    """The record schemas' own validator (`thce.utils.schemas`), then: the answer must hold codes."""
    if not isinstance(row, dict):
        return "not an object"
    kind = record_kind(row)
    missing = [k for k in REQUIRED_FIELDS[kind] if k not in row]
    if missing:
        return f"missing {', '.join(missing)}"
    problem = _VALIDATORS[kind](row)
    if problem:
        return problem
    try:
        view = row_view(row)
    except (KeyError, IndexError, TypeError) as err:
        return f"unreadable record ({type(err).__name__}: {err})"
    if not isinstance(view["text"], str) or not view["text"].strip():
        return "empty text"
    if not view["codes"]:
        return "no codes"
    return None


def _distribution(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
        "max": ordered[-1],
        "mean": round(statistics.fmean(ordered), 1),
    }


def detect_languages(texts: list[str]) -> Counter[str]:
    """langdetect on each text (seeded, so repeatable); "unknown" where it cannot tell."""
    from langdetect import DetectorFactory, detect
    from langdetect.lang_detect_exception import LangDetectException

    DetectorFactory.seed = 0
    counts: Counter[str] = Counter()
    for text in texts:
        try:
            counts[detect(text)] += 1
        except LangDetectException:
            counts["unknown"] += 1
    return counts


def check_dataset(
    path: str | Path, stage: int | None = None, thresholds: QualityConfig | None = None, seed: int = 42
) -> dict[str, Any]:
    """Run every check over a dataset file; the report says which thresholds failed."""
    from thce.utils.code_validator import validate_code
    from thce.utils.phi import phi_residue
    from thce.utils.phi_vocabulary import medical_placeholders

    thresholds = thresholds or QualityConfig()
    rows = 0
    schema_errors: list[str] = []
    formats: Counter[str] = Counter()
    lengths: list[int] = []
    codes_total = codes_valid = 0
    with_reasoning = 0
    pairs = consistent = 0
    pair_problems: Counter[str] = Counter()
    text_hashes: Counter[int] = Counter()
    phi_rows = 0
    phi_kinds: Counter[str] = Counter()
    phi_examples: list[str] = []
    medical_rows = medical_count = 0
    medical_examples: list[str] = []
    reservoir: list[str] = []
    rng = random.Random(seed)
    for n, row in enumerate(iter_rows(path)):
        row = with_code_refs(row)
        rows += 1
        problem = _schema_problem(row)
        if problem:
            if len(schema_errors) < 20:
                schema_errors.append(f"row {n}: {problem}")
            formats["invalid"] += 1
            continue
        view = row_view(row)
        formats[view["format"]] += 1
        text = view["text"]
        lengths.append(len(text))
        text_hashes[hash(text)] += 1
        for ref in view["codes"]:
            codes_total += 1
            billable = ref["system"] == "ICD10"
            codes_valid += validate_code(ref["code"], ref["system"], require_billable=billable)
        if view.get("reasoning"):
            with_reasoning += 1
        if "rejected_codes" in view:
            pairs += 1
            chosen_set = {(c["system"], c["code"]) for c in view["codes"]}
            rejected_set = {(c["system"], c["code"]) for c in view["rejected_codes"]}
            chosen_ok = all(validate_code(c["code"], c["system"]) for c in view["codes"])
            if not chosen_ok:
                pair_problems["chosen_invalid"] += 1
            elif chosen_set == rejected_set:
                pair_problems["rejected_same_codes"] += 1
            else:
                consistent += 1
        spans = phi_residue(text)
        if spans:
            phi_rows += 1
            phi_kinds.update(s.kind for s in spans)
            if len(phi_examples) < 5:
                phi_examples.append(f"row {n}: {spans[0].kind} {spans[0].text!r}")
        if "[" in text:
            replaced = medical_placeholders(text)
            if replaced:
                medical_rows += 1
                medical_count += len(replaced)
                if len(medical_examples) < 5:
                    medical_examples.append(f"row {n}: {replaced[0]!r}")
        # Reservoir sample for the (slow) language check; very short texts ("Dx: hypospadias") are too
        # short for langdetect to tell, so they are left out of it.
        if len(text) < MIN_LANGUAGE_CHARS:
            pass
        elif len(reservoir) < thresholds.language_sample:
            reservoir.append(text)
        else:
            j = rng.randint(0, n)
            if j < thresholds.language_sample:
                reservoir[j] = text
    if rows == 0:
        raise UserError(f"quality: {path} has no rows")
    valid_rows = rows - formats["invalid"]
    duplicates = sum(c - 1 for c in text_hashes.values() if c > 1)
    languages = detect_languages(reservoir)
    sampled = sum(languages.values()) or 1
    inferred_stage = stage or (3 if pairs else 2 if with_reasoning else 1)
    metrics = {
        "schema_valid_rate": valid_rows / rows,
        "code_validity": codes_valid / codes_total if codes_total else 0.0,
        "duplicate_rate": duplicates / valid_rows if valid_rows else 0.0,
        "phi_residue_rate": phi_rows / valid_rows if valid_rows else 0.0,
        "phi_medical_placeholder_rate": medical_rows / valid_rows if valid_rows else 0.0,
        # None: every text was too short for langdetect, so language was not measured (not a failure).
        "english_rate": languages.get("en", 0) / sampled if reservoir else None,
        "longest_text_chars": max(lengths, default=0),
        "reasoning_rate": with_reasoning / valid_rows if valid_rows else 0.0,
        "preference_consistency": consistent / pairs if pairs else None,
    }
    checks = [
        ("schema_valid_rate", metrics["schema_valid_rate"] >= 1.0, ">= 1.0"),
        (
            "code_validity",
            metrics["code_validity"] >= thresholds.min_code_validity,
            f">= {thresholds.min_code_validity}",
        ),
        (
            "duplicate_rate",
            metrics["duplicate_rate"] <= thresholds.max_duplicate_rate,
            f"<= {thresholds.max_duplicate_rate}",
        ),
        (
            "phi_residue_rate",
            metrics["phi_residue_rate"] <= thresholds.max_phi_residue_rate,
            f"<= {thresholds.max_phi_residue_rate}",
        ),
        (
            "longest_text_chars",
            metrics["longest_text_chars"] <= thresholds.max_text_chars,
            f"<= {thresholds.max_text_chars}",
        ),
    ]
    if metrics["english_rate"] is not None:
        checks.append(
            (
                "english_rate",
                metrics["english_rate"] >= thresholds.min_english_rate,
                f">= {thresholds.min_english_rate}",
            )
        )
    if inferred_stage >= 2:
        checks.append(
            (
                "reasoning_rate",
                metrics["reasoning_rate"] >= thresholds.min_reasoning_rate,
                f">= {thresholds.min_reasoning_rate}",
            )
        )
    if inferred_stage == 3:
        value = metrics["preference_consistency"] or 0.0
        checks.append(
            (
                "preference_consistency",
                value >= thresholds.min_preference_consistency,
                f">= {thresholds.min_preference_consistency}",
            )
        )
    failed = [
        {"check": name, "value": metrics[name], "threshold": rule} for name, ok, rule in checks if not ok
    ]
    return {
        "path": str(path),
        "stage": inferred_stage,
        "rows": rows,
        "formats": dict(formats),
        "metrics": metrics,
        "text_length_chars": _distribution(lengths),
        "languages": dict(languages.most_common()),
        "language_sample": sum(languages.values()),
        "codes_checked": codes_total,
        "preference_pairs": pairs,
        "preference_problems": dict(pair_problems),
        "duplicates": duplicates,
        "phi_residue": {"rows": phi_rows, "kinds": dict(phi_kinds), "examples": phi_examples},
        "phi_medical_placeholders": {
            "rows": medical_rows,
            "placeholders": medical_count,
            "examples": medical_examples,
        },
        "schema_errors": schema_errors,
        "checks": [{"check": name, "passed": ok, "threshold": rule} for name, ok, rule in checks],
        "failed": failed,
        "passed": not failed,
    }


def quality_gate(
    config: StageConfig, directory: str | Path | None = None, reported_as: str | Path | None = None
) -> dict[str, Any]:
    """The check `thce collect` (and so `thce pipeline`) runs on a freshly collected stage: the stage's
    thresholds over its `train.parquet`; the report is written beside it (`quality_report.json`).
    `reported_as`: the directory the report should name (collect checks a staging copy of it)."""
    directory = Path(directory) if directory is not None else config.layout.data_dir
    report = check_dataset(directory / "train.parquet", config.stage, config.data.quality, config.seed)
    if reported_as is not None:
        report["path"] = str(Path(reported_as) / "train.parquet")
    write_json(directory / QUALITY_REPORT, report)
    return report


def format_summary(report: dict[str, Any]) -> str:
    """A readable summary of a quality report."""
    m = report["metrics"]
    length = report["text_length_chars"]
    lines = [
        f"{report['path']}: {report['rows']} rows (stage {report['stage']}; {report['formats']})",
        f"  code validity        {m['code_validity']:.4f} ({report['codes_checked']} codes)",
        f"  duplicate rate       {m['duplicate_rate']:.4f}",
        f"  PHI residue rate     {m['phi_residue_rate']:.4f} {report['phi_residue']['kinds'] or ''}",
        f"  medical placeholders {report['phi_medical_placeholders']['placeholders']} in "
        f"{report['phi_medical_placeholders']['rows']} rows (placeholders inside clinical phrases)",
        f"  English (sample {report['language_sample']})  {m['english_rate']:.3f} {dict(list(report['languages'].items())[:4])}"
        if m["english_rate"] is not None
        else f"  English              not measured (every text is under {MIN_LANGUAGE_CHARS} characters)",
        f"  reasoning present    {m['reasoning_rate']:.4f}",
        f"  text length (chars)  min {length.get('min')} p50 {length.get('p50')} p95 {length.get('p95')} max {length.get('max')}",
    ]
    if m["preference_consistency"] is not None:
        lines.append(
            f"  preference pairs     {m['preference_consistency']:.4f} consistent {report['preference_problems'] or ''}"
        )
    for example in report["phi_residue"]["examples"]:
        lines.append(f"  PHI residue: {example}")
    for example in report["phi_medical_placeholders"]["examples"]:
        lines.append(f"  medical placeholder: {example}")
    for error in report["schema_errors"][:5]:
        lines.append(f"  schema: {error}")
    verdict = (
        "PASSED"
        if report["passed"]
        else "FAILED: "
        + "; ".join(f"{f['check']} = {f['value']} (needs {f['threshold']})" for f in report["failed"])
    )
    lines.append(f"  {verdict}")
    return "\n".join(lines)
