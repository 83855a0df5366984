import pytest

from thce.evaluation.baseline import RULES, rule_based_codes, run_baseline
from thce.utils.code_validator import validate_code
from thce.utils.errors import UserError


def test_every_rule_maps_to_a_billable_code():
    assert all(validate_code(code, "ICD10", require_billable=True) for _, code in RULES)


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("Pt with HTN and T2DM, here for refill", ["I10", "E11.9"]),
        ("Type 1 diabetes, well controlled", ["E10.9"]),
        ("COPD exacerbation; also afib", ["J44.9", "I48.91"]),
        ("Sprained ankle", []),
    ],
)
def test_rule_based(text, codes):
    assert rule_based_codes(text) == codes


def test_keyword_finds_descriptions():
    [result] = run_baseline("keyword", ["Type 2 diabetes mellitus without complications"])
    assert result["code"] == "E11.9" and len(result["candidates"]) == 5


def test_random_is_seeded_and_valid():
    first = run_baseline("random", ["a", "b"], seed=1)
    assert first == run_baseline("random", ["a", "b"], seed=1)
    assert all(validate_code(r["code"], "ICD10", require_billable=True) for r in first)


def test_most_frequent():
    results = run_baseline("most_frequent", ["x", "y"], training_codes=["I10", "E11.9", "I10"])
    assert [r["code"] for r in results] == ["I10", "I10"] and results[0]["confidence"] == pytest.approx(2 / 3)
    with pytest.raises(UserError, match="training codes"):
        run_baseline("most_frequent", ["x"], training_codes=[])
    with pytest.raises(UserError, match="unknown baseline"):
        run_baseline("magic", ["x"])
