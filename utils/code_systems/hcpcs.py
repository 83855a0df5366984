"""HCPCS Level II (CMS). No package ships the CMS release, so without a code file a result rests on the
format (basis `format`); with the CMS release file configured (THCE_HCPCS_FILE, `--hcpcs-file`; layouts
in `code_sets.py`), on membership (basis `code_set`).

Format (after stripping surrounding whitespace and upper-casing): one letter, then 4 digits. Only the
letters CMS assigns are accepted: A B C D E G H J K L M P Q R S T U V (F, I, N, O and W-Z are unused).
"""

from __future__ import annotations

import re

from thce.utils.code_systems.base import clean_input
from thce.utils.code_systems.code_sets import CodeFileSystem

SECTIONS = {
    "A": "transportation, medical and surgical supplies, miscellaneous and experimental",
    "B": "enteral and parenteral therapy",
    "C": "outpatient prospective payment system (temporary)",
    "D": "dental procedures",
    "E": "durable medical equipment",
    "G": "procedures and professional services (temporary)",
    "H": "alcohol and drug abuse treatment and behavioral health services",
    "J": "drugs administered other than by oral method",
    "K": "durable medical equipment for DME MACs (temporary)",
    "L": "orthotic and prosthetic procedures and devices",
    "M": "other medical services and quality measures",
    "P": "pathology and laboratory services",
    "Q": "miscellaneous services (temporary)",
    "R": "diagnostic radiology services",
    "S": "temporary national codes (non-Medicare)",
    "T": "national codes for state Medicaid agencies",
    "U": "laboratory tests (temporary)",
    "V": "vision, hearing and speech-language pathology services",
}
HCPCS_RE = re.compile(f"[{''.join(SECTIONS)}][0-9]{{4}}")


class HCPCS(CodeFileSystem):
    """HCPCS Level II supply, drug and service codes: format rules, plus membership in a CMS release file."""

    name = "HCPCS"
    title = "HCPCS Level II"
    env_var = "THCE_HCPCS_FILE"

    def normalise_with_reason(self, code: object) -> tuple[str | None, str]:
        """(canonical, "") for a well-formed HCPCS Level II code, else (None, why not)."""
        text, problem = clean_input(
            code, 12, "too long for a HCPCS Level II code ({n} characters; they have 5)"
        )
        if text is None:
            return None, problem
        if HCPCS_RE.fullmatch(text):
            return text, ""
        if re.fullmatch(r"[A-Z][0-9]{4}", text):
            return None, f"HCPCS Level II does not use the letter {text[0]} (sections: {', '.join(SECTIONS)})"
        if re.fullmatch(r"[A-Z][0-9]{4}[\s-]+[0-9A-Z]{2}", text):
            return (
                None,
                f"the modifier {text[5:].strip(' -')!r} is not part of the code (the code is {text[:5]})",
            )
        if re.fullmatch(r"[0-9]{4}[0-9FTUMA]", text):
            return None, f"{text} looks like a CPT (HCPCS Level I) code: use system CPT"
        return None, "a HCPCS Level II code is one letter (A-V) followed by 4 digits (e.g. J1100)"

    def kind(self, canonical: str) -> str:
        """The CMS section its letter belongs to."""
        return f"section {canonical[0]}: {SECTIONS[canonical[0]]}"
