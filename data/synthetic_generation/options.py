"""A synthetic source's options: the generator names, the scopes and rejection kinds, and the parsed,
validated `GeneratorOptions` (an unknown option or a bad value is a UserError naming it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from thce.utils.errors import UserError

TEMPLATE_GENERATORS = ("icd10cm", "icd10cm_reasoning", "icd10cm_preference")
LLM_GENERATOR = "llm"
REJECTION_KINDS = ("sibling", "parent", "invalid", "wrong_chapter", "missing_secondary")
SCOPES = ("billable", "chapters", "codes", "top_n")
TEMPLATE_OPTIONS = {
    "scope",
    "chapters",
    "codes",
    "top_n",
    "multi_code_rate",
    "max_codes",
    "phi_free",
    "rejection_kinds",
    "negation_rate",
}


@dataclass
class GeneratorOptions:
    """A template generator's options, validated."""

    scope: str = "billable"
    chapters: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    top_n: int | None = None
    multi_code_rate: float = 0.3
    max_codes: int = 3
    phi_free: bool = True
    rejection_kinds: list[str] = field(default_factory=lambda: list(REJECTION_KINDS))
    # share of rows whose first code says "without X", written "no X" (narratives.py)
    negation_rate: float = 0.0


def parse_options(options: Mapping[str, Any], where: str = "synthetic source") -> GeneratorOptions:
    """Validate a template generator's `options`; unknown keys and bad values are UserErrors naming them."""
    unknown = sorted(set(options) - TEMPLATE_OPTIONS)
    if unknown:
        raise UserError(
            f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(TEMPLATE_OPTIONS))}"
        )
    parsed = GeneratorOptions()
    if "chapters" in options:
        parsed.chapters = [str(c) for c in _as_list(options["chapters"], "chapters", where)]
        parsed.scope = "chapters"
    if "codes" in options:
        parsed.codes = [str(c) for c in _as_list(options["codes"], "codes", where)]
        parsed.scope = "codes"
    if "top_n" in options:
        top_n = options["top_n"]
        if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
            raise UserError(f"{where}: option 'top_n' must be a positive integer, got {top_n!r}")
        parsed.top_n = top_n
        parsed.scope = "top_n"
    if "scope" in options:
        if options["scope"] not in SCOPES:
            raise UserError(
                f"{where}: option 'scope' must be one of {', '.join(SCOPES)}, got {options['scope']!r}"
            )
        parsed.scope = options["scope"]
    if parsed.scope == "chapters" and not parsed.chapters:
        raise UserError(f"{where}: scope 'chapters' needs option 'chapters' (e.g. [4, 9])")
    if parsed.scope == "codes" and not parsed.codes:
        raise UserError(f"{where}: scope 'codes' needs option 'codes' (e.g. [E11.9, I10])")
    if parsed.scope == "top_n" and parsed.top_n is None:
        raise UserError(f"{where}: scope 'top_n' needs option 'top_n' (e.g. 100)")
    parsed.multi_code_rate = _rate(options, "multi_code_rate", parsed.multi_code_rate, where)
    parsed.negation_rate = _rate(options, "negation_rate", parsed.negation_rate, where)
    max_codes = options.get("max_codes", parsed.max_codes)
    if not isinstance(max_codes, int) or isinstance(max_codes, bool) or not 1 <= max_codes <= 8:
        raise UserError(f"{where}: option 'max_codes' must be an integer from 1 to 8, got {max_codes!r}")
    parsed.max_codes = max_codes
    phi_free = options.get("phi_free", True)
    if not isinstance(phi_free, bool):
        raise UserError(f"{where}: option 'phi_free' must be true or false, got {phi_free!r}")
    parsed.phi_free = phi_free
    if "rejection_kinds" in options:
        kinds = [str(k) for k in _as_list(options["rejection_kinds"], "rejection_kinds", where)]
        bad = [k for k in kinds if k not in REJECTION_KINDS]
        if bad or not kinds:
            raise UserError(
                f"{where}: option 'rejection_kinds' has unknown kind(s) {bad}; known: {', '.join(REJECTION_KINDS)}"
            )
        parsed.rejection_kinds = kinds
    return parsed


def _rate(options: Mapping[str, Any], name: str, default: float, where: str) -> float:
    rate = options.get(name, default)
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise UserError(f"{where}: option '{name}' must be a number in [0, 1], got {rate!r}")
    return float(rate)


def _as_list(value: Any, name: str, where: str) -> list[Any]:
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: option '{name}' must be a non-empty list, got {value!r}")
    return value
