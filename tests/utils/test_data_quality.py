"""Quality checks: a clean dataset passes; each defect fails the check that should catch it."""

import json

from thce.utils.config import QualityConfig
from thce.utils.data_quality import check_dataset, format_summary

TEXT = "Assessment: type 2 diabetes mellitus without complications, stable on metformin therapy today."


def _write(tmp_path, rows, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _canonical(i, code="E11.9", text=None, reasoning=None):
    return {
        "id": str(i),
        "text": text or f"{TEXT} Visit {i}.",
        "codes": [{"system": "ICD10", "code": code}],
        "reasoning": reasoning,
        "source": "t",
    }


LOOSE = QualityConfig(min_english_rate=0.0)


def test_clean_dataset_passes(tmp_path):
    report = check_dataset(
        _write(tmp_path, [_canonical(i) for i in range(20)]),
        stage=1,
        thresholds=QualityConfig(min_english_rate=0.9),
    )
    assert report["passed"], report["failed"]
    assert report["metrics"]["code_validity"] == 1.0 and report["languages"] == {"en": 20}
    assert "PASSED" in format_summary(report)


def test_each_defect_fails_its_check(tmp_path):
    rows = [_canonical(i) for i in range(8)]
    rows.append(_canonical(1))  # exact duplicate text
    rows.append(_canonical(9, code="E11"))  # heading, not billable
    rows.append(_canonical(10, text="Seen by Dr. Alice Brown, SSN 123-45-6789, for T2DM."))
    report = check_dataset(_write(tmp_path, rows), stage=2, thresholds=LOOSE)
    failed = {f["check"] for f in report["failed"]}
    assert failed == {"duplicate_rate", "code_validity", "phi_residue_rate", "reasoning_rate"}
    assert report["phi_residue"]["kinds"] == {"NAME": 1, "SSN": 1}
    assert "FAILED" in format_summary(report)


def test_preference_consistency(tmp_path):
    def pair(i, rejected):
        return {
            "id": str(i),
            "text": f"{TEXT} {i}",
            "rejection_kind": "sibling",
            "source": "t",
            "chosen": {"codes": [{"system": "ICD10", "code": "E11.9"}], "reasoning": "r"},
            "rejected": {"codes": [{"system": "ICD10", "code": rejected}], "reasoning": "r"},
        }

    good = check_dataset(_write(tmp_path, [pair(0, "E11.8"), pair(1, "E11.99")]), stage=3, thresholds=LOOSE)
    assert good["metrics"]["preference_consistency"] == 1.0 and good["passed"]
    bad = check_dataset(
        _write(tmp_path, [pair(0, "E11.9"), pair(1, "E11.8")], "bad.jsonl"), stage=3, thresholds=LOOSE
    )
    assert bad["preference_problems"] == {"rejected_same_codes": 1}
    assert {f["check"] for f in bad["failed"]} == {"preference_consistency"}


def test_schema_errors_are_reported(tmp_path):
    report = check_dataset(
        _write(tmp_path, [_canonical(0), {"id": "x", "text": "no codes here at all, sadly"}]),
        thresholds=LOOSE,
    )
    assert report["schema_errors"] and not report["passed"]


def test_placeholders_that_replaced_medical_words_are_counted_not_gated(tmp_path):
    rows = [_canonical(i) for i in range(6)]
    rows.append(_canonical(6, text="Assessment: [LOCATION], unspecified organism. Seen by Dr. [NAME]."))
    rows.append(_canonical(7, text="History of [NAME]-esophageal reflux disease and non-[NAME] lymphoma."))
    rows.append(
        _canonical(8, text="Patient: [NAME], a 54-year-old. Lives at [ADDRESS]. Called [NAME]-Smith.")
    )
    report = check_dataset(_write(tmp_path, rows), stage=1, thresholds=LOOSE)
    counted = report["phi_medical_placeholders"]
    assert (counted["rows"], counted["placeholders"]) == (2, 3)
    assert report["metrics"]["phi_medical_placeholder_rate"] == 2 / 9
    assert report["passed"], report["failed"]
    assert "medical placeholders 3 in 2 rows" in format_summary(report)
