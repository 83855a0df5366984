"""Measure PHI-scrubbing recall per PHI kind and eponym survival on a Faker-built test set.

    python scripts/eval_phi.py                 # 500 notes, Presidio + rules
    python scripts/eval_phi.py --engine rules  # rules only (no NER)
    python scripts/eval_phi.py -n 2000 --json results/phi_eval.json

Each note is a clinical template with injected PHI (names, dates, MRNs, SSNs, phones, emails, addresses,
facilities) and medical eponyms (Parkinson's disease, Crohn's disease, Hodgkin lymphoma, Graves' disease,
Bell's palsy, Down syndrome ...). Recall for a kind = share of injected values no longer present after
scrubbing (dates: the full date gone AND its year kept). Eponym retention = share of eponymous disease
names still present verbatim.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path

EPONYM_DISEASES = (
    "Parkinson's disease",
    "Crohn's disease",
    "Hodgkin lymphoma",
    "non-Hodgkin lymphoma",
    "Graves' disease",
    "Bell's palsy",
    "Down syndrome",
    "Alzheimer's disease",
    "Huntington's disease",
    "Addison's disease",
    "Cushing's syndrome",
    "Hashimoto's thyroiditis",
    "Raynaud's phenomenon",
    "Tourette syndrome",
    "Guillain-Barre syndrome",
    "Barrett's esophagus",
    "Kawasaki disease",
    "Wilson's disease",
    "Lyme disease",
    "Sjogren's syndrome",
    "Paget's disease of bone",
    "Meniere's disease",
    "Marfan syndrome",
    "Turner syndrome",
    "Kaposi's sarcoma",
    "Ewing sarcoma",
    "Wilms tumor",
    "Burkitt lymphoma",
    "Dupuytren's contracture",
    "Baker's cyst",
    "Reiter's syndrome",
    "Still's disease",
    "Peyronie's disease",
    "Hirschsprung's disease",
)
DATE_FORMATS = ("%m/%d/%Y", "%B %d, %Y", "%Y-%m-%d", "%d %B %Y", "%b %d, %Y", "%m-%d-%Y")
FACILITY_SUFFIXES = (
    "Memorial Hospital",
    "Medical Center",
    "Regional Hospital",
    "Clinic",
    "General Hospital",
    "Health Center",
)


def build_note(fake, rng: random.Random) -> tuple[str, dict[str, list[str]], list[str], list[str]]:
    """One note; returns (text, injected PHI by kind, eponyms used, years that must survive)."""
    name = fake.name_nonbinary() if rng.random() < 0.1 else fake.name()
    doctor = f"{fake.first_name()} {fake.last_name()}"
    relative = fake.name()
    date = fake.date_between(start_date="-30y", end_date="today")
    visit = fake.date_between(start_date="-5y", end_date="today")
    date_text = date.strftime(rng.choice(DATE_FORMATS))
    visit_text = visit.strftime(rng.choice(DATE_FORMATS))
    mrn = rng.choice(
        (
            str(rng.randint(10_000_000, 99_999_999)),
            f"MR{rng.randint(100000, 999999)}",
            f"{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        )
    )
    ssn = f"{rng.randint(100, 899):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    phone = rng.choice(
        (fake.numerify("(###) ###-####"), fake.numerify("###-###-####"), fake.numerify("###.###.####"))
    )
    email = fake.email()
    street = fake.street_address()
    city_line = f"{fake.city()}, {fake.state_abbr()} {fake.zipcode()}"
    facility = rng.choice(
        (
            f"{fake.last_name()} {rng.choice(FACILITY_SUFFIXES)}",
            f"St. {fake.first_name()} {rng.choice(FACILITY_SUFFIXES)}",
        )
    )
    eponyms = rng.sample(EPONYM_DISEASES, 2)
    opening = rng.choice(
        (
            f"Patient: {name}\nDOB: {date_text}\nMRN: {mrn}\n",
            f"{name} is a {rng.randint(20, 88)}-year-old seen on {visit_text}. MRN {mrn}. DOB {date_text}.\n",
            f"Name: {name}, DOB {date_text}, medical record number {mrn}.\n",
            f"Mr. {name} presented to {facility} on {visit_text}. MRN: {mrn}. Born {date_text}.\n",
        )
    )
    facility_text = "" if "presented to" in opening else f"Seen at {facility} on {visit_text}. "
    body = (
        f"{facility_text}History of {eponyms[0]} and {eponyms[1]}. "
        f"Attending: Dr. {doctor}. SSN {ssn}. Contact phone {phone}, email {email}. "
        f"Lives at {street}, {city_line}. Emergency contact: {relative}.\n"
        f"Assessment: {eponyms[0]}, stable. Plan reviewed with {relative.split()[0]}."
    )
    text = opening + body
    injected = {
        "NAME": [name, doctor, relative],
        "DATE": [date_text, visit_text] if visit_text in text else [date_text],
        "MRN": [mrn],
        "SSN": [ssn],
        "PHONE": [phone],
        "EMAIL": [email],
        "ADDRESS": [street, city_line],
        "FACILITY": [facility],
    }
    years = [str(date.year)] + ([str(visit.year)] if visit_text in text else [])
    return text, injected, eponyms, years


def evaluate(n: int, engine: str, seed: int) -> dict:
    from faker import Faker

    from thce.utils.phi import PhiScrubber, scrub_with_rules

    fake = Faker("en_US")
    Faker.seed(seed)
    rng = random.Random(seed)
    notes = [build_note(fake, rng) for _ in range(n)]
    if engine == "presidio":
        scrubbed = list(PhiScrubber().scrub_many(n[0] for n in notes))
    else:
        scrubbed = [scrub_with_rules(note[0]) for note in notes]
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    misses: dict[str, list[str]] = {}
    eponyms_kept = eponyms_total = 0
    for (_text, injected, eponyms, years), clean in zip(notes, scrubbed, strict=True):
        for kind, values in injected.items():
            for value in values:
                total[kind] += 1
                if kind == "NAME":
                    # A name is removed when none of its parts (2+ letters, not a title) survives.
                    parts = [
                        p.strip(".,")
                        for p in value.split()
                        if len(p.strip(".,")) > 2
                        and p.strip(".")
                        not in (
                            "Mr",
                            "Mrs",
                            "Ms",
                            "Dr",
                            "Miss",
                            "MD",
                            "DDS",
                            "PhD",
                            "DVM",
                            "Jr",
                            "Sr",
                            "III",
                            "II",
                            "Jr.",
                        )
                    ]
                    ok = not any(part in clean for part in parts)
                elif kind == "DATE":
                    ok = value not in clean
                else:
                    ok = value not in clean
                if ok:
                    found[kind] += 1
                else:
                    misses.setdefault(kind, []).append(value)
        for year in years:
            total["DATE_YEAR_KEPT"] += 1
            found["DATE_YEAR_KEPT"] += year in clean
        for eponym in eponyms:
            eponyms_total += 1
            eponyms_kept += eponym in clean
    recall = {kind: round(found[kind] / total[kind], 4) for kind in sorted(total)}
    return {
        "notes": n,
        "engine": engine,
        "recall": recall,
        "eponym_retention": round(eponyms_kept / eponyms_total, 4),
        "misses_sample": {k: v[:5] for k, v in misses.items()},
        "example": {"before": notes[0][0], "after": scrubbed[0]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--engine", choices=("presidio", "rules"), default="presidio")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = evaluate(args.n, args.engine, args.seed)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    gates = [v >= 0.98 for v in result["recall"].values()] + [result["eponym_retention"] >= 0.99]
    sys.exit(0 if all(gates) else 1)


if __name__ == "__main__":
    main()
