"""Synthetic training data from the official ICD-10-CM FY2026 code set (no LLM needed), plus an optional
LLM backend for users with an API key.

Three template generators, one per stage, all deterministic for a seed and streaming (they yield records):
- `icd10cm` (stage 1): clinical narratives built from each code's description, inclusion terms,
  7th-character meaning and hierarchy, in varied registers (assessment lines, HPI sentences, problem
  lists, discharge-summary phrasing, SOAP notes) with common abbreviations (HTN, T2DM, CKD, COPD ...);
  single- and multi-code examples. Canonical records (DESIGN.md section 3), `reasoning` null.
- `icd10cm_reasoning` (stage 2): the same narratives with a reasoning trace that walks the real
  hierarchy (chapter -> block -> category -> subcategory -> code), names the deciding specificity
  (type, laterality, encounter, complication, acuity, severity) and cites the Excludes1 note that rules
  out a neighbour. Nothing in a trace is invented: every fact comes from the tabular list.
- `icd10cm_preference` (stage 3): preference records; chosen = correct codes with the faithful trace,
  rejected = a hard negative whose kind is recorded (`sibling`, `parent`, `invalid`, `wrong_chapter`,
  `missing_secondary`).

The texts are generated, never copied from patients, so they carry no PHI; records say so in
`meta.phi_free`, and the collector may skip PHI scrubbing for such sources (documented in the README).

Options (a source's `options:` mapping; an unknown option is a UserError naming it):
    scope: billable | chapters | codes | top_n     (default: billable, or implied by the keys below)
    chapters: [4, 9, "E00-E89"]    codes: [E11.9, I10]    top_n: 100
    multi_code_rate: 0.3           max_codes: 3            phi_free: true
    rejection_kinds: [sibling, parent, invalid, wrong_chapter, missing_secondary]   (stage 3)
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from loguru import logger

from thce.utils.errors import UserError

TEMPLATE_GENERATORS = ("icd10cm", "icd10cm_reasoning", "icd10cm_preference")
LLM_GENERATOR = "llm"
REJECTION_KINDS = ("sibling", "parent", "invalid", "wrong_chapter", "missing_secondary")
SCOPES = ("billable", "chapters", "codes", "top_n")
TEMPLATE_OPTIONS = {
    "scope",
    "chapters",
    "codes",
    "top_n",
    "multi_code_rate",
    "max_codes",
    "phi_free",
    "rejection_kinds",
}

# Frequent outpatient and inpatient diagnoses, most common first: the `top_n` scope and the pool that
# secondary (comorbidity) codes are drawn from. Curated from public utilisation summaries; codes the
# validator does not accept as billable are skipped with a warning, so the list can age safely.
COMMON_CODES = [
    "I10",
    "E11.9",
    "E78.5",
    "Z00.00",
    "J06.9",
    "E66.9",
    "K21.9",
    "F41.1",
    "F32.A",
    "M54.50",
    "E78.2",
    "J45.909",
    "E03.9",
    "E55.9",
    "Z23",
    "R05.9",
    "N39.0",
    "J44.9",
    "I48.91",
    "I25.10",
    "E11.65",
    "F17.210",
    "R53.83",
    "M54.2",
    "G47.33",
    "J02.9",
    "J01.90",
    "R10.9",
    "D64.9",
    "Z79.4",
    "E11.22",
    "I50.9",
    "N18.30",
    "M17.11",
    "M17.12",
    "R51.9",
    "G43.909",
    "J20.9",
    "K59.00",
    "R07.9",
    "R42",
    "E78.00",
    "Z87.891",
    "Z79.01",
    "E66.01",
    "F33.1",
    "F43.10",
    "N40.0",
    "J18.9",
    "I11.9",
    "I12.9",
    "E87.6",
    "E86.0",
    "D50.9",
    "K58.9",
    "K52.9",
    "K57.30",
    "K76.0",
    "R73.03",
    "R73.09",
    "E11.40",
    "E10.9",
    "I73.9",
    "L03.90",
    "L30.9",
    "L40.0",
    "L70.0",
    "B35.1",
    "M19.90",
    "M25.561",
    "M25.562",
    "M81.0",
    "M10.9",
    "M06.9",
    "G40.909",
    "G30.9",
    "F03.90",
    "F84.0",
    "F90.9",
    "F31.9",
    "F20.9",
    "G89.29",
    "H10.9",
    "H52.4",
    "H25.9",
    "H40.9",
    "H61.23",
    "J30.9",
    "J32.9",
    "J43.9",
    "K29.70",
    "K40.90",
    "K50.90",
    "K51.90",
    "K92.2",
    "N17.9",
    "N18.9",
    "N20.0",
    "N30.00",
    "Z34.90",
    "Z12.31",
    "Z12.11",
    "Z71.3",
    "Z72.0",
    "Z95.1",
    "Z95.5",
    "R60.9",
    "R11.2",
    "R19.7",
    "R50.9",
    "R06.02",
    "R00.2",
    "R03.0",
    "R35.0",
    "S93.401A",
    "S52.501A",
    "S06.0X0A",
    "D69.6",
    "C50.911",
    "C61",
    "C34.90",
    "C18.9",
    "B20",
    "A09",
    "A41.9",
    "A49.9",
    "B02.9",
    "B00.9",
    "L02.91",
    "L57.0",
    "L82.1",
    "D22.9",
    "M62.830",
    "M54.16",
    "E04.2",
    "E05.90",
    "E28.2",
    "I63.9",
    "I21.4",
    "I26.99",
    "I82.401",
    "J96.01",
    "K35.80",
    "K80.20",
    "N95.1",
    "N92.0",
    "R31.9",
    "R39.15",
    "U07.1",
    "F10.20",
    "F11.20",
    "Z30.09",
    "Z01.419",
    "O80",
    "G20.A1",
]

ABBREVIATIONS = (
    (r"\bessential \(primary\) hypertension\b", ("HTN", "essential hypertension", "primary hypertension")),
    (r"\btype 2 diabetes mellitus\b", ("T2DM", "DM2", "type 2 DM")),
    (r"\btype 1 diabetes mellitus\b", ("T1DM", "DM1", "type 1 DM")),
    (r"\bchronic kidney disease\b", ("CKD",)),
    (r"\bchronic obstructive pulmonary disease\b", ("COPD",)),
    (r"\bgastro-esophageal reflux disease\b", ("GERD", "acid reflux disease")),
    (r"\batherosclerotic heart disease of native coronary artery\b", ("CAD of native coronary artery",)),
    (r"\bcongestive heart failure\b", ("CHF",)),
    (r"\bheart failure\b", ("HF",)),
    (r"\batrial fibrillation\b", ("AFib", "AF")),
    (r"\burinary tract infection\b", ("UTI",)),
    (r"\bmajor depressive disorder\b", ("MDD",)),
    (r"\bhyperlipidemia\b", ("HLD",)),
    (r"\bbenign prostatic hyperplasia\b", ("BPH",)),
    (r"\bobstructive sleep apnea\b", ("OSA",)),
    (r"\bacute kidney failure\b", ("AKI", "acute renal failure")),
    (r"\bdeep vein thrombosis\b", ("DVT",)),
    (r"\battention-deficit hyperactivity disorder\b", ("ADHD",)),
    (r"\bgeneralized anxiety disorder\b", ("GAD",)),
    (r"\brheumatoid arthritis\b", ("RA",)),
    (r"\bosteoarthritis\b", ("OA",)),
    (r"\bacute upper respiratory infection\b", ("URI",)),
    (r"\bmyocardial infarction\b", ("MI",)),
    (r"\bpost-traumatic stress disorder\b", ("PTSD",)),
    (r"\birritable bowel syndrome\b", ("IBS",)),
    (r"\bpulmonary embolism\b", ("PE",)),
    (r"\bgastrointestinal\b", ("GI",)),
    (r"\bwithout complications\b", ("uncomplicated", "without complications")),
    (r"\bhuman immunodeficiency virus \[HIV\] disease\b", ("HIV disease",)),
)
_ABBREVIATION_RES = tuple((re.compile(p, re.IGNORECASE), choices) for p, choices in ABBREVIATIONS)

ENCOUNTER_PHRASES = {
    "initial encounter": ("initial encounter", "initial visit", "initial evaluation"),
    "subsequent encounter": ("subsequent encounter", "follow-up visit", "return visit"),
    "sequela": ("sequela", "late effect"),
}
FILLERS = (
    "Vitals stable.",
    "Vital signs within normal limits.",
    "Labs reviewed.",
    "Medications reconciled.",
    "Plan discussed with the patient.",
    "Follow up in 3 months.",
    "Follow up in 2 weeks.",
    "Return precautions given.",
    "Afebrile.",
    "No acute distress.",
    "Continue current management.",
    "Patient verbalized understanding.",
    "Will reassess at next visit.",
    "Referral placed as needed.",
    "Counseling provided.",
)
SPECIFICITY_AXES = (
    ("type", re.compile(r"\btype [0-9A-Z]+\b|\b(?:primary|secondary)\b", re.I)),
    ("laterality", re.compile(r"\b(?:right|left|bilateral|unspecified side)\b", re.I)),
    ("encounter", re.compile(r"\b(?:initial encounter|subsequent encounter|sequela)\b[^,;]*", re.I)),
    ("complication", re.compile(r"\b(?:with(?:out)? [^,;()]+)", re.I)),
    ("acuity", re.compile(r"\b(?:acute on chronic|acute|chronic|subacute|recurrent)\b", re.I)),
    ("severity", re.compile(r"\b(?:mild|moderate|severe|stage \w+|in remission)\b", re.I)),
    ("site", re.compile(r"\b(?:upper|lower|anterior|posterior|proximal|distal)\b[^,;]*", re.I)),
)


@dataclass(frozen=True)
class CodeInfo:
    """What the generators need to know about one billable code, all from the tabular list."""

    code: str
    description: str
    chapter: tuple[str, str]
    block: tuple[str, str]
    path: tuple[tuple[str, str, str], ...]  # (code, description, level) from category down to the parent
    inclusion_terms: tuple[str, ...]
    excludes1: tuple[tuple[str, str], ...]  # (where the note sits, the note)
    seventh: str | None  # the 7th character's meaning, for 7th-character codes
    siblings: tuple[str, ...]  # billable codes under the same parent

    @property
    def category(self) -> str:
        return self.code[:3]

    @property
    def parent(self) -> str:
        return self.path[-1][0] if self.path else self.category


@dataclass
class GeneratorOptions:
    """A template generator's options, validated."""

    scope: str = "billable"
    chapters: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    top_n: int | None = None
    multi_code_rate: float = 0.3
    max_codes: int = 3
    phi_free: bool = True
    rejection_kinds: list[str] = field(default_factory=lambda: list(REJECTION_KINDS))


def parse_options(options: Mapping[str, Any], where: str = "synthetic source") -> GeneratorOptions:
    """Validate a template generator's `options`; unknown keys and bad values are UserErrors naming them."""
    unknown = sorted(set(options) - TEMPLATE_OPTIONS)
    if unknown:
        raise UserError(
            f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(TEMPLATE_OPTIONS))}"
        )
    parsed = GeneratorOptions()
    if "chapters" in options:
        parsed.chapters = [str(c) for c in _as_list(options["chapters"], "chapters", where)]
        parsed.scope = "chapters"
    if "codes" in options:
        parsed.codes = [str(c) for c in _as_list(options["codes"], "codes", where)]
        parsed.scope = "codes"
    if "top_n" in options:
        top_n = options["top_n"]
        if not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1:
            raise UserError(f"{where}: option 'top_n' must be a positive integer, got {top_n!r}")
        parsed.top_n = top_n
        parsed.scope = "top_n"
    if "scope" in options:
        if options["scope"] not in SCOPES:
            raise UserError(
                f"{where}: option 'scope' must be one of {', '.join(SCOPES)}, got {options['scope']!r}"
            )
        parsed.scope = options["scope"]
    if parsed.scope == "chapters" and not parsed.chapters:
        raise UserError(f"{where}: scope 'chapters' needs option 'chapters' (e.g. [4, 9])")
    if parsed.scope == "codes" and not parsed.codes:
        raise UserError(f"{where}: scope 'codes' needs option 'codes' (e.g. [E11.9, I10])")
    if parsed.scope == "top_n" and parsed.top_n is None:
        raise UserError(f"{where}: scope 'top_n' needs option 'top_n' (e.g. 100)")
    rate = options.get("multi_code_rate", parsed.multi_code_rate)
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise UserError(f"{where}: option 'multi_code_rate' must be a number in [0, 1], got {rate!r}")
    parsed.multi_code_rate = float(rate)
    max_codes = options.get("max_codes", parsed.max_codes)
    if not isinstance(max_codes, int) or isinstance(max_codes, bool) or not 1 <= max_codes <= 8:
        raise UserError(f"{where}: option 'max_codes' must be an integer from 1 to 8, got {max_codes!r}")
    parsed.max_codes = max_codes
    phi_free = options.get("phi_free", True)
    if not isinstance(phi_free, bool):
        raise UserError(f"{where}: option 'phi_free' must be true or false, got {phi_free!r}")
    parsed.phi_free = phi_free
    if "rejection_kinds" in options:
        kinds = [str(k) for k in _as_list(options["rejection_kinds"], "rejection_kinds", where)]
        bad = [k for k in kinds if k not in REJECTION_KINDS]
        if bad or not kinds:
            raise UserError(
                f"{where}: option 'rejection_kinds' has unknown kind(s) {bad}; known: {', '.join(REJECTION_KINDS)}"
            )
        parsed.rejection_kinds = kinds
    return parsed


def _as_list(value: Any, name: str, where: str) -> list[Any]:
    if isinstance(value, (str, int)):
        return [value]
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: option '{name}' must be a non-empty list, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------
# The code set


@cache
def _billable() -> tuple[str, ...]:
    from thce.utils.code_validator import billable_codes

    return tuple(billable_codes("ICD10"))


@cache
def _billable_set() -> frozenset[str]:
    return frozenset(_billable())


@cache
def code_info(code: str) -> CodeInfo:
    """The hierarchy, notes and siblings of a billable ICD-10-CM code (cached)."""
    from thce.utils.code_validator import describe_code

    details = describe_code(code, "ICD10")
    if details is None or not details.billable:
        raise ValueError(f"{code} is not a billable ICD-10-CM code")
    ancestors = details.ancestors
    chapter = next(((a.code, a.description) for a in ancestors if a.level == "chapter"), ("", ""))
    block = next(((a.code, a.description) for a in ancestors if a.level == "block"), ("", ""))
    path = tuple((a.code, a.description, a.level) for a in ancestors if a.level not in ("chapter", "block"))
    inclusion = tuple(
        item
        for note in details.notes
        if note.source == code and note.kind == "inclusion terms"
        for item in note.items
    )
    # Excludes1 notes from the code up to its category: the neighbours a coder must rule out.
    excludes1 = tuple(
        (note.source, item)
        for note in details.notes
        if note.kind == "Excludes1" and note.source[:3] == code[:3]
        for item in note.items
    )
    seventh = None
    if details.level == "code with 7th character" and details.seventh_characters:
        seventh = details.seventh_characters.get(code[-1])
    parent = path[-1][0] if path else code[:3]
    parent_details = describe_code(parent, "ICD10")
    billable = _billable_set()
    siblings = tuple(
        c for c in (parent_details.children if parent_details else ()) if c != code and c in billable
    )
    return CodeInfo(code, details.description, chapter, block, path, inclusion, excludes1, seventh, siblings)


def _chapter_matches(code: str, wanted: list[str]) -> bool:
    """A chapter is named by its number ("9") or its code range ("I00-I99")."""
    chapter_number, chapter_description = code_info(code).chapter
    return any(item == chapter_number or f"({item})" in chapter_description for item in wanted)


def scope_codes(options: GeneratorOptions, where: str = "synthetic source") -> list[str]:
    """The billable codes a generator draws from, in a stable order."""
    from thce.utils.code_validator import normalise_code

    billable = _billable_set()
    if options.scope == "billable":
        return list(_billable())
    if options.scope == "top_n":
        common = [c for c in COMMON_CODES if c in billable]
        skipped = [c for c in COMMON_CODES if c not in billable]
        if skipped:
            logger.warning(
                f"common-code list: {len(skipped)} code(s) not billable in this code set: {skipped}"
            )
        if options.top_n > len(common):
            raise UserError(
                f"{where}: option 'top_n' is {options.top_n}, but only {len(common)} common codes are listed"
            )
        return common[: options.top_n]
    if options.scope == "codes":
        codes = []
        for raw in options.codes:
            canonical = normalise_code(raw, "ICD10")
            if canonical not in billable:
                raise UserError(f"{where}: option 'codes' has {raw!r}, not a billable ICD-10-CM code")
            codes.append(canonical)
        return list(dict.fromkeys(codes))
    wanted = [str(c).strip() for c in options.chapters]
    chapters = {str(n) for n in range(1, 23)}
    for item in wanted:
        if item not in chapters and not re.fullmatch(r"[A-Z]\d\d-[A-Z]\d\d", item):
            raise UserError(
                f"{where}: option 'chapters' has {item!r}; use a chapter number 1-22 or a range like E00-E89"
            )
    codes = [c for c in _billable() if _chapter_matches(c, wanted)]
    if not codes:
        raise UserError(f"{where}: option 'chapters' {wanted} selects no billable code")
    return codes


# ---------------------------------------------------------------------------------------------------
# Narratives


def _lower_first(text: str) -> str:
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text


def condition_phrases(info: CodeInfo) -> list[str]:
    """Ways a clinician might document this code's condition, each keeping the facts that decide the code."""
    description = info.description
    phrases = [_lower_first(description)]
    for term in info.inclusion_terms:
        if len(term) > 3:
            phrases.append(_lower_first(term))
    base = description
    if info.seventh:
        # "Fracture of ... right femur, initial encounter for closed fracture" -> re-worded encounter.
        for key, variants in ENCOUNTER_PHRASES.items():
            if key in description:
                base_variants = [description.replace(key, v) for v in variants[1:]]
                phrases.extend(_lower_first(v) for v in base_variants)
                break
    for pattern, choices in _ABBREVIATION_RES:
        if pattern.search(base):
            for choice in choices:
                phrases.append(_lower_first(pattern.sub(choice, base)))
            break
    if base.endswith(", unspecified"):
        phrases.append(_lower_first(base.removesuffix(", unspecified")))
    category_description = info.path[0][1] if info.path else ""
    if category_description and base.startswith(category_description) and base != category_description:
        rest = base[len(category_description) :].strip(" ,")
        if rest:
            phrases.append(f"{_lower_first(category_description)}: {rest}")
    return list(dict.fromkeys(p for p in phrases if p))


def _patient(info: CodeInfo, rng: random.Random) -> tuple[str, str]:
    """An age and sex consistent with the code (pregnancy -> adult female, perinatal -> newborn)."""
    text = info.description.lower()
    chapter = info.chapter[0]
    if chapter == "16" or info.code.startswith("Z38"):
        return rng.choice(("newborn", "2-day-old", "1-week-old", "3-day-old")), rng.choice(("male", "female"))
    if chapter == "15" or re.search(
        r"\b(?:ovar|uter|vagin|vulv|cervi|pregnan|female|menstru|endometri)", text
    ):
        return f"{rng.randint(18, 44)}-year-old", "female"
    if re.search(r"\b(?:prostat|testi|scrot|penis|male\b)", text):
        return f"{rng.randint(25, 85)}-year-old", "male"
    if chapter == "17" or re.search(r"\b(?:childhood|infant|juvenile)", text):
        return f"{rng.randint(1, 12)}-year-old", rng.choice(("male", "female", "boy", "girl"))
    return f"{rng.randint(18, 90)}-year-old", rng.choice(("male", "female", "man", "woman", "patient"))


def _render(register: str, conditions: list[str], age: str, sex: str, rng: random.Random) -> str:
    first, others = conditions[0], conditions[1:]
    also = ", ".join(others)
    filler = " ".join(rng.sample(FILLERS, k=rng.randint(0, 2)))
    sex_short = {"male": "M", "man": "M", "boy": "M", "female": "F", "woman": "F", "girl": "F"}.get(sex, "pt")
    if register == "assessment":
        lines = [f"Assessment: {first}."] + [f"Also: {o}." for o in others]
        text = " ".join(lines) + (f" {filler}" if filler else "")
    elif register == "assessment_plan":
        items = "; ".join(conditions)
        text = f"A/P: {items}. {filler or 'Continue current management.'}"
    elif register == "hpi":
        history = f" with a history of {also}" if others else ""
        verb = rng.choice(("presents with", "is seen today for", "comes in for evaluation of", "reports"))
        text = f"{age.capitalize()} {sex}{history} {verb} {first}. {filler}".strip()
    elif register == "hpi_short":
        history = f" w/ hx of {also}" if others else ""
        text = f"{age.replace('-year-old', ' y/o')} {sex_short}{history} here for {first}. {filler}".strip()
    elif register == "problem_list":
        rows = "\n".join(f"{i}. {c}" for i, c in enumerate(conditions, 1))
        text = f"Problem list:\n{rows}" + (f"\n{filler}" if filler else "")
    elif register == "discharge":
        secondary = f" Secondary diagnoses: {also}." if others else ""
        course = rng.choice(
            ("Discharged home in stable condition.", "Hospital course uneventful.", "Stable for discharge.")
        )
        text = f"Discharge diagnosis: {first}.{secondary} {course}"
    elif register == "soap":
        text = f"S: {age} {sex} for visit. O: {filler or 'Exam as documented.'} A: {'; '.join(conditions)}. P: as discussed."
    else:  # "diagnosis"
        text = "Dx: " + "; ".join(conditions) + (f". {filler}" if filler else "")
    return text


REGISTERS = (
    "assessment",
    "assessment_plan",
    "hpi",
    "hpi_short",
    "problem_list",
    "discharge",
    "soap",
    "diagnosis",
)


# ---------------------------------------------------------------------------------------------------
# Reasoning traces (stage 2/3)


def specificity(info: CodeInfo) -> list[str]:
    """The axes that separate this code from its siblings, read from the descriptions themselves."""
    description = info.description
    sibling_descriptions = [code_info(s).description for s in info.siblings[:12]]
    found = []
    for axis, pattern in SPECIFICITY_AXES:
        match = pattern.search(description)
        if not match:
            continue
        value = match.group(0).strip()
        # An axis decides only where some sibling says otherwise.
        if not sibling_descriptions or any(value.lower() not in d.lower() for d in sibling_descriptions):
            found.append(f"{axis}: {value}")
    if info.seventh and not any(a.startswith("encounter") for a in found):
        found.append(f"7th character {info.code[-1]}: {info.seventh}")
    return found


def reasoning_trace(info: CodeInfo, brief: bool = False) -> str:
    """A faithful coding trace for one code: hierarchy, deciding specificity, an Excludes1 neighbour."""
    chapter_number, chapter_description = info.chapter
    block_code, block_description = info.block
    parts = [f"The note documents {_lower_first(info.description)}."]
    parts.append(f"Chapter {chapter_number}: {chapter_description}.")
    if not brief:
        parts.append(f"Block {block_code}: {block_description.replace(f' ({block_code})', '')}.")
    if not info.path:  # a category without subdivisions (I10, C61) is itself the billable code
        parts.append(f"Category {info.code}: {info.description}; it has no subdivisions.")
    for node_code, node_description, level in info.path:
        if level == "category":
            parts.append(f"Category {node_code}: {node_description}.")
        elif not brief:
            parts.append(f"Subcategory {node_code}: {node_description}.")
    axes = specificity(info)
    if axes:
        parts.append("Deciding specificity - " + "; ".join(axes) + ".")
    if info.excludes1 and not brief:
        source, note = info.excludes1[0]
        parts.append(f"Excludes1 at {source}: {note}; not documented here, so it does not apply.")
    parts.append(f"Billable code: {info.code}.")
    return " ".join(parts)


def reasoning_for(codes: list[str]) -> str:
    """The trace for a record: the first code in full, the others briefly."""
    return "\n".join(reasoning_trace(code_info(c), brief=i > 0) for i, c in enumerate(codes))


# ---------------------------------------------------------------------------------------------------
# Generators


def _stable_hash(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class TemplateGenerator:
    """Narratives (and traces, and preference pairs) from the code set; deterministic for a seed."""

    def __init__(self, name: str, seed: int = 42, options: Mapping[str, Any] | None = None) -> None:
        if name not in TEMPLATE_GENERATORS:
            raise UserError(
                f"unknown synthetic generator {name!r}; known: {', '.join((*TEMPLATE_GENERATORS, LLM_GENERATOR))}"
            )
        self.name = name
        self.seed = seed
        self.options = parse_options(options or {}, where=f"synthetic source '{name}'")
        self.codes = scope_codes(self.options, where=f"synthetic source '{name}'")
        common = [c for c in COMMON_CODES if c in _billable_set()]
        # Secondary diagnoses come from common comorbidities (as in real notes), inside a narrow scope.
        self.secondary_pool = (
            [c for c in common if c in set(self.codes)] if self.options.scope != "billable" else common
        )
        if len(self.secondary_pool) < 2:
            self.secondary_pool = list(self.codes)

    def _codes_for(self, index: int, order: list[str], rng: random.Random) -> list[str]:
        primary = order[index % len(order)]
        codes = [primary]
        if self.options.max_codes > 1 and rng.random() < self.options.multi_code_rate:
            want = rng.randint(2, self.options.max_codes)
            for _ in range(want * 4):
                if len(codes) >= want:
                    break
                candidate = rng.choice(self.secondary_pool)
                if candidate[:3] not in {c[:3] for c in codes} and not _excluded_together(codes, candidate):
                    codes.append(candidate)
        return codes

    def records(self, count: int) -> Iterator[dict[str, Any]]:
        """Yield `count` records with distinct texts (canonical, or preference for stage 3)."""
        rng = random.Random(f"{self.name}:{self.seed}")
        order = list(self.codes)
        # Cycle through a seeded permutation, so a run covers as many codes as it has rows.
        rng.shuffle(order)
        seen: set[int] = set()
        produced = attempts = 0
        index = 0
        while produced < count:
            attempts += 1
            if attempts > count * 20 + 1000:
                raise UserError(
                    f"synthetic source '{self.name}': could not produce {count} distinct texts from "
                    f"{len(self.codes)} codes (got {produced}); lower 'entries' or widen the scope"
                )
            codes = self._codes_for(index, order, rng)
            index += 1
            text, register = self._narrative(codes, rng)
            key = _stable_hash(text)
            if key in seen:
                continue
            seen.add(key)
            record_id = f"{self.name}-{self.seed}-{produced:07d}"
            meta = {"generator": self.name, "register": register, "phi_free": self.options.phi_free}
            if self.name == "icd10cm_preference":
                record = self._preference(record_id, text, codes, rng)
                if record is None:
                    seen.discard(key)
                    continue
                record["meta"] = meta
            else:
                record = {
                    "id": record_id,
                    "text": text,
                    "codes": [{"system": "ICD10", "code": c} for c in codes],
                    "reasoning": reasoning_for(codes) if self.name == "icd10cm_reasoning" else None,
                    "source": f"synthetic:{self.name}",
                    "meta": meta,
                }
            produced += 1
            yield record

    def _narrative(self, codes: list[str], rng: random.Random) -> tuple[str, str]:
        infos = [code_info(c) for c in codes]
        conditions = [rng.choice(condition_phrases(i)) for i in infos]
        age, sex = _patient(infos[0], rng)
        register = rng.choice(REGISTERS)
        return _render(register, conditions, age, sex, rng), register

    def _preference(
        self, record_id: str, text: str, codes: list[str], rng: random.Random
    ) -> dict[str, Any] | None:
        info = code_info(codes[0])
        kinds = [k for k in self.options.rejection_kinds if self._kind_applies(k, info, codes)]
        if not kinds:
            return None
        kind = kinds[_stable_hash(record_id, self.seed) % len(kinds)]
        rejected_codes, rejected_reasoning = self._hard_negative(kind, info, codes, rng)
        return {
            "id": record_id,
            "text": text,
            "chosen": {
                "codes": [{"system": "ICD10", "code": c} for c in codes],
                "reasoning": reasoning_for(codes),
            },
            "rejected": {
                "codes": [{"system": "ICD10", "code": c} for c in rejected_codes],
                "reasoning": rejected_reasoning,
            },
            "rejection_kind": kind,
            "source": f"synthetic:{self.name}",
        }

    def _kind_applies(self, kind: str, info: CodeInfo, codes: list[str]) -> bool:
        if kind == "sibling":
            return bool(info.siblings)
        if kind == "parent":
            return info.parent != info.code
        if kind == "missing_secondary":
            return len(codes) > 1
        return True

    def _hard_negative(
        self, kind: str, info: CodeInfo, codes: list[str], rng: random.Random
    ) -> tuple[list[str], str]:
        rest = codes[1:]
        if kind == "sibling":
            wrong = rng.choice(info.siblings)
            return [wrong, *rest], reasoning_for([wrong, *rest])
        if kind == "parent":
            # Stops one level too high: a valid but non-billable heading.
            trace = reasoning_for(codes).split("\n")
            first = trace[0].rsplit(" Billable code:", 1)[0]
            first = f"{first} The category fits; code {info.parent}."
            return [info.parent, *rest], "\n".join([first, *trace[1:]])
        if kind == "invalid":
            wrong = hallucinated_code(info.code, rng)
            trace = reasoning_for(codes).replace(f"Billable code: {info.code}.", f"Billable code: {wrong}.")
            return [wrong, *rest], trace
        if kind == "wrong_chapter":
            for _ in range(50):
                wrong = rng.choice(self.codes if len(self.codes) > 20 else _billable())
                if code_info(wrong).chapter[0] != info.chapter[0]:
                    break
            return [wrong, *rest], reasoning_for([wrong, *rest])
        # missing_secondary: the answer forgets the last code (and its trace).
        kept = codes[:-1]
        return kept, reasoning_for(kept)


def _excluded_together(codes: list[str], candidate: str) -> bool:
    """True where an Excludes1 note of either side names the other's category (never coded together)."""
    for code in codes:
        for a, b in ((code, candidate), (candidate, code)):
            if any(b[:3] in note for _, note in code_info(a).excludes1):
                return True
    return False


def hallucinated_code(code: str, rng: random.Random) -> str:
    """A well-formed code that does not exist (what a model invents): a padded or altered last character."""
    from thce.utils.code_validator import validate_code

    base = code.replace(".", "")
    candidates = [
        f"{code}9",
        f"{code}0",
        f"{code[:-1]}{'Z' if code[-1] != 'Z' else 'Y'}",
        f"{base[:3]}.{base[3:]}99"[:8],
    ]
    for _ in range(20):
        candidates.append(f"{code[:3]}.{rng.randint(0, 9)}{rng.choice('XYZ')}{rng.randint(0, 9)}")
    for candidate in candidates:
        if "." in candidate and len(candidate) <= 8 and not validate_code(candidate, "ICD10"):
            return candidate
    raise AssertionError(f"no hallucinated variant for {code}")  # unreachable in practice


def generate_records(
    generator: str, count: int, seed: int = 42, options: Mapping[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield `count` synthetic records from a named generator (template generators, or `llm`)."""
    if generator == LLM_GENERATOR:
        yield from LlmGenerator(options or {}, seed=seed).records(count)
        return
    yield from TemplateGenerator(generator, seed=seed, options=options).records(count)


def is_phi_free(generator: str, options: Mapping[str, Any] | None) -> bool:
    """Whether a synthetic source's texts are generated without PHI (template generators, unless told)."""
    if generator == LLM_GENERATOR:
        return False  # an LLM may invent realistic names: scrub its output
    return bool((options or {}).get("phi_free", True))


# ---------------------------------------------------------------------------------------------------
# Optional LLM backend (the seed's GPT-4 / Claude integration), behind the same `generate_records`.

LLM_OPTIONS = {
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "price_per_1k_input",
    "price_per_1k_output",
    "max_cost_usd",
    "max_retries",
    "timeout_s",
    "temperature",
    "reasoning",
    "scope",
    "chapters",
    "codes",
    "top_n",
}
LLM_PROMPT = (
    "Write one realistic, de-identified clinical note excerpt (2-5 sentences, no names, dates or other PHI) "
    "that documents the condition below precisely enough to assign exactly this ICD-10-CM code.\n"
    "Code: {code}\nDescription: {description}\nHierarchy: {hierarchy}\n"
    'Answer with JSON only: {{"text": "...", "codes": ["{code}"]{reasoning_field}}}'
)


class LlmGenerator:
    """Synthetic notes from an LLM: OpenAI-compatible chat completions (`openai` client, configurable base
    URL so a local server works) or Anthropic's messages API (plain HTTP).

    Every response is parsed and validated (each code checked against the code set; a record whose codes
    are not exactly the requested one is discarded), tokens are priced as they arrive, failed calls are
    retried with exponential backoff, and generation stops when the budget (`max_cost_usd`) is spent.
    """

    def __init__(self, options: Mapping[str, Any], seed: int = 42) -> None:
        where = "synthetic source 'llm'"
        unknown = sorted(set(options) - LLM_OPTIONS)
        if unknown:
            raise UserError(
                f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(LLM_OPTIONS))}"
            )
        self.provider = options.get("provider", "openai")
        if self.provider not in ("openai", "anthropic"):
            raise UserError(
                f"{where}: option 'provider' must be 'openai' or 'anthropic', got {self.provider!r}"
            )
        if "model" not in options:
            raise UserError(f"{where}: option 'model' is required (e.g. gpt-4o-mini, claude-sonnet-4-5)")
        self.model = str(options["model"])
        default_url = (
            "https://api.openai.com/v1" if self.provider == "openai" else "https://api.anthropic.com"
        )
        self.base_url = str(options.get("base_url", default_url)).rstrip("/")
        key_env = options.get(
            "api_key_env", "OPENAI_API_KEY" if self.provider == "openai" else "ANTHROPIC_API_KEY"
        )
        import os

        self.api_key = os.environ.get(key_env)
        if not self.api_key:
            raise UserError(
                f"{where}: no API key; set the environment variable {key_env} (or option 'api_key_env')"
            )
        self.price_in = float(options.get("price_per_1k_input", 0.0))
        self.price_out = float(options.get("price_per_1k_output", 0.0))
        self.max_cost = float(options.get("max_cost_usd", 10.0))
        self.max_retries = int(options.get("max_retries", 4))
        self.timeout = float(options.get("timeout_s", 60.0))
        self.temperature = float(options.get("temperature", 0.7))
        self.with_reasoning = bool(options.get("reasoning", False))
        scope_keys = {k: options[k] for k in ("scope", "chapters", "codes", "top_n") if k in options}
        self.codes = scope_codes(parse_options(scope_keys, where), where)
        self.seed = seed
        self.cost_usd = 0.0
        self.input_tokens = self.output_tokens = 0
        self.rejected_responses = 0

    def records(self, count: int) -> Iterator[dict[str, Any]]:
        """Yield up to `count` validated canonical records; fewer if the budget runs out."""
        rng = random.Random(f"llm:{self.seed}")
        order = list(self.codes)
        rng.shuffle(order)
        produced = 0
        for attempt in range(count * 3):
            if produced >= count:
                break
            if self.cost_usd >= self.max_cost:
                logger.warning(f"LLM budget of ${self.max_cost:.2f} spent after {produced} records; stopping")
                break
            code = order[attempt % len(order)]
            info = code_info(code)
            hierarchy = " > ".join([info.chapter[1], info.block[0], *(node[0] for node in info.path), code])
            prompt = LLM_PROMPT.format(
                code=code,
                description=info.description,
                hierarchy=hierarchy,
                reasoning_field=', "reasoning": "why this code, walking the hierarchy"'
                if self.with_reasoning
                else "",
            )
            parsed = self.validate_response(self.complete(prompt), code)
            if parsed is None:
                self.rejected_responses += 1
                continue
            yield {
                "id": f"llm-{self.seed}-{produced:07d}",
                "text": parsed["text"],
                "codes": [{"system": "ICD10", "code": code}],
                "reasoning": parsed.get("reasoning") if self.with_reasoning else None,
                "source": f"synthetic:llm:{self.model}",
                "meta": {
                    "generator": "llm",
                    "provider": self.provider,
                    "model": self.model,
                    "phi_free": False,
                },
            }
            produced += 1
        logger.info(
            f"LLM generation: {produced} records, {self.rejected_responses} responses rejected, "
            f"{self.input_tokens}+{self.output_tokens} tokens, ${self.cost_usd:.4f}"
        )

    def validate_response(self, content: str, code: str) -> dict[str, Any] | None:
        """Parse the model's JSON answer; None unless it has a text and exactly the requested, valid code."""
        import json

        from thce.utils.code_validator import normalise_code, validate_code

        match = re.search(r"\{.*\}", content, re.DOTALL)
        if not match:
            return None
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            return None
        text = data.get("text") if isinstance(data, dict) else None
        codes = data.get("codes") if isinstance(data, dict) else None
        if not isinstance(text, str) or len(text.strip()) < 10 or not isinstance(codes, list) or not codes:
            return None
        if not all(isinstance(c, str) and validate_code(c, "ICD10", require_billable=True) for c in codes):
            return None
        if [normalise_code(c, "ICD10") for c in codes] != [code]:
            return None
        if self.with_reasoning and not isinstance(data.get("reasoning"), str):
            return None
        return {"text": text.strip(), "reasoning": data.get("reasoning")}

    def complete(self, prompt: str) -> str:
        """One completion with retries and exponential backoff; adds its tokens to the cost."""
        import time

        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            try:
                content, tokens_in, tokens_out = self._call(prompt)
            except Exception as err:  # network and API errors alike: retry, then give up clearly
                last_error = err
                if attempt < self.max_retries:
                    time.sleep(min(0.2 * 2**attempt, 10.0))
                continue
            self.input_tokens += tokens_in
            self.output_tokens += tokens_out
            self.cost_usd += tokens_in / 1000 * self.price_in + tokens_out / 1000 * self.price_out
            return content
        raise UserError(
            f"LLM {self.provider} at {self.base_url}: {self.max_retries + 1} attempts failed: {last_error}"
        )

    def _call(self, prompt: str) -> tuple[str, int, int]:
        if self.provider == "openai":
            from openai import OpenAI

            client = OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout)
            response = client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                temperature=self.temperature,
            )
            usage = response.usage
            return (
                response.choices[0].message.content or "",
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
            )
        import httpx

        response = httpx.post(
            f"{self.base_url}/v1/messages",
            headers={
                "x-api-key": self.api_key,
                "anthropic-version": "2023-06-01",
                "content-type": "application/json",
            },
            json={
                "model": self.model,
                "max_tokens": 1024,
                "temperature": self.temperature,
                "messages": [{"role": "user", "content": prompt}],
            },
            timeout=self.timeout,
        )
        response.raise_for_status()
        body = response.json()
        text = "".join(
            block.get("text", "") for block in body.get("content", []) if block.get("type") == "text"
        )
        usage = body.get("usage", {})
        return text, int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
