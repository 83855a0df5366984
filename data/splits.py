"""Where each collected record goes: train, validation, test_seen or test_unseen (all seeded, so the same
config gives the same split).

Held-out codes: a code is held out when a seeded hash of it falls under `split.heldout_code_fraction`;
the seed is the stage config's, so stages 1-3 with the same seed hold out the same codes. A record with
any held-out code never reaches train: it goes to test_unseen (up to the cap) or is dropped. Train rows
are spilled to one file per shuffle bucket (a seeded hash of the record id picks the bucket);
`shuffled_buckets` reads each back shuffled.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from thce.data.preprocess_medical import answer_codes, to_canonical_test_record, to_trainer_row
from thce.utils.config import StageConfig


def _unit_hash(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (independent of PYTHONHASHSEED)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_heldout_code(code: str, seed: int, fraction: float) -> bool:
    """Whether a code belongs to the held-out set (never in train) for this seed."""
    return fraction > 0 and _unit_hash("heldout", seed, code) < fraction


class SplitWriter:
    """Routes processed records to train buckets, validation, test_seen and test_unseen."""

    def __init__(self, config: StageConfig, workdir: Path, n_buckets: int) -> None:
        self.config = config
        self.split = config.data.split
        self.workdir = workdir
        self.n_buckets = n_buckets
        self.buckets = [
            open(workdir / f"bucket_{i:04d}.jsonl", "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
            for i in range(n_buckets)
        ]
        self.test_seen = open(workdir / "test_seen.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self.test_unseen = open(workdir / "test_unseen.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self.validation: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.heldout_codes: set[str] = set()
        self.train_codes: Counter[str] = Counter()
        self.code_systems: Counter[str] = Counter()
        self.rejection_kinds: Counter[str] = Counter()
        self.candidate_counts: Counter[str] = Counter()

    def add(self, record: dict[str, Any], retrieved: list[Any] | None = None) -> str:
        seed = self.config.seed
        codes = answer_codes(record)
        heldout = [
            c["code"] for c in codes if is_heldout_code(c["code"], seed, self.split.heldout_code_fraction)
        ]
        if heldout:
            self.heldout_codes.update(heldout)
            if self.counts["test_unseen"] < self.split.max_test_records:
                return self._write_test(self.test_unseen, record, "test_unseen")
            self.counts["heldout_overflow_dropped"] += 1
            return "heldout_overflow_dropped"
        u = _unit_hash("split", seed, record["id"], record["text"])
        if u < self.split.test_seen_fraction and self.counts["test_seen"] < self.split.max_test_records:
            return self._write_test(self.test_seen, record, "test_seen")
        if (
            u < self.split.test_seen_fraction + self.split.validation_fraction
            and len(self.validation) < self.split.max_validation_records
        ):
            self.validation.append(self._row(record, retrieved))
            self.counts["validation"] += 1
            return "validation"
        bucket = int(_unit_hash("bucket", seed, record["id"]) * self.n_buckets)
        row = self._row(record, retrieved, count=True)
        self.buckets[bucket].write(json.dumps(row, ensure_ascii=False) + "\n")
        self.counts["train"] += 1
        if "rejection_kind" in row:
            self.rejection_kinds[row["rejection_kind"]] += 1
        for code in codes:
            self.train_codes[code["code"]] += 1
            self.code_systems[code["system"]] += 1
        return "train"

    def _row(
        self, record: dict[str, Any], retrieved: list[Any] | None, count: bool = False
    ) -> dict[str, Any]:
        offered = None
        if retrieved is not None:
            from thce.data.candidates import with_candidates

            record, offered, counts = with_candidates(
                record,
                retrieved,
                self.config.stage,
                self.config.seed,
                self.config.data.candidates,
                _describe(self.config),
            )
            if count:
                self.candidate_counts.update(counts)
                self.candidate_counts["examples"] += 1
        return to_trainer_row(
            record, self.config.stage, self.config.chat.template, self.config.chat.system_message, offered
        )

    def _write_test(self, handle: Any, record: dict[str, Any], name: str) -> str:
        handle.write(json.dumps(to_canonical_test_record(record), ensure_ascii=False) + "\n")
        self.counts[name] += 1
        return name

    def close(self) -> None:
        for handle in [*self.buckets, self.test_seen, self.test_unseen]:
            handle.close()


def _describe(config: StageConfig) -> Any:
    """How an inserted gold code is described in a prompt: as the retriever describes its candidates."""
    from thce.retrieval import trim_description
    from thce.utils.code_validator import get_code_system

    def describe(system: str, code: str) -> str:
        return trim_description(
            get_code_system(system).description(code) or "", config.retrieval.description_max_chars
        )

    return describe


def shuffled_buckets(workdir: Path, n_buckets: int, seed: int) -> Iterator[list[dict[str, Any]]]:
    """The train rows `SplitWriter` spilled, one bucket at a time, each shuffled (seeded) and then deleted."""
    for i in range(n_buckets):
        path = workdir / f"bucket_{i:04d}.jsonl"
        with path.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        random.Random(f"shuffle:{seed}:{i}").shuffle(rows)
        path.unlink()
        yield rows
