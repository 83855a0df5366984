"""`thce validate` and `thce codes show|search` through the real Typer app (and one real subprocess)."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from thce.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize(
    ("args", "exit_code", "expected"),
    [
        (["validate", "E11.9", "--system", "ICD10"], 0, "BILLABLE"),
        (["validate", "e119"], 0, "Type 2 diabetes mellitus without complications"),
        (["validate", "E11"], 0, "NOT BILLABLE"),
        (["validate", "E11", "--require-billable"], 1, "87 billable codes"),
        (["validate", "E11.90"], 1, "closest valid codes: E11.9"),
        (["validate", "99213", "--system", "cpt"], 0, "format check only"),
        (["validate", "E11.9", "CPT:99213", "HCPCS:J1100"], 0, "WELL-FORMED"),
        (["validate", ""], 1, "empty code"),
        (["validate", "x" * 10_000], 1, "10000 characters"),
        (["validate", "Е11.9"], 1, "did you mean E11.9?"),
    ],
)
def test_validate_codes(args, exit_code, expected):
    result = invoke(*args)
    assert result.exit_code == exit_code, result.output
    assert expected in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_validate_json():
    result = invoke("validate", "S72.001", "--json")
    data = json.loads(result.output)
    assert (data["code"], data["valid"], data["billable"]) == ("S72.001", True, False)
    assert data["billable_children"][0] == "S72.001A"
    many = json.loads(invoke("validate", "E11.9", "I10", "--json").output)
    assert [item["code"] for item in many] == ["E11.9", "I10"]


def test_validate_without_codes_is_a_user_error():
    from thce.utils.errors import UserError

    result = invoke("validate")
    assert isinstance(result.exception, UserError)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "E11.9", "--system", "ICD9"], "unknown code system 'ICD9'"),
        (["validate", "--file", "does-not-exist.jsonl"], "does-not-exist.jsonl does not exist"),
        (["codes", "search", "wheelchair", "--system", "HCPCS"], "THCE_HCPCS_FILE"),
    ],
)
def test_user_errors_are_one_line_through_the_entry_point(args, message):
    completed = subprocess.run(
        [sys.executable, "-m", "thce.cli", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 2
    errors = [line for line in completed.stderr.splitlines() if line.startswith("thce: error: ")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in completed.stderr


def test_validate_file_writes_a_report(tmp_path):
    records = tmp_path / "records.jsonl"
    rows = [
        {"id": "a", "text": "t", "codes": [{"system": "ICD10", "code": "E11.9"}]},
        {"id": "b", "text": "t", "codes": [{"system": "ICD10", "code": "E11"}]},
    ]
    records.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = invoke("validate", "--file", str(records))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "records.validation.json").read_text())
    assert report["systems"]["ICD10"]["not_billable"] == 1
    assert report["not_billable"][0]["record"] == "b"
    assert "ICD10" in result.output

    records.write_text(
        records.read_text() + '{"id": "c", "codes": [{"system": "ICD10", "code": "E11.90"}]}\n{oops\n'
    )
    out = tmp_path / "reports" / "r.json"
    result = invoke("validate", "--file", str(records), "--report", str(out))
    assert result.exit_code == 1
    assert "invalid ICD10 'E11.90' in record c" in result.output
    assert "malformed line 4" in result.output
    report = json.loads(out.read_text())
    assert report["failed"] is True and report["malformed"][0]["line"] == 4
    assert not list(out.parent.glob(".*"))  # written via a temporary file, then renamed


def test_codes_show():
    result = invoke("codes", "show", "e11.9")
    assert result.exit_code == 0
    for expected in (
        "Type 2 diabetes mellitus without complications",
        "Chapter 4",
        "E08-E13",
        "Excludes1 (from E11)",
    ):
        assert expected in result.output
    seventh = invoke("codes", "show", "S72.001A", "--json")
    assert json.loads(seventh.output)["seventh_characters"]["S"] == "sequela"
    missing = invoke("codes", "show", "E11.90")
    assert missing.exit_code == 1 and "closest valid codes" in missing.output


def test_codes_search():
    result = invoke("codes", "search", "type 2 diabetes", "--top", "10")
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 10
    assert all(" E11." in line for line in lines)
    hits = json.loads(invoke("codes", "search", "essential hypertension", "--top", "3", "--json").output)
    assert hits[0]["code"] == "I10" and len(hits) == 3
    assert invoke("codes", "search", "the of").exit_code == 1


def test_help_lists_the_verbs():
    result = invoke("--help")
    assert "validate" in result.output and "codes" in result.output
