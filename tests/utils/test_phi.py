"""PHI rules (table-driven) and the Presidio scrubber: PHI goes, dates keep the year, clinical words stay."""

import json

import pytest

from thce.utils.phi import find_phi, is_medical_eponym, phi_residue, scrub_with_rules
from thce.utils.phi_rules import PhiSpan, resolve_overlaps
from thce.utils.phi_vocabulary import build_vocabulary, is_medical_phrase, load_vocabulary, vocabulary_words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SSN 123-45-6789.", "SSN [SSN]."),
        ("Call (555) 123-4567 or 555.987.6543.", "Call [PHONE] or [PHONE]."),
        ("Email jane.doe@example.org today.", "Email [EMAIL] today."),
        ("MRN: 00123456, acct # AB-99812.", "MRN: [MRN], acct # [MRN]."),
        ("Seen on 03/14/2021 and March 3, 2019; DOB 1950-07-04.", "Seen on 2021 and 2019; DOB 1950."),
        ("Follow up on 4/12.", "Follow up on [DATE]."),
        ("Lives at 12 Oak Street, Apt 4, Springfield, IL 62704.", "Lives at [ADDRESS]."),
        ("Admitted to St. Mary Medical Center.", "Admitted to [FACILITY]."),
        ("Attending: Dr. Alice O'Connor-Smith, MD.", "Attending: Dr. [NAME], MD."),
        ("Patient: John A. Doe", "Patient: [NAME]"),
        ("John Smith is a 54-year-old man.", "[NAME] is a 54-year-old man."),
        # Names known by their context: a note's opening, a heading, a label, a title, a suffix.
        ("Duane Cross, a 34-year-old, was admitted.", "[NAME], a 34-year-old, was admitted."),
        ("Stable. Amber Miranda, a 67-year-old woman.", "Stable. [NAME], a 67-year-old woman."),
        (
            "Discharge summary for Kimberly Jones. Date of birth: 03/04/1977.",
            "Discharge summary for [NAME]. Date of birth: 1977.",
        ),
        ("Name: Mark Brown, DOB 1/2/1960", "Name: [NAME], DOB 1960"),
        ("Mrs. Bell and Dr. Graves", "Mrs. [NAME] and Dr. [NAME]"),
        (
            "Signed: Jane Roe, DVM. Seen by Ann Lee NP; Tom Hill DO",
            "Signed: [NAME], DVM. Seen by [NAME] NP; [NAME] DO",
        ),
        # Addresses: military and unit forms, PO boxes, a street whose city starts like "Ste".
        ("Mail: PSC 9703, Box 7600, APO AP 57773.", "Mail: [ADDRESS]."),
        ("Unit 9170 Box 5952, DPO AP 71772", "[ADDRESS]"),
        ("CMR 412, Box 88\nAPO AE 09012", "[ADDRESS]"),
        ("USS Kelly, FPO AP 47434; USNS Frazier FPO AA 29474", "[ADDRESS]; [ADDRESS]"),
        ("P.O. Box 1234, Springfield, IL 62704", "[ADDRESS]"),
        ("Post Office Box 77", "[ADDRESS]"),
        ("474 Autumn Brooks, Stephenmouth, ME 72649.", "[ADDRESS]."),
        # Other mentions of a name found once go too, unless they read as an eponym.
        (
            "Patient: Shaun Castro. Shaun tolerated it; Castro's wife called.",
            "Patient: [NAME]. [NAME] tolerated it; [NAME]'s wife called.",
        ),
        (
            "Duane Cross, a 34-year-old, has Duane's syndrome. Duane is well.",
            "[NAME], a 34-year-old, has Duane's syndrome. [NAME] is well.",
        ),
        # Month and year alone: the month goes, the year stays.
        ("Since March 2021 and 04/2019.", "Since 2021 and 2019."),
    ],
)
def test_rules_remove_phi(text, expected):
    assert scrub_with_rules(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "History of Parkinson's disease and Crohn's disease.",
        "Hodgkin lymphoma in remission; non-Hodgkin lymphoma excluded.",
        "Graves' disease, Bell's palsy, Down syndrome.",
        "Wilson disease and Hashimoto thyroiditis.",
        "BP 120/80, type 2 diabetes E11.9, HTN, CKD stage 3.",
        "Hospital course uneventful. Discharged home.",
        "Duane's syndrome. Colles' fracture, Smith's fracture. Unit dose given.",
        "Essential hypertension, unspecified. Pneumonia, unspecified organism.",
    ],
)
def test_rules_leave_eponyms_and_clinical_text_alone(text):
    assert scrub_with_rules(text) == text
    assert phi_residue(text) == []


def test_eponym_needs_medical_context_for_common_surnames():
    text = "Mr. Wilson has Bell's palsy."
    assert not is_medical_eponym(text, 4, 10)
    assert is_medical_eponym(text, 15, 19)
    assert [s.kind for s in find_phi(text)] == ["NAME"]


@pytest.mark.slow
def test_presidio_scrubber_finds_untitled_names_and_keeps_eponyms():
    from thce.utils.phi import PhiScrubber

    scrubber = PhiScrubber()
    # (A city that is also ICD-10-CM vocabulary, "Boston" of "Boston exanthem", is kept when NER alone finds it.)
    text = "Sarah Connor came in from Denver with Lyme disease; Parkinson's disease and Crohn's disease noted on 01/02/2020."
    clean = scrubber.scrub(text)
    assert "Sarah" not in clean and "Connor" not in clean and "Denver" not in clean
    for kept in ("Lyme disease", "Parkinson's disease", "Crohn's disease", "2020"):
        assert kept in clean
    assert "01/02/2020" not in clean
    assert list(scrubber.scrub_many([text, "No PHI here, T2DM stable."])) == [
        clean,
        "No PHI here, T2DM stable.",
    ]


def test_overlapping_spans_of_one_kind_merge_and_others_keep_the_longest():
    a, b = PhiSpan(0, 10, "ADDRESS", "x" * 10, "[ADDRESS]"), PhiSpan(5, 20, "ADDRESS", "y" * 15, "[ADDRESS]")
    assert [(s.start, s.end) for s in resolve_overlaps([a, b])] == [(0, 20)]
    name = PhiSpan(8, 12, "NAME", "zzzz", "[NAME]")
    assert resolve_overlaps([b, name]) == [b]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Ménière's disease", ["meniere", "disease"]),
        ("Gastro-esophageal reflux", ["gastro", "esophageal", "reflux"]),
        ("Graves' disease, type 2", ["graves", "disease", "type"]),
        ("E11.9 (12)", ["e"]),
        ("", []),
    ],
)
def test_vocabulary_words(text, words):
    assert vocabulary_words(text) == words


def test_medical_phrase_needs_every_word_in_the_vocabulary():
    vocabulary = build_vocabulary(["Headache, unspecified", "Thyrotoxicosis with diffuse goiter"])
    assert "graves" in vocabulary and "headache" in vocabulary  # the eponym list is always in
    assert is_medical_phrase("Headache", vocabulary)
    assert is_medical_phrase("Graves", vocabulary)
    assert not is_medical_phrase("Kimberly Jones", vocabulary)
    assert not is_medical_phrase("9703", vocabulary)  # no words: not a phrase


def test_vocabulary_cache_is_json_reused_and_rebuilt_when_unreadable(tmp_path):
    built = build_vocabulary(["Headache, unspecified"])
    assert load_vocabulary(tmp_path, lambda: ["Headache, unspecified"]) == built
    (cache,) = tmp_path.glob("phi-vocabulary-*.json")
    assert sorted(json.loads(cache.read_text())) == sorted(built)

    def must_not_rebuild():
        raise AssertionError("the cache should have been used")

    assert load_vocabulary(tmp_path, must_not_rebuild) == built
    cache.write_bytes(b"\x80not json")
    assert load_vocabulary(tmp_path, lambda: ["Pneumonia"]) == build_vocabulary(["Pneumonia"])


@pytest.mark.slow
def test_scrubber_protects_clinical_vocabulary_but_not_names_in_context():
    from thce.utils.phi import default_scrubber

    scrubber = default_scrubber()
    cases = {
        "Headache, unspecified. Hyperlipidemia, unspecified.": "Headache, unspecified. Hyperlipidemia, unspecified.",
        "Pneumonia, unspecified organism. Gastro-esophageal reflux disease.": (
            "Pneumonia, unspecified organism. Gastro-esophageal reflux disease."
        ),
        "Dr. Graves saw Mrs. Bell for Graves disease and Bell's palsy.": (
            "Dr. [NAME] saw Mrs. [NAME] for Graves disease and Bell's palsy."
        ),
        "Discharge summary for Kimberly Jones. History of Crohn disease.": (
            "Discharge summary for [NAME]. History of Crohn disease."
        ),
        "Duane Cross, a 34-year-old, has Duane's syndrome.": "[NAME], a 34-year-old, has Duane's syndrome.",
        "Lives at PSC 9703, Box 7600, APO AP 57773.": "Lives at [ADDRESS].",
        # NER calls some people ORG, or stops after the first name: both are taken whole.
        "Care coordinated with Faith Pruitt from home health.": "Care coordinated with [NAME] from home health.",
        "Lives with Melissa Townsend in a house.": "Lives with [NAME] in a house.",
        "Medicare Part B covers it; Blue Cross Blue Shield denied it.": (
            "Medicare Part B covers it; Blue Cross Blue Shield denied it."
        ),
    }
    assert list(scrubber.scrub_many(cases)) == list(cases.values())
    assert scrubber.counts["ner_kept_medical_vocabulary"] > 0


def _icd10cm_descriptions_and_inclusion_terms() -> list[str]:
    from thce.utils.code_systems.icd10cm import shared_tables

    tables = shared_tables()
    texts = list(tables.descriptions)
    for notes in tables.notes.values():
        texts.extend(notes.get("inclusion terms", ()))
    return list(dict.fromkeys(texts))


@pytest.mark.slow
def test_every_icd10cm_description_and_inclusion_term_survives_the_scrubber():
    """The self-check: no FY2026 description or inclusion term is changed (each scrubbed as its own text)."""
    from thce.utils.phi import default_scrubber

    texts = _icd10cm_descriptions_and_inclusion_terms()
    assert len(texts) == 110_301  # 98,505 tabular entries + 12,574 inclusion terms, 778 repeated
    changed = [
        (text, clean)
        for text, clean in zip(texts, default_scrubber().scrub_many(texts, batch_size=512), strict=True)
        if clean != text
    ]
    assert changed == [], f"{len(changed)} changed, e.g. {changed[:5]}"
