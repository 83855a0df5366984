"""Training data with candidates: gold insertion, contrastive traces, retriever-confusion pairs."""

import pytest

from thce.data.candidates import (
    RETRIEVER_CONFUSION,
    confusion_pair,
    contrastive_reasoning,
    offer_candidates,
    with_candidates,
)
from thce.utils.config import CandidateDataConfig
from thce.utils.errors import UserError


def _offer(*codes):
    return [{"system": "ICD10", "code": c, "description": f"description of {c}"} for c in codes]


def _describe(system, code):
    return f"inserted {code}"


RETRIEVED = _offer("S72.002A", "S72.009A", "S72.001D", "S72.001S", "S72.002D")
GOLD = [{"system": "ICD10", "code": "S72.001A"}]


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.7, 1.0])
def test_gold_insertion_rate(rate):
    n = 2000
    inserted = positions = 0
    seen_positions = set()
    for i in range(n):
        offered, count = offer_candidates(RETRIEVED, GOLD, f"rec-{i}", 7, rate, _describe)
        assert len(offered) == len(RETRIEVED)  # the list keeps its length
        codes = [c["code"] for c in offered]
        if count:
            inserted += 1
            assert "S72.001A" in codes and "S72.002D" not in codes  # the tail candidate made room
            seen_positions.add(codes.index("S72.001A"))
            positions += 1
        else:
            assert codes == [c["code"] for c in RETRIEVED]
    assert abs(inserted / n - rate) < 0.035
    if rate >= 0.3:
        assert seen_positions == set(range(5))  # anywhere in the list, not always first or last


def test_gold_already_offered_is_left_alone():
    offered, count = offer_candidates(
        _offer("E11.9", "E11.65"), [{"system": "ICD10", "code": "E11.65"}], "x", 1, 1.0, _describe
    )
    assert count == 0 and [c["code"] for c in offered] == ["E11.9", "E11.65"]


def test_insertion_keeps_offered_gold_codes():
    gold = [{"system": "ICD10", "code": "I10"}, {"system": "ICD10", "code": "E11.9"}]
    offered, count = offer_candidates(_offer("E11.65", "I10"), gold, "y", 1, 1.0, _describe)
    assert count == 1 and sorted(c["code"] for c in offered) == ["E11.9", "I10"]
    assert next(c for c in offered if c["code"] == "E11.9")["description"] == "inserted E11.9"


def test_contrastive_trace_names_rivals_and_the_deciding_fact():
    offered = _offer("S72.002A", "S72.001A", "S72.001D")
    note = "Closed fracture of the right femur neck, initial encounter."
    trace = contrastive_reasoning([{"system": "ICD10", "code": "S72.001A"}], offered, note)
    assert trace.startswith("S72.001A: fracture of unspecified part of neck of right femur")
    assert "not S72.002A (laterality left: not documented)" in trace
    assert "not S72.001D (encounter subsequent" in trace
    assert len(trace.split()) < 45  # a few dozen tokens, not a hierarchy walk


def test_trace_does_not_claim_absent_what_the_note_says():
    offered = _offer("E11.9", "E11.65")
    note = "Type 2 diabetes with hyperglycemia noted; coded as uncomplicated."
    trace = contrastive_reasoning([{"system": "ICD10", "code": "E11.9"}], offered, note)
    assert "not documented" not in trace


def test_confusion_pair_swaps_the_competing_code():
    codes = [{"system": "ICD10", "code": "I10"}, {"system": "ICD10", "code": "E11.9"}]
    rejected = confusion_pair(codes, _offer("I10", "E11.65", "E11.9"))
    assert [c["code"] for c in rejected] == ["I10", "E11.65"]
    assert confusion_pair(codes, _offer("I10", "E11.9")) is None


def test_stage_3_record_becomes_a_confusion_pair_with_traces():
    record = {
        "id": "p1",
        "text": "Type 2 diabetes mellitus without complications.",
        "chosen": {"codes": [{"system": "ICD10", "code": "E11.9"}], "reasoning": "long walk"},
        "rejected": {"codes": [{"system": "ICD10", "code": "E10.9"}], "reasoning": "long walk"},
        "rejection_kind": "sibling",
        "source": "test",
    }
    options = CandidateDataConfig(confusion_pair_rate=1.0)
    out, offered, counts = with_candidates(record, _offer("E11.65", "E11.9"), 3, 0, options, _describe)
    assert out["rejection_kind"] == RETRIEVER_CONFUSION
    assert out["rejected"]["codes"] == [{"system": "ICD10", "code": "E11.65"}]
    assert out["chosen"]["reasoning"].startswith("E11.9:") and out["rejected"]["reasoning"].startswith(
        "E11.65:"
    )
    assert counts == {"gold_missed": 0, "gold_inserted": 0, "gold_not_offered": 0}
    assert [c["code"] for c in offered] == ["E11.65", "E11.9"]
    assert record["rejection_kind"] == "sibling"  # the input record is not mutated


def test_candidate_options_are_validated():
    with pytest.raises(UserError, match="gold_insertion_rate"):
        CandidateDataConfig(gold_insertion_rate=1.5)
