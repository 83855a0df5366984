"""What every code system offers: the result types and the small interface the registry hands out.

A code system normalises a code, checks it (`CodeCheck`), describes it (`CodeDetails`), lists its billable
codes and searches its descriptions with BM25. Adding a system (NDC, DRG) is one module with one subclass
of `CodeSystem` and one line in `registry.py`.
"""

from __future__ import annotations

import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from thce.utils.errors import UserError

Basis = Literal["code_set", "format"]

# Longest input echoed back in a result or message: a 10 kB paste must not become a 10 kB message.
MAX_ECHO = 40

# Latin letters that other scripts draw identically. Never folded silently (a model that writes a
# Cyrillic 'Е' wrote a wrong token); used only to say which character is at fault and what was meant.
LOOKALIKES = str.maketrans(
    "АВЕКМНОРСТХУІЈЅаеорсхуіјѕΑΒΕΖΗΙΚΜΝΟΡΤΥΧαοιν",
    "ABEKMHOPCTXYIJSaeopcxyijsABEZHIKMNOPTYXaoiv",
)


@dataclass(frozen=True, slots=True)
class HierarchyNode:
    """One level above a code: chapter, block, category or subcategory."""

    code: str
    description: str
    level: str


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """Everything a caller needs to accept, reject or explain one code.

    `valid` means the code exists in the code set (or, with basis `format`, that it is well formed);
    `billable` is None where the basis cannot tell. `message` is one sentence a coder can act on.
    """

    input: str | None
    system: str
    code: str | None
    valid: bool
    billable: bool | None
    basis: Basis
    message: str
    description: str | None = None
    ancestors: tuple[HierarchyNode, ...] = ()
    billable_children: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (ancestors as dicts, tuples as lists)."""
        data = asdict(self)
        data["ancestors"] = [asdict(node) for node in self.ancestors]
        data["billable_children"] = list(self.billable_children)
        data["suggestions"] = list(self.suggestions)
        return data


@dataclass(frozen=True, slots=True)
class CodeNote:
    """A tabular-list note (inclusion term, Excludes1, Use additional code ...) and the level it sits at."""

    source: str
    kind: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CodeDetails:
    """What `thce codes show` prints: the code, its place in the hierarchy and the notes that apply."""

    system: str
    code: str
    level: str
    description: str
    billable: bool | None
    basis: Basis
    ancestors: tuple[HierarchyNode, ...] = ()
    children: tuple[str, ...] = ()
    notes: tuple[CodeNote, ...] = ()
    seventh_characters: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        data = asdict(self)
        data["ancestors"] = [asdict(node) for node in self.ancestors]
        data["children"] = list(self.children)
        data["notes"] = [{**asdict(note), "items": list(note.items)} for note in self.notes]
        return data


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One ranked search result."""

    system: str
    code: str
    description: str
    score: float


def echo(value: object) -> str:
    """A short, printable rendering of any input, for messages."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= MAX_ECHO else f"{text[:MAX_ECHO]}... ({len(text)} characters)"


def non_ascii_problem(text: str) -> tuple[str, str | None]:
    """Explain the first non-ASCII character of `text`; return (message, ASCII look-alike rendering or None)."""
    char = next(c for c in text if not c.isascii())
    name = unicodedata.name(char, "unnamed character")
    folded = unicodedata.normalize("NFKC", text).translate(LOOKALIKES)
    hint = folded if folded.isascii() and folded != text else None
    message = f"contains the non-ASCII character {char!r} (U+{ord(char):04X} {name})"
    if hint:
        message += f"; codes are ASCII: did you mean {hint.strip().upper()}?"
    return message, hint


def clean_input(code: object, max_length: int, too_long: str) -> tuple[str | None, str]:
    """The checks every system makes before its own format rules: text, not empty, not absurdly long,
    ASCII. Returns (stripped upper-case text, "") or (None, why not); `too_long` may use `{n}`."""
    if code is None:
        return None, "no code given (None)"
    if not isinstance(code, str):
        return None, f"expected the code as text, got {type(code).__name__}"
    text = code.strip()
    if not text:
        return None, "empty code"
    if len(text) > max_length:
        return None, too_long.format(n=len(text))
    if not text.isascii():
        return None, non_ascii_problem(text)[0]
    return text.upper(), ""


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (codes are at most 8 characters, so the plain DP is fast enough)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


# Single characters count in codes' descriptions ("type 2", "stage 3", "C1-C4"): bm25s's default pattern drops them.
TOKEN_PATTERN = r"(?u)\b\w+\b"


def light_stem(words: list[str]) -> list[str]:
    """Fold plurals (fractures -> fracture, injuries -> injury); enough for descriptions, no dependency."""
    stems = []
    for word in words:
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
        stems.append(word)
    return stems


def tokenize(texts: list[str]) -> Any:
    """The one tokenisation for indexing and querying (bm25s, English stop words, light stemming)."""
    import bm25s

    return bm25s.tokenize(
        texts, token_pattern=TOKEN_PATTERN, stopwords="en", stemmer=light_stem, show_progress=False
    )


def _top_k(scores: Any, k: int) -> Any:
    """Indices of the `k` highest `scores`, best first; among equal scores the later code first, where ICD-10-CM
    puts the unspecified side or site (9) and "other" (8). Selected among the negated scores:
    most of a query's scores are 0, and numpy's selection slows ~8x when its pivot falls among equal values, as
    it does in bm25s' own top-k (`np.argpartition(scores, -k)`): 8 ms a query over the 74,719 ICD-10-CM codes."""
    import numpy as np

    negated = -scores
    chosen = np.argpartition(negated, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return chosen[np.lexsort((-chosen, negated[chosen]))]


class CodeSystem(ABC):
    """One code system. Subclasses implement `normalise_with_reason`, `check`, `describe`, `billable_codes`
    and `search_corpus`; `is_valid`, `search` and batch validation come for free."""

    name: str
    """Canonical name ("ICD10", "CPT", "HCPCS")."""
    title: str
    """Human name ("ICD-10-CM")."""
    basis: Basis
    """What `valid` rests on for this instance."""

    _bm25: Any = None
    _bm25_codes: list[str] | None = None

    @abstractmethod
    def normalise_with_reason(self, code: object) -> tuple[str | None, str]:
        """Return (canonical form, "") for a well-formed code, or (None, why it is not well formed)."""

    def normalise(self, code: object) -> str | None:
        """Canonical form of a well-formed code (existing or not), or None if it cannot be a code."""
        return self.normalise_with_reason(code)[0]

    @abstractmethod
    def is_valid(self, code: object, require_billable: bool = False) -> bool:
        """Fast yes/no: is this (normalisable) code valid, and billable if asked? Never raises."""

    def validate_many(self, codes: Iterable[object], require_billable: bool = False) -> list[bool]:
        """`is_valid` over many codes with the method looked up once."""
        is_valid = self.is_valid
        return [is_valid(code, require_billable) for code in codes]

    @abstractmethod
    def check(self, code: object) -> CodeCheck:
        """The full, explained result for one code. Never raises on bad input."""

    def suggest(self, canonical: str) -> tuple[str, ...]:
        """Closest valid codes to a well-formed code that is not in the set (none by default)."""
        return ()

    def repair_suggestions(self, code: object, limit: int = 5) -> tuple[str, ...]:
        """For malformed input: valid codes that folding look-alikes, dropping separators or a trailing
        modifier (`99213-25`) would give; else the closest codes to the separator-free spelling."""
        if not isinstance(code, str) or len(code) > MAX_ECHO:
            return ()
        folded = unicodedata.normalize("NFKC", code).translate(LOOKALIKES).strip()
        compact = re.sub(r"[\s._-]", "", folded)
        variants = (folded, folded.replace(".", ""), compact, re.sub(r"[\s-]+[0-9A-Za-z]{2}$", "", folded))
        found: list[str] = []
        for variant in variants:
            canonical = self.normalise(variant)
            if canonical is not None and self.is_valid(canonical) and canonical not in found:
                found.append(canonical)
        if not found and (canonical := self.normalise(compact)) is not None:
            found.extend(self.suggest(canonical))
        return tuple(found[:limit])

    @abstractmethod
    def describe(self, code: object) -> CodeDetails | None:
        """Description, hierarchy and notes of a code (or heading), or None if it is not in the set."""

    @abstractmethod
    def description(self, code: str) -> str | None:
        """Description of a canonical code, or None where the set has none (format-only systems)."""

    @abstractmethod
    def billable_codes(self) -> list[str]:
        """Sorted canonical billable codes. Raises `UserError` where no code set is configured."""

    @abstractmethod
    def search_corpus(self) -> tuple[list[str], list[str]]:
        """(codes, texts) that `search` indexes; raises `UserError` where there is nothing to search."""

    def search(self, query: str, top: int = 10) -> list[SearchHit]:
        """BM25 over descriptions (and, for ICD-10-CM, inclusion terms); best first."""
        return self.search_many([query], top=top)[0]

    def search_many(self, queries: Sequence[str], top: int = 10) -> list[list[SearchHit]]:
        """`search` for many queries in one BM25 call (what the baseline evaluator uses)."""
        if top < 1:
            raise UserError(f"--top must be at least 1 (got {top})")
        retriever, codes = self._search_index()
        tokens = tokenize([query if isinstance(query, str) else "" for query in queries])
        k = min(top, len(codes))
        words = {index: word for word, index in tokens.vocab.items()}
        results = []
        for ids in tokens.ids:
            if not ids:  # only stop words: nothing scores
                results.append([])
                continue
            scores = retriever.get_scores([words[i] for i in ids])
            best = _top_k(scores, k)
            results.append(
                [
                    SearchHit(self.name, codes[i], self.description(codes[i]) or "", float(scores[i]))
                    for i in best
                    if scores[i] > 0
                ]
            )
        return results

    def _search_index(self) -> tuple[Any, list[str]]:
        if self._bm25 is None:
            import bm25s

            codes, texts = self.search_corpus()
            tokens = tokenize(texts)
            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            self._bm25, self._bm25_codes = retriever, codes
        return self._bm25, self._bm25_codes  # type: ignore[return-value]
