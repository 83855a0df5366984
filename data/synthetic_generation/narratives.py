"""Clinical narratives and faithful reasoning traces for billable codes (every fact from the tabular list)."""

from __future__ import annotations

import random
import re

from thce.data.synthetic_generation.code_set import CodeInfo, code_info
from thce.data.synthetic_generation.tables import (
    _ABBREVIATION_RES,
    ENCOUNTER_PHRASES,
    FILLERS,
    SPECIFICITY_AXES,
)
from thce.retrieval import NEGATION_CUES


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


# The tabular list always says "without X"; a note says "no X", "negative for X", ... (the retriever's cues,
# `thce.retrieval.NEGATION_CUES`, so that what the generator writes is what the retriever reads).
_WITHOUT = re.compile(r",?\s*\bwithout\b\s*(?:an? (?=\w))?")


def negated_phrases(description: str) -> list[str]:
    """`description` with each "without" written as a note's negation cue ("Type 2 diabetes mellitus, no
    complications"); empty where the description has no "without"."""
    if not _WITHOUT.search(description):
        return []
    return [_lower_first(_WITHOUT.sub(f", {cue} ", description)) for cue in NEGATION_CUES]


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
    elif register == "diagnosis_line":
        line = "; ".join(conditions)
        text = line[:1].upper() + line[1:]
    else:  # "diagnosis"
        text = "Dx: " + "; ".join(conditions) + (f". {filler}" if filler else "")
    return text


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
