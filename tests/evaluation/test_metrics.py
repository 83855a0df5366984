import pytest

from thce.evaluation import metrics as m
from thce.utils.code_validator import icd10_chapter

CHAPTERS = {"E": "4", "I": "9", "J": "10", "N": "14", "S": "19"}


def chapter_of(code):
    return CHAPTERS.get(code[0])


def per(gold, predicted, **kw):
    return m.per_example(gold, predicted, chapter_of=chapter_of, describe=lambda c: None, **kw)


# (gold, predicted, expected exact, set_exact, category, chapter, (tp, fp, fn))
TABLE = [
    (["E11.9"], ["E11.9"], True, True, True, True, (1, 0, 0)),
    (["E11.9"], ["e119"], True, True, True, True, (1, 0, 0)),  # case and missing dot
    (["E11.9"], [" E11.9 ", "E11.9"], True, True, True, True, (1, 0, 0)),  # duplicates collapse
    (["E11.9"], [], False, False, False, False, (0, 0, 1)),  # empty prediction
    (["E11.9"], ["E11.8"], False, False, True, True, (0, 1, 1)),  # sibling: category credit
    (["E11.9"], ["E10.9"], False, False, False, True, (0, 1, 1)),  # same chapter only
    (["E11.9"], ["I10"], False, False, False, False, (0, 1, 1)),  # wrong chapter
    (["E11.9"], ["ZZZ.99"], False, False, False, False, (0, 1, 1)),  # invalid code
    (["E11.9", "I10"], ["I10", "E11.9"], True, True, True, True, (2, 0, 0)),  # order ignored for the set
    (["E11.9", "I10"], ["I10"], True, False, True, True, (1, 0, 1)),  # partial multi-code
    (["E11.9", "I10"], ["J45.909", "I10"], False, False, False, False, (1, 1, 1)),  # wrong first code
    ([{"system": "ICD10", "code": "E11.9"}], [("ICD10", "E11.9")], True, True, True, True, (1, 0, 0)),
    (
        [{"system": "CPT", "code": "99213"}],
        [{"system": "cpt", "code": "99213"}],
        True,
        True,
        True,
        True,
        (1, 0, 0),
    ),
    (
        [{"system": "CPT", "code": "99213"}],
        [{"system": "ICD10", "code": "99213"}],
        False,
        False,
        False,
        False,
        (0, 1, 1),
    ),
    (["S72.001A"], ["s72001a"], True, True, True, True, (1, 0, 0)),
    (["E11.9"], ["E11"], False, False, True, True, (0, 1, 1)),  # less specific parent
]


@pytest.mark.parametrize(("gold", "predicted", "exact", "set_exact", "category", "chapter", "counts"), TABLE)
def test_per_example_table(gold, predicted, exact, set_exact, category, chapter, counts):
    stat = per(gold, predicted)
    assert stat["exact"] is exact
    assert stat["set_exact"] is set_exact
    assert stat["category"] is category
    assert stat["chapter"] is chapter
    assert (stat["tp"], stat["fp"], stat["fn"]) == counts


def test_micro_and_macro_hand_computed():
    golds = [[("ICD10", "A")], [("ICD10", "A"), ("ICD10", "B")], [("ICD10", "C")]]
    predictions = [[("ICD10", "A")], [("ICD10", "A"), ("ICD10", "C")], []]
    # tp=2 (A, A), fp=1 (C in ex 2), fn=2 (B, C) -> P 2/3, R 2/4
    p, r, f = m.micro_prf(golds, predictions)
    assert p == pytest.approx(2 / 3) and r == pytest.approx(0.5) and f == pytest.approx(4 / 7)
    # per code: A P=R=1 -> F1 1; B F1 0; C tp0 -> 0. macro = 1/3
    assert m.macro_f1(golds, predictions) == pytest.approx(1 / 3)


def test_top_k_uses_ranking():
    assert m.top_k_hit([("ICD10", "E11.9")], [("ICD10", "I10"), ("ICD10", "E11.9")], k=2)
    assert not m.top_k_hit([("ICD10", "E11.9")], [("ICD10", "I10"), ("ICD10", "E11.9")], k=1)
    assert not m.top_k_hit([("ICD10", "E11.9")], [], k=5)


def test_aggregate_rates_and_validity():
    stats = [
        per(["E11.9"], ["E11.9"], valid=[True], confidence=0.9),
        per(["I10"], ["ZZZ.9", "I10"], valid=[False, True], confidence=0.2),
        per(["J45.909"], [], valid=[], confidence=None),
        per(["N39.0"], ["N39.0"], valid=[True], confidence=0.8),
    ]
    result = m.aggregate(stats, k=5)
    assert result["exact_match"] == 0.5
    assert result["validity_rate"] == pytest.approx(3 / 4)  # 3 valid of 4 predicted codes
    assert result["no_code_rate"] == 0.25
    assert result["top_k_accuracy"] == 0.75  # I10 is second in example 2's ranking
    assert result["reasoning_quality"] is None  # nobody reasoned


def test_validity_zero_when_nothing_predicted():
    assert m.aggregate([per(["E11.9"], [], valid=[])])["validity_rate"] == 0.0


def test_expected_calibration_error_hand_computed():
    # bin [0.9,1.0): confidences 0.9, 0.9 with accuracy 1/2 -> |0.5-0.9| * 2/3; bin [0.3,0.4): 0.3 wrong -> 0.3 * 1/3
    ece, rows = m.expected_calibration_error([0.9, 0.9, 0.3, None], [True, False, False, True])
    assert ece == pytest.approx(0.4 * 2 / 3 + 0.3 / 3)
    assert [row["count"] for row in rows] == [1, 2]


def test_reasoning_score_formula():
    describe = {"E11": "Type 2 diabetes mellitus", "I10": "Essential (primary) hypertension"}.get
    gold, predicted = [("ICD10", "E11.9")], [("ICD10", "E11.9")]
    assert m.reasoning_score(None, gold, predicted, describe) == 0
    assert m.reasoning_score("short", gold, predicted, describe) == 0
    assert (
        m.reasoning_score(
            "The note describes type 2 diabetes mellitus, uncomplicated.", gold, predicted, describe
        )
        == 1
    )
    wrong = [("ICD10", "I10")]
    assert m.reasoning_score(
        "The note describes type 2 diabetes mellitus, uncomplicated.", gold, wrong, describe
    ) == pytest.approx(2 / 3)
    assert m.reasoning_score(
        "Nothing relevant is said here at all, really.", gold, predicted, describe
    ) == pytest.approx(1 / 3)


def test_breakdowns():
    stats = [per(["E11.9"], ["E11.9"]), per(["E78.5"], ["I10"]), per([("CPT", "99213")], [("CPT", "99213")])]
    by_chapter = m.breakdown_by_chapter(stats)
    assert by_chapter["ICD10:4"] == {"n": 2, "exact_match": 0.5, "category_match": 0.5, "chapter_match": 0.5}
    assert by_chapter["CPT"]["exact_match"] == 1.0
    by_system = m.breakdown_by_system(stats)
    assert by_system["CPT"]["f1"] == 1.0
    assert by_system["ICD10"]["precision"] == 0.5


def test_real_chapter_lookup():
    assert icd10_chapter("E11.9") == "4"
    assert icd10_chapter("E11.99") == "4"  # not a code, but its category is
    assert icd10_chapter("ZZZ") is None
