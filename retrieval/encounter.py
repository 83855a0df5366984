"""The encounter a mention states: its words in the tabular list's terms, and its hits reordered so that
7th-character siblings agree with it.

ICD-10-CM tells an injury's initial encounter, subsequent encounter and sequela apart by the 7th character,
and their descriptions by the last words (", initial encounter ...", ", subsequent encounter ...",
", sequela"). Those words are in tens of thousands of descriptions, so BM25 gives them almost no weight,
and its length normalisation then ranks the shortest sibling first: ", sequela" above ", subsequent
encounter" for a note that says "subsequent encounter". `prefer_stated_encounter` reorders each group of
siblings (codes that differ only in the 7th character) among the positions the group holds, the sibling
whose description states the mention's encounter first; a mention that states none, or several, is left
as BM25 ranked it. Before the search, `state_encounter` puts a note's own words for the encounter ("return
visit", "late effect") in the list's terms, in their place: kept, "follow-up visit" would rank "Encounter
for routine postpartum follow-up" above the injury it follows up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

# A note's words for the encounter -> the tabular list's (whole words, any case).
ENCOUNTER_TERMS: dict[str, str] = {
    "first visit": "initial encounter",
    "initial visit": "initial encounter",
    "initial evaluation": "initial encounter",
    "new injury": "initial encounter",
    "follow-up visit": "subsequent encounter",
    "follow up visit": "subsequent encounter",
    "return visit": "subsequent encounter",
    "late effect": "sequela",
    "late effects": "sequela",
}
_TERMS = re.compile(
    r"\b(?:" + "|".join(map(re.escape, sorted(ENCOUNTER_TERMS, key=len, reverse=True))) + r")\b",
    re.IGNORECASE,
)
# Searched in queries (after `state_encounter`) and in the official descriptions.
ENCOUNTERS = {
    "initial": re.compile(r"\binitial encounter\b", re.IGNORECASE),
    "subsequent": re.compile(r"\bsubsequent encounter\b", re.IGNORECASE),
    "sequela": re.compile(r"\bsequelae?\b", re.IGNORECASE),
}


def state_encounter(text: str) -> str:
    """`text` with its words for the encounter replaced by the tabular list's ("return visit" ->
    "subsequent encounter")."""
    return _TERMS.sub(lambda match: ENCOUNTER_TERMS[match.group(0).lower()], text)


def stated_encounter(text: str) -> str | None:
    """The one encounter `text` states ("initial", "subsequent", "sequela"), or None for none or several."""
    found = [name for name, pattern in ENCOUNTERS.items() if pattern.search(text)]
    return found[0] if len(found) == 1 else None


def _stem(code: str) -> str | None:
    """The code without its 7th character (None for codes of fewer than 7 characters)."""
    plain = code.replace(".", "")
    return plain[:6] if len(plain) == 7 else None


def prefer_stated_encounter(
    query: str, hits: Sequence[tuple[str, float]], describe: Callable[[str], str]
) -> list[tuple[str, float]]:
    """`hits` (code, score), best first, with each group of 7th-character siblings reordered so that the
    ones whose description states the query's encounter come first; each position keeps its score."""
    stated = stated_encounter(query)
    if stated is None:
        return list(hits)
    groups: dict[str, list[int]] = {}
    for position, (code, _) in enumerate(hits):
        stem = _stem(code)
        if stem is not None:
            groups.setdefault(stem, []).append(position)
    codes = [code for code, _ in hits]
    for positions in groups.values():
        if len(positions) < 2:
            continue
        members = [codes[p] for p in positions]
        members.sort(key=lambda code: stated_encounter(describe(code)) != stated)  # stable
        for position, code in zip(positions, members, strict=True):
            codes[position] = code
    return [(code, score) for code, (_, score) in zip(codes, hits, strict=True)]
