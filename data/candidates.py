"""Training data with candidates: what a candidate-aware prompt offers, and the answers built from it.

`thce collect` runs the stage's retriever (`retrieval:` section) over each record's own text, so training
examples carry the retriever's real confusions. Then, per record (all deterministic for the stage seed):

- `offer_candidates`: where the retriever missed a gold code, the code is inserted at a random position
  (replacing the last candidate, so the list keeps its length) in a `gold_insertion_rate` share of
  records. A record that stays uncovered keeps its true codes as the answer.
- `contrastive_reasoning` (stages 2-3): a short, faithful trace per gold code: which offered candidates
  compete with it and which words of the tabular list decide between them, checked against the note
  ("not documented" is only said when the note does not contain the rival's deciding words), ending on
  the chosen code ("E11.9: not E11.65 (...); so E11.9.").
- `confusion_pair` (stage 3): rejected = the gold answer with the retriever's top wrong candidate in place
  of the gold code it competes with (`rejection_kind: retriever_confusion`).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from thce.utils.config import CandidateDataConfig

RETRIEVER_CONFUSION = "retriever_confusion"
_WORD = re.compile(r"[a-z0-9]+")
# Words that never decide between two codes on their own.
_FILLER = frozenset(
    [
        "of",
        "the",
        "and",
        "or",
        "in",
        "to",
        "for",
        "by",
        "a",
        "an",
        "as",
        "on",
        "at",
        "due",
        "other",
        "unspecified",
        "specified",
    ]
)
_WITH = frozenset(("with", "without"))
_AXES = (
    ("laterality", re.compile(r"\b(?:right|left|bilateral)\b")),
    ("encounter", re.compile(r"\b(?:initial|subsequent|sequela)\b")),
    ("type", re.compile(r"\btype\b|\b(?:primary|secondary)\b")),
    ("acuity", re.compile(r"\b(?:acute|chronic|subacute|recurrent)\b")),
    ("severity", re.compile(r"\b(?:mild|moderate|severe|stage|remission)\b")),
    ("complication", re.compile(r"\bwith(?:out)?\b")),
)


def unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _get(candidate: Any, name: str) -> Any:
    return candidate[name] if isinstance(candidate, Mapping) else getattr(candidate, name)


def as_offer(candidate: Any) -> dict[str, str]:
    """A candidate as the plain mapping prompts are built from."""
    return {
        "system": _get(candidate, "system"),
        "code": _get(candidate, "code"),
        "description": _get(candidate, "description"),
    }


def offer_candidates(
    retrieved: Sequence[Any],
    gold: Sequence[Mapping[str, str]],
    record_id: str,
    seed: int,
    rate: float,
    describe: Any,
) -> tuple[list[dict[str, str]], int]:
    """The candidates a training example offers, and how many gold codes were inserted.

    Whether a record gets its missing gold codes inserted is decided once per record (a seeded hash of
    its id under `rate`); each inserted code lands at a seeded random position and pushes the last
    candidate out. `describe(system, code)` gives an inserted code's (trimmed) description."""
    offered = [as_offer(c) for c in retrieved]
    have = {(c["system"], c["code"]) for c in offered}
    missing = [g for g in gold if (g["system"], g["code"]) not in have]
    if not missing or unit_hash("insert", seed, record_id) >= rate:
        return offered, 0
    size = max(len(offered), len(gold))
    # Keep the gold codes already offered; drop from the tail what the inserted ones displace.
    gold_keys = {(g["system"], g["code"]) for g in gold}
    while len(offered) + len(missing) > size:
        tail = max(i for i, c in enumerate(offered) if (c["system"], c["code"]) not in gold_keys)
        offered.pop(tail)
    for n, code in enumerate(missing):
        position = int(unit_hash("position", seed, record_id, n) * (len(offered) + 1))
        offered.insert(
            position,
            {
                "system": code["system"],
                "code": code["code"],
                "description": describe(code["system"], code["code"]),
            },
        )
    return offered, len(missing)


@cache
def _full_description(system: str, code: str) -> str:
    from thce.utils.code_validator import get_code_system

    try:
        return get_code_system(system).description(code) or ""
    except Exception:  # a system without a code file describes nothing
        return ""


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _differences(own: str, rival: str) -> tuple[list[str], list[str]]:
    """The words only `own` has and the words only `rival` has, in description order. Where they differ only in
    "with" / "without", what follows it (`_object`) goes with each side: "with damage to nail" against "without
    damage to nail" names the fact, "with" against "without" does not."""
    a, b = _words(own), _words(rival)
    only_a: list[str] = []
    only_b: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag != "equal":
            after = _object(a[i2:]) if set(a[i1:i2] + b[j1:j2]) <= _WITH else []
            only_a += a[i1:i2] + after
            only_b += b[j1:j2] + after
    return only_a, only_b


def _object(words: list[str]) -> list[str]:
    """The leading words of `words` up to its second word that is not filler ("damage to nail", "hematuria")."""
    taken: list[str] = []
    for word in words:
        if word in _WITH:
            break
        taken.append(word)
        if sum(w not in _FILLER for w in taken) == 2:
            break
    return taken


def _phrase(words: list[str], limit: int = 5) -> str:
    return " ".join(words[:limit]) + (" ..." if len(words) > limit else "")


def _axis(words: list[str]) -> str | None:
    text = " ".join(words)
    return next((name for name, pattern in _AXES if pattern.search(text)), None)


def _rival_reason(code: str, rival: str, system: str, note_words: set[str]) -> str:
    own_only, rival_only = _differences(_full_description(system, code), _full_description(system, rival))
    # An axis (laterality, encounter, ...) is what tells siblings apart; a rival from another category
    # differs in the condition itself, so naming an axis for it would be noise.
    axis = (_axis(rival_only) or _axis(own_only)) if rival[:3] == code[:3] else None
    label = f"{axis} " if axis else ""
    deciding = [w for w in rival_only if w not in _FILLER]
    if deciding and not any(w in note_words for w in deciding):
        return f"not {rival} ({label}{_phrase(rival_only)}: not documented)"
    documented = [w for w in own_only if w not in _FILLER and w in note_words]
    if documented:
        return f"not {rival} (note says {label}{_phrase(documented)})"
    if rival_only:
        return f"not {rival} ({label}{_phrase(rival_only)})"
    return f"not {rival} (less specific)" if own_only else f"not {rival}"


def _rivals(
    code: Mapping[str, str], offered: Sequence[Mapping[str, str]], answer: set[str], n: int
) -> list[str]:
    """Up to `n` offered codes that compete with `code`: same category first, then retrieval order."""
    others = [c["code"] for c in offered if c["code"] not in answer and c["system"] == code["system"]]
    same = [c for c in others if c[:3] == code["code"][:3]]
    return (same + [c for c in others if c not in same])[:n]


def contrastive_reasoning(
    codes: Sequence[Mapping[str, str]], offered: Sequence[Mapping[str, str]], text: str, rivals: int = 2
) -> str:
    """One short line per answer code: the code, why its strongest offered rivals lose (read from the
    tabular list, checked against the note's words with abbreviations expanded), and the code again as the
    line's last word; a code without offered rivals gets its description instead."""
    from thce.retrieval import expand_abbreviations, state_absence

    # "no hematuria" is the list's "without hematuria": the retriever's rewrites, so the trace reads as it ranks
    note_words = set(_words(state_absence(expand_abbreviations(text)))) | set(_words(text))
    answer = {c["code"] for c in codes}
    lines = []
    for code in codes:
        reasons = [
            _rival_reason(code["code"], r, code["system"], note_words)
            for r in _rivals(code, offered, answer, rivals)
        ]
        # With rivals the line is the contrast alone (the offered list already shows the description), and
        # it ends on its decision: a small model copies the code it read last into the answer, so a line
        # ending on a rival ("...; not K55.32 (...)") primes the rival. It also stays within a think budget.
        if reasons:
            lines.append(f"{code['code']}: {'; '.join(reasons)}; so {code['code']}.")
        else:
            description = _full_description(code["system"], code["code"]) or "not a billable code"
            lines.append(f"{code['code']}: {_phrase(_words(description), 10)}.")
    return "\n".join(lines)


def confusion_pair(
    codes: Sequence[Mapping[str, str]], offered: Sequence[Mapping[str, str]]
) -> list[dict[str, str]] | None:
    """The rejected answer of a retriever-confusion pair: the top-ranked wrong candidate replaces the gold
    code it competes with (same category, else the first code); None when nothing wrong was offered."""
    answer = {(c["system"], c["code"]) for c in codes}
    wrong = next((c for c in offered if (c["system"], c["code"]) not in answer), None)
    if wrong is None:
        return None
    target = next((i for i, c in enumerate(codes) if c["code"][:3] == wrong["code"][:3]), 0)
    rejected = [dict(c) for c in codes]
    rejected[target] = {"system": wrong["system"], "code": wrong["code"]}
    return rejected


def with_candidates(
    record: dict[str, Any],
    retrieved: Sequence[Any],
    stage: int,
    seed: int,
    options: CandidateDataConfig,
    describe: Any,
) -> tuple[dict[str, Any], list[dict[str, str]], dict[str, int]]:
    """The record as it is trained with candidates (reasoning and, for stage 3, the pair rebuilt), the
    offered list, and counts for the dataset metadata."""
    gold = record["chosen"]["codes"] if stage == 3 else record["codes"]
    offered, inserted = offer_candidates(
        retrieved, gold, record["id"], seed, options.gold_insertion_rate, describe
    )
    retrieved_keys = {(c["system"], c["code"]) for c in map(as_offer, retrieved)}
    offered_keys = {(c["system"], c["code"]) for c in offered}
    counts = {
        "gold_missed": int(any((g["system"], g["code"]) not in retrieved_keys for g in gold)),
        "gold_inserted": int(inserted > 0),
        "gold_not_offered": int(any((g["system"], g["code"]) not in offered_keys for g in gold)),
    }
    if stage == 1:
        return record, offered, counts
    record = dict(record)
    text = record["text"]

    def trace(codes: Sequence[Mapping[str, str]]) -> str:
        return contrastive_reasoning(codes, offered, text, options.rivals)

    if stage == 2:
        if options.reasoning == "contrastive":
            record["reasoning"] = trace(record["codes"])
        return record, offered, counts
    chosen, rejected = dict(record["chosen"]), dict(record["rejected"])
    if unit_hash("confusion", seed, record["id"]) < options.confusion_pair_rate:
        wrong = confusion_pair(chosen["codes"], offered)
        if wrong is not None:
            rejected = {"codes": wrong, "reasoning": None}
            record["rejection_kind"] = RETRIEVER_CONFUSION
    if options.reasoning == "contrastive":
        chosen["reasoning"] = trace(chosen["codes"])
        rejected["reasoning"] = trace(rejected["codes"])
    elif rejected.get("reasoning") is None:
        rejected["reasoning"] = chosen.get("reasoning")
    record["chosen"], record["rejected"] = chosen, rejected
    return record, offered, counts
