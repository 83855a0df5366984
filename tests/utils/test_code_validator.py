"""The code validator: normalisation and format tables, ICD-10-CM truth, explanations, search, records."""

import json
import random

import numpy
import pytest

from thce.utils.code_systems.base import _top_k
from thce.utils.code_validator import (
    CodeCheck,
    billable_codes,
    check_code,
    check_codes,
    describe_code,
    get_code_system,
    normalise_code,
    resolve_system_name,
    search_codes,
    search_codes_many,
    validate_code,
    validate_codes,
    validate_records,
)
from thce.utils.errors import UserError

# (system, input, canonical form or None when the input cannot be a code of that system)
NORMALISATION = [
    ("ICD10", "E11.9", "E11.9"),
    ("ICD10", "e119", "E11.9"),
    ("ICD10", " E11.9 ", "E11.9"),
    ("ICD10", "e11.9\n", "E11.9"),
    ("ICD10", "E11", "E11"),
    ("ICD10", "e11", "E11"),
    ("ICD10", "E11.90", "E11.90"),  # well formed, not padded away (it does not exist)
    ("ICD10", "S72001A", "S72.001A"),
    ("ICD10", "s72.001a", "S72.001A"),
    ("ICD10", "T360X1A", "T36.0X1A"),
    ("ICD10", "C7A.010", "C7A.010"),
    ("ICD10", "QA0.0101", "QA0.0101"),
    ("ICD10", "Z3A.08", "Z3A.08"),
    ("ICD10", "E1.19", None),  # misplaced dot
    ("ICD10", "E11.", None),
    ("ICD10", "E11..9", None),
    ("ICD10", ".E119", None),
    ("ICD10", "E", None),
    ("ICD10", "E1", None),
    ("ICD10", "111.9", None),
    ("ICD10", "S72.001AB", None),  # 8 characters
    ("ICD10", "E11-9", None),
    ("ICD10", "E11 9", None),
    ("ICD10", "Е11.9", None),  # Cyrillic Е
    ("ICD10", "Ｅ11.9", None),  # full-width E
    ("ICD10", "E08-E13", None),  # a block heading
    ("ICD10", "4", None),  # a chapter heading
    ("ICD10", "", None),
    ("ICD10", "   ", None),
    ("ICD10", None, None),
    ("ICD10", 119, None),
    ("CPT", "99213", "99213"),
    ("CPT", " 99213 ", "99213"),
    ("CPT", "0001F", "0001F"),
    ("CPT", "0001f", "0001F"),
    ("CPT", "0075T", "0075T"),
    ("CPT", "0241U", "0241U"),
    ("CPT", "00100", "00100"),
    ("CPT", "00099", None),
    ("CPT", "9921", None),
    ("CPT", "992130", None),
    ("CPT", "99213-25", None),
    ("CPT", "0001X", None),
    ("CPT", "E11.9", None),
    ("CPT", "J1100", None),
    ("CPT", "٩٩٢١٣", None),  # Arabic-Indic digits
    ("HCPCS", "J1100", "J1100"),
    ("HCPCS", "j1100", "J1100"),
    ("HCPCS", " A0425", "A0425"),
    ("HCPCS", "V5010", "V5010"),
    ("HCPCS", "U0003", "U0003"),
    ("HCPCS", "N1234", None),  # letter CMS does not use
    ("HCPCS", "W1234", None),
    ("HCPCS", "I1234", None),
    ("HCPCS", "J110", None),
    ("HCPCS", "J11000", None),
    ("HCPCS", "99213", None),
    ("HCPCS", "A0425-GM", None),
]


@pytest.mark.parametrize(("system", "raw", "expected"), NORMALISATION)
def test_normalise_code(system, raw, expected):
    assert normalise_code(raw, system) == expected


# (system, code, valid, billable): billable is None where only the format can be checked.
VALIDITY = [
    ("ICD10", "E11.9", True, True),
    ("ICD10", "I10", True, True),
    ("ICD10", "B20", True, True),  # a category that is its own block
    ("ICD10", "E11", True, False),
    ("ICD10", "E11.3", True, False),
    ("ICD10", "S72.001", True, False),
    ("ICD10", "S72.001A", True, True),
    ("ICD10", "T36.0X1A", True, True),
    ("ICD10", "QA0.0101", True, True),
    ("ICD10", "E11.90", False, False),
    ("ICD10", "S72.001Z", False, False),
    ("ICD10", "T36.01A", False, False),
    ("ICD10", "X99.99", False, False),
    ("ICD10", "U99.9", False, False),
    ("CPT", "99213", True, None),
    ("CPT", "0001F", True, None),
    ("CPT", "99213-25", False, False),
    ("HCPCS", "J1100", True, None),
    ("HCPCS", "F1234", False, False),
]


@pytest.mark.parametrize(("system", "code", "valid", "billable"), VALIDITY)
def test_check_code_validity(system, code, valid, billable):
    check = check_code(code, system)
    assert (check.valid, check.billable) == (valid, billable)
    assert validate_code(code, system) is valid
    assert check.message
    expected_basis = "code_set" if system == "ICD10" else "format"
    assert check.basis == expected_basis


def test_seed_contract():
    assert validate_code("E11.9", "ICD10") is True


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("ICD10", "ICD10"),
        ("icd10", "ICD10"),
        ("ICD-10-CM", "ICD10"),
        ("icd10cm", "ICD10"),
        ("ICD10CM", "ICD10"),
        ("icd_10_cm", "ICD10"),
        ("CPT", "CPT"),
        ("cpt-4", "CPT"),
        ("HCPCS", "HCPCS"),
        ("HCPCS2", "HCPCS"),
        ("hcpcs level ii", "HCPCS"),
    ],
)
def test_system_aliases(alias, canonical):
    assert resolve_system_name(alias) == canonical
    assert validate_code("E11.9", alias) is (canonical == "ICD10")


@pytest.mark.parametrize("system", ["ICD9", "NDC", "", None, 10, "ICD10PCS"])
def test_unknown_system_is_a_user_error(system):
    with pytest.raises(UserError, match="unknown code system"):
        check_code("E11.9", system)


def test_require_billable():
    assert validate_code("E11", "ICD10") is True
    assert validate_code("E11", "ICD10", require_billable=True) is False
    assert validate_code("e119", "ICD10", require_billable=True) is True


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "x" * 10_000,
        "Е11.9",
        "E11.9\x00",
        ["E11.9"],
        {"code": "E11.9"},
        11.9,
        b"E11.9",
        "\ud800",
    ],
)
@pytest.mark.parametrize("system", ["ICD10", "CPT", "HCPCS"])
def test_bad_input_never_raises(raw, system):
    check = check_code(raw, system)
    assert isinstance(check, CodeCheck)
    assert check.valid is False
    assert check.code is None
    assert len(check.message) < 400  # 10 kB of garbage is not echoed back
    json.dumps(check.to_dict())
    assert validate_code(raw, system) is False


def test_lookalike_letter_is_named_and_the_ascii_code_suggested():
    check = check_code("Е11.9")  # Cyrillic capital IE
    assert "U+0415" in check.message
    assert "CYRILLIC" in check.message
    assert check.suggestions == ("E11.9",)


def test_header_lists_its_billable_codes():
    check = check_code("E11")
    assert "not billable" in check.message
    assert "E11.9" in check.billable_children
    assert len(check.billable_children) == 87
    assert all(validate_code(code, require_billable=True) for code in check.billable_children)


def test_seventh_character_header_explains_the_rule():
    check = check_code("S72.001")
    assert check.billable_children == tuple(f"S72.001{c}" for c in "ABCDEFGHJKMNPQRS")
    assert "7th character" in check.message
    assert "initial encounter for closed fracture" in check.message


@pytest.mark.parametrize(
    ("code", "first_suggestion", "in_message"),
    [
        ("E11.90", "E11.9", "E11.9"),
        ("T36.01A", "T36.0X1A", "placeholder X"),
        ("W01.0A", "W01.0XXA", "placeholder X"),
        ("S72.001Z", "S72.001A", "7th character 'Z' is not defined for S72.001"),
        ("E1.19", "E11.9", "misplaced dot"),
        ("e11-9", "E11.9", "letters and digits"),
    ],
)
def test_invalid_codes_get_explained_suggestions(code, first_suggestion, in_message):
    check = check_code(code)
    assert not check.valid
    assert check.suggestions[0] == first_suggestion
    assert in_message in check.message
    assert all(validate_code(suggestion, require_billable=True) for suggestion in check.suggestions)


def test_suggestions_stay_in_the_category_first():
    check = check_code("S72.001Z")
    assert len(check.suggestions) == 5
    assert all(code.startswith("S72.001") for code in check.suggestions)
    unknown_category = check_code("E1Z.9")
    assert unknown_category.suggestions
    assert all(code.startswith("E1") for code in unknown_category.suggestions)


def test_ancestry_and_description():
    check = check_code("E11.9")
    assert check.description == "Type 2 diabetes mellitus without complications"
    assert [(node.code, node.level) for node in check.ancestors] == [
        ("4", "chapter"),
        ("E08-E13", "block"),
        ("E11", "category"),
    ]


def test_describe_collects_notes_from_every_level():
    details = describe_code("E11.9")
    kinds = {(note.source, note.kind) for note in details.notes}
    assert ("E11", "Excludes1") in kinds
    assert ("E11", "use additional code") in kinds
    excludes = next(note for note in details.notes if note.source == "E11" and note.kind == "Excludes1")
    assert "type 1 diabetes mellitus (E10.-)" in excludes.items
    fracture = describe_code("S72.001A")
    assert fracture.seventh_characters["A"] == "initial encounter for closed fracture"
    assert fracture.billable is True
    block = describe_code("E08-E13")
    assert (block.level, block.billable, block.children) == (
        "block",
        None,
        ("E08", "E09", "E10", "E11", "E13"),
    )
    assert describe_code("E11.90") is None
    assert describe_code(None) is None


def test_inclusion_terms_are_exposed():
    details = describe_code("A00.0")
    terms = next(note.items for note in details.notes if note.kind == "inclusion terms")
    assert terms == ("Classical cholera",)
    includes = next(note.items for note in describe_code("I10").notes if note.kind == "includes")
    assert "high blood pressure" in includes


def test_billable_codes_is_the_sorted_leaf_list():
    codes = billable_codes("ICD10")
    assert len(codes) == 74_719
    assert codes == sorted(codes)
    assert "E11.9" in codes and "E11" not in codes and "S72.001A" in codes
    assert codes is not billable_codes("ICD10")  # callers may mutate their copy


def test_batch_validation_matches_single_calls():
    codes = ["E11.9", "e119", "E11", "E11.90", None, "", "Е11.9", "S72.001A"]
    assert validate_codes(codes) == [validate_code(code) for code in codes]
    assert validate_codes(codes, require_billable=True) == [
        True,
        True,
        False,
        False,
        False,
        False,
        False,
        True,
    ]
    assert [check.valid for check in check_codes(codes)] == validate_codes(codes)


def test_search_finds_the_code_from_its_description():
    hits = search_codes("type 2 diabetes mellitus without complications", top=5)
    assert "E11.9" in [hit.code for hit in hits]
    assert hits == sorted(hits, key=lambda hit: -hit.score)
    assert hits[0].description and hits[0].system == "ICD10"


def test_search_keeps_single_characters_and_uses_inclusion_terms():
    top_codes = [hit.code for hit in search_codes("type 2 diabetes", top=5)]
    assert all(code.startswith("E11") for code in top_codes)
    assert "I10" in [hit.code for hit in search_codes("high blood pressure", top=5)]


def test_search_many_and_empty_queries():
    results = search_codes_many(["essential hypertension", "", "the of and"], top=3)
    assert [hit.code for hit in results[0]][:1] == ["I10"]
    assert results[1] == [] and results[2] == []
    with pytest.raises(UserError):
        search_codes("asthma", top=0)


def test_search_ranks_equal_scores_later_code_first():
    """Laterality siblings share every word a query without a side has: BM25 ties them, and a tie goes to the
    later code (the unspecified side), the same on every run and every numpy."""
    hits = search_codes("sprain of calcaneofibular ligament of ankle, initial encounter", top=4)
    tied = [hit for hit in hits if hit.score == hits[0].score]
    assert len(tied) >= 2
    assert [hit.code for hit in tied] == sorted((hit.code for hit in tied), reverse=True)
    assert tied[0].code == "S93.419A"
    scores = numpy.array([0.0, 2.0, 0.0, 3.0, 2.0, 0.0])
    assert list(_top_k(scores, 3)) == [3, 4, 1]
    assert list(_top_k(scores, 6)) == [3, 4, 1, 5, 2, 0]


def test_format_only_systems_cannot_list_or_search():
    with pytest.raises(UserError, match="THCE_CPT_FILE"):
        billable_codes("CPT")
    with pytest.raises(UserError, match="THCE_HCPCS_FILE"):
        search_codes("wheelchair", "HCPCS")


def test_random_well_formed_non_codes_are_invalid():
    system = get_code_system("ICD10")
    rng = random.Random(2026)
    alphanumeric = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    fakes: set[str] = set()
    while len(fakes) < 10_000:
        code = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") + rng.choice("0123456789") + rng.choice(alphanumeric)
        tail = "".join(rng.choice(alphanumeric) for _ in range(rng.randint(0, 4)))
        code = f"{code}.{tail}" if tail else code
        if normalise_code(code) == code and code not in system.tables.index:
            fakes.add(code)
    assert not any(validate_codes(sorted(fakes)))


# -- validate_records -----------------------------------------------------------------------------------


def _write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_validate_records_reports_counts_ids_and_malformed_lines(tmp_path):
    records = _write_jsonl(
        tmp_path / "records.jsonl",
        [
            {
                "id": "r1",
                "text": "t",
                "codes": [{"system": "ICD10", "code": "E11.9"}, {"system": "CPT", "code": "99213"}],
            },
            {
                "id": "r2",
                "text": "t",
                "codes": [{"system": "ICD10", "code": "E11"}, {"system": "ICD10", "code": "e119"}],
            },
            {"id": "r3", "text": "t", "codes": [{"system": "ICD10", "code": "E11.90"}]},
            "{not json",
            {"id": "r5", "text": "t"},
            {
                "id": "p1",
                "text": "t",
                "chosen": {"codes": [{"system": "ICD-10-CM", "code": "I10"}]},
                "rejected": {"codes": [{"system": "ICD10", "code": "I10.9"}]},
                "rejection_kind": "invalid",
            },
            {"id": "r7", "text": "t", "codes": [{"system": "ICD9", "code": "250.00"}, "E11.9"]},
            "",
        ],
    )
    report = validate_records(records)
    assert report.records == 5
    assert [entry["line"] for entry in report.malformed] == [4, 5, 7]
    assert report.systems["ICD10"] == {
        "codes": 6,
        "valid": 4,
        "invalid": 2,
        "billable": 3,
        "not_billable": 1,
        "not_canonical": 1,
    }
    assert report.systems["CPT"] == {"codes": 1, "valid": 1}
    assert {(entry["record"], entry["code"], entry["field"]) for entry in report.invalid} == {
        ("r3", "E11.90", "codes"),
        ("p1", "I10.9", "rejected.codes"),
        ("r7", "250.00", "codes"),
    }
    assert [(entry["record"], entry["code"]) for entry in report.not_billable] == [("r2", "E11")]
    assert report.not_canonical == [
        {"record": "r2", "line": 2, "field": "codes", "system": "ICD10", "code": "e119", "canonical": "E11.9"}
    ]
    assert report.failed
    json.dumps(report.to_dict())


def test_rejected_side_invalid_codes_do_not_fail_the_file(tmp_path):
    records = _write_jsonl(
        tmp_path / "prefs.jsonl",
        [
            {
                "id": "p1",
                "text": "t",
                "chosen": {"codes": [{"system": "ICD10", "code": "I10"}]},
                "rejected": {"codes": [{"system": "ICD10", "code": "I10.9"}]},
            }
        ],
    )
    report = validate_records(records)
    assert len(report.invalid) == 1
    assert not report.failed


def test_validate_records_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        validate_records(tmp_path / "nope.jsonl")


# -- against simple-icd-10-cm itself --------------------------------------------------------------------


@pytest.fixture(scope="module")
def icd_library():
    import simple_icd_10_cm

    return simple_icd_10_cm


def _is_heading(library, item):
    """Chapters ("4") and ranges ("E08-E13"). The five single-category blocks (B20, F99, ...) share their
    category's name, and that name is a code."""
    return library.is_chapter(item) or "-" in item


@pytest.mark.slow
def test_every_library_leaf_is_valid_and_billable(icd_library):
    items = icd_library.get_all_codes()
    leaves = [item for item in items if not _is_heading(icd_library, item) and icd_library.is_leaf(item)]
    # The library's own leaf count over get_all_codes() is 74,736: it also counts 12 empty range headings
    # (C00-C96 ...) and lists the 5 single-category blocks twice. The billable codes are 74,719.
    assert sum(icd_library.is_leaf(item) for item in items) == 74_736
    assert len(set(leaves)) == 74_719
    checks = validate_codes(leaves, require_billable=True)
    assert all(checks), [code for code, ok in zip(leaves, checks, strict=True) if not ok][:10]
    assert set(leaves) == set(billable_codes("ICD10"))


@pytest.mark.slow
def test_every_library_non_leaf_is_valid_not_billable(icd_library):
    items = icd_library.get_all_codes()
    headers = {item for item in items if not _is_heading(icd_library, item) and not icd_library.is_leaf(item)}
    assert len(headers) > 23_000
    for code in headers:
        check = check_code(code)
        assert (check.valid, check.billable) == (True, False), code
        assert check.billable_children


@pytest.mark.slow
def test_cache_round_trip_gives_the_same_tables(tmp_path):
    from thce.utils.code_systems.icd10cm import load_tables, shared_tables

    built = load_tables(tmp_path)
    cached = list(tmp_path.glob("icd10cm-*.json"))
    assert len(cached) == 1
    reloaded = load_tables(tmp_path)
    assert reloaded.codes == built.codes == shared_tables().codes
    assert reloaded.billable == built.billable
    assert reloaded.notes == built.notes and reloaded.seventh == built.seventh
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
