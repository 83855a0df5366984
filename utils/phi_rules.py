"""PHI pattern rules: pure, fast regular expressions (no NLP model).

`find_phi(text)` finds SSN, phone, email, MRN, dates, addresses, facilities, titled names such as
"Dr. Alice Brown" and labelled ones such as "Patient: John Smith"; dates are reduced to their year
("03/14/2021" -> "2021"). `thce.utils.data_quality` reuses them as its PHI-residue scan, and
`thce.utils.phi_scrubber` wraps them as two Presidio recognisers: `pattern` (the PHI formats) and
`name_context` (a person's name known by its context: a title, a suffix, a label, a note's opening).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from thce.utils.phi_tables import (
    COMMON_SURNAME_EPONYMS,
    MEDICAL_EPONYMS,
    MEDICAL_HEAD_NOUNS,
    MILITARY_POST_OFFICES,
    MILITARY_SHIP_PREFIXES,
    MILITARY_STATES,
    MILITARY_UNIT_WORDS,
    NAME_LABELS,
    NAME_OPENING_VERBS,
    NAME_SUFFIXES,
    NAME_TITLES,
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


def _alternatives(words: tuple[str, ...]) -> str:
    """A regex alternation of literal words, longest first (so "emergency contact" beats "contact")."""
    return (
        "(?:"
        + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True))
        + ")"
    )


_SUFFIX_WORD = _alternatives(NAME_SUFFIXES) + r"(?![\w-])"
_NAME_SUFFIX = r"(?:,?[ \t]+(?:" + _SUFFIX_WORD + r"|II|III|IV))*"
_ZIP = r"\d{5}(?:-\d{4})?"
_CITY_LINE = r"(?:[A-Z][a-z]+[ \t]){0,2}[A-Z][a-z]+,[ \t]*[A-Z]{2}[ \t]+" + _ZIP
_MILITARY_POST = (
    _alternatives(MILITARY_POST_OFFICES) + r"[ \t]+" + _alternatives(MILITARY_STATES) + r"[ \t]+" + _ZIP
)
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
    # Which Presidio recogniser it belongs to: a PHI pattern, or a person's name found by its context.
    recogniser: str = "pattern"


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
    # Month and year alone ("March 2021", "03/2021") are a date element too; the year stays.
    _Rule("DATE", _rx(r"\b" + _MONTHS + r",?[ \t]+" + _YEAR + r"\b")),
    _Rule("DATE", _rx(r"\b(?:0?[1-9]|1[0-2])/" + _YEAR + r"\b")),
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
            # "\b" after each word: "Ste" must not take "Stephenmouth" as its number.
            r"(?:,?[ \t]+(?:Apt\b\.?|Apartment\b|Suite\b|Ste\b\.?|Unit\b|#)[ \t]*[\w-]+)?"
            r"(?:,?\s+(?:[A-Z][a-z]+[ \t]){0,2}[A-Z][a-z]+,[ \t]*[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?)?"
        ),
    ),
    _Rule("ADDRESS", _rx(r"\b" + _CITY_LINE + r"\b")),
    _Rule(
        "ADDRESS",
        _rx(
            r"(?i:\bP\.?[ \t]?O\.?[ \t]*Box|\bPost[ \t]+Office[ \t]+Box)[ \t]*#?[ \t]*\d+\b(?:,?\s+"
            + _CITY_LINE
            + r")?"
        ),
    ),
    # Military and unit addresses: "PSC 9703, Box 7600, APO AP 57773", "USS Kelly, FPO AP 47434".
    _Rule(
        "ADDRESS",
        _rx(
            r"\b(?:"
            + _alternatives(MILITARY_UNIT_WORDS)
            + r"[ \t]+\d{1,5},?[ \t]+Box[ \t]+\d{1,5}|"
            + _alternatives(MILITARY_SHIP_PREFIXES)
            + r"(?:[ \t]+[A-Z][A-Za-z'’.-]*){1,3})(?:,?\s+"
            + _MILITARY_POST
            + r")?\b"
        ),
    ),
    _Rule("ADDRESS", _rx(r"\b" + _MILITARY_POST + r"\b")),
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
    # Names found by their context (the `name_context` recogniser): a title before, a suffix after, a
    # label before ("Patient:", "Discharge summary for"), or an opening of a note or sentence after.
    _Rule(
        "NAME",
        _rx(r"\b" + _alternatives(NAME_TITLES) + r"\.?[ \t]+(?P<phi>" + _NAME + r")" + _NAME_SUFFIX),
        "phi",
        "name_context",
    ),
    _Rule("NAME", _rx(r"\b(?P<phi>" + _NAME + r"),?[ \t]+" + _SUFFIX_WORD), "phi", "name_context"),
    _Rule(
        "NAME",
        _rx(r"(?i:\b" + _alternatives(NAME_LABELS) + r"\s*[:,-]?[ \t]+)(?P<phi>" + _NAME + r")"),
        "phi",
        "name_context",
    ),
    _Rule(
        "NAME",
        _rx(
            r"(?m:^|(?<=[.!?:][ \t]))(?P<phi>"
            + _NAME_WORD
            + r"(?:[ \t]+"
            + _NAME_WORD
            + r"){1,3})(?=,?[ \t]+"
            + _alternatives(NAME_OPENING_VERBS)
            + r"\b|,[ \t]*(?:an?[ \t]+)?\d{1,3}\b|,?[ \t]+\(?(?:DOB|MRN|age[ds]?)\b)"
        ),
        "phi",
        "name_context",
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


def rule_spans(text: str, recogniser: str | None = None) -> list[PhiSpan]:
    """Every span the rules (of one recogniser, or all) find in `text`, overlaps not yet resolved."""
    found: list[PhiSpan] = []
    for rule in RULES:
        if recogniser is not None and rule.recogniser != recogniser:
            continue
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
    return found


_NAME_PART = re.compile(r"[A-Z][A-Za-z'’-]*[a-z]")


def propagate_names(text: str, spans: list[PhiSpan]) -> list[PhiSpan]:
    """The other mentions, in the same text, of the parts of names already found: a note that opens
    "Patient: Shaun Castro" and later says "Shaun tolerated the visit" names him twice. A part that reads as
    an eponym where it stands ("Duane's syndrome" in Duane Cross's note) is left alone."""
    parts = set()
    for span in spans:
        if span.kind == "NAME":
            for word in _NAME_PART.findall(span.text):
                word = re.sub(r"['’]s$", "", word)
                if len(word) > 2 and word.lower() not in NOT_NAMES:
                    parts.add(word)
    if not parts:
        return []
    alternatives = "|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True))
    found = []
    for match in re.finditer(r"(?<![\w'’-])(?:" + alternatives + r")(?![\w-])", text):
        start, end = match.span()
        if any(s.start <= start < s.end for s in spans) or _EPONYM_CONTEXT.match(text[end:]):
            continue
        found.append(PhiSpan(start, end, "NAME", match.group(0), PLACEHOLDERS["NAME"]))
    return found


def find_phi(text: str) -> list[PhiSpan]:
    """All PHI spans the pattern rules find in `text`, non-overlapping, in order (with the other mentions
    of the names they found).

    Pure and fast (no NLP model); `PhiScrubber` adds spaCy's person and place names on top.
    """
    spans = resolve_overlaps(rule_spans(text))
    return resolve_overlaps(spans + propagate_names(text, spans))


def resolve_overlaps(spans: Iterable[PhiSpan]) -> list[PhiSpan]:
    """Non-overlapping spans in text order: overlapping spans of one kind that both become its placeholder
    merge into one (two address rules that share a city, say, leave no tail behind); otherwise the longest
    wins (earliest on ties)."""
    merged: list[PhiSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        last = merged[-1] if merged else None
        if (
            last is not None
            and span.start < last.end
            and span.kind == last.kind
            and span.replacement == last.replacement == PLACEHOLDERS[span.kind]
        ):
            end = max(last.end, span.end)
            text = last.text + span.text[last.end - span.start :] if end > last.end else last.text
            merged[-1] = PhiSpan(last.start, end, last.kind, text, last.replacement)
        else:
            merged.append(span)
    chosen: list[PhiSpan] = []
    for span in sorted(merged, key=lambda s: (-(s.end - s.start), s.start)):
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
