"""The clinical vocabulary that PHI scrubbing must never replace on NER's say-so alone.

spaCy's small model tags capitalised clinical words as people and places ("Headache, unspecified" ->
LOCATION, "Hyperlipidemia" -> PERSON). A span whose words are all medical vocabulary is therefore kept
unless a pattern rule or a name-in-context rule found it ("Dr. Graves" is a person, "Graves disease" is not).

The vocabulary is every word of the FY2026 ICD-10-CM tabular list: descriptions, inclusion terms, the
includes/excludes/code-first/code-also notes (which carry the index-like synonyms of each condition) and the
7th-character definitions, plus the eponym list. It is built once from the code set (~1 s) and cached as
JSON beside the code-set cache, keyed by the code set's own cache key.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from loguru import logger

from thce.utils.phi_tables import MEDICAL_EPONYMS, MEDICAL_HEAD_NOUNS

# Bump when the word splitting or the sources change, so older caches are rebuilt rather than trusted.
VOCABULARY_SCHEMA = 1
_POSSESSIVE = re.compile(r"['’]s\b|['’]")
_WORD = re.compile(r"[a-z]+")


def vocabulary_words(text: str) -> list[str]:
    """The words of `text` as the vocabulary stores them: lower-case ASCII letters, accents and possessives
    dropped ("Ménière's" -> "meniere", "Gastro-esophageal" -> "gastro", "esophageal"); digits and
    punctuation are not words."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return _WORD.findall(_POSSESSIVE.sub("", folded))


def build_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """Every word of `texts`, plus the eponym list."""
    words: set[str] = set()
    for text in texts:
        words.update(vocabulary_words(text))
    for eponym in MEDICAL_EPONYMS:
        words.update(vocabulary_words(eponym))
    return frozenset(words)


def icd10cm_texts() -> Iterable[str]:
    """Every description, note and 7th-character definition of the ICD-10-CM tabular list."""
    from thce.utils.code_systems.icd10cm import shared_tables

    tables = shared_tables()
    yield from tables.descriptions
    for notes in tables.notes.values():
        for items in notes.values():
            yield from items
    for definitions in tables.seventh.values():
        yield from definitions.values()


def load_vocabulary(
    cache_dir: Path | None, texts: Callable[[], Iterable[str]] = icd10cm_texts
) -> frozenset[str]:
    """The vocabulary from its JSON cache in `cache_dir`, built from `texts()` (the code set) when the cache
    is missing, stale or unreadable."""
    from thce.utils.code_systems.icd10cm import cache_key
    from thce.utils.io import write_atomically

    path = None
    if cache_dir is not None:
        path = cache_dir / f"phi-vocabulary-{VOCABULARY_SCHEMA}-{cache_key()}.json"
    if path is not None and path.is_file():
        try:
            words = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(words, list) and all(isinstance(w, str) for w in words):
                return frozenset(words)
            logger.warning(f"Ignoring malformed PHI vocabulary cache {path}; rebuilding it")
        except (OSError, ValueError) as err:  # truncated or foreign: rebuild rather than fail
            logger.warning(f"Ignoring unreadable PHI vocabulary cache {path} ({err}); rebuilding it")
    vocabulary = build_vocabulary(texts())
    if path is not None:
        try:
            write_atomically(path, json.dumps(sorted(vocabulary)).encode("utf-8"))
        except OSError as err:  # a read-only home still scrubs, only rebuilding next time
            logger.warning(f"Could not write the PHI vocabulary cache {path}: {err}")
    return vocabulary


@cache
def medical_vocabulary() -> frozenset[str]:
    """The process-wide vocabulary (loaded on first use)."""
    from thce.utils.models import thce_home

    return load_vocabulary(thce_home() / "code_sets")


def is_medical_phrase(span: str, vocabulary: frozenset[str] | None = None) -> bool:
    """Whether every word of `span` is medical vocabulary (a span with no words is not a phrase)."""
    vocabulary = medical_vocabulary() if vocabulary is None else vocabulary
    words = vocabulary_words(span)
    return bool(words) and all(word in vocabulary for word in words)


# Words that end an ICD-10-CM phrase after its first word ("Headache, unspecified", "Crohn disease").
_CLINICAL_FOLLOWERS = frozenset(MEDICAL_HEAD_NOUNS.replace("tumou?r", "tumor|tumour").split("|")) | {
    "unspecified",
    "nos",
    "nec",
}
_PLACEHOLDER = r"\[(?:NAME|LOCATION|ADDRESS|FACILITY)\]"
_IN_PHRASE = re.compile(
    r"(?P<before>\b[A-Za-z]+-)?(?P<placeholder>" + _PLACEHOLDER + r")"
    r"(?:-(?P<glued>[A-Za-z]+)|(?:['’]s|['’])?,?[ \t]+(?P<next>[A-Za-z]+))?"
)


def medical_placeholders(text: str, vocabulary: frozenset[str] | None = None) -> list[str]:
    """Placeholders in a scrubbed text that sit inside a clinical phrase, so most likely replaced medical
    words rather than PHI: hyphen-joined to a medical word ("[NAME]-esophageal reflux disease",
    "non-[NAME] lymphoma"), or followed by the word that ends a diagnosis ("[LOCATION], unspecified",
    "[NAME]'s disease"). Returns each one with its neighbour, for a quality report."""
    found = []
    for match in _IN_PHRASE.finditer(text):
        before, glued, following = match.group("before"), match.group("glued"), match.group("next")
        # Compound parts of diagnoses are lower-case ("Gastro-esophageal"); a double-barrelled name is not.
        glued_words = [w for w in (before and before[:-1], glued) if w and w.islower()]
        if glued_words:
            vocabulary = medical_vocabulary() if vocabulary is None else vocabulary
        if any(w in vocabulary for w in glued_words) or (  # vocabulary is loaded when there are any
            following is not None and following.lower() in _CLINICAL_FOLLOWERS
        ):
            found.append(match.group(0))
    return found
