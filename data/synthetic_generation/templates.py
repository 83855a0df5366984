"""The template generators (`icd10cm`, `icd10cm_reasoning`, `icd10cm_preference`): deterministic for a
seed, streaming, distinct texts; stage 3 adds a hard negative of a recorded kind."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping
from typing import Any

from thce.data.synthetic_generation.code_set import (
    CodeInfo,
    _billable,
    _billable_set,
    code_info,
    scope_codes,
)
from thce.data.synthetic_generation.narratives import (
    _patient,
    _render,
    condition_phrases,
    negated_phrases,
    reasoning_for,
)
from thce.data.synthetic_generation.options import LLM_GENERATOR, TEMPLATE_GENERATORS, parse_options
from thce.data.synthetic_generation.tables import COMMON_CODES, REGISTERS
from thce.utils.errors import UserError


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
        # Codes a note can state by absence ("without X"); `negation_rate` of the rows start with one of them.
        # Read from the descriptions alone: `code_info` of every code in scope took 5 s and kept them all.
        self.negatable: list[str] = []
        if self.options.negation_rate:
            from thce.utils.code_validator import get_code_system

            describe = get_code_system("ICD10").description
            self.negatable = [c for c in self.codes if negated_phrases(describe(c) or "")]

    def _codes_for(self, primary: str, rng: random.Random) -> list[str]:
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
        negatable = _spread_over_categories(self.negatable, rng)
        seen: set[int] = set()
        produced = attempts = 0
        index = negated_index = 0
        while produced < count:
            attempts += 1
            if attempts > count * 20 + 1000:
                raise UserError(
                    f"synthetic source '{self.name}': could not produce {count} distinct texts from "
                    f"{len(self.codes)} codes (got {produced}); lower 'entries' or widen the scope"
                )
            negated = bool(negatable) and rng.random() < self.options.negation_rate
            if negated:
                codes = self._codes_for(negatable[negated_index % len(negatable)], rng)
                negated_index += 1
            else:
                codes = self._codes_for(order[index % len(order)], rng)
                index += 1
            text, register = self._narrative(codes, rng, negated)
            key = _stable_hash(text)
            if key in seen:
                continue
            seen.add(key)
            record_id = f"{self.name}-{self.seed}-{produced:07d}"
            meta = {"generator": self.name, "register": register, "phi_free": self.options.phi_free}
            if negated:
                meta["negated"] = True
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

    def _narrative(self, codes: list[str], rng: random.Random, negated: bool = False) -> tuple[str, str]:
        infos = [code_info(c) for c in codes]
        conditions = [rng.choice(condition_phrases(i)) for i in infos]
        if negated:
            conditions[0] = rng.choice(negated_phrases(infos[0].description))
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


def _spread_over_categories(codes: list[str], rng: random.Random) -> list[str]:
    """`codes` shuffled so that each category comes up once before any comes up twice (two thirds of the
    "without" codes are injuries' "without foreign body" and would otherwise crowd out the rest)."""
    groups: dict[str, list[str]] = {}
    for code in codes:
        groups.setdefault(code[:3], []).append(code)
    for group in groups.values():
        rng.shuffle(group)
    categories = list(groups)
    rng.shuffle(categories)
    depth = max((len(g) for g in groups.values()), default=0)
    return [groups[c][i] for i in range(depth) for c in categories if i < len(groups[c])]


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
