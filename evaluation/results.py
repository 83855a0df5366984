"""The results of an evaluation on disk: where they go, and how they are written.

`results/stage_3_eval.json` (or `--output`) holds (docs/data_contracts.md for the record format): format
marker, model, inference settings, datasets with their SHA-256, the resolved config, `metrics` (every rate
a fraction in [0, 1]), 95% bootstrap intervals, per-split / per-system / per-chapter breakdowns, error
categories, baselines scored on the same examples (paired bootstrap differences and McNemar), timings, and
per-example results (for `compare`). Beside it, a folder of the same name: `predictions.jsonl` (one line per
example: id, split, text, gold, predicted, candidates, confidence, reasoning, raw answer, error category),
`report.md` and `plots/*.png`. Everything is written under temporary names and renamed into place at the
end, so a failed run leaves earlier results intact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from thce.utils.errors import UserError
from thce.utils.io import (
    check_output,
    check_replaceable_directory,
    staged_directory,
    write_atomically,
    write_json,
    write_jsonl,
)
from thce.utils.stage_layout import checkpoint_stage

RESULTS_FORMAT = "thce-eval"
RESULTS_FORMAT_VERSION = 1


def default_output(model: str | Path) -> Path:
    """`results/stage_N_eval.json` for a THCE checkpoint of stage N, else `results/<model name>_eval.json`."""
    stage = checkpoint_stage(model)
    name = f"stage_{stage}" if stage else re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(model)).name)
    return Path("results") / f"{name}_eval.json"


def check_results_output(output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Refuse, before any work, a results path that would overwrite an input or a folder THCE did not write.

    A results file `P/NAME.json` comes with a folder `P/NAME/`; that folder is replaced only if an earlier
    THCE run wrote it (it holds THCE's manifest)."""
    output = Path(output)
    if output.suffix.lower() != ".json":
        raise UserError(f"--output {output}: a results file name must end in .json")
    check_output(output, inputs, "--output")
    side = check_output(output.with_suffix(""), inputs, "results folder", directory=True)
    check_replaceable_directory(side, "results", "results folder")
    return output


def write_results(
    results: dict[str, Any],
    rows: Sequence[Mapping[str, Any]],
    output: str | Path,
    report: bool = True,
    inputs: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Write the JSON, and beside it a folder with predictions.jsonl, report.md and plots (atomically)."""
    from thce.evaluation.report import markdown_report, write_plots

    output = check_results_output(output, inputs)
    side = output.with_suffix("")
    with staged_directory(side, "results", "results folder") as staging:
        write_jsonl(staging / "predictions.jsonl", rows)
        results["artefacts"] = {"predictions": str(side / "predictions.jsonl")}
        if report:
            plots = write_plots(results, staging / "plots")
            write_atomically(staging / "report.md", markdown_report(results, plots))
            results["artefacts"]["report"] = str(side / "report.md")
            results["artefacts"]["plots"] = {name: str(side / "plots" / file) for name, file in plots.items()}
    write_json(output, results)
    logger.info(f"Wrote {output} and {side}/")
    return results
