"""The shipped out-of-distribution check sets stay well formed: canonical records, billable FY2026 codes,
disjoint validation and test splits."""

import json
from pathlib import Path

import pytest

from thce.retrieval import Candidate
from thce.retrieval.recall import gold_codes, recall_at_k
from thce.utils.code_validator import validate_code

OOD_DIR = Path(__file__).resolve().parents[2] / "data" / "eval"
FILES = sorted(OOD_DIR.glob("ood_*.jsonl"))


def _records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_four_files_are_shipped():
    assert [p.name for p in FILES] == [
        "ood_notes_test.jsonl",
        "ood_notes_validation.jsonl",
        "ood_paraphrases_test.jsonl",
        "ood_paraphrases_validation.jsonl",
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_records_are_canonical_with_billable_codes(path):
    records = _records(path)
    split = path.stem.rsplit("_", 1)[1]
    assert len(records) >= 15
    for record in records:
        assert set(record) == {"id", "text", "codes", "reasoning", "source", "meta"}
        assert record["text"].strip() and record["meta"]["split"] == split
        assert record["codes"] and all(c["system"] == "ICD10" for c in record["codes"])
        assert all(validate_code(c["code"], "ICD10", require_billable=True) for c in record["codes"]), record


def test_splits_are_disjoint_and_ids_unique():
    texts = {}
    ids = set()
    for path in FILES:
        for record in _records(path):
            assert record["id"] not in ids
            ids.add(record["id"])
            texts.setdefault(record["text"].lower(), set()).add(path.stem.rsplit("_", 1)[1])
    assert all(len(splits) == 1 for splits in texts.values())


def test_recall_at_k_counts_every_gold_code_and_the_first_for_top1():
    def cands(*codes):
        return [Candidate("ICD10", code, "", 1.0) for code in codes]

    golds = [["I10", "E11.9"], ["J45.909"], []]
    candidates = [cands("I10", "E78.5", "E11.9"), cands("J45.20", "J45.909"), cands("I10")]
    result = recall_at_k(golds, candidates, ks=(1, 2, 3))
    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["recall@2"] == pytest.approx(2 / 3)
    assert result["recall@3"] == pytest.approx(1.0)
    assert result["top1_exact"] == 0.5 and result["notes"] == 2 and result["gold_codes"] == 3
    assert gold_codes(
        {"codes": [{"system": "ICD10", "code": "I10"}, {"system": "CPT", "code": "99213"}]}
    ) == ["I10"]
