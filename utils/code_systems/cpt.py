"""CPT (HCPCS Level I). The AMA owns the descriptors, so THCE ships none: without a code file, a result
rests on the format alone (basis `format`); with a licensed file (THCE_CPT_FILE, `--cpt-file`), on
membership (basis `code_set`).

Format (after stripping surrounding whitespace and upper-casing; nothing else is repaired):
- Category I: 5 digits, 00100-99999 (anesthesia starts at 00100);
- Category II (performance measurement): 4 digits + F;   Category III (emerging technology): 4 digits + T;
- also Category I: 4 digits + U (Proprietary Laboratory Analyses), + M (multianalyte assays with
  algorithmic analyses), + A (vaccine product administration).
A modifier (`99213-25`) is not part of the code: it is rejected, with the bare code suggested.
"""

from __future__ import annotations

import re

from thce.utils.code_systems.base import clean_input
from thce.utils.code_systems.code_sets import CodeFileSystem

CPT_RE = re.compile(r"[0-9]{4}[0-9FTUMA]")
KINDS = {
    "F": "Category II",
    "T": "Category III",
    "U": "Category I (Proprietary Laboratory Analyses)",
    "M": "Category I (multianalyte assay with algorithmic analyses)",
    "A": "Category I (vaccine administration)",
}
EXPECTED = "CPT codes are 5 digits (Category I), or 4 digits followed by F (Category II) or T (Category III)"


class CPT(CodeFileSystem):
    """CPT procedure codes: format rules, plus membership in a configured licensed code file."""

    name = "CPT"
    title = "CPT"
    env_var = "THCE_CPT_FILE"

    def normalise_with_reason(self, code: object) -> tuple[str | None, str]:
        """(canonical, "") for a well-formed CPT code, else (None, why not)."""
        text, problem = clean_input(code, 12, "too long for a CPT code ({n} characters; CPT codes have 5)")
        if text is None:
            return None, problem
        if CPT_RE.fullmatch(text):
            if text.isdigit() and int(text) < 100:
                return None, "no CPT code lies below 00100"
            return text, ""
        if re.fullmatch(r"[0-9]{4}[0-9FTUMA][\s-]+[0-9A-Z]{2}", text):
            return (
                None,
                f"the modifier {text[5:].strip(' -')!r} is not part of the code (the code is {text[:5]})",
            )
        if re.fullmatch(r"[A-Z][0-9]{4}", text):
            return None, f"{EXPECTED}; {text} looks like a HCPCS Level II code (system HCPCS)"
        if re.fullmatch(r"[A-Z][0-9][0-9A-Z]\.?[0-9A-Z]{0,4}", text):
            return None, f"{EXPECTED}; {text} looks like an ICD-10-CM code (system ICD10)"
        return None, EXPECTED

    def kind(self, canonical: str) -> str:
        """Category I, II or III (and the Category I sub-kinds with a letter)."""
        return KINDS.get(canonical[-1], "Category I")
