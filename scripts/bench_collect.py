"""Benchmark `thce collect` for the full-scale stage configs: wall time, peak RSS, rows, determinism.

    python scripts/bench_collect.py                      # stages 1-3, each in a fresh process
    python scripts/bench_collect.py --stages 1 --repeat  # also re-run and compare parquet bytes

Each stage runs as `thce collect` in a subprocess (so peak RSS is that process's, read from
resource.getrusage of the children). Prints one JSON line per run and a total.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def run_stage(stage: int, output_dir: str, extra: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "thce.cli",
        "-q",
        "collect",
        "-c",
        f"configs/stage_{stage}.yaml",
        "-o",
        output_dir,
        *extra,
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit(f"stage {stage} failed ({proc.returncode})")
    meta = json.loads((Path(output_dir) / "dataset_metadata.json").read_text())
    digest = hashlib.sha256((Path(output_dir) / "train.parquet").read_bytes()).hexdigest()
    return {
        "stage": stage,
        "wall_s": round(wall, 1),
        # ru_maxrss of children is the max over all finished children: valid per stage when run in order
        # only if it grows; report it as an upper bound.
        "peak_rss_mb_upper_bound": round(max(before, peak_kb) / 1024, 1),
        "splits": meta["splits"],
        "duplicates_dropped": meta["duplicates_dropped"],
        "invalid_dropped": meta["invalid_dropped"],
        "train_sha256": digest[:16],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="data/artefacts/bench")
    parser.add_argument("--repeat", action="store_true", help="collect again and compare train.parquet bytes")
    args = parser.parse_args()
    total = 0.0
    for stage in args.stages:
        result = run_stage(stage, f"{args.out}/stage_{stage}", [])
        total += result["wall_s"]
        print(json.dumps(result), flush=True)
        if args.repeat:
            again = run_stage(stage, f"{args.out}/stage_{stage}_again", [])
            print(
                json.dumps(
                    {"stage": stage, "byte_identical": again["train_sha256"] == result["train_sha256"]}
                ),
                flush=True,
            )
    print(json.dumps({"total_wall_s": round(total, 1)}))


if __name__ == "__main__":
    main()
