"""What the generators know about the ICD-10-CM code set: one billable code's hierarchy, notes and
siblings (`code_info`), and the codes a source's scope selects (`scope_codes`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from loguru import logger

from thce.data.synthetic_generation.options import GeneratorOptions
from thce.data.synthetic_generation.tables import COMMON_CODES
from thce.utils.errors import UserError


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
