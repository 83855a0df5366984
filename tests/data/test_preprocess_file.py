"""`thce preprocess` as a library call: one JSONL through the stage's preprocessing, batched."""

import json

import pytest

from thce.data.preprocess_medical import preprocess_file
from thce.utils.config import load_config
from thce.utils.errors import UserError
from thce.utils.schemas import canonical_problem, trainer_row_problem


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "stage_1.yaml"
    path.write_text("stage: 1\ndata: {preprocess: {phi_engine: rules}}\n")
    return load_config(path)


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "in.jsonl"
    rows = [
        {"id": f"r{i}", "text": f"Essential hypertension, visit {i}.", "codes": ["I10"]} for i in range(300)
    ]
    rows.append({"id": "bad", "text": "A note whose only code does not exist.", "codes": ["Q99.99"]})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(
    ("output_format", "validator"), [("chat", trainer_row_problem), ("canonical", canonical_problem)]
)
def test_every_batch_is_written_and_invalid_codes_dropped(
    tmp_path, config, records, output_format, validator
):
    output = tmp_path / f"{output_format}.jsonl"
    kept, counts = preprocess_file(config, records, output, output_format)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert kept == len(rows) == 300  # more than one batch of 256, the invalid record dropped
    assert [validator(row) for row in rows] == [None] * 300
    assert counts == {"kept": 300, "dropped_invalid_codes": 1}


def test_bad_format_and_missing_input_leave_nothing_behind(tmp_path, config, records):
    with pytest.raises(UserError, match="--format must be"):
        preprocess_file(config, records, tmp_path / "out.jsonl", "parquet")
    with pytest.raises(UserError, match=r"missing\.jsonl does not exist"):
        preprocess_file(config, tmp_path / "missing.jsonl", tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
