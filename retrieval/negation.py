"""A mention's negations in the tabular list's terms: "no obstruction" -> "without obstruction".

ICD-10-CM states an absence as "without X" ("Calculus of bile duct without cholangitis or cholecystitis
without obstruction"); notes say "no X", "negative for X", "free of X". BM25 drops "no" as a stopword, so a
note saying "no obstruction" matches the "with obstruction" sibling as well as the right code, and the shorter
one wins. On 150 generated notes that state an absence (seed 777), the retriever's top-1 was right for 45% of
them, and for 84% with the rewrite (recall@8 95% -> 100%); no validation note got worse.

Only cues that open a phrase are rewritten. "not" is left alone: "nail not involved" negates what comes before
it, and "not intractable", "not elsewhere classified" are the list's own words.
"""

from __future__ import annotations

import re

# Phrase-opening negation cues of clinical notes, longest first.
NEGATION_CUES = (
    "no evidence of",
    "no signs of",
    "no sign of",
    "negative for",
    "absence of",
    "free of",
    "with no",
    "denies",
    "no",
)
_CUES = re.compile(
    r"\b(?:" + "|".join(map(re.escape, NEGATION_CUES)) + r")\b(?=\s+[^\W\d_])",
    re.IGNORECASE,
)


def state_absence(text: str) -> str:
    """`text` with each negation cue that opens a phrase replaced by "without" ("no coma" -> "without coma")."""
    return _CUES.sub("without", text)
