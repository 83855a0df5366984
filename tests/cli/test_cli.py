import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from thce import __version__
from thce.cli import app

REPO = Path(__file__).resolve().parents[2]


def _verbs(typer_app, prefix=()):
    """Every command path of the app, e.g. ("model", "info")."""
    import typer.main

    group = typer.main.get_command(typer_app)
    paths = []

    def walk(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, (*path, name))
        else:
            paths.append(path)

    walk(group, prefix)
    return paths


VERBS = _verbs(app)


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"thce {__version__}"


def test_there_are_verbs():
    assert ("model", "info") in VERBS


@pytest.mark.parametrize("verb", [(), *VERBS], ids=lambda v: " ".join(v) or "root")
def test_help_works_for_every_verb(verb):
    # A fresh process each time, as a user runs it. How fast it is: scripts/bench_cli.py (a timing
    # assertion fails on a loaded machine); that --help imports no torch: the test below.
    result = subprocess.run(
        [sys.executable, "-m", "thce.cli", *verb, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_help_does_not_import_torch():
    code = "import sys; from thce.cli import app; import thce.commands; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def _run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "thce.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_user_error_is_one_line_and_non_zero():
    result = _run("model", "info", "./no/such/model")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("thce: error:") and "no/such/model" in lines[0]


def test_debug_shows_the_traceback():
    result = _run("model", "info", "./no/such/model", env={"THCE_DEBUG": "1"})
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "UserError" in result.stderr


def test_model_info_reports_the_embedded_model(smollm2_path):
    result = _run("model", "info", "--json")
    assert result.returncode == 0, result.stderr
    assert '"parameters": "134,515,008 (134.5M)"' in result.stdout


def test_folders_do_not_leak_into_site_packages(tmp_path):
    # Outside the repo, only the `thce` namespace exists; `utils` and `data` are not top-level packages.
    for module in ("utils", "data", "post_training", "evaluation", "inference"):
        result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=tmp_path, capture_output=True)
        assert result.returncode != 0, f"`import {module}` should fail outside the repo"
    code = (
        "import thce.utils.config, thce.utils.medical_chat_templates, thce.post_training, thce.evaluation, "
        "thce.data, thce.inference, thce.inference.output_parser"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
