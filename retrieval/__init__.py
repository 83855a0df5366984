"""Candidate retrieval: the codes a candidate-aware prompt offers the model (docs/architecture.md).

    from thce.retrieval import get_retriever
    candidates = get_retriever(config.retrieval).retrieve("Assessment: HTN; DM2 w/ CKD 3")

Depends on thce.utils only. The `retrieval:` config section is `thce.utils.config.RetrievalConfig`.
"""

from thce.retrieval.abbreviations import ABBREVIATIONS, expand_abbreviations
from thce.retrieval.dense import DenseScorer, rescore, resolve_dense_model
from thce.retrieval.encounter import (
    ENCOUNTER_TERMS,
    prefer_stated_encounter,
    state_encounter,
    stated_encounter,
)
from thce.retrieval.lay_terms import LAY_TERMS, add_lay_terms
from thce.retrieval.mentions import split_mentions
from thce.retrieval.negation import NEGATION_CUES, state_absence
from thce.retrieval.retriever import (
    Candidate,
    Retriever,
    get_retriever,
    reciprocal_rank_fusion,
    trim_description,
)
from thce.retrieval.specificity import prefer_accidental, prefer_unspecified
from thce.utils.config import RetrievalConfig

__all__ = [
    "ABBREVIATIONS",
    "ENCOUNTER_TERMS",
    "LAY_TERMS",
    "NEGATION_CUES",
    "Candidate",
    "DenseScorer",
    "RetrievalConfig",
    "Retriever",
    "add_lay_terms",
    "expand_abbreviations",
    "get_retriever",
    "prefer_accidental",
    "prefer_stated_encounter",
    "prefer_unspecified",
    "reciprocal_rank_fusion",
    "rescore",
    "resolve_dense_model",
    "split_mentions",
    "state_absence",
    "state_encounter",
    "stated_encounter",
    "trim_description",
]
