"""Synthetic training data from the official ICD-10-CM FY2026 code set (no LLM needed), plus an optional
LLM backend for users with an API key.

Three template generators, one per stage, all deterministic for a seed and streaming (they yield records):
- `icd10cm` (stage 1): clinical narratives built from each code's description, inclusion terms,
  7th-character meaning and hierarchy, in varied registers (assessment lines, HPI sentences, problem
  lists, discharge-summary phrasing, SOAP notes) with common abbreviations (HTN, T2DM, CKD, COPD ...);
  single- and multi-code examples. Canonical records (docs/data_contracts.md), `reasoning` null.
- `icd10cm_reasoning` (stage 2): the same narratives with a reasoning trace that walks the real
  hierarchy (chapter -> block -> category -> subcategory -> code), names the deciding specificity
  (type, laterality, encounter, complication, acuity, severity) and cites the Excludes1 note that rules
  out a neighbour. Nothing in a trace is invented: every fact comes from the tabular list.
- `icd10cm_preference` (stage 3): preference records; chosen = correct codes with the faithful trace,
  rejected = a hard negative whose kind is recorded (`sibling`, `parent`, `invalid`, `wrong_chapter`,
  `missing_secondary`).

The texts are generated, never copied from patients, so they carry no PHI; records say so in
`meta.phi_free`, and the collector may skip PHI scrubbing for such sources (documented in the README).

Modules: `options` (names, parsing), `tables` (vocabulary), `code_set` (hierarchy, scopes),
`narratives` (texts and traces), `templates` (the three template generators), `llm` (the LLM backend).

Options (a source's `options:` mapping; an unknown option is a UserError naming it):
    scope: billable | chapters | codes | top_n     (default: billable, or implied by the keys below)
    chapters: [4, 9, "E00-E89"]    codes: [E11.9, I10]    top_n: 100
    multi_code_rate: 0.3           max_codes: 3            phi_free: true
    rejection_kinds: [sibling, parent, invalid, wrong_chapter, missing_secondary]   (stage 3)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from thce.data.synthetic_generation.code_set import CodeInfo, code_info, scope_codes
from thce.data.synthetic_generation.llm import LLM_OPTIONS, LLM_PROMPT, LlmGenerator
from thce.data.synthetic_generation.narratives import (
    condition_phrases,
    negated_phrases,
    reasoning_for,
    reasoning_trace,
    specificity,
)
from thce.data.synthetic_generation.options import (
    LLM_GENERATOR,
    REJECTION_KINDS,
    SCOPES,
    TEMPLATE_GENERATORS,
    TEMPLATE_OPTIONS,
    GeneratorOptions,
    parse_options,
)
from thce.data.synthetic_generation.tables import COMMON_CODES, REGISTERS
from thce.data.synthetic_generation.templates import TemplateGenerator, hallucinated_code
from thce.utils.config import SourceConfig
from thce.utils.errors import UserError
from thce.utils.io import PathLike, write_jsonl

__all__ = [
    "COMMON_CODES",
    "LLM_GENERATOR",
    "LLM_OPTIONS",
    "LLM_PROMPT",
    "REGISTERS",
    "REJECTION_KINDS",
    "SCOPES",
    "TEMPLATE_GENERATORS",
    "TEMPLATE_OPTIONS",
    "CodeInfo",
    "GeneratorOptions",
    "LlmGenerator",
    "TemplateGenerator",
    "code_info",
    "condition_phrases",
    "generate_records",
    "hallucinated_code",
    "is_phi_free",
    "negated_phrases",
    "parse_options",
    "reasoning_for",
    "reasoning_trace",
    "scope_codes",
    "specificity",
    "write_records",
]


def generate_records(
    generator: str, count: int, seed: int = 42, options: Mapping[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield `count` synthetic records from a named generator (template generators, or `llm`)."""
    if generator == LLM_GENERATOR:
        yield from LlmGenerator(options or {}, seed=seed).records(count)
        return
    yield from TemplateGenerator(generator, seed=seed, options=options).records(count)


def write_records(
    target: PathLike,
    sources: Sequence[SourceConfig],
    seed: int = 42,
    entries: int | None = None,
    progress: bool = True,
) -> int:
    """Write the records of synthetic `sources` (in order) to `target` as JSONL,
    atomically: a failure leaves `target` as it was. Each source yields `entries` records, or its own
    `entries`. Returns the number of records written."""
    from tqdm import tqdm

    counts = [entries if entries is not None else source.entries for source in sources]
    for source, count in zip(sources, counts, strict=True):
        if count is None:
            raise UserError(
                f"synthetic source {source.generator} has no 'entries': set it in the config, "
                "or give a count (thce generate -n N)"
            )

    def records() -> Iterator[dict[str, Any]]:
        for source, count in zip(sources, counts, strict=True):
            generated = generate_records(source.generator, count, seed, source.options)
            yield from tqdm(generated, total=count, desc=source.generator, unit="rec", disable=not progress)

    return write_jsonl(target, records())


def is_phi_free(generator: str, options: Mapping[str, Any] | None) -> bool:
    """Whether a synthetic source's texts are generated without PHI (template generators, unless told)."""
    if generator == LLM_GENERATOR:
        return False  # an LLM may invent realistic names: scrub its output
    return bool((options or {}).get("phi_free", True))
