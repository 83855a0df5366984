"""Medical code validation: the truth that the data pipeline, the evaluator and constrained decoding use.

    validate_code("E11.9", "ICD10")            -> True        (the seed's contract; fast path)
    check_code("E11", "ICD10")                 -> CodeCheck   (valid, not billable, its billable codes)
    billable_codes("ICD10")                    -> sorted dotted codes (for a decoding trie)
    search_codes("type 2 diabetes", top=5)     -> BM25 hits over descriptions and inclusion terms

Systems are named "ICD10", "CPT", "HCPCS" (aliases such as "ICD-10-CM", "icd10cm", "HCPCS2" are
accepted; an unknown name is a `UserError`). Nothing is loaded at import: each code set is loaded on first
use and kept for the process. The per-system rules live in `thce.utils.code_systems`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from thce.utils.code_systems import (
    CodeCheck,
    CodeDetails,
    CodeSystem,
    HierarchyNode,
    SearchHit,
    available_systems,
    clear_code_system_cache,
    get_code_system,
    register_code_system,
    resolve_system_name,
)
from thce.utils.code_systems.base import echo
from thce.utils.errors import UserError

__all__ = [
    "CodeCheck",
    "CodeDetails",
    "CodeSystem",
    "HierarchyNode",
    "RecordsReport",
    "SearchHit",
    "available_systems",
    "billable_codes",
    "check_code",
    "check_codes",
    "clear_code_system_cache",
    "describe_code",
    "get_code_system",
    "icd10_chapter",
    "normalise_code",
    "register_code_system",
    "resolve_system_name",
    "search_codes",
    "search_codes_many",
    "validate_code",
    "validate_codes",
    "validate_records",
]


def validate_code(code: object, system: str = "ICD10", require_billable: bool = False) -> bool:
    """True if `code` is a valid code of `system` (billable too, if `require_billable`).

    For CPT/HCPCS without a configured code file this is the format check (and `require_billable` cannot
    be told apart). Never raises for a bad code; raises `UserError` for an unknown system.
    """
    return get_code_system(system).is_valid(code, require_billable)


def validate_codes(
    codes: Iterable[object], system: str = "ICD10", require_billable: bool = False
) -> list[bool]:
    """`validate_code` over many codes of one system, with the system looked up once."""
    return get_code_system(system).validate_many(codes, require_billable)


def check_code(code: object, system: str = "ICD10", code_file: str | Path | None = None) -> CodeCheck:
    """The explained result for one code: normalised form, valid, billable, basis, description, ancestors,
    billable children of a header, suggestions for an invalid code, and a one-line message."""
    return get_code_system(system, code_file=code_file).check(code)


def check_codes(codes: Iterable[object], system: str = "ICD10") -> list[CodeCheck]:
    """`check_code` over many codes of one system."""
    check = get_code_system(system).check
    return [check(code) for code in codes]


def normalise_code(code: object, system: str = "ICD10") -> str | None:
    """Canonical spelling (`e119` -> `E11.9`) of a well-formed code, whether or not it exists; None if it
    cannot be a code of `system`."""
    return get_code_system(system).normalise(code)


def describe_code(
    code: object, system: str = "ICD10", code_file: str | Path | None = None
) -> CodeDetails | None:
    """Description, hierarchy and notes of a code (ICD-10-CM chapters and blocks too), or None."""
    return get_code_system(system, code_file=code_file).describe(code)


@cache
def icd10_chapter(code: str) -> str | None:
    """The ICD-10-CM chapter number ("4") of a code, or of its category when the code itself is unknown
    ("E11.99"); None when neither is."""
    dotless = code.replace(".", "")
    for candidate in (code, dotless[:3]):
        details = describe_code(candidate, "ICD10")
        if details is not None:
            chapters = [node.code for node in details.ancestors if node.level == "chapter"]
            if chapters:
                return chapters[0]
    return None


def billable_codes(system: str = "ICD10") -> list[str]:
    """Every billable code of `system`, canonical and sorted (74,719 for ICD-10-CM FY2026).

    CPT/HCPCS need a configured code file; without one this raises `UserError`.
    """
    return get_code_system(system).billable_codes()


def search_codes(query: str, system: str = "ICD10", top: int = 10) -> list[SearchHit]:
    """BM25 search (bm25s) over billable codes' descriptions and inclusion terms; best first."""
    return get_code_system(system).search(query, top=top)


def search_codes_many(queries: Sequence[str], system: str = "ICD10", top: int = 10) -> list[list[SearchHit]]:
    """`search_codes` for many queries in one batched BM25 call."""
    return get_code_system(system).search_many(queries, top=top)


# -- validating a file of canonical records -------------------------------------------------------------

CODE_FIELDS = ("codes", "chosen.codes", "rejected.codes")


@dataclass
class RecordsReport:
    """What `validate_records` found. `failed` ignores invalid codes under `rejected` (a preference pair's
    rejected answer may be invalid on purpose, rejection_kind "invalid")."""

    file: str
    records: int = 0
    malformed: list[dict[str, Any]] = field(default_factory=list)
    systems: dict[str, Counter] = field(default_factory=dict)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    not_billable: list[dict[str, Any]] = field(default_factory=list)
    not_canonical: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True if a line is malformed or a code outside `rejected` is invalid."""
        return bool(self.malformed) or any(entry["field"] != "rejected.codes" for entry in self.invalid)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able report."""
        return {
            "file": self.file,
            "records": self.records,
            "failed": self.failed,
            "systems": {name: dict(counts) for name, counts in sorted(self.systems.items())},
            "malformed": self.malformed,
            "invalid": self.invalid,
            "not_billable": self.not_billable,
            "not_canonical": self.not_canonical,
        }


Verdict = tuple[str, str | None, str, str]  # system, canonical code, status, reason


def validate_records(
    path: str | Path,
    code_files: dict[str, str | Path] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> RecordsReport:
    """Validate every code of a canonical or preference JSONL file (docs/data_contracts.md).

    A line that is not a JSON object, or a record without a `codes` list (nor `chosen`/`rejected` codes),
    is reported under `malformed` with its line number, and validation goes on with the next line.
    `code_files` maps "CPT"/"HCPCS" to code files; `on_progress(n_bytes)` is called as the file is read.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"records file {path} does not exist")
    report = RecordsReport(str(path))
    verdicts: dict[tuple[str, str], Verdict] = {}
    pending = 0
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, 1):
            pending += len(raw)
            if on_progress is not None and pending >= 1 << 20:
                on_progress(pending)
                pending = 0
            if not raw.strip():
                continue
            _validate_line(raw, line_number, report, verdicts, code_files or {})
    if on_progress is not None and pending:
        on_progress(pending)
    return report


def _validate_line(
    raw: bytes,
    line_number: int,
    report: RecordsReport,
    verdicts: dict[tuple[str, str], Verdict],
    code_files: dict[str, str | Path],
) -> None:
    def malformed(error: str) -> None:
        report.malformed.append({"line": line_number, "error": error})

    try:
        record = json.loads(raw)
    except ValueError as err:
        malformed(f"not valid JSON ({err})")
        return
    if not isinstance(record, dict):
        malformed(f"expected a JSON object, got {type(record).__name__}")
        return
    record_id = record.get("id", f"line {line_number}")
    groups = [("codes", record["codes"])] if "codes" in record else []
    for side in ("chosen", "rejected"):
        if isinstance(record.get(side), dict) and "codes" in record[side]:
            groups.append((f"{side}.codes", record[side]["codes"]))
    if not groups:
        malformed(f"record {record_id!r} has no 'codes' (nor 'chosen.codes'/'rejected.codes')")
        return
    report.records += 1
    for field_name, refs in groups:
        if not isinstance(refs, list):
            malformed(f"record {record_id!r}: '{field_name}' must be a list of {{system, code}} objects")
            continue
        for ref in refs:
            if not isinstance(ref, dict) or "system" not in ref or "code" not in ref:
                malformed(
                    f"record {record_id!r}: '{field_name}' holds {echo(ref)}, not a {{system, code}} object"
                )
                continue
            system, code = ref["system"], ref["code"]
            key = (system, code) if isinstance(system, str) and isinstance(code, str) else None
            verdict = verdicts.get(key) if key is not None else None
            if verdict is None:
                verdict = _verdict(system, code, code_files)
                if key is not None:
                    verdicts[key] = verdict
            _tally(report, verdict, record_id, line_number, field_name, code)


def _verdict(system: object, code: object, code_files: dict[str, str | Path]) -> Verdict:
    try:
        canonical_system = resolve_system_name(system)
        code_system = get_code_system(canonical_system, code_file=code_files.get(canonical_system))
    except UserError as err:
        return echo(system), None, "invalid", str(err)
    canonical, reason = code_system.normalise_with_reason(code)
    if canonical is None:
        return canonical_system, None, "invalid", reason
    if not code_system.is_valid(canonical):
        return (
            canonical_system,
            canonical,
            "invalid",
            f"{canonical} is not in the {code_system.title} code set",
        )
    if code_system.basis == "format":
        return canonical_system, canonical, "valid", ""
    status = "billable" if code_system.is_valid(canonical, require_billable=True) else "not_billable"
    return canonical_system, canonical, status, ""


def _tally(
    report: RecordsReport, verdict: Verdict, record_id: Any, line: int, field_name: str, code: Any
) -> None:
    system, canonical, status, reason = verdict
    counts = report.systems.setdefault(system, Counter())
    counts["codes"] += 1
    counts["valid" if status != "invalid" else "invalid"] += 1
    where = {"record": record_id, "line": line, "field": field_name, "system": system}
    if status == "invalid":
        report.invalid.append(
            {**where, "code": code if isinstance(code, str) else echo(code), "reason": reason}
        )
        return
    if status in ("billable", "not_billable"):
        counts[status] += 1
    if status == "not_billable":
        report.not_billable.append({**where, "code": canonical})
    if canonical != code:
        counts["not_canonical"] += 1
        report.not_canonical.append({**where, "code": code, "canonical": canonical})
