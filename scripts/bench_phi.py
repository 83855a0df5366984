"""Scrubbing speed, texts/s: the current PHI scrubber against an earlier commit's, in one process.

    flock /tmp/thce-heavy.lock python scripts/bench_phi.py                  # against 3092222, 300 notes
    python scripts/bench_phi.py --baseline-ref main --notes 500 --rounds 5

The baseline is the single-module `utils/phi.py` of `--baseline-ref`, read with `git show` and imported
beside the current one. Both scrub the same Faker-built notes of `scripts/eval_phi.py` with
`scrub_many`, in alternating rounds, so machine load affects both alike; the median round is reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_baseline(ref: str, workdir: Path):
    """The `PhiScrubber` class of `utils/phi.py` at git `ref`, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{ref}:utils/phi.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = workdir / "thce_phi_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("thce_phi_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.PhiScrubber


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline-ref", default="3092222")
    parser.add_argument("--notes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2, help="pin to this many cores (0: no pinning)")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if args.cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))

    from faker import Faker

    sys.path.insert(0, str(ROOT / "scripts"))
    from eval_phi import build_note, clinical_phrases

    from thce.utils.phi import PhiScrubber

    fake = Faker("en_US")
    Faker.seed(args.seed)
    rng = random.Random(args.seed)
    phrases = clinical_phrases()
    notes = [build_note(fake, rng, phrases)[0] for _ in range(args.notes)]
    with tempfile.TemporaryDirectory() as tmp:
        scrubbers = {"baseline": load_baseline(args.baseline_ref, Path(tmp))(), "current": PhiScrubber()}
    for scrubber in scrubbers.values():  # warm-up: spaCy's first batch allocates
        list(scrubber.scrub_many(notes[:32]))
    rates: dict[str, list[float]] = {name: [] for name in scrubbers}
    for _ in range(args.rounds):
        for name, scrubber in scrubbers.items():
            start = time.perf_counter()
            list(scrubber.scrub_many(notes))
            rates[name].append(len(notes) / (time.perf_counter() - start))
    median = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "baseline_ref": args.baseline_ref,
        "notes": args.notes,
        "mean_chars": round(statistics.fmean(len(n) for n in notes)),
        "cores": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "texts_per_s": {name: [round(v, 1) for v in values] for name, values in rates.items()},
        "median_texts_per_s": {name: round(v, 1) for name, v in median.items()},
        "current_over_baseline": round(median["current"] / median["baseline"], 3),
        "load_average": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
