"""PHI rules (table-driven) and the Presidio scrubber: PHI goes, dates keep the year, eponyms stay."""

import pytest

from thce.utils.phi import find_phi, is_medical_eponym, phi_residue, scrub_with_rules


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
    text = "Sarah Connor came in from Boston with Lyme disease; Parkinson's disease and Crohn's disease noted on 01/02/2020."
    clean = scrubber.scrub(text)
    assert "Sarah" not in clean and "Connor" not in clean and "Boston" not in clean
    for kept in ("Lyme disease", "Parkinson's disease", "Crohn's disease", "2020"):
        assert kept in clean
    assert "01/02/2020" not in clean
    assert list(scrubber.scrub_many([text, "No PHI here, T2DM stable."])) == [
        clean,
        "No PHI here, T2DM stable.",
    ]
