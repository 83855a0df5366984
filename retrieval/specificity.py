"""The unspecified code, when a mention documents nothing more specific than it.

The coding convention: code what the note documents; where it does not say which kind, the code is the
category's "unspecified" one. BM25 ranks by the words a description shares with the query and by its length,
so for "Dx: agoraphobia" it ranks "Agoraphobia with panic disorder" above "Agoraphobia, unspecified", and for
"Shigellosis, unspecified" it ranks "Other shigellosis" first. `prefer_unspecified` puts first, above a
mention's top hit, the first sibling below it (same category) that is an "unspecified" code whose words are
all the mention's and include every mention word the top hit matched, when the top hit's description claims
words the mention does not (here "panic disorder", "other"). A mention that states the specific words keeps BM25's order, and an official description as the
mention (nothing claimed beyond it) keeps it too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

_WORD = re.compile(r"[a-z0-9]+")
# Nonessential modifiers, in parentheses or brackets ("Obstructive sleep apnea (adult) (pediatric)"), and
# "not elsewhere classified" claim nothing either.
_SUPPLEMENTARY = re.compile(r"\([^)]*\)|\[[^\]]*\]|\bnot elsewhere classified\b")
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
    when it has every query word the top hit has and claims nothing the query lacks, while the top hit
    (itself no unspecified code) does; each position keeps its score."""
    if len(hits) < 2:
        return list(hits)
    top = hits[0][0]
    description = describe(top)
    if "unspecified" in description.lower():
        return list(hits)
    said, claimed = _words(query), _words(description)
    if not claimed - said:
        return list(hits)
    matched = claimed & said
    for code, _ in hits[1:]:
        if code[:3] != top[:3]:  # only siblings; most hits are not, and need no description
            continue
        description = describe(code)
        if "unspecified" in description.lower() and matched <= _words(description) <= said:
            codes = [code, *(c for c, _ in hits if c != code)]
            return [(c, score) for c, (_, score) in zip(codes, hits, strict=True)]
    return list(hits)
