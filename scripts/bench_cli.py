"""CLI start-up time: how long `thce <verb> --help` takes in a fresh process, for every verb.

    python scripts/bench_cli.py [--repeats 3]

`--help` must stay instant (heavy imports live inside the command bodies; tests/cli/test_cli.py checks
that torch is never imported for it). This measures the time, which a test cannot assert reliably on a
shared, loaded machine. Prints a table (median and max seconds per verb) and JSON.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def verbs() -> list[tuple[str, ...]]:
    """Every command path of the app, e.g. ("model", "info"), plus the root."""
    import typer.main

    from thce.cli import app

    paths: list[tuple[str, ...]] = [()]

    def walk(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
        else:
            paths.append(path)

    walk(typer.main.get_command(app), ())
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for verb in verbs():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "thce.cli", *verb, "--help"], capture_output=True, check=True
            )
            times.append(time.perf_counter() - start)
        rows.append(
            {"verb": " ".join(verb) or "(root)", "median_s": statistics.median(times), "max_s": max(times)}
        )
    print(f"{'verb':<20} {'median s':>9} {'max s':>7}")
    for row in rows:
        print(f"{row['verb']:<20} {row['median_s']:>9.2f} {row['max_s']:>7.2f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
