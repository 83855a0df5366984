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
    assert trace.startswith("S72.001A: not S72.002A")
    assert "not S72.002A (laterality left: not documented)" in trace
    assert "not S72.001D (encounter subsequent" in trace
    assert trace.endswith("; so S72.001A.")  # the decision comes last, next to the answer
    assert len(trace.split()) < 30  # a few dozen tokens, not a hierarchy walk


def test_trace_names_an_axis_only_between_siblings():
    offered = _offer("D03.22", "E78.2", "E78.3")
    note = "xanthoma tuberosum"
    trace = contrastive_reasoning([{"system": "ICD10", "code": "E78.2"}], offered, note)
    # a melanoma of the left ear is another condition, not another laterality
    assert "not D03.22 (melanoma in situ of left ...: not documented)" in trace
    assert "laterality" not in trace


def test_trace_does_not_claim_absent_what_the_note_says():
    offered = _offer("E11.9", "E11.65")
    note = "Type 2 diabetes with hyperglycemia noted; coded as uncomplicated."
    trace = contrastive_reasoning([{"system": "ICD10", "code": "E11.9"}], offered, note)
    assert "not documented" not in trace


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        ("Acute cystitis, no hematuria.", "not N30.01 (note says complication without hematuria)"),
        ("Acute cystitis without hematuria.", "not N30.01 (note says complication without hematuria)"),
        ("Acute cystitis.", "not N30.01 (complication with hematuria: not documented)"),
    ],
)
def test_trace_names_what_is_with_or_without(note, reason):
    offered = _offer("N30.01", "N30.00")
    trace = contrastive_reasoning([{"system": "ICD10", "code": "N30.00"}], offered, note)
    assert reason in trace, trace


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


@pytest.mark.parametrize(
    ("stage", "generator"), [(1, "icd10cm"), (2, "icd10cm_reasoning"), (3, "icd10cm_preference")]
)
def test_collect_puts_the_retrievers_candidates_into_every_train_prompt(tmp_path, stage, generator):
    import json

    import pyarrow.parquet as pq
    import yaml

    from thce.data.data_collection import collect
    from thce.utils.config import load_config

    raw = {
        "stage": stage,
        "seed": 3,
        "data": {
            "sources": [{"kind": "synthetic", "generator": generator, "entries": 60}],
            "preprocess": {"scrub_phi": False},
            "split": {"heldout_code_fraction": 0.0, "test_seen_fraction": 0.0, "validation_fraction": 0.0},
            "candidates": {"gold_insertion_rate": 1.0, "confusion_pair_rate": 1.0},
            "output_dir": str(tmp_path / "out"),
        },
        "retrieval": {"enabled": True, "k": 4, "description_max_chars": 50},
        "chat": {"template": f"stage_{stage}"},
    }
    path = tmp_path / "stage.yaml"
    path.write_text(yaml.safe_dump(raw))
    collect(load_config(path), progress=False)
    rows = pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()
    metadata = json.loads((tmp_path / "out" / "dataset_metadata.json").read_text())["candidates"]
    assert len(rows) == 60 and metadata["train_examples"] == 60
    assert metadata["gold_not_offered"] == 0 and metadata["gold_inserted"] == metadata["gold_missed"]
    for row in rows:
        user = row["prompt"][-1]["content"]
        listed = [line.split(" ")[1] for line in user.split("Candidates:\n", 1)[1].splitlines()]
        assert len(listed) == 4
        answer = row["chosen" if stage == 3 else "completion"][0]["content"]
        codes = [line.split(": ", 1)[1] for line in answer.splitlines() if line.startswith("ICD10: ")]
        assert set(codes) <= set(listed)  # every gold code is offered (insertion rate 1.0)
        if stage > 1:
            trace = answer.split("</think>")[0]
            assert trace.startswith("<think>" + codes[0] + ":") and len(trace.split()) < 40 * len(codes)
        if stage == 3:
            assert row["rejection_kind"] == "retriever_confusion"
            rejected = row["rejected"][0]["content"].split("</think>\n")[1]
            assert rejected != answer.split("</think>\n")[1]
