"""The records that flow between THCE's stages, defined once (docs/data_contracts.md describes them).

- **Code reference** `{"system": "ICD10" | "CPT" | "HCPCS", "code": "E11.9"}`.
- **Canonical record** (every source becomes one; the test splits are canonical):
  `{"id", "text", "codes": [code refs], "reasoning": str | None, "source", "meta": {...}}`.
- **Preference record** (stage 3): `{"id", "text", "chosen": {"codes", "reasoning"},
  "rejected": {"codes", "reasoning"}, "rejection_kind", "source"}` (+ optional `meta`).
- **Trainer row** (what `collect` writes to `train.parquet`/`validation.parquet`, TRL's conversational
  format): stages 1-2 `{"prompt", "completion", "id", "source"}`, stage 3
  `{"prompt", "chosen", "rejected", "id", "source", "rejection_kind"}`; each message list holds
  `{"role", "content"}` turns.
- **Prediction** (what the output parser and the predictor return, and `thce predict` writes):
  `{"code", "confidence", "codes": [{"system", "code", "description", "valid", "confidence"}],
  "reasoning", "raw"}` (+ optional ranked `candidates`); `code`/`confidence` are the first code's.

Each shape has one validator that returns the first problem as a short phrase ("field 'text' is missing
or empty"), or None; readers put the file and line in front of it. The validators check the shape only:
whether a code exists is the code validator's question (`thce.utils.code_validator`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

from thce.utils.code_systems.registry import CODE_SYSTEMS

RecordKind = Literal["canonical", "preference", "trainer_sft", "trainer_preference"]


class CodeRef(TypedDict):
    system: str
    code: str


class Answer(TypedDict):
    codes: list[CodeRef]
    reasoning: str | None


class CanonicalRecord(TypedDict):
    id: str
    text: str
    codes: list[CodeRef]
    reasoning: str | None
    source: str
    meta: dict[str, Any]


class PreferenceRecord(TypedDict):
    id: str
    text: str
    chosen: Answer
    rejected: Answer
    rejection_kind: str
    source: str


class Message(TypedDict):
    role: str
    content: str


class TrainerRow(TypedDict, total=False):
    """Stages 1-2 carry `completion`; stage 3 carries `chosen`, `rejected` and `rejection_kind`."""

    prompt: list[Message]
    completion: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    id: str
    source: str
    rejection_kind: str


class PredictedCode(TypedDict):
    system: str
    code: str
    description: str | None
    valid: bool | None
    confidence: float | None


class Prediction(TypedDict):
    code: str | None
    confidence: float | None
    codes: list[PredictedCode]
    reasoning: str | None
    raw: str
    candidates: NotRequired[list[CodeRef]]  # ranked alternatives (beam search, baselines)


# The fields each shape must have (canonical `reasoning`/`source`/`meta` may be left to the reader's defaults).
REQUIRED_FIELDS: dict[RecordKind, tuple[str, ...]] = {
    "canonical": ("id", "text", "codes"),
    "preference": ("id", "text", "chosen", "rejected", "rejection_kind"),
    "trainer_sft": ("prompt", "completion", "id", "source"),
    "trainer_preference": ("prompt", "chosen", "rejected", "id", "source", "rejection_kind"),
}
# Every field name a canonical or preference record may use; a source's other columns go into `meta`.
RECORD_FIELDS = ("id", "text", "codes", "reasoning", "source", "meta", "chosen", "rejected", "rejection_kind")
# The message columns a trainer reads, by trainer kind.
TRAINER_COLUMNS = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}
PREDICTION_FIELDS = ("code", "confidence", "codes", "reasoning", "raw")

__all__ = [
    "CODE_SYSTEMS",
    "PREDICTION_FIELDS",
    "RECORD_FIELDS",
    "REQUIRED_FIELDS",
    "TRAINER_COLUMNS",
    "Answer",
    "CanonicalRecord",
    "CodeRef",
    "Message",
    "PredictedCode",
    "Prediction",
    "PreferenceRecord",
    "RecordKind",
    "TrainerRow",
    "canonical_problem",
    "code_refs_problem",
    "prediction_problem",
    "preference_problem",
    "record_kind",
    "trainer_arrow_schema",
    "trainer_row_problem",
]


def record_kind(row: Mapping[str, Any]) -> RecordKind:
    """Which of the four dataset shapes a row has (by its distinguishing fields)."""
    if "prompt" in row:
        return "trainer_preference" if "chosen" in row else "trainer_sft"
    return "preference" if "chosen" in row else "canonical"


def code_refs_problem(codes: Any, field: str = "codes") -> str | None:
    """A non-empty list of `{system, code}` objects, or the problem with it."""
    if not isinstance(codes, list) or not codes:
        return f"field '{field}' is missing or empty"
    for i, code in enumerate(codes):
        if not isinstance(code, Mapping) or not code.get("system") or not code.get("code"):
            return f"{field}[{i}] must be an object with 'system' and 'code'"
    return None


def _text_problem(row: Mapping[str, Any]) -> str | None:
    text = row.get("text")
    if not isinstance(text, str) or not text.strip():
        return "field 'text' is missing or empty"
    return None


def canonical_problem(record: Any) -> str | None:
    """The first problem of a canonical record (text and gold codes), or None."""
    if not isinstance(record, Mapping):
        return "expected a JSON object (a canonical record)"
    return _text_problem(record) or code_refs_problem(record.get("codes"))


def preference_problem(record: Any) -> str | None:
    """The first problem of a preference record (text, both answers with codes, the rejection kind)."""
    if not isinstance(record, Mapping):
        return "expected a JSON object (a preference record)"
    problem = _text_problem(record)
    if problem:
        return problem
    for side in ("chosen", "rejected"):
        answer = record.get(side)
        if not isinstance(answer, Mapping):
            return f"field '{side}' must be an object with 'codes' and 'reasoning'"
        problem = code_refs_problem(answer.get("codes"), f"{side}.codes")
        if problem:
            return problem
    if not isinstance(record.get("rejection_kind"), str):
        return "field 'rejection_kind' is missing"
    return None


def _messages_problem(messages: Any, field: str) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"field '{field}' must be a non-empty list of messages"
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            return f"{field}[{i}] must be a message with 'role' and 'content'"
    return None


def trainer_row_problem(row: Any) -> str | None:
    """The first problem of a trainer row (either stage's shape), or None."""
    if not isinstance(row, Mapping):
        return "not an object"
    kind = record_kind(row)
    if kind not in ("trainer_sft", "trainer_preference"):
        return "not a trainer row (no 'prompt')"
    missing = [k for k in REQUIRED_FIELDS[kind] if k not in row]
    if missing:
        return f"missing {', '.join(missing)}"
    for field in ("prompt", *(("chosen", "rejected") if kind == "trainer_preference" else ("completion",))):
        problem = _messages_problem(row[field], field)
        if problem:
            return problem
    return None


def prediction_problem(prediction: Any) -> str | None:
    """The first problem of a prediction (the parser's result shape), or None."""
    if not isinstance(prediction, Mapping):
        return "expected a JSON object (a prediction)"
    missing = [k for k in PREDICTION_FIELDS if k not in prediction and k != "raw"]
    if missing:
        return f"missing {', '.join(missing)}"
    codes = prediction["codes"]
    if not isinstance(codes, list):
        return "field 'codes' must be a list"
    for i, code in enumerate(codes):
        if not isinstance(code, Mapping) or "system" not in code or "code" not in code:
            return f"codes[{i}] must be an object with 'system' and 'code'"
    return None


def trainer_arrow_schema(stage: int) -> Any:
    """The parquet (pyarrow) schema of a stage's train/validation files."""
    import pyarrow as pa

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    if stage == 3:
        fields = [("prompt", messages), ("chosen", messages), ("rejected", messages)]
        fields += [("id", pa.string()), ("source", pa.string()), ("rejection_kind", pa.string())]
    else:
        fields = [
            ("prompt", messages),
            ("completion", messages),
            ("id", pa.string()),
            ("source", pa.string()),
        ]
    return pa.schema(fields)
