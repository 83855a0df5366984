"""Parse a model's assistant answer into codes, reasoning and confidence.

The answer format (docs/data_contracts.md) is `<think>reasoning</think>` (stages 2-3) followed by one
`SYSTEM: CODE` line per code. Models do not always comply, so the parser is tolerant:

- whitespace, case and separators: `icd10 : e11.9`, `ICD-10-CM - E11.9`, `ICD10=E11.9`;
- a missing dot: `E119` -> `E11.9` (ICD-10-CM codes have their dot after the third character);
- several codes on one line: `ICD10: E11.9, I10; E78.5`;
- a `<think>` without `</think>`: the reasoning runs until the first code line;
- a bare code on its own line: dotted codes are read as ICD-10-CM, `99213`/`0001F`/`0042T` as CPT.

It never raises on model output: garbage gives no codes, and the raw text is always returned.
Codes are checked against the validator when `validate=True` (the default), which adds `valid` and
`description`; format-invalid strings are kept with `valid: False`, so the evaluator can count them.
"""

from __future__ import annotations

import re
from typing import Any

from thce.utils.code_systems.registry import normalise_code_format, normalise_system
from thce.utils.medical_chat_templates import THINK_END, THINK_START
from thce.utils.schemas import Prediction

# "ICD-10-CM: ...", "cpt = ...", "HCPCS Level II - ..." at the start of a line (after optional bullets).
_CODE_LINE = re.compile(
    r"^[\s\-*•>]*(?P<system>ICD[\s\-]?10(?:[\s\-]?CM)?|ICD|CPT(?:[\s\-]?4)?|HCPCS(?:[\s\-]?(?:LEVEL[\s\-]?)?II)?)"
    r"\s*(?:CODES?)?\s*[:=\-–]\s*(?P<codes>.*)$",
    re.IGNORECASE,
)
_BARE_CODE_LINE = re.compile(
    r"^[\s\-*•>]*(?P<code>[A-Z]\d[0-9A-Z]\.[0-9A-Z]{1,4}|\d{5}|\d{4}[FT])\s*$", re.IGNORECASE
)
_TOKEN_SPLIT = re.compile(r"[,;/\s]+")
# What counts as a code mention after "SYSTEM:": a short alphanumeric token with a digit in it. Words
# ("Type 2 diabetes") are skipped; code-shaped but wrong strings are kept for the validator to reject.
_CODE_LIKE = re.compile(r"^(?=.*\d)[A-Z0-9.]{3,10}$")
_MAX_CODES = 20  # a runaway generation listing hundreds of codes is garbage, not an answer


def parse_answer(text: Any, validate: bool = True) -> Prediction:
    """Parse an assistant answer.

    Returns a `Prediction` (`thce.utils.schemas`): `{"code", "confidence", "codes": [{"system", "code",
    "description", "valid", "confidence"}], "reasoning", "raw"}`; `code`/`confidence` are the first
    code's, or None when there is none. System names and code formats are normalised by
    `thce.utils.code_systems` (the one owner of aliases).
    """
    raw = text if isinstance(text, str) else ("" if text is None else str(text))
    reasoning, answer = _split_reasoning(raw)
    codes: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for system, code in _code_mentions(answer):
        if (system, code) in seen:
            continue
        seen.add((system, code))
        codes.append({"system": system, "code": code, "description": None, "valid": None, "confidence": None})
        if len(codes) == _MAX_CODES:
            break
    if validate:
        _attach_validation(codes)
    first = codes[0] if codes else None
    return {  # type: ignore[return-value]
        "code": first["code"] if first else None,
        "confidence": first["confidence"] if first else None,
        "codes": codes,
        "reasoning": reasoning,
        "raw": raw,
    }


def _split_reasoning(raw: str) -> tuple[str | None, str]:
    start = raw.find(THINK_START)
    if start < 0:
        end = raw.find(THINK_END)  # an end tag alone: everything before it was reasoning
        if end < 0:
            return None, raw
        return raw[:end].strip() or None, raw[end + len(THINK_END) :]
    body_start = start + len(THINK_START)
    end = raw.find(THINK_END, body_start)
    if end >= 0:
        return raw[body_start:end].strip() or None, raw[:start] + raw[end + len(THINK_END) :]
    # No end tag: the reasoning runs until the first line that looks like a code line.
    lines = raw[body_start:].split("\n")
    for i, line in enumerate(lines):
        if _CODE_LINE.match(line):
            return "\n".join(lines[:i]).strip() or None, "\n".join(lines[i:])
    return raw[body_start:].strip() or None, ""


def _code_mentions(answer: str) -> list[tuple[str, str]]:
    mentions = []
    for line in answer.splitlines():
        match = _CODE_LINE.match(line)
        if match:
            system = normalise_system(match["system"])
            if system is None:
                continue
            for token in _TOKEN_SPLIT.split(match["codes"]):
                code = normalise_code_format(token, system)
                if _CODE_LIKE.match(code):
                    mentions.append((system, code))
            continue
        bare = _BARE_CODE_LINE.match(line)
        if bare:
            code = bare["code"].upper()
            system = "ICD10" if "." in code else "CPT"
            mentions.append((system, normalise_code_format(code, system)))
    return mentions


def _attach_validation(codes: list[dict[str, Any]]) -> None:
    from thce.utils.code_validator import check_code

    for entry in codes:
        check = check_code(entry["code"], entry["system"])
        entry["code"] = check.code or entry["code"]
        entry["valid"] = bool(check.valid)
        entry["description"] = check.description
