"""The unspecified code, when a mention documents nothing more specific than it.

The coding convention: code what the note documents; where it does not say which kind, the code is the
category's "unspecified" one. BM25 ranks by the words a description shares with the query and by its length,
so for "Dx: agoraphobia" it ranks "Agoraphobia with panic disorder" above "Agoraphobia, unspecified", and for
"Shigellosis, unspecified" it ranks "Other shigellosis" first. `prefer_unspecified` puts first, above a
mention's top hit, the first sibling below it (same category) that is an "unspecified" code with every
mention word the top hit matched and fewer claims, when the top hit's description claims words the mention
does not (here "panic disorder", "other"). The sibling's own claims must be some of the top hit's: "Sprain of
unspecified ligament of right ankle" claims "ligament", as "Sprain of calcaneofibular ligament of right
ankle" does, so it goes first for "sprained right ankle"; "Iron deficiency anemia, unspecified" goes above
"Other iron deficiency anemias" for "anemia from low iron". A mention that states the specific words keeps
BM25's order, and an official description as the mention (nothing claimed beyond it) keeps it too.

The same holds for the intent of a poisoning or toxic effect (T36-T65, 6th character): the official guidelines
(I.C.19.e.5.b) code an unstated intent as accidental, and "undetermined" only where the record says it cannot
be determined. BM25 sees no intent words in "bee sting reaction" and ranks "..., undetermined" or "...,
assault" first; `prefer_accidental` puts the accidental sibling above it unless the mention states an intent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_WORD = re.compile(r"[a-z0-9]+")
# Nonessential modifiers, in parentheses or brackets ("Obstructive sleep apnea (adult) (pediatric)"), and
# "not elsewhere classified" claim nothing either.
_SUPPLEMENTARY = re.compile(r"\([^)]*\)|\[[^\]]*\]|\bnot elsewhere classified\b")
# A top hit for a stated intent other than accidental (the 6th character: 2 self-harm, 3 assault, 4 undetermined)
_OTHER_INTENT = re.compile(r", (?:intentional self-harm|assault|undetermined)\b", re.IGNORECASE)
# The mention's words for an intent: then the hits keep BM25's order.
_STATED_INTENT = re.compile(
    r"\b(?:self[- ]?harm\w*|suicid\w*|intentional\w*|intended|deliberate\w*|on purpose|assault\w*|attack(?:ed)? by"
    r"|undetermined|accidental\w*|unintentional\w*|by accident)\b",
    re.IGNORECASE,
)
# Words that claim nothing about the condition. "other", "with" and "without" are not among them: each
# states a fact ("other" means another specified kind).
_NEUTRAL = frozenset(
    ["of", "the", "and", "or", "in", "to", "for", "by", "a", "an", "as", "on", "at", "due", "unspecified"]
)


def _words(text: str) -> set[str]:
    """Content words, plural -s dropped ("anemias" is "anemia")."""
    text = _SUPPLEMENTARY.sub(" ", text.lower())
    words = (w[:-1] if len(w) > 3 and w.endswith("s") else w for w in _WORD.findall(text))
    return {w for w in words if w not in _NEUTRAL}


def prefer_unspecified(
    query: str, hits: Sequence[tuple[str, float]], describe: Callable[[str], str]
) -> list[tuple[str, float]]:
    """`hits` (code, score), best first, with the first "unspecified" sibling of the top hit moved to the top
    when it has every query word the top hit has and claims less than the top hit (itself no unspecified
    code): only words the top hit claims too, not all of them; each position keeps its score."""
    if len(hits) < 2:
        return list(hits)
    top = hits[0][0]
    description = describe(top)
    if "unspecified" in description.lower():
        return list(hits)
    said, claimed = _words(query), _words(description)
    claims = claimed - said
    if not claims:
        return list(hits)
    matched = claimed & said
    for code, _ in hits[1:]:
        if code[:3] != top[:3]:  # only siblings; most hits are not, and need no description
            continue
        description = describe(code)
        words = _words(description)
        if "unspecified" in description.lower() and matched <= words and words - said < claims:
            codes = [code, *(c for c, _ in hits if c != code)]
            return [(c, score) for c, (_, score) in zip(codes, hits, strict=True)]
    return list(hits)


def prefer_accidental(
    query: str, hits: Sequence[tuple[str, float]], describe: Callable[[str], str]
) -> list[tuple[str, float]]:
    """`hits` (code, score), best first, with the accidental sibling of the top hit (the same code with 6th
    character 1) moved to the top when the top hit is for self-harm, assault or an undetermined intent and the
    mention states no intent; each position keeps its score."""
    if len(hits) < 2 or _STATED_INTENT.search(query) or not _OTHER_INTENT.search(describe(hits[0][0])):
        return list(hits)
    plain = hits[0][0].replace(".", "")
    accidental = f"{plain[:3]}.{plain[3:5]}1{plain[6:]}"
    if accidental not in (code for code, _ in hits[1:]) or "accidental" not in describe(accidental).lower():
        return list(hits)
    codes = [accidental, *(code for code, _ in hits if code != accidental)]
    return [(code, score) for code, (_, score) in zip(codes, hits, strict=True)]
