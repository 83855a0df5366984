import pytest

from thce.evaluation.error_analysis import CATEGORIES, answer_without_reasoning, categorise, summarise

CHAPTERS = {"E": "4", "I": "9", "S": "19"}


def chapter_of(code):
    return CHAPTERS.get(code[0])


@pytest.mark.parametrize(
    ("gold", "predicted", "valid", "text", "expected"),
    [
        ("E11.9", "E11.9", True, "", "exact"),
        ("E11.9", "E11.8", True, "", "sibling"),
        ("E11.9", "E11", True, "", "less_specific_parent"),
        ("E11.9", "E11.65", True, "", "right_category_wrong_specificity"),
        ("E11.9", "E10.9", True, "", "wrong_category"),
        ("E11.9", "I10", True, "", "wrong_chapter"),
        ("E11.9", "E11.99", False, "", "invalid_code"),
        ("E11.9", None, None, "", "no_code"),
        ("E11.9", None, None, "I think it is diabetes", "format_error"),
        ("S72.001A", "S72.001D", True, "", "sibling"),
    ],
)
def test_categories(gold, predicted, valid, text, expected):
    predicted_codes = [("ICD10", predicted)] if predicted else []
    got = categorise(
        [("ICD10", gold)], predicted_codes, first_valid=valid, answer_text=text, chapter_of=chapter_of
    )
    assert got == expected


def test_multi_code_judged_against_closest_gold():
    gold = [("ICD10", "I10"), ("ICD10", "E11.9")]
    assert categorise(gold, [("ICD10", "E11.8")], chapter_of=chapter_of) == "sibling"


def test_answer_without_reasoning_and_summary():
    assert answer_without_reasoning("<think>x</think>\nICD10: I10") == "\nICD10: I10"
    assert answer_without_reasoning("<think>never closed") == ""
    summary = summarise(["exact", "exact", "sibling"])
    assert list(summary) == list(CATEGORIES)
    assert summary["exact"] == {"count": 2, "share": 2 / 3}
