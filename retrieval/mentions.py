"""Splitting a note into diagnosis mentions, one search query each.

A note names several conditions ("Assessment: 1. HTN 2. DM2 w/ CKD 3; GERD"); searching the whole note
at once lets the longest mention drown the others. A mention is a line, a list item (bulleted, or
numbered on its own line or inline "1. ... 2. ..."), a sentence, a `;`-separated phrase, or a clause
cut at a narrative connector ("... with a history of X presents with Y"). Commas do
not split: "heart attack, front wall, 2 days ago" is one diagnosis. Section labels ("Assessment:",
"Dx:", "PMH:") are dropped; other "X: Y" lines stay whole ("Hypertension: stable").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Section labels that name no condition: dropped where they open a line or a mention.
SECTION_LABELS = (
    "assessment and plan|assessment & plan|assessment/plan|assessment|a/p|a&p|plan|impression|"
    "diagnoses|diagnosis|dx|ddx|final diagnosis|discharge diagnoses|discharge diagnosis|"
    "admitting diagnosis|primary diagnosis|secondary diagnoses|secondary diagnosis|problem list|problems|"
    "active problems|pmh|past medical history|medical history|history|hpi|history of present illness|"
    "chief complaint|cc|reason for visit|reason for referral|indication|clinical indication|findings|"
    "conclusion|summary|note|imp|also|s|o|a|p"
)
_LABEL = re.compile(rf"^\s*(?:{SECTION_LABELS})(?:\s*:|\s+[-–—])\s*", re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*•·‣▪◦]+|\(?#?\d{1,2}[.)]|\(?[a-z][.)](?=\s))\s*", re.IGNORECASE)
# A sentence ends at . ! ? followed by space and a capital, digit or bracket; not after these words.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_NOT_AN_END = re.compile(
    r"(?:\b(?:dr|mr|mrs|ms|st|vs|approx|e\.g|i\.e|etc|no|pt|hx|fig|wk|wks|yr|yrs|mo|mos)|\b[A-Z])\.$",
    re.IGNORECASE,
)
# Phrases that join two conditions in narrative ("... with a history of X presents with Y"): cut before
# them, so the clause keeps its "history of" (which decides Z87/I25.2-type codes).
_CONNECTOR = re.compile(
    r"(?=\b(?:with (?:a |known )?(?:past )?(?:medical )?history of|w/ (?:hx|h/o) of|w/ hx|"
    r"presents? (?:with|for)|is seen (?:today )?for|here (?:today )?for|comes? in for(?: evaluation of)?|"
    r"(?:was )?admitted (?:with|for)|complains? of|c/o|reports)\b)",
    re.IGNORECASE,
)
_INLINE_NUMBER = re.compile(r"(?:^|(?<=\s))(\d{1,2})[.)]\s+")
MIN_MENTION_CHARS = 2  # "MI", "OA" are diagnoses
_LETTERS = re.compile(r"[^\W\d_]{2}")  # a mention has two letters in a row ("w/" alone is not one)


def _inline_items(line: str) -> list[str]:
    """Split "1. HTN 2. DM2 3. CKD" at its enumerators where they count up from 1. Of several "3." the
    last one before the first "4." is the enumerator ("... CKD stage 3. 3. GERD"); a lone number never
    splits ("CKD stage 3. Stable")."""
    found = [(int(m.group(1)), m.span()) for m in _INLINE_NUMBER.finditer(line)]
    cuts: list[tuple[int, int]] = []
    expected, after = 1, 0
    while True:
        options = [span for number, span in found if number == expected and span[0] >= after]
        if not options:
            break
        following = [span[0] for number, span in found if number == expected + 1 and span[0] > options[0][0]]
        limit = following[0] if following else len(line) + 1
        span = [s for s in options if s[0] < limit][-1]
        cuts.append(span)
        expected, after = expected + 1, span[1]
    if len(cuts) < 2:
        return [line]
    pieces = [line[: cuts[0][0]]]
    for (_, end), (next_start, _) in zip(cuts, [*cuts[1:], (len(line), 0)], strict=True):
        pieces.append(line[end:next_start])
    return pieces


def _sentences(text: str) -> list[str]:
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if pieces and _NOT_AN_END.search(pieces[-1]):
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return pieces


def _clean(mention: str) -> str:
    previous = None
    while previous != mention:  # "A/P: 1) Dx: HTN" sheds each layer in turn
        previous = mention
        mention = _BULLET.sub("", _LABEL.sub("", mention))
    return mention.strip(" \t.,:;-–—")


def _pieces(text: str) -> Iterator[str]:
    """Lines, then list items, then `;` phrases, then sentences, then clauses at narrative connectors."""
    for line in text.splitlines():
        for item in _inline_items(_LABEL.sub("", line)):
            for phrase in item.split(";"):
                for sentence in _sentences(phrase):
                    yield from _CONNECTOR.split(sentence)


def split_mentions(text: str) -> list[str]:
    """The note's diagnosis mentions, in order, without duplicates (compared ignoring case); the whole
    (stripped) text when no piece is long enough; none without two letters in a row. Pure and fast (runs once per
    note per retrieval)."""
    mentions: list[str] = []
    seen: set[str] = set()
    for piece in _pieces(text):
        mention = _clean(piece)
        key = mention.lower()
        if len(mention) >= MIN_MENTION_CHARS and _LETTERS.search(mention) and key not in seen:
            seen.add(key)
            mentions.append(mention)
    if not mentions and _LETTERS.search(text):
        mentions.append(text.strip())
    return mentions
