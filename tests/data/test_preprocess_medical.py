"""Preprocessing: text normalisation, code validation policies, stage rules, trainer-ready rows."""

import pytest

from thce.data.preprocess_medical import Preprocessor, normalize_codes, normalize_text, to_trainer_row
from thce.utils.config import PreprocessConfig


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Caf\u00c3\u00a9 au lait spots", "Café au lait spots"),  # UTF-8 read as Latin-1
        ("  HTN\t\t and   T2DM \r\n\r\n\r\n\r\nstable ", "HTN and T2DM\n\nstable"),
        ("ＨＴＮ ﬁndings", "HTN findings"),  # NFKC: full-width letters, ligature
        ("BP\x00 120/80", "BP 120/80"),
    ],
)
def test_normalize_text(raw, clean):
    assert normalize_text(raw) == clean


def test_normalize_codes_canonicalises_and_rejects():
    verdict = normalize_codes(
        [
            {"system": "ICD10", "code": "e119"},
            {"system": "icd10", "code": "E11.9"},
            {"system": "ICD10", "code": "E11"},
            {"system": "CPT", "code": "99213"},
            {"system": "ICD10", "code": "banana"},
        ]
    )
    assert verdict.valid == [{"system": "ICD10", "code": "E11.9"}, {"system": "CPT", "code": "99213"}]
    assert [c["code"] for c in verdict.invalid] == ["E11", "banana"]  # E11 is a heading, not billable


def _record(codes, reasoning=None, text="Assessment: type 2 diabetes without complications."):
    return {
        "id": "r1",
        "text": text,
        "codes": [{"system": "ICD10", "code": c} for c in codes],
        "reasoning": reasoning,
        "source": "t",
        "meta": {},
    }


def test_invalid_code_policies():
    drop = Preprocessor(PreprocessConfig(scrub_phi=False, invalid_codes="drop"))
    [result] = drop.process_batch([_record(["E11.9", "ZZZ.9"])])
    assert result.record is None and result.dropped == "invalid_codes"
    flag = Preprocessor(PreprocessConfig(scrub_phi=False, invalid_codes="flag"))
    [result] = flag.process_batch([_record(["E11.9", "ZZZ.9"])])
    assert result.record["codes"] == [{"system": "ICD10", "code": "E11.9"}]
    assert result.record["meta"]["invalid_codes"] == [{"system": "ICD10", "code": "ZZZ.9"}]


def test_stage_rules_and_length_limits():
    stage_2 = Preprocessor(PreprocessConfig(scrub_phi=False), stage=2)
    [result] = stage_2.process_batch([_record(["E11.9"])])
    assert result.dropped == "no_reasoning"
    stage_3 = Preprocessor(PreprocessConfig(scrub_phi=False), stage=3)
    assert stage_3.process_batch([_record(["E11.9"])])[0].dropped == "not_preference"
    short = Preprocessor(PreprocessConfig(scrub_phi=False, min_text_chars=10))
    assert short.process_batch([_record(["E11.9"], text="T2DM")])[0].dropped == "too_short"


def test_phi_is_scrubbed_unless_the_source_is_phi_free():
    pre = Preprocessor(PreprocessConfig(phi_engine="rules"))
    record = _record(["E11.9"], text="Seen by Dr. Alice Brown on 03/14/2021 for T2DM without complications.")
    [scrubbed] = pre.process_batch([record])
    assert scrubbed.record["text"] == "Seen by Dr. [NAME] on 2021 for T2DM without complications."
    assert scrubbed.record["meta"]["phi_scrubbed"] is True
    [kept] = pre.process_batch([record], phi_free=True)
    assert "Alice Brown" in kept.record["text"] and kept.record["meta"]["phi_scrubbed"] is False


def test_trainer_rows_per_stage():
    record = _record(["E11.9", "I10"], reasoning="Category E11: Type 2 diabetes mellitus.")
    one = to_trainer_row(record, 1, "stage_1")
    assert one["completion"] == [{"role": "assistant", "content": "ICD10: E11.9\nICD10: I10"}]
    two = to_trainer_row(record, 2, "stage_2")
    assert two["completion"][0]["content"].startswith("<think>Category E11")
    assert two["prompt"][0]["content"].startswith("You are a medical coding expert")
    pair = {
        "id": "p",
        "text": record["text"],
        "source": "t",
        "rejection_kind": "parent",
        "chosen": {"codes": [{"system": "ICD10", "code": "E11.9"}], "reasoning": "r"},
        "rejected": {"codes": [{"system": "ICD10", "code": "E11"}], "reasoning": "r"},
    }
    three = to_trainer_row(pair, 3, "stage_3")
    assert three["rejected"][0]["content"].endswith("ICD10: E11") and three["rejection_kind"] == "parent"
