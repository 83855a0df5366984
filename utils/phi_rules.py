"""PHI pattern rules: pure, fast regular expressions (no NLP model).

`find_phi(text)` finds SSN, phone, email, MRN, dates, addresses, facilities, titled names such as
"Dr. Alice Brown" and labelled ones such as "Patient: John Smith"; dates are reduced to their year
("03/14/2021" -> "2021"). `thce.utils.data_quality` reuses them as its PHI-residue scan, and
`thce.utils.phi_scrubber` wraps them as a Presidio recogniser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from thce.utils.phi_tables import (
    COMMON_SURNAME_EPONYMS,
    MEDICAL_EPONYMS,
    MEDICAL_HEAD_NOUNS,
    NOT_NAMES,
    STREET_SUFFIXES,
)

PHI_KINDS = ("NAME", "DATE", "MRN", "SSN", "PHONE", "EMAIL", "ADDRESS", "FACILITY", "LOCATION", "URL")
PLACEHOLDERS = {kind: f"[{kind}]" for kind in PHI_KINDS}

_HEAD_NOUN = re.compile(MEDICAL_HEAD_NOUNS)
_EPONYM_CONTEXT = re.compile(
    r"^(?:['’]s|s['’]|['’])?(?:[ \t-]+[A-Z][a-z]+(?:['’]s)?){0,2}[ \t-]+(?i:" + MEDICAL_HEAD_NOUNS + r")\b"
)

_CAP = r"[A-Z][A-Za-z'’.-]*"
_FACILITY_WORD = r"[A-Z][A-Za-z'’-]*"  # no dots: "NOS. Hospital course" is two sentences
_NAME_WORD = r"(?:[A-Z][A-Za-z'’]*[a-z](?:-[A-Z][A-Za-z'’]*[a-z])?|[A-Z]\.)"  # Smith, McDonald, O'Neil, D.
_NAME = _NAME_WORD + r"(?:[ \t]+(?:(?:de|del|la|van|von|der|da|di|le)[ \t]+)?" + _NAME_WORD + r"){0,3}"
_NAME_SUFFIX = r"(?:,?[ \t]+(?:Jr\.?|Sr\.?|II|III|IV|MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C|PhD|DDS|DVM))*"
_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_YEAR = r"(?P<year>(?:19|20)\d{2})"


@dataclass(frozen=True)
class PhiSpan:
    """One piece of PHI found in a text: where, what kind, and what replaces it."""

    start: int
    end: int
    kind: str
    text: str
    replacement: str


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    group: str | int = 0  # the part of the match that is PHI (labels such as "MRN:" stay)


def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


# Order matters only for ties: overlapping spans are resolved longest-first (see `resolve_overlaps`).
RULES: tuple[_Rule, ...] = (
    _Rule("EMAIL", _rx(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    _Rule("URL", _rx(r"\bhttps?://[^\s<>\"]+|\bwww\.[A-Za-z0-9-]+\.[A-Za-z]{2,}[^\s<>\"]*")),
    _Rule("SSN", _rx(r"\b\d{3}-\d{2}-\d{4}\b")),
    _Rule(
        "SSN",
        _rx(
            r"(?i:\b(?:SSN|social security(?: number| no\.?)?)\s*[:#]?\s*)(?P<phi>\d{9}|\d{3} \d{2} \d{4})\b"
        ),
        "phi",
    ),
    _Rule(
        "MRN",
        _rx(
            r"(?i:\b(?:MRN|MR\s?#|MR\s?No\.?|medical record(?: number| no\.?| #)?|acct(?:ount)?(?: number| no\.?| #)?"
            r"|patient id|pt id|chart(?: number| no\.?| #)?)\s*[:#]?\s*)(?P<phi>[A-Z]{0,4}-?\d[\dA-Z-]{3,})\b"
        ),
        "phi",
    ),
    _Rule(
        "PHONE",
        _rx(
            r"(?<![\w/.-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?\b"
        ),
    ),
    _Rule(
        "PHONE",
        _rx(r"(?i:\b(?:phone|tel|cell|mobile|fax|pager|call)\b\.?\s*[:#]?\s*)(?P<phi>\d{10})\b"),
        "phi",
    ),
    # Dates: the full date goes, the year stays.
    _Rule("DATE", _rx(r"\b(?:0?[1-9]|1[0-2])[/.-](?:0?[1-9]|[12]\d|3[01])[/.-]" + _YEAR + r"\b")),
    _Rule("DATE", _rx(r"\b(?:0?[1-9]|[12]\d|3[01])[/.-](?:0?[1-9]|1[0-2])[/.-]" + _YEAR + r"\b")),
    _Rule("DATE", _rx(r"\b" + _YEAR + r"[/.-](?:0?[1-9]|1[0-2])[/.-](?:0?[1-9]|[12]\d|3[01])\b")),
    _Rule("DATE", _rx(r"\b" + _MONTHS + r"\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?,?\s+" + _YEAR + r"\b")),
    _Rule(
        "DATE",
        _rx(r"\b(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTHS + r",?\s+" + _YEAR + r"\b"),
    ),
    _Rule("DATE", _rx(r"\b(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/(?P<year>\d{2})\b")),
    _Rule(
        "DATE", _rx(r"\b" + _MONTHS + r"\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\b(?!,?\s*(?:19|20)\d{2})")
    ),
    _Rule(
        "DATE",
        _rx(
            r"(?i:\b(?:on|dated|since|until|DOB:?|born)\s+)(?P<phi>(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01]))\b(?!/)"
        ),
        "phi",
    ),
    _Rule(
        "ADDRESS",
        _rx(
            r"\b\d{1,6}[ \t]+(?:[NSEW]\.?[ \t]+)?(?:"
            + _CAP
            + r"[ \t]+){0,3}(?:"
            + STREET_SUFFIXES
            + r")\b\.?"
            r"(?:,?[ \t]+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)[ \t]*[\w-]+)?"
            r"(?:,?\s+(?:[A-Z][a-z]+[ \t]){0,2}[A-Z][a-z]+,[ \t]*[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?)?"
        ),
    ),
    _Rule("ADDRESS", _rx(r"\b(?:[A-Z][a-z]+[ \t]){0,2}[A-Z][a-z]+,[ \t]*[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?\b")),
    _Rule("ADDRESS", _rx(r"(?i:\bP\.?\s?O\.?\s+Box)\s+\d+\b")),
    _Rule(
        "FACILITY",
        _rx(
            r"\b(?:(?:St\.?|Saint)[ \t]+)?(?:"
            + _FACILITY_WORD
            + r"[ \t]+){1,4}(?:Regional[ \t]+|Memorial[ \t]+|General[ \t]+|"
            r"Community[ \t]+|University[ \t]+|Children['’]s[ \t]+)*(?:Hospital|Medical[ \t]+Center|Medical[ \t]+Centre|"
            r"Clinic|Health[ \t]+System|Health[ \t]+Center|Healthcare|Infirmary|Nursing[ \t]+Home|Hospice|"
            r"Rehabilitation[ \t]+Center|Surgery[ \t]+Center|Surgical[ \t]+Center|Urgent[ \t]+Care|Care[ \t]+Center)\b"
        ),
    ),
    _Rule(
        "NAME",
        _rx(r"\b(?:Dr|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Nurse)\.?[ \t]+(?P<phi>" + _NAME + r")" + _NAME_SUFFIX),
        "phi",
    ),
    _Rule(
        "NAME", _rx(r"\b(?P<phi>" + _NAME + r"),?[ \t]+(?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C|PhD|DDS)\b"), "phi"
    ),
    _Rule(
        "NAME",
        _rx(
            r"(?i:\b(?:patient(?:['’]s)?(?: name)?|pt(?: name)?|name|seen by|attending|physician|provider|"
            r"referred by|signed by|dictated by|son|daughter|wife|husband|spouse|mother|father|contact|"
            r"emergency contact|guardian|caregiver|accompanied by|discussed with|reviewed with|spoke with)\s*[:,-]?[ \t]+)(?P<phi>"
            + _NAME
            + r")"
        ),
        "phi",
    ),
    # A note that opens "John Smith is a 54-year-old ..." or "John Smith, 54, presents ...".
    _Rule(
        "NAME",
        _rx(
            r"(?m:^|(?<=[.!?][ \t]))(?P<phi>"
            + _NAME_WORD
            + r"(?:[ \t]+"
            + _NAME_WORD
            + r"){1,3})(?=,?[ \t]+(?:is|was|presents|presented)\b|,[ \t]*\d{1,3}\b)"
        ),
        "phi",
    ),
)


def _year_of(match: re.Match[str]) -> str | None:
    year = match.groupdict().get("year")
    if year and len(year) == 2:
        return ("20" if int(year) <= 30 else "19") + year
    return year


def _replacement(kind: str, match: re.Match[str]) -> str:
    if kind == "DATE":
        year = _year_of(match)
        return year if year else PLACEHOLDERS["DATE"]
    return PLACEHOLDERS[kind]


def is_medical_eponym(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]` (a span an NER model or a rule tagged as a person or place) is an eponym
    or a place-named disease rather than PHI: every word is on the eponym list, and common surnames must be
    followed by a medical word ("Bell's palsy", "Wilson disease"); "non-Hodgkin" style prefixes count."""
    words = [w for w in re.split(r"[\s\-–]+", text[start:end]) if w]
    if not words:
        return False
    keys = [re.sub(r"(?:['’]s|s['’]|['’])$", "", w).lower().strip(".,;:") for w in words]
    while len(keys) > 1 and _HEAD_NOUN.fullmatch(keys[-1]):  # NER took "Hashimoto thyroiditis" whole
        keys.pop()
        end = start + text[start:end].rstrip().rfind(" ")
    if not all(k in MEDICAL_EPONYMS for k in keys):
        return False
    if all(k in COMMON_SURNAME_EPONYMS for k in keys):
        return bool(_EPONYM_CONTEXT.match(text[end:]))
    return True


def _clean_name_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Trim clinical words that a name pattern swallowed ("Smith Assessment"), reject non-names."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    while words and text[words[-1][0] : words[-1][1]].lower().strip(".,") in NOT_NAMES:
        words.pop()
    if not words or text[words[0][0] : words[0][1]].lower().strip(".,") in NOT_NAMES:
        return None
    start, end = trim_possessive(text, words[0][0], words[-1][1])
    if is_medical_eponym(text, start, end):
        return None
    return start, end


def find_phi(text: str) -> list[PhiSpan]:
    """All PHI spans the pattern rules find in `text`, non-overlapping, in order.

    Pure and fast (no NLP model); `PhiScrubber` adds spaCy's person and place names on top.
    """
    found: list[PhiSpan] = []
    for rule in RULES:
        for match in rule.pattern.finditer(text):
            start, end = match.span(rule.group)
            if start < 0 or end <= start:
                continue
            if rule.kind == "NAME":
                cleaned = _clean_name_span(text, start, end)
                if cleaned is None:
                    continue
                start, end = cleaned
            found.append(PhiSpan(start, end, rule.kind, text[start:end], _replacement(rule.kind, match)))
    return resolve_overlaps(found)


def resolve_overlaps(spans: Iterable[PhiSpan]) -> list[PhiSpan]:
    """Keep the longest of overlapping spans (earliest on ties), in text order."""
    chosen: list[PhiSpan] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def redact(text: str, spans: Iterable[PhiSpan]) -> str:
    """Replace non-overlapping spans (as from `find_phi`) with their replacements."""
    parts: list[str] = []
    cursor = 0
    for span in sorted(spans, key=lambda s: s.start):
        parts.append(text[cursor : span.start])
        parts.append(span.replacement)
        cursor = span.end
    parts.append(text[cursor:])
    return "".join(parts)


def scrub_with_rules(text: str) -> str:
    """Apply the pattern rules only (no NER): fast, catches structured PHI and titled/labelled names."""
    return redact(text, find_phi(text))


def phi_residue(text: str) -> list[PhiSpan]:
    """PHI the rules still find in an already-scrubbed text (placeholders and bare years are not PHI)."""
    return [s for s in find_phi(text) if s.text not in PLACEHOLDERS.values() and s.kind != "LOCATION"]


def trim_possessive(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a trailing "'s" from a span ("Smith's" -> "Smith")."""
    span = text[start:end]
    for suffix in ("'s", "’s"):
        if span.endswith(suffix):
            return start, end - len(suffix)
    return start, end
