"""Medical preprocessing: text normalisation, code normalisation and validation, PHI removal, and chat
formatting per stage (docs/data_contracts.md: TRL's conversational format).

`Preprocessor.process_batch(records)` is what `thce collect` runs on every source; `thce preprocess`
runs it on one JSONL file. A record comes out cleaned, or is dropped with a reason that is counted
(`invalid_codes`, `too_short`, `too_long`, `no_codes`, `no_reasoning`, `not_preference`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from thce.utils.config import PreprocessConfig, StageConfig
from thce.utils.errors import UserError
from thce.utils.medical_chat_templates import assistant_messages, prompt_messages

# UTF-8 read as Windows-1252/Latin-1 ("Ã©" for "é", "â€™" for "’"): the commonest encoding damage.
_MOJIBAKE = re.compile(r"[ÃÂâ][\x80-\xbf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ ¡-¿]")
PREPROCESS_BATCH = 256  # records preprocessed together (spaCy batches for PHI scrubbing)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")
MAX_INVALID_EXAMPLES = 5


def repair_encoding(text: str) -> str:
    """Undo UTF-8-read-as-cp1252 mojibake where re-decoding gives valid UTF-8; otherwise leave the text."""
    if not _MOJIBAKE.search(text):
        return text
    for codec in ("cp1252", "latin-1"):
        try:
            return text.encode(codec).decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
    return text


def normalize_text(text: str) -> str:
    """Encoding repair, Unicode NFKC, control characters out, runs of spaces and blank lines collapsed."""
    text = repair_encoding(text)
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


@dataclass
class CodeVerdict:
    """Codes after normalisation: the valid ones (canonical spelling) and the rejected inputs."""

    valid: list[dict[str, str]] = field(default_factory=list)
    invalid: list[dict[str, str]] = field(default_factory=list)


def normalize_codes(codes: Iterable[dict[str, str]], require_billable: bool = True) -> CodeVerdict:
    """Normalise (`e119` -> `E11.9`), validate against the code sets, and drop repeats within a record."""
    from thce.utils.code_validator import normalise_code, validate_code

    verdict = CodeVerdict()
    seen = set()
    for ref in codes:
        system = str(ref.get("system", "ICD10")).upper()
        raw = ref.get("code")
        canonical = normalise_code(raw, system) if system in ("ICD10", "CPT", "HCPCS") else None
        billable = require_billable and system == "ICD10"
        if canonical is None or not validate_code(canonical, system, require_billable=billable):
            verdict.invalid.append({"system": system, "code": str(raw)})
            continue
        if (system, canonical) not in seen:
            seen.add((system, canonical))
            verdict.valid.append({"system": system, "code": canonical})
    return verdict


@dataclass
class Processed:
    """A record after preprocessing, or why it was dropped."""

    record: dict[str, Any] | None
    dropped: str | None = None
    invalid: list[dict[str, str]] = field(default_factory=list)


class Preprocessor:
    """Clean records for one stage (1-2: canonical records; 3: preference records)."""

    def __init__(self, config: PreprocessConfig, stage: int = 1) -> None:
        self.config = config
        self.stage = stage
        self._scrubber: Any = None
        self.counts: Counter[str] = Counter()

    def scrub(self, texts: list[str]) -> list[str]:
        """PHI removal for a batch of texts with the configured engine."""
        if self.config.phi_engine == "rules":
            from thce.utils.phi import scrub_with_rules

            return [scrub_with_rules(t) for t in texts]
        if self._scrubber is None:
            from thce.utils.phi import default_scrubber

            self._scrubber = default_scrubber()
        return list(self._scrubber.scrub_many(texts))

    def process_batch(self, records: list[dict[str, Any]], phi_free: bool = False) -> list[Processed]:
        """Normalise, scrub (unless the source is PHI-free or scrubbing is off), validate and filter."""
        texts = [normalize_text(r["text"]) if self.config.normalize_text else r["text"] for r in records]
        scrub = self.config.scrub_phi and not phi_free
        if scrub:
            texts = self.scrub(texts)
        results = []
        for record, text in zip(records, texts, strict=True):
            result = self._process_one({**record, "text": text}, scrub)
            self.counts["kept" if result.record is not None else f"dropped_{result.dropped}"] += 1
            results.append(result)
        return results

    def _clean_reasoning(self, reasoning: Any, scrub: bool) -> str | None:
        if not isinstance(reasoning, str) or not reasoning.strip():
            return None
        reasoning = normalize_text(reasoning) if self.config.normalize_text else reasoning.strip()
        if scrub:
            from thce.utils.phi import scrub_with_rules

            reasoning = scrub_with_rules(reasoning)
        return reasoning

    def _codes(
        self, codes: list[dict[str, str]]
    ) -> tuple[list[dict[str, str]] | None, list[dict[str, str]], str | None]:
        verdict = normalize_codes(codes, self.config.require_billable)
        policy = self.config.invalid_codes
        if verdict.invalid and policy == "drop":
            return None, verdict.invalid, "invalid_codes"
        kept = verdict.valid if policy == "flag" else verdict.valid + [c for c in verdict.invalid]
        if not kept:
            return None, verdict.invalid, "no_codes" if not verdict.invalid else "invalid_codes"
        return kept, verdict.invalid, None

    def _process_one(self, record: dict[str, Any], scrubbed: bool) -> Processed:
        text = record["text"]
        if len(text) < self.config.min_text_chars:
            return Processed(None, "too_short")
        if len(text) > self.config.max_text_chars:
            return Processed(None, "too_long")
        is_preference = "chosen" in record
        if (self.stage == 3) != is_preference:
            return Processed(None, "not_preference" if self.stage == 3 else "preference_in_sft_stage")
        meta = dict(record.get("meta") or {})
        meta["phi_scrubbed"] = scrubbed
        if is_preference:
            chosen, invalid, reason = self._codes(record["chosen"]["codes"])
            if chosen is None:
                return Processed(None, reason, invalid)
            # The rejected side is wrong on purpose (invented codes, headings): normalised, never validated.
            rejected = normalize_codes(record["rejected"]["codes"], require_billable=False)
            rejected_codes = rejected.valid + rejected.invalid
            if invalid:
                meta["invalid_codes"] = invalid
            out = {
                "id": record["id"],
                "text": text,
                "chosen": {
                    "codes": chosen,
                    "reasoning": self._clean_reasoning(record["chosen"].get("reasoning"), scrubbed),
                },
                "rejected": {
                    "codes": rejected_codes,
                    "reasoning": self._clean_reasoning(record["rejected"].get("reasoning"), scrubbed),
                },
                "rejection_kind": record.get("rejection_kind", "unknown"),
                "source": record["source"],
                "meta": meta,
            }
            if (
                out["chosen"]["codes"] == out["rejected"]["codes"]
                and out["chosen"]["reasoning"] == out["rejected"]["reasoning"]
            ):
                return Processed(None, "identical_pair")
            return Processed(out, None, invalid)
        codes, invalid, reason = self._codes(record.get("codes") or [])
        if codes is None:
            return Processed(None, reason, invalid)
        reasoning = self._clean_reasoning(record.get("reasoning"), scrubbed)
        if self.stage == 2 and not reasoning:
            return Processed(None, "no_reasoning")
        if invalid:
            meta["invalid_codes"] = invalid
        out = {
            "id": record["id"],
            "text": text,
            "codes": codes,
            "reasoning": reasoning,
            "source": record["source"],
            "meta": meta,
        }
        return Processed(out, None, invalid)


def answer_codes(record: dict[str, Any]) -> list[dict[str, str]]:
    """The codes a record teaches: `codes`, or the chosen side of a preference pair."""
    return record["chosen"]["codes"] if "chosen" in record else record["codes"]


def to_trainer_row(
    record: dict[str, Any],
    stage: int,
    template: str,
    system_message: str | None = None,
    candidates: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """TRL conversational row: stages 1-2 prompt + completion (stage 1 without reasoning), stage 3 prompt +
    chosen + rejected; plus id and source (and rejection_kind). `candidates` go into the user turn."""
    prompt = prompt_messages(record["text"], template, system_message, candidates)
    if stage == 3:
        return {
            "prompt": prompt,
            "chosen": assistant_messages(record["chosen"]["codes"], record["chosen"].get("reasoning")),
            "rejected": assistant_messages(record["rejected"]["codes"], record["rejected"].get("reasoning")),
            "id": record["id"],
            "source": record["source"],
            "rejection_kind": record.get("rejection_kind", "unknown"),
        }
    reasoning = record.get("reasoning") if stage == 2 else None
    return {
        "prompt": prompt,
        "completion": assistant_messages(record["codes"], reasoning),
        "id": record["id"],
        "source": record["source"],
    }


def to_canonical_test_record(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the evaluator reads it (canonical; a preference pair becomes its chosen answer)."""
    if "chosen" not in record:
        return record
    return {
        "id": record["id"],
        "text": record["text"],
        "codes": record["chosen"]["codes"],
        "reasoning": record["chosen"].get("reasoning"),
        "source": record["source"],
        "meta": {**record.get("meta", {}), "rejection_kind": record.get("rejection_kind")},
    }


def log_invalid(location: str, invalid: list[dict[str, str]], shown: Counter[str], source: str) -> None:
    """Warn (a few per source) which code at which file/line was rejected."""
    if invalid and shown[source] < MAX_INVALID_EXAMPLES:
        shown[source] += 1
        codes = ", ".join(f"{c['system']}:{c['code']!r}" for c in invalid)
        logger.warning(f"{location}: invalid code(s) {codes}")


def preprocess_file(
    config: StageConfig, input_path: str | Path, output: str | Path, output_format: str = "chat"
) -> tuple[int, dict[str, int]]:
    """`thce preprocess`: one canonical/preference JSONL through the stage's preprocessing, written as
    trainer rows (`chat`) or cleaned records (`canonical`). Returns (records written, preprocessing counts).
    """
    import json

    from thce.data.sources import read_source
    from thce.utils.config import SourceConfig
    from thce.utils.io import atomic_file, check_input_file, check_output

    if output_format not in ("chat", "canonical"):
        raise UserError(f"--format must be 'chat' or 'canonical', got {output_format!r}")
    input_path = check_input_file(input_path, "--input")
    output = check_output(output, [input_path, config.source_path], "--output")
    preprocessor = Preprocessor(config.data.preprocess, config.stage)
    source = SourceConfig(kind="jsonl", path=str(input_path))
    shown: Counter[str] = Counter()
    kept = 0
    with atomic_file(output) as handle:
        for batch in _batches(read_source(source, 0, config.seed), PREPROCESS_BATCH):
            results = preprocessor.process_batch([item.record for item in batch])
            for item, result in zip(batch, results, strict=True):
                log_invalid(item.location, result.invalid, shown, str(input_path))
                if result.record is None:
                    continue
                row = (
                    to_trainer_row(
                        result.record, config.stage, config.chat.template, config.chat.system_message
                    )
                    if output_format == "chat"
                    else result.record
                )
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                kept += 1
    return kept, dict(preprocessor.counts)


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
