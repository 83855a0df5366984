"""Validator speed: first check in a fresh process, validate_code calls/s, and `thce validate --file`.

    python scripts/bench_validator.py            # all three, ~30 s on one core
    python scripts/bench_validator.py --records 100000 --calls 1000000

Targets (issue #3): first check_code < 3 s; >= 200,000 validate_code calls/s on one core;
`thce validate --file` on 100,000 records < 10 s. Figures are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST_CHECK = (
    "import time; t = time.perf_counter(); "
    "from thce.utils.code_validator import check_code; check_code('E11.9', 'ICD10'); "
    "print(time.perf_counter() - t)"
)


def first_check_seconds(thce_home: str | None = None) -> dict[str, float]:
    """A fresh interpreter: seconds to import and answer one check, and the whole process's wall time."""
    env = dict(os.environ)
    if thce_home is not None:
        env["THCE_HOME"] = thce_home
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", FIRST_CHECK], capture_output=True, text=True, env=env, check=True
    )
    wall = time.perf_counter() - start
    return {"in_process_s": round(float(completed.stdout.strip()), 3), "process_wall_s": round(wall, 3)}


def calls_per_second(calls: int, seed: int) -> dict[str, float]:
    """validate_code in a plain loop (one core), for canonical, re-spelled and invalid inputs."""
    from thce.utils.code_validator import billable_codes, validate_code, validate_codes

    rng = random.Random(seed)
    pool = billable_codes("ICD10")
    canonical = [rng.choice(pool) for _ in range(calls)]
    mixes = {
        "canonical": canonical,
        "lower_dotless": [code.replace(".", "").lower() for code in canonical],
        "invalid_well_formed": [code + "9" if len(code) < 8 else code[:-1] + "Z" for code in canonical],
    }
    validate_code("E11.9", "ICD10")
    figures = {}
    for name, codes in mixes.items():
        start = time.perf_counter()
        for code in codes:
            validate_code(code, "ICD10")
        figures[f"validate_code_{name}_per_s"] = round(calls / (time.perf_counter() - start))
    start = time.perf_counter()
    validate_codes(canonical, "ICD10")
    figures["validate_codes_batch_canonical_per_s"] = round(calls / (time.perf_counter() - start))
    return figures


def write_records(path: Path, n: int, seed: int) -> int:
    """n canonical records with 1-4 codes: mostly billable ICD-10-CM, some headers, typos, CPT, HCPCS."""
    from thce.utils.code_validator import billable_codes

    rng = random.Random(seed)
    pool = billable_codes("ICD10")
    n_codes = 0
    with path.open("w") as handle:
        for i in range(n):
            refs = []
            for _ in range(rng.randint(1, 4)):
                roll = rng.random()
                if roll < 0.8:
                    refs.append({"system": "ICD10", "code": rng.choice(pool)})
                elif roll < 0.85:
                    refs.append({"system": "ICD10", "code": rng.choice(pool)[:3]})
                elif roll < 0.9:
                    refs.append({"system": "ICD10", "code": rng.choice(pool) + "9"})
                elif roll < 0.95:
                    refs.append({"system": "CPT", "code": f"{rng.randint(100, 99499):05d}"})
                else:
                    refs.append({"system": "HCPCS", "code": f"J{rng.randint(0, 9999):04d}"})
            n_codes += len(refs)
            record = {
                "id": f"r{i}",
                "text": "Patient seen for follow-up.",
                "codes": refs,
                "reasoning": None,
                "source": "bench",
                "meta": {},
            }
            handle.write(json.dumps(record) + "\n")
    return n_codes


def validate_file_seconds(records: int, seed: int) -> dict[str, float]:
    """Wall time of `python -m thce.cli validate --file` (a fresh process, as a user runs it)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.jsonl"
        n_codes = write_records(path, records, seed)
        start = time.perf_counter()
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "thce.cli",
                "validate",
                "--file",
                str(path),
                "--report",
                str(Path(tmp) / "r.json"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        if completed.returncode not in (0, 1):
            raise RuntimeError(completed.stderr)
        return {"records": records, "codes": n_codes, "validate_file_wall_s": round(wall, 2)}


def main(calls: int, records: int, seed: int) -> dict[str, object]:
    """Run the three measurements and print them as JSON."""
    figures: dict[str, object] = {}
    first_check_seconds()  # make sure the on-disk cache exists
    figures["first_check_warm_cache"] = first_check_seconds()
    with tempfile.TemporaryDirectory() as empty_home:
        figures["first_check_cold_cache"] = first_check_seconds(empty_home)
    figures.update(calls_per_second(calls, seed))
    figures.update(validate_file_seconds(records, seed))
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500_000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.calls, args.records, args.seed)
