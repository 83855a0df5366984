"""`thce predict` as library calls: reading text records, predicting with ids kept, writing JSONL."""

import json

import pytest

from thce.inference.predict_records import predict_records, read_text_records, write_predictions
from thce.inference.predictor import Predictor
from thce.utils.errors import UserError
from thce.utils.schemas import prediction_problem


def test_records_file_then_plain_texts(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps({"id": "a", "text": "Hypertension."}) + "\n\n" + json.dumps({"text": "Asthma."}) + "\n"
    )
    records = read_text_records(path, ["Low back pain."])
    assert records == [{"id": "a", "text": "Hypertension."}, {"text": "Asthma."}, {"text": "Low back pain."}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": 1}\n', r"in\.jsonl:1: field 'text' is missing or empty"),
        ('{"text": "ok"}\n{"text": "  "}\n', r"in\.jsonl:2: field 'text' is missing or empty"),
        ("not json\n", r"in\.jsonl:1: malformed JSON"),
        ('["text"]\n', r"in\.jsonl:1: expected a JSON object, got list"),
    ],
)
def test_bad_records_name_the_line(tmp_path, content, message):
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_text_records(path)


def test_nothing_to_predict_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="nothing to predict"):
        read_text_records(None, [])
    with pytest.raises(UserError, match="does not exist"):
        read_text_records(tmp_path / "missing.jsonl")


def test_predictions_keep_ids_and_round_trip(tmp_path, tiny_llama, smollm2_tokenizer):
    predictor = Predictor(model=tiny_llama, tokenizer=smollm2_tokenizer, precision="fp32", max_new_tokens=8)
    records = [{"id": "n1", "text": "Patient has hypertension."}, {"text": "Asthma exacerbation."}]
    seen = []
    lines = predict_records(predictor, records, keep_raw=False, progress=seen.append)
    assert sum(seen) == 2
    assert lines[0]["id"] == "n1" and "id" not in lines[1]
    assert all("raw" not in line for line in lines)
    with_raw = predict_records(predictor, records)
    assert all(prediction_problem(line) is None for line in with_raw)
    output = write_predictions(with_raw, tmp_path / "out" / "predictions.jsonl")
    assert [json.loads(line) for line in output.read_text().splitlines()] == with_raw
    assert [p.name for p in output.parent.iterdir()] == ["predictions.jsonl"]  # no temporary left behind
