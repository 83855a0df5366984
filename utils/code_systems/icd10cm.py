"""ICD-10-CM from the CDC tabular list that `simple-icd-10-cm` ships (FY2026, April 2026 update).

Normalisation (exact; nothing else is repaired):
1. the input must be a string; surrounding whitespace is stripped; empty is rejected;
2. it must be ASCII: look-alike letters (Cyrillic 'Е', full-width digits) are rejected, and the message
   names the character and the ASCII code that was probably meant;
3. letters are upper-cased;
4. a dot, if present, must sit after the 3-character category (`E11.9`); a dotless code longer than 3
   characters gets the dot there (`e119` -> `E11.9`);
5. the result must be a letter, 2 letters/digits, then optionally a dot and 1-4 letters/digits.
Codes are never padded or trimmed: `E11.90` is not `E11.9`, `T36.01A` is not `T36.0X1A` (both are
reported invalid, with the real code as the first suggestion).

Valid = the code is a category, subcategory or code in the tabular list; billable = it is a leaf.
Chapters ("4") and blocks ("E08-E13") are headings, not codes: `describe` shows them, `check` rejects them.

Loading: the first use in a process reads a JSON cache under $THCE_HOME/code_sets (~0.2 s); if it is
missing or stale, it is built from the package's XML (~2-3 s, once) and written atomically.
"""

from __future__ import annotations

import bisect
import hashlib
import importlib.metadata
import importlib.util
import json
import re
from dataclasses import dataclass, field
from functools import cache
from itertools import combinations
from pathlib import Path

from loguru import logger

from thce.utils.code_systems.base import (
    CodeCheck,
    CodeDetails,
    CodeNote,
    CodeSystem,
    HierarchyNode,
    clean_input,
    common_prefix,
    echo,
    edit_distance,
)
from thce.utils.errors import UserError
from thce.utils.io import write_atomically

# Bump when the cached layout changes, so older caches are rebuilt rather than misread (2: JSON, not pickle).
CACHE_SCHEMA = 2
CODE_RE = re.compile(r"[A-Z][0-9A-Z]{2}(?:\.[0-9A-Z]{1,4})?")
BLOCK_RE = re.compile(r"[A-Z][0-9][0-9A-Z]-[A-Z][0-9][0-9A-Z]")
LEVELS = ("chapter", "block", "category", "subcategory", "code with 7th character")
CHAPTER, BLOCK, CATEGORY = 0, 1, 2
_LIB_LEVELS = {"chapter": 0, "section": 1, "category": 2, "subcategory": 3, "extended subcategory": 4}
# simple-icd-10-cm field -> the name coders know it by, in tabular-list order.
_NOTE_FIELDS = {
    "inclusion_term": "inclusion terms",
    "includes": "includes",
    "excludes1": "Excludes1",
    "excludes2": "Excludes2",
    "code_first": "code first",
    "use_additional_code": "use additional code",
    "code_also": "code also",
    "notes": "notes",
    "seven_chr_note": "7th character note",
}
MAX_SUGGESTIONS = 5


@dataclass
class Icd10cmTables:
    """The tabular list flattened into parallel lists (preorder), plus the indexes built from them."""

    codes: list[str]
    levels: bytes
    parents: list[int]
    descriptions: list[str]
    notes: dict[int, dict[str, tuple[str, ...]]]
    seventh: dict[int, dict[str, str]]
    index: dict[str, int] = field(init=False)
    headings: dict[str, int] = field(init=False)
    children: dict[int, list[int]] = field(init=False)
    billable: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.index, self.headings, self.children = {}, {}, {}
        for i, (code, level, parent) in enumerate(zip(self.codes, self.levels, self.parents, strict=True)):
            # Five single-category blocks share their category's name (B20, F99 ...): keep both, apart.
            (self.index if level >= CATEGORY else self.headings).setdefault(code, i)
            if parent >= 0:
                self.children.setdefault(parent, []).append(i)
        self.billable = frozenset(code for code, i in self.index.items() if i not in self.children)

    def to_json(self) -> str:
        """The on-disk cache: plain JSON (the indexes are rebuilt on load)."""
        return json.dumps(
            {
                "schema": CACHE_SCHEMA,
                "codes": self.codes,
                "levels": list(self.levels),
                "parents": self.parents,
                "descriptions": self.descriptions,
                "notes": [
                    [i, {kind: list(items) for kind, items in n.items()}] for i, n in self.notes.items()
                ],
                "seventh": [[i, chars] for i, chars in self.seventh.items()],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, blob: bytes | str) -> Icd10cmTables:
        """The inverse of `to_json`; raises ValueError (or KeyError/TypeError) on anything else."""
        data = json.loads(blob)
        if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA:
            raise ValueError(f"not a version-{CACHE_SCHEMA} THCE ICD-10-CM cache")
        return cls(
            data["codes"],
            bytes(data["levels"]),
            data["parents"],
            data["descriptions"],
            {i: {kind: tuple(items) for kind, items in n.items()} for i, n in data["notes"]},
            {i: chars for i, chars in data["seventh"]},
        )


def _source_files() -> tuple[str, list[Path]]:
    """simple-icd-10-cm's version and data files, found without importing it (its import parses the XML)."""
    spec = importlib.util.find_spec("simple_icd_10_cm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("simple-icd-10-cm is not installed; it is a THCE dependency (pip install -e .)")
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = sorted(p for p in data_dir.iterdir() if p.suffix in {".xml", ".txt"})
    return importlib.metadata.version("simple_icd_10_cm"), files


def cache_key() -> str:
    """Changes whenever the schema, the package version or its data files change."""
    version, files = _source_files()
    parts = [str(CACHE_SCHEMA), version, *(f"{p.name}:{p.stat().st_size}" for p in files)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def build_tables() -> Icd10cmTables:
    """Flatten simple-icd-10-cm's tree (the slow path: importing it parses 10 MB of XML)."""
    from simple_icd_10_cm import simple_icd_10_cm as lib

    codes: list[str] = []
    levels = bytearray()
    parents: list[int] = []
    descriptions: list[str] = []
    notes: dict[int, dict[str, tuple[str, ...]]] = {}
    seventh: dict[int, dict[str, str]] = {}
    # The tree is walked directly: the public getters look nodes up by name, which is ambiguous for the
    # five blocks named like their only category, and cost a dozen lookups per code.
    stack = [(node, -1) for node in reversed(lib._chapter_list)]
    while stack:
        node, parent = stack.pop()
        i = len(codes)
        codes.append(node.name)
        levels.append(_LIB_LEVELS[node.type])
        parents.append(parent)
        descriptions.append(node.description)
        node_notes = {}
        for attr, kind in _NOTE_FIELDS.items():
            value = getattr(node, attr)
            items = value.split("\n") if isinstance(value, str) else value
            items = tuple(item.strip() for item in items if item and item.strip())
            if items:
                node_notes[kind] = items
        if node_notes:
            notes[i] = node_notes
        if node.seven_chr_def:
            seventh[i] = {char: text.replace("/\t", " / ") for char, text in node.seven_chr_def.items()}
        stack.extend((child, i) for child in reversed(node.children))
    return Icd10cmTables(codes, bytes(levels), parents, descriptions, notes, seventh)


def load_tables(cache_dir: Path | None) -> Icd10cmTables:
    """Tables from the on-disk cache in `cache_dir`, building and caching them when missing or stale."""
    path = cache_dir / f"icd10cm-{cache_key()}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return Icd10cmTables.from_json(path.read_bytes())
        except Exception as err:  # a truncated or foreign file: rebuild rather than fail
            logger.warning(f"Ignoring unreadable ICD-10-CM cache {path} ({err}); rebuilding it")
    logger.info("Building the ICD-10-CM tables from simple-icd-10-cm (once; cached afterwards)")
    tables = build_tables()
    if path is not None:
        try:
            write_atomically(path, tables.to_json())
        except (OSError, UserError) as err:  # a read-only home still validates, only more slowly next time
            logger.warning(f"Could not write the ICD-10-CM cache {path}: {err}")
    return tables


@cache
def shared_tables() -> Icd10cmTables:
    """The process-wide tables (loaded on first use)."""
    from thce.utils.models import thce_home

    return load_tables(thce_home() / "code_sets")


def _dotted(dotless: str) -> str:
    return dotless if len(dotless) <= 3 else f"{dotless[:3]}.{dotless[3:]}"


class ICD10CM(CodeSystem):
    """ICD-10-CM diagnosis codes, FY2026 (CDC tabular list via simple-icd-10-cm)."""

    name = "ICD10"
    title = "ICD-10-CM"
    basis = "code_set"

    def __init__(self, tables: Icd10cmTables | None = None) -> None:
        self.tables = tables if tables is not None else shared_tables()
        self._index = self.tables.index
        self._billable = self.tables.billable
        self._sorted_billable: list[str] | None = None
        self._categories: list[str] | None = None

    # -- normalise and validate ---------------------------------------------------------------------
    def normalise_with_reason(self, code: object) -> tuple[str | None, str]:
        """Apply the module docstring's rules; (canonical, "") or (None, why not)."""
        text, problem = clean_input(
            code, 10, "too long for an ICD-10-CM code ({n} characters; at most 8 with the dot)"
        )
        if text is None:
            return None, problem
        if BLOCK_RE.fullmatch(text) or (text.isdigit() and text in self.tables.headings):
            return None, f"{text} is a chapter or block heading (a range of categories), not a code"
        if "." in text:
            head, _, tail = text.partition(".")
            if len(head) != 3 or not tail or "." in tail:
                return None, "misplaced dot: ICD-10-CM puts one dot after the 3-character category (E11.9)"
            candidate = text
        else:
            candidate = _dotted(text)
        if CODE_RE.fullmatch(candidate):
            return candidate, ""
        dotless = candidate.replace(".", "")
        if not dotless[0].isalpha():
            return None, "an ICD-10-CM code starts with a letter (E11.9)"
        if len(dotless) < 3:
            return None, "too short: an ICD-10-CM code has at least 3 characters (a letter and 2 more)"
        if len(dotless) > 7:
            return None, f"too long: an ICD-10-CM code has at most 7 characters ({len(dotless)} given)"
        return None, "an ICD-10-CM code holds only letters and digits, with one dot after the 3rd character"

    def is_valid(self, code: object, require_billable: bool = False) -> bool:
        """True if `code` (any accepted spelling) is in the tabular list, and a leaf if asked."""
        members = self._billable if require_billable else self._index
        try:
            if code in members:  # the canonical spelling: one hash lookup
                return True
        except TypeError:  # unhashable input (a list, a dict)
            return False
        if type(code) is not str:
            return False
        canonical = self.normalise_with_reason(code)[0]
        return canonical is not None and canonical in members

    def description(self, code: str) -> str | None:
        """Description of a canonical code."""
        i = self._index.get(code)
        return self.tables.descriptions[i] if i is not None else None

    def check(self, code: object) -> CodeCheck:
        """Valid? billable? and if not, why and what was probably meant."""
        shown = None if code is None else echo(code)
        canonical, reason = self.normalise_with_reason(code)
        if canonical is None:
            return CodeCheck(
                shown,
                self.name,
                None,
                False,
                False,
                self.basis,
                f"{shown!r} is not an ICD-10-CM code: {reason}"
                if shown
                else f"not an ICD-10-CM code: {reason}",
                suggestions=self.repair_suggestions(code),
            )
        i = self._index.get(canonical)
        if i is None:
            suggestions = self.suggest(canonical)
            return CodeCheck(
                shown,
                self.name,
                canonical,
                False,
                False,
                self.basis,
                self._absent_message(canonical, suggestions),
                suggestions=suggestions,
            )
        description = self.tables.descriptions[i]
        ancestors = self._ancestors(i)
        if canonical in self._billable:
            message = f"{canonical} is a valid, billable ICD-10-CM code: {description}"
            return CodeCheck(
                shown, self.name, canonical, True, True, self.basis, message, description, ancestors
            )
        children = self._billable_descendants(i)
        return CodeCheck(
            shown,
            self.name,
            canonical,
            True,
            False,
            self.basis,
            self._header_message(i, children),
            description,
            ancestors,
            billable_children=children,
        )

    # -- explanations ---------------------------------------------------------------------------------
    def _header_message(self, i: int, children: tuple[str, ...]) -> str:
        code, level = self.tables.codes[i], LEVELS[self.tables.levels[i]]
        listed = ", ".join(children[:5]) + (", ..." if len(children) > 5 else "")
        seventh = self.seventh_characters(i)
        if seventh and all(self.tables.levels[c] == 4 for c in self.tables.children.get(i, [])):
            allowed = "; ".join(f"{char} {text}" for char, text in seventh.items())
            return (
                f"{code} is a valid ICD-10-CM {level} but not billable: it needs a 7th character "
                f"({allowed}): {listed}"
            )
        return (
            f"{code} is a valid ICD-10-CM {level} but not billable: code to one of its "
            f"{len(children)} billable codes: {listed}"
        )

    def _absent_message(self, canonical: str, suggestions: tuple[str, ...]) -> str:
        message = f"{canonical} is not an ICD-10-CM code"
        dotless = canonical.replace(".", "")
        base = self._index.get(_dotted(dotless[:-1])) if len(dotless) == 7 else None
        if base is not None and (seventh := self.seventh_characters(base)):
            message += f": 7th character {dotless[-1]!r} is not defined for {self.tables.codes[base]} (allowed: {', '.join(seventh)})"
        elif suggestions and suggestions[0] == self._placeholder_variant(dotless):
            message += (
                f": codes with a 7th character fill empty places with the placeholder X ({suggestions[0]})"
            )
        else:
            for cut in range(len(dotless) - 1, 2, -1):
                prefix = self._index.get(_dotted(dotless[:cut]))
                if prefix is not None:
                    kind = "billable" if self.tables.codes[prefix] in self._billable else "not billable"
                    message += f": the nearest existing code is {self.tables.codes[prefix]} ({kind})"
                    break
        if suggestions:
            message += f"; closest valid codes: {', '.join(suggestions)}"
        return message

    def suggest(self, canonical: str, limit: int = MAX_SUGGESTIONS) -> tuple[str, ...]:
        """Closest billable codes to a well-formed, non-existent code: same category first, ranked by the
        longest shared prefix, then edit distance."""
        dotless = canonical.replace(".", "")
        found: list[str] = []
        placeholder = self._placeholder_variant(dotless)
        if placeholder:
            found.append(placeholder)
        pool = self._billable_in(dotless[:3])
        if not pool:
            categories = self._nearest_categories(dotless[:3])
            pool = [code for category in categories for code in self._billable_in(category)]
        ranked = sorted(
            pool,
            key=lambda code: (
                -common_prefix(code.replace(".", ""), dotless),
                edit_distance(code.replace(".", ""), dotless),
                code,
            ),
        )
        for code in ranked:
            if len(found) >= limit:
                break
            if code not in found:
                found.append(code)
        return tuple(found)

    def _placeholder_variant(self, dotless: str) -> str | None:
        """`T3601A` -> `T36.0X1A`: the code that inserting the missing placeholder X's before the 7th
        character gives, if exactly that exists (the X's may sit anywhere after the category)."""
        if not 4 <= len(dotless) <= 6:
            return None
        head, tail, last = dotless[:3], dotless[3:-1], dotless[-1]
        missing = 3 - len(tail)
        found = []
        for places in combinations(range(3), missing):
            rest = iter(tail)
            filled = "".join("X" if k in places else next(rest) for k in range(3))
            code = f"{head}.{filled}{last}"
            if code in self._billable and code not in found:
                found.append(code)
        return found[0] if len(found) == 1 else None

    def _billable_in(self, category: str) -> list[str]:
        if self._sorted_billable is None:
            self._sorted_billable = sorted(self._billable)
        start = bisect.bisect_left(self._sorted_billable, category)
        end = bisect.bisect_left(self._sorted_billable, category + "\uffff")
        return self._sorted_billable[start:end]

    def _nearest_categories(self, category: str, limit: int = 3) -> list[str]:
        if self._categories is None:
            self._categories = sorted(
                code for code, i in self._index.items() if self.tables.levels[i] == CATEGORY
            )
        return sorted(self._categories, key=lambda c: (edit_distance(c, category), c))[:limit]

    # -- hierarchy and notes --------------------------------------------------------------------------
    def _ancestors(self, i: int) -> tuple[HierarchyNode, ...]:
        chain = []
        parent = self.tables.parents[i]
        while parent >= 0:
            chain.append(self._node(parent))
            parent = self.tables.parents[parent]
        return tuple(reversed(chain))

    def _node(self, i: int) -> HierarchyNode:
        return HierarchyNode(self.tables.codes[i], self.tables.descriptions[i], LEVELS[self.tables.levels[i]])

    def _billable_descendants(self, i: int) -> tuple[str, ...]:
        found, stack = [], [i]
        while stack:
            node = stack.pop()
            kids = self.tables.children.get(node)
            if kids is None:
                found.append(self.tables.codes[node])
            else:
                stack.extend(reversed(kids))
        return tuple(found)

    def seventh_characters(self, i: int) -> dict[str, str]:
        """The 7th-character definitions that apply to node `i` (its own or the nearest ancestor's)."""
        node = i
        while node >= 0 and self.tables.levels[node] >= CATEGORY:
            if node in self.tables.seventh:
                return self.tables.seventh[node]
            node = self.tables.parents[node]
        return {}

    def describe(self, code: object) -> CodeDetails | None:
        """Description, level, ancestors, children, and the notes of the code and every level above it.

        Accepts headings too (chapter "4", block "E08-E13")."""
        if not isinstance(code, str):
            return None
        text = code.strip().upper()
        i = self.tables.headings.get(text) if (BLOCK_RE.fullmatch(text) or text.isdigit()) else None
        if i is None:
            canonical = self.normalise(code)
            i = self._index.get(canonical) if canonical is not None else None
        if i is None:
            return None
        notes = []
        node = i
        while node >= 0:
            for kind, items in self.tables.notes.get(node, {}).items():
                notes.append(CodeNote(self.tables.codes[node], kind, items))
            node = self.tables.parents[node]
        name = self.tables.codes[i]
        level = self.tables.levels[i]
        return CodeDetails(
            self.name,
            name,
            LEVELS[level],
            self.tables.descriptions[i],
            (name in self._billable) if level >= CATEGORY else None,
            self.basis,
            self._ancestors(i),
            tuple(self.tables.codes[c] for c in self.tables.children.get(i, [])),
            tuple(notes),
            dict(self.seventh_characters(i)) if level >= CATEGORY else {},
        )

    # -- listing and search ---------------------------------------------------------------------------
    def billable_codes(self) -> list[str]:
        """All 74,719 billable FY2026 codes, dotted, sorted."""
        if self._sorted_billable is None:
            self._sorted_billable = sorted(self._billable)
        return list(self._sorted_billable)

    def search_corpus(self) -> tuple[list[str], list[str]]:
        """Billable codes with their description and their own inclusion terms and "includes" notes."""
        codes = self.billable_codes()
        texts = []
        for code in codes:
            i = self._index[code]
            notes = self.tables.notes.get(i, {})
            terms = (*notes.get("inclusion terms", ()), *notes.get("includes", ()))
            texts.append(" ".join((self.tables.descriptions[i], *terms)))
        return codes, texts
