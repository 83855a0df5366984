"""The record schemas: every producer's output passes its validator, and each validator names the problem."""

import pytest

from thce.data.preprocess_medical import to_trainer_row
from thce.data.synthetic_generation import generate_records
from thce.evaluation.baseline import keyword_baseline
from thce.inference.output_parser import parse_answer
from thce.utils.schemas import (
    canonical_problem,
    prediction_problem,
    preference_problem,
    record_kind,
    trainer_arrow_schema,
    trainer_row_problem,
)


@pytest.mark.parametrize(
    ("generator", "stage"), [("icd10cm", 1), ("icd10cm_reasoning", 2), ("icd10cm_preference", 3)]
)
def test_generated_records_and_their_trainer_rows_pass_the_validators(generator, stage):
    import pyarrow as pa

    records = list(generate_records(generator, 20, 42))
    validator = preference_problem if stage == 3 else canonical_problem
    assert [validator(r) for r in records] == [None] * 20
    assert {record_kind(r) for r in records} == {"preference" if stage == 3 else "canonical"}
    rows = [to_trainer_row(r, stage, f"stage_{stage}") for r in records]
    assert [trainer_row_problem(r) for r in rows] == [None] * 20
    assert {record_kind(r) for r in rows} == {"trainer_preference" if stage == 3 else "trainer_sft"}
    # The parquet schema holds exactly the rows' columns.
    table = pa.Table.from_pylist(rows, schema=trainer_arrow_schema(stage))
    assert sorted(table.column_names) == sorted(rows[0])


def test_predictions_of_the_parser_and_the_baselines_pass_the_validator():
    assert prediction_problem(parse_answer("<think>T2DM</think>\nICD10: E11.9\nCPT: 99213")) is None
    assert prediction_problem(parse_answer("no codes at all", validate=False)) is None
    for prediction in keyword_baseline(["type 2 diabetes mellitus without complications", "hypertension"]):
        assert prediction_problem(prediction) is None


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ([], "expected a JSON object"),
        ({"codes": [{"system": "ICD10", "code": "I10"}]}, "field 'text' is missing or empty"),
        ({"text": "  ", "codes": [{"system": "ICD10", "code": "I10"}]}, "field 'text' is missing or empty"),
        ({"text": "HTN"}, "field 'codes' is missing or empty"),
        ({"text": "HTN", "codes": []}, "field 'codes' is missing or empty"),
        ({"text": "HTN", "codes": ["I10"]}, "codes[0] must be an object with 'system' and 'code'"),
        ({"text": "HTN", "codes": [{"system": "ICD10", "code": ""}]}, "codes[0] must be an object"),
    ],
)
def test_canonical_problems_are_named(record, problem):
    assert problem in canonical_problem(record)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"chosen": None}, "field 'chosen' must be an object"),
        ({"rejected": {"codes": [], "reasoning": None}}, "field 'rejected.codes' is missing or empty"),
        ({"rejection_kind": None}, "field 'rejection_kind' is missing"),
        ({"text": ""}, "field 'text' is missing or empty"),
    ],
)
def test_preference_problems_are_named(change, problem):
    record = next(iter(generate_records("icd10cm_preference", 1, 42)))
    assert preference_problem(record) is None
    assert problem in preference_problem({**record, **change})


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"text": "x"}, "not a trainer row"),
        ({"prompt": [{"role": "user", "content": "x"}], "id": "a", "source": "s"}, "missing completion"),
        ({"prompt": [], "completion": [{"role": "assistant", "content": "ICD10: I10"}], "id": "a", "source": "s"},
         "field 'prompt' must be a non-empty list"),
        ({"prompt": [{"role": "user"}], "completion": [{"role": "assistant", "content": "ICD10: I10"}],
          "id": "a", "source": "s"}, "prompt[0] must be a message"),
    ],
)  # fmt: skip
def test_trainer_row_problems_are_named(row, problem):
    assert problem in trainer_row_problem(row)


def test_prediction_problems_are_named():
    assert "missing" in prediction_problem({"code": None})
    bad = {"code": None, "confidence": None, "codes": [{"code": "I10"}], "reasoning": None}
    assert "codes[0]" in prediction_problem(bad)


def test_system_aliases_have_one_owner():
    from thce.evaluation import metrics
    from thce.inference import output_parser
    from thce.utils.code_systems import normalise_system

    assert output_parser.normalise_system is normalise_system
    assert metrics.normalise_system is normalise_system
    # "HCPCS Level I" is CPT: the parser's old table and the registry used to disagree on it.
    assert metrics.normalise_codes([{"system": "HCPCS Level I", "code": "99213"}]) == [("CPT", "99213")]
    assert normalise_system("HCPCS Level II") == "HCPCS"
