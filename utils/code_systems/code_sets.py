"""Loading a licensed CPT file or a CMS HCPCS release file into `{code: description}`.

Accepted layouts (detected from the content, not the file name):
- CSV or TSV (comma or tab, UTF-8 or Windows-1252), with or without a header. With a header, the code
  column is the first of code / hcpc / hcpcs / hcpcs code / cpt / cpt code, and the description the first
  of long description / description / descriptor / long descriptor / short description. Without one,
  column 1 is the code and column 2 (optional) the description. This covers the AMA's CPT data files
  saved as CSV and CMS's HCPCS release spreadsheet (HCPC2026_JAN_ANWEB.xlsx) saved as CSV.
- CMS's fixed-width HCPCS release text (HCPC2026_JAN_ANWEB.txt): code in columns 1-5, record id in
  column 11 (3 = code, 4 = continuation, 7/8 = modifier), long description in columns 12-91.
Excel files must be saved as CSV first (openpyxl is not a THCE dependency).
"""

from __future__ import annotations

import csv
import io
import os
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from thce.utils.code_systems.base import Basis, CodeCheck, CodeDetails, CodeSystem, common_prefix, echo
from thce.utils.errors import UserError

CODE_COLUMNS = ("code", "hcpc", "hcpcs", "hcpcs code", "hcpc code", "cpt", "cpt code", "cpt_code")
DESCRIPTION_COLUMNS = (
    "long description",
    "description",
    "descriptor",
    "long descriptor",
    "short description",
)
RECORD_ID_COLUMNS = ("recid", "record id", "rec id")
# CMS record ids: 3 first line of a code, 4 its continuation, 7 and 8 the same for modifiers.
CONTINUATION_IDS = {"4", "8"}
MODIFIER_IDS = {"7", "8"}


@dataclass(frozen=True)
class CodeSet:
    """A loaded code file: canonical code -> description, and how many rows were not codes."""

    path: Path
    codes: dict[str, str]
    skipped_rows: int


def load_code_set(path: str | Path, normalise: Callable[[object], str | None], title: str) -> CodeSet:
    """Read a CPT/HCPCS code file (layouts in the module docstring); `normalise` decides what is a code.

    Raises `UserError` for a missing file, an Excel file, or a file in which no row holds a code.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"{title} code file {path} does not exist (check --cpt-file/--hcpcs-file or THCE_*_FILE)"
        )
    if path.suffix.lower() in {".xlsx", ".xls"}:
        raise UserError(
            f"{title} code file {path} is an Excel file: save it as CSV and point THCE at the CSV"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    if _is_cms_fixed_width(first):
        codes, skipped = _read_fixed_width(lines, normalise)
    else:
        codes, skipped = _read_delimited(text, first, normalise)
    if not codes:
        raise UserError(
            f"{title} code file {path} holds no {title} codes: expected CSV/TSV `code,description` "
            "or the CMS fixed-width release text"
        )
    logger.info(f"Loaded {len(codes):,} {title} codes from {path} ({skipped:,} rows were not codes)")
    return CodeSet(path, codes, skipped)


def _is_cms_fixed_width(line: str) -> bool:
    return len(line) >= 12 and line[5:10].isdigit() and line[10] in "3478" and "," not in line[:12]


def _read_fixed_width(
    lines: list[str], normalise: Callable[[object], str | None]
) -> tuple[dict[str, str], int]:
    codes: dict[str, str] = {}
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        record_id = line[10:11]
        if record_id in MODIFIER_IDS:
            continue
        code = normalise(line[0:5])
        description = line[11:91].strip()
        if code is None:
            skipped += 1
        elif record_id in CONTINUATION_IDS and code in codes:
            codes[code] = f"{codes[code]} {description}".strip()
        else:
            codes.setdefault(code, description)
    return codes, skipped


def _read_delimited(
    text: str, first_line: str, normalise: Callable[[object], str | None]
) -> tuple[dict[str, str], int]:
    delimiter = "\t" if "\t" in first_line else ","
    rows = csv.reader(io.StringIO(text), delimiter=delimiter)
    code_col, description_col, record_id_col = 0, 1, None
    codes: dict[str, str] = {}
    skipped = 0
    previous: str | None = None
    for row_number, row in enumerate(rows):
        if not row or not any(cell.strip() for cell in row):
            continue
        if row_number == 0 and normalise(row[0]) is None:
            header = [cell.strip().lower() for cell in row]
            code_col = _column(header, CODE_COLUMNS, default=0)
            description_col = _column(header, DESCRIPTION_COLUMNS, default=1)
            record_id_col = _column(header, RECORD_ID_COLUMNS, default=None)
            continue
        record_id = (
            row[record_id_col].strip() if record_id_col is not None and record_id_col < len(row) else ""
        )
        if record_id in MODIFIER_IDS:
            continue
        description = row[description_col].strip() if description_col < len(row) else ""
        if record_id in CONTINUATION_IDS and previous is not None:
            codes[previous] = f"{codes[previous]} {description}".strip()
            continue
        code = normalise(row[code_col]) if code_col < len(row) else None
        if code is None:
            skipped += 1
            continue
        codes.setdefault(code, description)
        previous = code
    return codes, skipped


def _column(header: list[str], names: tuple[str, ...], default: int | None) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return default


class CodeFileSystem(CodeSystem):
    """A system whose truth is a format rule, plus membership in a code file when one is configured
    (CPT, HCPCS Level II). Subclasses set `name`, `title`, `env_var` and implement `normalise_with_reason`
    and `kind`."""

    env_var: str

    def __init__(self, code_file: str | Path | None = None) -> None:
        path = code_file or os.environ.get(self.env_var) or None
        self.code_set = load_code_set(path, self.normalise, self.title) if path else None
        self._members = self.code_set.codes if self.code_set is not None else None
        self.basis: Basis = "code_set" if self.code_set is not None else "format"

    @abstractmethod
    def kind(self, canonical: str) -> str:
        """What a well-formed code is ("Category I", "durable medical equipment" ...)."""

    def is_valid(self, code: object, require_billable: bool = False) -> bool:
        """With a code file: membership. Without: the format (billable cannot be told, so it is not)."""
        members = self._members
        if members is not None:
            try:
                if code in members:
                    return True
            except TypeError:
                return False
            canonical = self.normalise(code)
            return canonical is not None and canonical in members
        return self.normalise(code) is not None

    def description(self, code: str) -> str | None:
        """The configured file's description, if any."""
        return self._members.get(code) or None if self._members is not None else None

    def check(self, code: object) -> CodeCheck:
        """Format, then (with a code file) membership; the result's `basis` says which one decided."""
        shown = None if code is None else echo(code)
        canonical, reason = self.normalise_with_reason(code)
        if canonical is None:
            subject = f"{shown!r} is not" if shown else "not"
            return CodeCheck(
                shown,
                self.name,
                None,
                False,
                False,
                self.basis,
                f"{subject} a {self.title} code: {reason}",
                suggestions=self.repair_suggestions(code),
            )
        kind = self.kind(canonical)
        if self._members is None:
            message = (
                f"{canonical} is a well-formed {self.title} code ({kind}); format check only: no {self.title} "
                f"code file is configured (set {self.env_var} to check membership)"
            )
            return CodeCheck(shown, self.name, canonical, True, None, "format", message)
        source = self.code_set.path.name  # type: ignore[union-attr]
        if canonical in self._members:
            description = self._members[canonical] or None
            message = f"{canonical} is a valid {self.title} code ({kind}; in {source})"
            if description:
                message += f": {description}"
            return CodeCheck(shown, self.name, canonical, True, True, "code_set", message, description)
        suggestions = self.suggest(canonical)
        message = f"{canonical} is a well-formed {self.title} code ({kind}) but is not in {source}"
        if suggestions:
            message += f"; closest codes in the file: {', '.join(suggestions)}"
        return CodeCheck(
            shown, self.name, canonical, False, False, "code_set", message, suggestions=suggestions
        )

    def suggest(self, canonical: str, limit: int = 5) -> tuple[str, ...]:
        """Codes in the file sharing the longest prefix with `canonical`."""
        if not self._members:
            return ()
        ranked = sorted(self._members, key=lambda code: (-common_prefix(code, canonical), code))
        return tuple(ranked[:limit])

    def describe(self, code: object) -> CodeDetails | None:
        """What is known of a code: its kind, and its description when a code file provides one."""
        canonical = self.normalise(code)
        if canonical is None or not self.is_valid(canonical):
            return None
        description = self.description(canonical)
        if description is None:
            description = (
                f"(no description: {self.title} descriptions come only from a configured code file, "
                f"{self.env_var})"
            )
        billable = True if self._members is not None else None
        return CodeDetails(self.name, canonical, self.kind(canonical), description, billable, self.basis)

    def billable_codes(self) -> list[str]:
        """Sorted codes of the configured file."""
        if self._members is None:
            raise UserError(
                f"{self.title} has no code list to enumerate: configure a code file ({self.env_var} "
                f"or --{self.name.lower()}-file)"
            )
        return sorted(self._members)

    def search_corpus(self) -> tuple[list[str], list[str]]:
        """Codes of the configured file that have a description."""
        if self._members is None:
            raise UserError(
                f"{self.title} search needs a code file with descriptions ({self.env_var} or "
                f"--{self.name.lower()}-file)"
            )
        pairs = [(code, text) for code, text in sorted(self._members.items()) if text]
        if not pairs:
            raise UserError(f"{self.title} code file {self.code_set.path} has no descriptions to search")  # type: ignore[union-attr]
        codes, texts = zip(*pairs, strict=True)
        return list(codes), list(texts)
