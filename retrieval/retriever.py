"""The retriever: a note in, the k most likely billable codes out, best first.

Per note: split it into diagnosis mentions (`mentions.py`), expand abbreviations in each (`abbreviations.py`),
write its negations as the list does ("no coma" -> "without coma", `negation.py`), add the tabular list's
words after lay phrases (`lay_terms.py`), put the note's words for an injury's encounter in the list's terms
(`encounter.py`), search every mention with the code system's BM25 (the one behind `thce codes search`; all
mentions of a batch in one call), put first among a code's 7th-character siblings the one for the encounter
the mention states (`encounter.py` again), and the category's unspecified code above a sibling that claims
more than the mention says, and accidental intent above another intent the mention does not state
(`specificity.py`), optionally reorder each mention's hits by a sentence encoder's similarity (`dense.py`),
then fuse the mentions' ranked lists by reciprocal rank: a
code scores sum over lists of 1 / (rrf_c + rank). Each mention's best hit thus scores the same, so a short
mention ("HTN") is not drowned by a long one, and a code several mentions agree on rises.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thce.retrieval.abbreviations import expand_abbreviations
from thce.retrieval.dense import DenseScorer, rescore
from thce.retrieval.encounter import prefer_stated_encounter, state_encounter
from thce.retrieval.lay_terms import add_lay_terms
from thce.retrieval.mentions import split_mentions
from thce.retrieval.negation import state_absence
from thce.retrieval.specificity import prefer_accidental, prefer_unspecified
from thce.utils.config import RetrievalConfig


@dataclass(frozen=True, slots=True)
class Candidate:
    """One retrieved code, as a candidate-aware prompt offers it."""

    system: str  # "ICD10" (CPT/HCPCS later)
    code: str  # canonical dotted form, e.g. "E11.9"
    description: str  # official description, trimmed for prompts by `trim_description`
    score: float  # fused retrieval score, higher is better


def trim_description(description: str, max_chars: int) -> str:
    """`description` shortened to at most `max_chars` by cutting whole words out of its middle ("...");
    the start (the condition) and the end (laterality, encounter, the 7th character) are what tell
    siblings apart, so both stay. `max_chars` 0 leaves it whole."""
    description = " ".join(description.split())
    if max_chars <= 0 or len(description) <= max_chars:
        return description
    words = description.split(" ")
    head: list[str] = []
    tail: list[str] = []
    budget = max_chars - len(" ...")
    # Alternate: one word from the front, one from the back, while they fit (front first).
    front, back = 0, len(words) - 1
    used = 0
    take_front = True
    while front <= back:
        word = words[front] if take_front else words[back]
        cost = len(word) + 1
        if used + cost > budget:
            break
        used += cost
        if take_front:
            head.append(word)
            front += 1
        else:
            tail.insert(0, word)
            back -= 1
        take_front = not take_front
    return " ".join([*head, "...", *tail]) if head else description[: max_chars - 3] + "..."


def reciprocal_rank_fusion(
    ranked_lists: Sequence[Sequence[tuple[str, float]]], c: int
) -> list[tuple[str, float]]:
    """Items of several best-first lists of (item, score), ranked by sum of 1 / (c + rank) (rank from 1).
    Ties (every list's best item scores the same) are broken by the item's best own score, so the
    strongest match of all the lists comes first."""
    fused: dict[str, float] = {}
    best: dict[str, float] = {}
    for ranked in ranked_lists:
        for rank, (item, score) in enumerate(ranked, 1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (c + rank)
            best[item] = max(best.get(item, score), score)
    return sorted(fused.items(), key=lambda pair: (-pair[1], -best[pair[0]]))


class Retriever:
    """Candidates for notes under one `RetrievalConfig`. Build it once (`get_retriever`): the first search
    indexes the code set (~5 s); afterwards a note costs a few milliseconds per mention."""

    def __init__(self, config: RetrievalConfig) -> None:
        from thce.utils.code_validator import get_code_system

        self.config = config
        self.system = get_code_system(config.system)
        self.dense = DenseScorer(config.dense_model, self._description) if config.dense_model else None

    def _description(self, code: str) -> str:
        return self.system.description(code) or ""

    def _ranked(self, query: str, hits: Sequence[Any]) -> list[tuple[str, float]]:
        """One mention's BM25 hits as (code, score), best first, with the sibling preferences applied."""
        ranked = [(hit.code, hit.score) for hit in hits]
        if self.config.encounter_aware:
            ranked = prefer_stated_encounter(query, ranked, self._description)
        if self.config.prefer_unspecified:
            ranked = prefer_unspecified(query, ranked, self._description)
            ranked = prefer_accidental(query, ranked, self._description)
        return ranked

    def queries(self, text: str) -> list[str]:
        """The search queries for one note: its mentions (or the whole note), abbreviations expanded."""
        mentions = split_mentions(text) if self.config.split_mentions else [text]
        if self.config.expand_abbreviations:
            mentions = [expand_abbreviations(mention) for mention in mentions]
        if self.config.negation_aware:
            mentions = [state_absence(mention) for mention in mentions]
        if self.config.encounter_aware:
            mentions = [state_encounter(mention) for mention in mentions]
        if self.config.expand_lay_terms:
            mentions = [add_lay_terms(mention) for mention in mentions]
        return mentions

    def retrieve(self, text: str, k: int | None = None) -> list[Candidate]:
        """The top `k` (default `config.k`) candidates for one note, best first."""
        return self.retrieve_batch([text], k)[0]

    def retrieve_batch(
        self, texts: Sequence[str], k: int | None = None, progress: bool = False
    ) -> list[list[Candidate]]:
        """`retrieve` for many notes; searches run in chunks of notes (one BM25 call per chunk)."""
        k = self.config.k if k is None else k
        if k < 1:
            raise ValueError(f"k must be at least 1 (got {k})")
        from tqdm import tqdm

        results: list[list[Candidate]] = []
        chunk = 256
        with tqdm(
            total=len(texts), desc="retrieve", unit="note", disable=not progress, mininterval=1.0
        ) as bar:
            for start in range(0, len(texts), chunk):
                results.extend(self._retrieve_chunk(texts[start : start + chunk], k))
                bar.update(min(chunk, len(texts) - start))
        return results

    def _retrieve_chunk(self, texts: Sequence[str], k: int) -> list[list[Candidate]]:
        per_note = [self.queries(text if isinstance(text, str) else "") for text in texts]
        flat = [query for queries in per_note for query in queries]
        hits = self.system.search_many(flat, top=max(self.config.per_mention, k)) if flat else []
        ranked = [self._ranked(query, found) for query, found in zip(flat, hits, strict=True)]
        if self.dense is not None:
            similarities = self.dense.similarities(
                flat, [[code for code, _ in mention] for mention in ranked]
            )
            ranked = [
                rescore(mention, scores, self.config.dense_prior)
                for mention, scores in zip(ranked, similarities, strict=True)
            ]
        results = []
        position = 0
        for queries in per_note:
            lists = ranked[position : position + len(queries)]
            position += len(queries)
            fused = reciprocal_rank_fusion(lists, self.config.rrf_c)[:k]
            results.append(
                [
                    Candidate(
                        self.system.name,
                        code,
                        trim_description(
                            self.system.description(code) or "", self.config.description_max_chars
                        ),
                        score,
                    )
                    for code, score in fused
                ]
            )
        return results


_cache: dict[str, Retriever] = {}
_lock = threading.Lock()


def get_retriever(config: RetrievalConfig | None = None) -> Retriever:
    """The process-wide retriever for `config` (defaults when None), built on first use."""
    config = config if config is not None else RetrievalConfig()
    key = repr(dataclasses.astuple(config))
    with _lock:
        retriever = _cache.get(key)
        if retriever is None:
            retriever = _cache[key] = Retriever(config)
    return retriever
