"""CPT and HCPCS code files: the layouts THCE reads, and membership as the basis of a check."""

import pytest

from thce.utils.code_validator import (
    check_code,
    clear_code_system_cache,
    describe_code,
    get_code_system,
    search_codes,
    validate_code,
)
from thce.utils.errors import UserError


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    monkeypatch.delenv("THCE_CPT_FILE", raising=False)
    monkeypatch.delenv("THCE_HCPCS_FILE", raising=False)
    clear_code_system_cache()
    yield
    clear_code_system_cache()


def _fixed_width(code, seq, record_id, long_description, short_description=""):
    return f"{code:<5}{seq:05d}{record_id}{long_description:<80}{short_description:<28}"


@pytest.fixture
def cms_text(tmp_path):
    path = tmp_path / "HCPC2026_JAN_ANWEB.txt"
    lines = [
        _fixed_width("A0425", 100, "3", "Ground mileage, per statute mile", "Ground mileage"),
        _fixed_width(
            "J1100", 100, "3", "Injection, dexamethasone sodium phosphate, 1 mg", "Dexamethasone sodium phos"
        ),
        _fixed_width(
            "E0114",
            100,
            "3",
            "Crutches underarm, other than wood, adjustable or fixed, pair, with pads,",
            "Crutch underarm pair no wood",
        ),
        _fixed_width("E0114", 200, "4", "tips and handgrips"),
        _fixed_width("GA", 100, "7", "Waiver of liability statement issued as required by payer policy"),
        _fixed_width("GA", 200, "8", "continued modifier text"),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="cp1252")
    return path


def test_cms_fixed_width_release(cms_text):
    system = get_code_system("HCPCS", code_file=cms_text)
    assert system.basis == "code_set"
    assert system.billable_codes() == ["A0425", "E0114", "J1100"]
    assert system.description("E0114") == (
        "Crutches underarm, other than wood, adjustable or fixed, pair, with pads, tips and handgrips"
    )
    check = check_code("j1100", "HCPCS", code_file=cms_text)
    assert (check.valid, check.billable, check.basis, check.code) == (True, True, "code_set", "J1100")
    assert "dexamethasone" in check.description
    missing = check_code("J1101", "HCPCS", code_file=cms_text)
    assert (missing.valid, missing.basis) == (False, "code_set")
    assert missing.suggestions[0] == "J1100"
    assert "not in HCPC2026_JAN_ANWEB.txt" in missing.message
    assert system.search("dexamethasone injection", top=2)[0].code == "J1100"


def test_cms_csv_export_with_record_ids(tmp_path):
    path = tmp_path / "hcpcs.csv"
    path.write_text(
        "HCPC,SEQNUM,RECID,LONG DESCRIPTION,SHORT DESCRIPTION\n"
        'A0425,00100,3,"Ground mileage, per statute mile",Ground mileage\n'
        'E0114,00100,3,"Crutches underarm, other than wood,",Crutch underarm pair no wood\n'
        "E0114,00200,4,tips and handgrips,\n"
        "GA,00100,7,Waiver of liability statement,\n"
    )
    system = get_code_system("HCPCS2", code_file=path)
    assert system.billable_codes() == ["A0425", "E0114"]
    assert system.description("E0114") == "Crutches underarm, other than wood, tips and handgrips"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (
            "cpt.csv",
            "code,description\n99213,Office visit established patient\n0001F,Heart failure composite\n",
        ),
        ("cpt.tsv", "99213\tOffice visit established patient\n0001F\tHeart failure composite\n"),
        (
            "cpt.txt",
            "CPT Code,Long Descriptor,Other\n99213,Office visit established patient,x\n0001F,Heart failure composite,y\n",
        ),
        ("codes-only.csv", "99213\n0001F\n"),
    ],
)
def test_cpt_file_layouts(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    system = get_code_system("CPT", code_file=path)
    assert system.billable_codes() == ["0001F", "99213"]
    assert validate_code("99213", "CPT") is True  # the default (format) instance is unaffected
    assert system.is_valid("99214") is False
    assert check_code("99214", "CPT", code_file=path).basis == "code_set"
    if "codes-only" not in name:
        assert system.description("99213") == "Office visit established patient"


def test_cpt_file_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "cpt.csv"
    path.write_text("code,description\n99213,Office visit\n")
    monkeypatch.setenv("THCE_CPT_FILE", str(path))
    clear_code_system_cache()
    assert validate_code("99213", "CPT") is True
    assert validate_code("99214", "CPT") is False  # well formed, but not in the licensed file
    check = check_code("99214", "CPT")
    assert check.basis == "code_set" and "not in cpt.csv" in check.message
    assert describe_code("99213", "CPT").description == "Office visit"
    assert [hit.code for hit in search_codes("office visit", "CPT")] == ["99213"]


def test_format_basis_describes_without_a_descriptor():
    details = describe_code("99213", "CPT")
    assert details.basis == "format" and details.billable is None
    assert "THCE_CPT_FILE" in details.description
    assert describe_code("9921", "CPT") is None


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("codes.xlsx", "PK", "save it as CSV"),
        ("empty.csv", "", "holds no CPT codes"),
        ("words.csv", "code,description\nhello,world\n", "holds no CPT codes"),
    ],
)
def test_unusable_code_files_are_user_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        get_code_system("CPT", code_file=path)


def test_missing_code_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        get_code_system("HCPCS", code_file=tmp_path / "nope.txt")


def test_icd10_takes_no_code_file(tmp_path):
    with pytest.raises(UserError, match="takes no code file"):
        get_code_system("ICD10", code_file=tmp_path / "x.csv")
