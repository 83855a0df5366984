import pytest

from thce.inference.output_parser import normalise_system, parse_answer


def _codes(result):
    return [(c["system"], c["code"]) for c in result["codes"]]


# (answer text, expected (system, code) pairs, expected reasoning)
CASES = [
    ("ICD10: E11.9", [("ICD10", "E11.9")], None),
    ("ICD10: E11.9\nICD10: I10", [("ICD10", "E11.9"), ("ICD10", "I10")], None),
    ("  icd10 :   e11.9  ", [("ICD10", "E11.9")], None),
    ("ICD10: E119", [("ICD10", "E11.9")], None),
    ("ICD10: s72001a", [("ICD10", "S72.001A")], None),
    ("ICD10: E11.9, I10; E78.5", [("ICD10", "E11.9"), ("ICD10", "I10"), ("ICD10", "E78.5")], None),
    ("ICD-10-CM: E11.9", [("ICD10", "E11.9")], None),
    ("ICD-10 - I10", [("ICD10", "I10")], None),
    ("CPT: 99213", [("CPT", "99213")], None),
    ("cpt=0001F", [("CPT", "0001F")], None),
    ("HCPCS: j1100", [("HCPCS", "J1100")], None),
    ("HCPCS Level II: G0008", [("HCPCS", "G0008")], None),
    (
        "ICD10: E11.9\nCPT: 99213\nHCPCS: J1100",
        [("ICD10", "E11.9"), ("CPT", "99213"), ("HCPCS", "J1100")],
        None,
    ),
    (
        "<think>Type 2 diabetes, no complications.</think>\nICD10: E11.9",
        [("ICD10", "E11.9")],
        "Type 2 diabetes, no complications.",
    ),
    (
        "<think>\n  E11 is type 2 diabetes.\n</think>ICD10: E11.9",
        [("ICD10", "E11.9")],
        "E11 is type 2 diabetes.",
    ),
    (
        "<think>Category I10, essential hypertension.\nICD10: I10",
        [("ICD10", "I10")],
        "Category I10, essential hypertension.",
    ),
    ("<think>never finished thinking", [], "never finished thinking"),
    (
        "Hypertension is coded as I10.</think>\nICD10: I10",
        [("ICD10", "I10")],
        "Hypertension is coded as I10.",
    ),
    ("ICD10: E11.9 (Type 2 diabetes mellitus without complications)", [("ICD10", "E11.9")], None),
    ("- ICD10: E11.9\n* ICD10: I10", [("ICD10", "E11.9"), ("ICD10", "I10")], None),
    ("ICD10: E11.9\nICD10: e119\nICD10: E11.9", [("ICD10", "E11.9")], None),
    ("E11.9", [("ICD10", "E11.9")], None),
    ("99213", [("CPT", "99213")], None),
    (
        "ICD10: XYZ123",
        [("ICD10", "XYZ123")],
        None,
    ),  # code-shaped garbage is kept, for the validator to reject
    ("ICD10: diabetes", [], None),
    ("", [], None),
    ("The patient should see a doctor. I think it is fine.", [], None),
    ("ICD10:", [], None),
    ("SNOMED: 44054006", [], None),
]


@pytest.mark.parametrize(("text", "expected_codes", "expected_reasoning"), CASES)
def test_parser_table(text, expected_codes, expected_reasoning):
    result = parse_answer(text, validate=False)
    assert _codes(result) == expected_codes
    assert result["reasoning"] == expected_reasoning
    assert result["raw"] == text
    assert result["code"] == (expected_codes[0][1] if expected_codes else None)


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        12345,
        "\x00\x01\x02",
        "<think><think></think></think>",
        "ICD10: " + "A1" * 5000,
        "💊" * 1000,
        "ICD10: ,,,;;;",
    ],
)
def test_garbage_never_raises(garbage):
    result = parse_answer(garbage, validate=False)
    assert isinstance(result["codes"], list)
    assert isinstance(result["raw"], str)


def test_runaway_code_lists_are_capped():
    text = (
        "\n".join(f"ICD10: E11.{i}" for i in range(10))
        + "\n"
        + "\n".join(f"CPT: 9921{i}" for i in range(10)) * 3
    )
    assert len(parse_answer(text, validate=False)["codes"]) == 20


def test_result_shape_matches_the_seed():
    result = parse_answer(
        "<think>High blood pressure, essential hypertension</think>ICD10: I10", validate=False
    )
    assert set(result) == {"code", "confidence", "codes", "reasoning", "raw"}
    assert result["code"] == "I10"
    assert set(result["codes"][0]) == {"system", "code", "description", "valid", "confidence"}


@pytest.mark.parametrize(
    ("name", "system"),
    [
        ("ICD10", "ICD10"),
        ("icd-10-cm", "ICD10"),
        ("ICD 10", "ICD10"),
        ("cpt", "CPT"),
        ("HCPCS Level II", "HCPCS"),
        ("NDC", None),
    ],
)
def test_normalise_system(name, system):
    assert normalise_system(name) == system


def test_validation_attaches_validity_and_descriptions():
    result = parse_answer(
        "<think>T2DM.</think>\nICD10: e119\nICD10: E11\nICD10: Q99.99\nCPT: 99213", validate=True
    )
    by_code = {c["code"]: c for c in result["codes"]}
    assert by_code["E11.9"]["valid"] is True
    assert "diabetes" in by_code["E11.9"]["description"].lower()
    assert by_code["Q99.99"]["valid"] is False
    assert by_code["99213"]["valid"] is True  # CPT: format-valid (no licensed code file configured)
    assert "E11" in by_code  # a header is a real code; billability is the evaluator's question
