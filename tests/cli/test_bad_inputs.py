"""Bad and careless inputs, verb by verb: the exit code, the one error line, and nothing lost.

Each case runs `thce` in-process (`thce.cli.run`, the console script's body) in a scratch working
directory. A case names the files that must still be there, byte for byte, afterwards. Cases that need a
second process (Ctrl-C, concurrent writers) are at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from thce.cli import run

REPO = Path(__file__).resolve().parents[2]
# Typer's wording for a too-small number, in its older and newer versions.
AT_LEAST_1 = r"(0|-\d+) is not in the range x>=1|greater than or equal to 1"
RECORD = {
    "id": "r1",
    "text": "Patient has essential hypertension, on lisinopril.",
    "codes": [{"system": "ICD10", "code": "I10"}],
}


def _stage_config(**data) -> dict:
    raw = {
        "stage": 1,
        "data": {
            "sources": [
                {"kind": "synthetic", "generator": "icd10cm", "entries": 6, "options": {"top_n": 20}}
            ],
            "preprocess": {"scrub_phi": False},
            "output_dir": "dataset",
            "split": {"heldout_code_fraction": 0, "test_seen_fraction": 0, "validation_fraction": 0},
            "quality": {"min_english_rate": 0},
        },
    }
    raw["data"].update(data)
    return raw


def _workspace(tmp: Path) -> None:
    """Files every case may use: a stage config, records, a results file, a user's folder."""
    (tmp / "stage.yaml").write_text(yaml.safe_dump(_stage_config()))
    (tmp / "records.jsonl").write_text(json.dumps(RECORD) + "\n")
    (tmp / "latin1.jsonl").write_bytes(b'{"id": "x", "text": "caf\xe9 au lait spots", "codes": []}\n')
    (tmp / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + (json.dumps(RECORD) + "\n").encode())
    (tmp / "broken.jsonl").write_text(json.dumps(RECORD) + "\n{not json\n")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.docx").write_bytes(b"four years of work")
    (tmp / "gen").mkdir()
    (tmp / "gen" / "notes.txt").write_text("my notes")
    (tmp / "a_file").write_text("just a file")
    results = {
        "format": "thce-eval",
        "format_version": 1,
        "metrics": {},
        "datasets": [{"sha256": "x"}],
        "per_example": [],
    }
    (tmp / "no_rows.json").write_text(json.dumps({k: v for k, v in results.items() if k != "per_example"}))


@dataclass
class Case:
    args: list[str]
    code: int
    message: str  # regex the last stderr line must match
    kept: list[str] = field(default_factory=list)  # files that must be byte-identical afterwards
    setup: object = None  # optional callable(tmp_path) run after the workspace is built


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(name: str, data: bytes | str):
    def setup(tmp: Path) -> None:
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data if isinstance(data, bytes) else data.encode())

    return setup


def _yaml(name: str, raw: dict):
    return _write(name, yaml.safe_dump(raw))


BOMB = "stage: 1\ndata:\n  sources:\n  - kind: synthetic\n    options:\n" + "".join(
    f"      l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else 'x, x, x, x, x, x, x, x, x'}]\n"
    for i in range(9)
)

CASES = {
    # -- validate
    "validate report = input": Case(
        ["validate", "--file", "records.jsonl", "--report", "records.jsonl"],
        2,
        "is also an input",
        ["records.jsonl"],
    ),
    "validate a directory": Case(["validate", "--file", "mine"], 2, "mine is a directory, not a file"),
    # -- generate
    "generate output = config": Case(
        ["generate", "-c", "stage.yaml", "-o", "stage.yaml"], 2, "is also an input", ["stage.yaml"]
    ),
    "generate -n 0": Case(
        ["generate", "-c", "stage.yaml", "-n", "0"], 2, r"'--entries' / '-n': " + AT_LEAST_1
    ),
    "generate -n -5": Case(["generate", "-c", "stage.yaml", "-n", "-5"], 2, AT_LEAST_1),
    "generate entries 0 in config": Case(
        ["generate", "-c", "zero.yaml"],
        2,
        r"zero.yaml: 'data.sources\[0\].entries' must be at least 1, got 0",
        setup=_yaml(
            "zero.yaml", _stage_config(sources=[{"kind": "synthetic", "generator": "icd10cm", "entries": 0}])
        ),
    ),
    "generate output is a directory": Case(
        ["generate", "-c", "stage.yaml", "-o", "gen"], 2, "gen is a directory", ["gen/notes.txt"]
    ),
    "generate output is .": Case(
        ["generate", "-c", "stage.yaml", "-o", "."], 2, r"--output \. is a directory"
    ),
    "generate output under a file": Case(
        ["generate", "-c", "stage.yaml", "-o", "a_file/out.jsonl"],
        2,
        "a_file is a file, not a directory",
        ["a_file"],
    ),
    "config not UTF-8": Case(
        ["generate", "-c", "latin1.yaml"],
        2,
        r"latin1.yaml:2: not valid UTF-8",
        setup=_write("latin1.yaml", b"stage: 1\n# caf\xe9\n"),
    ),
    "config is a directory": Case(["generate", "-c", "mine"], 2, "mine is a directory, not a file"),
    "YAML error inside --set": Case(
        ["generate", "-c", "stage.yaml", "--set", "data.output_dir=[1"],
        2,
        r"--set 'data.output_dir=\[1'.*not valid YAML",
    ),
    "nested YAML alias bomb": Case(
        ["collect", "-c", "bomb.yaml"], 2, "alias bomb", setup=_write("bomb.yaml", BOMB)
    ),
    # -- collect
    "collect over a user's folder": Case(
        ["collect", "-c", "stage.yaml", "-o", "mine"], 2, "THCE will not delete it", ["mine/thesis.docx"]
    ),
    "collect over an input file": Case(
        ["collect", "-c", "jsonl.yaml", "-o", "records.jsonl"],
        2,
        "is also an input",
        ["records.jsonl"],
        setup=_yaml("jsonl.yaml", _stage_config(sources=[{"kind": "jsonl", "path": "records.jsonl"}])),
    ),
    "collect into the folder holding its input": Case(
        ["collect", "-c", "nested.yaml", "-o", "inputs"],
        2,
        "holds the input",
        ["inputs/records.jsonl"],
        setup=lambda tmp: (
            _write("inputs/records.jsonl", json.dumps(RECORD) + "\n")(tmp),
            _yaml("nested.yaml", _stage_config(sources=[{"kind": "jsonl", "path": "inputs/records.jsonl"}]))(
                tmp
            ),
        ),
    ),
    "collect over the config": Case(
        ["collect", "-c", "stage.yaml", "-o", "stage.yaml"], 2, "is also an input", ["stage.yaml"]
    ),
    "quality threshold above 1": Case(
        ["collect", "-c", "stage.yaml", "--set", "data.quality.min_english_rate=1.01"],
        2,
        "must be at most 1, got 1.01",
    ),
    # -- preprocess
    "preprocess output = input": Case(
        ["preprocess", "-c", "stage.yaml", "-i", "records.jsonl", "-o", "records.jsonl"],
        2,
        "is also an input",
        ["records.jsonl"],
    ),
    "preprocess input not UTF-8": Case(
        ["preprocess", "-c", "stage.yaml", "-i", "latin1.jsonl", "-o", "out.jsonl"],
        2,
        r"latin1.jsonl:1: not valid UTF-8",
    ),
    "preprocess broken line": Case(
        ["preprocess", "-c", "stage.yaml", "-i", "broken.jsonl", "-o", "out.jsonl"],
        2,
        r"broken.jsonl:2: malformed JSON",
    ),
    "preprocess input is a directory": Case(
        ["preprocess", "-c", "stage.yaml", "-i", "mine", "-o", "out.jsonl"],
        2,
        "mine is a directory, not a file",
    ),
    # -- quality
    "quality report = input": Case(
        ["quality", "--input", "records.jsonl", "--report", "records.jsonl"],
        2,
        "is also an input",
        ["records.jsonl"],
    ),
    "quality --set bogus key": Case(
        ["quality", "--input", "records.jsonl", "--set", "data.quality.min_englsh_rate=0"],
        2,
        "unknown key 'min_englsh_rate'",
    ),
    "quality --set outside data.quality": Case(
        ["quality", "--input", "records.jsonl", "--set", "model.precision=bf16"],
        2,
        r"only data.quality.\* thresholds",
    ),
    "quality input not UTF-8": Case(
        ["quality", "--input", "latin1.jsonl"], 2, r"latin1.jsonl:1: not valid UTF-8"
    ),
    "quality corrupt parquet": Case(
        ["quality", "--input", "bad.parquet"],
        2,
        "bad.parquet: not a readable parquet file",
        setup=_write("bad.parquet", b"PAR1 garbage"),
    ),
    # -- predict (refused before any model is loaded)
    "predict empty text": Case(["predict", ""], 2, "text argument 1 is empty"),
    "predict batch size 0": Case(["predict", "--batch-size", "0", "x"], 2, r"'--batch-size': " + AT_LEAST_1),
    "predict fp8": Case(["predict", "--precision", "fp8", "x"], 2, r"'--precision'.*'fp8' is not one of"),
    "predict negative new tokens": Case(["predict", "--max-new-tokens", "-3", "x"], 2, AT_LEAST_1),
    "predict output = input": Case(
        ["predict", "-i", "records.jsonl", "-o", "records.jsonl"], 2, "is also an input", ["records.jsonl"]
    ),
    "predict input not UTF-8": Case(["predict", "-i", "latin1.jsonl"], 2, r"latin1.jsonl:1: not valid UTF-8"),
    # -- evaluate / baseline (refused before any model is loaded)
    "evaluate --limit 0": Case(["evaluate", "-d", "records.jsonl", "--limit", "0"], 2, AT_LEAST_1),
    "evaluate --limit -1": Case(["evaluate", "-d", "records.jsonl", "--limit", "-1"], 2, AT_LEAST_1),
    "evaluate --set max_new_tokens=-3": Case(
        ["evaluate", "-d", "records.jsonl", "--set", "max_new_tokens=-3"],
        2,
        "'eval.max_new_tokens' must be at least 1",
    ),
    "evaluate next to a user's folder": Case(
        ["evaluate", "-m", "nowhere/final", "-d", "records.jsonl", "-o", "mine.json"],
        2,
        "THCE will not delete it",
        ["mine/thesis.docx"],
    ),
    "evaluate output = dataset": Case(
        ["evaluate", "-d", "data.json", "-o", "data.json"],
        2,
        "is also an input",
        ["data.json"],
        setup=_write("data.json", json.dumps(RECORD) + "\n"),
    ),
    "evaluate output without .json": Case(
        ["evaluate", "-d", "records.jsonl", "-o", "results/x"], 2, "must end in .json"
    ),
    "evaluate dataset with BOM": Case(
        ["evaluate", "-m", "nowhere/final", "-d", "bom.jsonl"],
        2,
        "neither a local directory nor in the hub cache",
    ),
    "baseline next to a folder of files": Case(
        ["baseline", "--method", "keyword", "-d", "records.jsonl", "-o", "gen.json"],
        2,
        "THCE will not delete it",
        ["gen/notes.txt"],
    ),
    "baseline folder holds the dataset": Case(
        ["baseline", "--method", "keyword", "-d", "gen/records.jsonl", "-o", "gen.json"],
        2,
        "holds the input",
        ["gen/records.jsonl"],
        setup=_write("gen/records.jsonl", json.dumps(RECORD) + "\n"),
    ),
    "baseline dataset not UTF-8": Case(
        ["baseline", "--method", "keyword", "-d", "latin1.jsonl"], 2, r"latin1.jsonl:1: not valid UTF-8"
    ),
    # -- compare
    "compare output = input": Case(
        ["compare", "no_rows.json", "no_rows.json", "-o", "no_rows.json"],
        2,
        "is also an input",
        ["no_rows.json"],
    ),
    "compare without per_example": Case(
        ["compare", "no_rows.json", "no_rows.json"], 2, "'per_example' is missing"
    ),
    "compare not UTF-8": Case(
        ["compare", "latin1.jsonl", "latin1.jsonl"], 2, r"latin1.jsonl:1: not valid UTF-8"
    ),
    # -- train (refused at the config boundary, before any model is loaded)
    "train batch size 0": Case(
        ["train", "-c", "stage.yaml", "--set", "training.per_device_train_batch_size=0"],
        2,
        "per_device_train_batch_size' must be at least 1",
    ),
    "train LoRA r 0": Case(
        ["train", "-c", "stage.yaml", "--set", "model.lora.r=0"],
        2,
        r"'model.lora.r' must be at least 1, got 0",
    ),
    "train negative epochs": Case(
        ["train", "-c", "stage.yaml", "--set", "training.num_train_epochs=-1"],
        2,
        "num_train_epochs' must be greater than 0",
    ),
    "train negative steps": Case(
        ["train", "-c", "stage.yaml", "--set", "training.max_steps=-5"], 2, "max_steps' must be -1"
    ),
    "train precision fp8": Case(
        ["train", "-c", "stage.yaml", "--set", "model.precision=fp8"], 2, "'model.precision' must be one of"
    ),
    # -- model
    "model info of an unknown hub id": Case(
        ["model", "info", "someone/some-model"], 2, r"hf download someone/some-model"
    ),
}


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _workspace(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, workspace, capsys):
    case = CASES[name]
    if case.setup:
        case.setup(workspace)
    before = {path: _digest(workspace / path) for path in case.kept}
    code = run(["-q", *case.args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.code, err
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("thce: error: "), err
    assert __import__("re").search(case.message, lines[-1]), lines[-1]
    for path, digest in before.items():
        assert _digest(workspace / path) == digest, f"{path} changed"


def test_failed_quality_gate_leaves_the_previous_dataset(workspace, capsys):
    assert run(["-q", "collect", "-c", "stage.yaml"]) == 0
    train = workspace / "dataset" / "train.parquet"
    before = _digest(train)
    code = run(
        [
            "-q",
            "collect",
            "-c",
            "stage.yaml",
            "--set",
            "data.sources.0.entries=8",
            "--set",
            "data.quality.max_text_chars=5",
        ]
    )
    out = capsys.readouterr()
    assert code == 1
    assert "FAILED" in out.out and "left as it was" in out.err
    assert _digest(train) == before
    assert sorted(p.name for p in workspace.iterdir() if p.name.startswith(".")) == []


def test_collect_replaces_its_own_output_and_cleans_a_killed_runs_temporary(workspace):
    assert run(["-q", "collect", "-c", "stage.yaml"]) == 0
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = workspace / f".dataset.thce-tmp-{dead.stdout.strip()}-0badf00d"
    stale.mkdir()
    (stale / "train.parquet").write_bytes(b"x" * 1000)
    assert run(["-q", "collect", "-c", "stage.yaml", "--set", "data.sources.0.entries=8"]) == 0
    assert not stale.exists()
    assert pq.read_table(workspace / "dataset" / "train.parquet").num_rows == 8


def test_quality_reads_codes_written_as_strings_and_numbers(workspace, capsys):
    rows = [
        {"id": "a", "text": "Essential hypertension, follow-up in clinic today.", "codes": ["I10"]},
        {"id": "b", "text": "Type 2 diabetes without complications, stable.", "codes": "E11.9; CPT: 99213"},
        {"id": "c", "text": "Cholera due to Vibrio cholerae 01, biovar cholerae.", "codes": [1]},
    ]
    (workspace / "plain.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = run(
        ["-q", "quality", "--input", "plain.jsonl", "--json", "--set", "data.quality.min_code_validity=0"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["codes_checked"] == 4 and report["metrics"]["code_validity"] == 0.75


def test_quality_honours_set_with_input_and_fails_a_huge_note(workspace, capsys):
    (workspace / "huge.jsonl").write_text(json.dumps({**RECORD, "text": "hypertension " * 200_000}) + "\n")
    assert run(["-q", "quality", "--input", "huge.jsonl"]) == 1
    assert "longest_text_chars" in capsys.readouterr().out
    assert (
        run(["-q", "quality", "--input", "huge.jsonl", "--set", "data.quality.max_text_chars=20000000"]) == 0
    )


def test_quality_of_a_clean_short_file_passes(workspace, capsys):
    rows = [
        {"id": str(i), "text": text, "codes": [{"system": "ICD10", "code": code}]}
        for i, (text, code) in enumerate([("HTN", "I10"), ("T2DM", "E11.9")])
    ]
    (workspace / "short.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(["-q", "quality", "--input", "short.jsonl"]) == 0
    assert "not measured" in capsys.readouterr().out


def test_bom_is_accepted_by_quality_and_preprocess(workspace):
    assert run(["-q", "quality", "--input", "bom.jsonl", "--set", "data.quality.min_english_rate=0"]) == 0
    assert run(["-q", "preprocess", "-c", "stage.yaml", "-i", "bom.jsonl", "-o", "out.jsonl"]) == 0
    assert json.loads((workspace / "out.jsonl").read_text())["id"] == "r1"


def test_baseline_replaces_its_own_results_folder(workspace):
    assert run(["-q", "baseline", "--method", "keyword", "-d", "records.jsonl", "-o", "res/kw.json"]) == 0
    first = (workspace / "res" / "kw" / "predictions.jsonl").read_bytes()
    assert run(["-q", "baseline", "--method", "keyword", "-d", "records.jsonl", "-o", "res/kw.json"]) == 0
    assert (workspace / "res" / "kw" / "predictions.jsonl").read_bytes() == first
    assert sorted(p.name for p in (workspace / "res").iterdir()) == ["kw", "kw.json"]


def test_dotenv_in_the_working_directory_is_loaded(workspace, monkeypatch):
    monkeypatch.delenv("THCE_DOTENV_PROBE", raising=False)
    (workspace / ".env").write_text("THCE_DOTENV_PROBE=from-cwd\n")
    assert run(["--version"]) == 0
    assert os.environ.pop("THCE_DOTENV_PROBE") == "from-cwd"


def test_permission_error_names_the_users_path(workspace, monkeypatch, capsys):
    import builtins

    real_open = builtins.open

    def deny(path, *args, **kwargs):
        if ".thce-tmp-" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    assert run(["-q", "generate", "-c", "stage.yaml", "-o", "out/gen.jsonl"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == "thce: error: cannot write out/gen.jsonl: Permission denied"


def _thce_process(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "thce.cli", "-q", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )


def _interruptible() -> None:
    """Let the child take Ctrl-C as a terminal's foreground job would: a shell's background jobs inherit SIGINT
    ignored, and some CI runners start jobs with it blocked (the child then never sees it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_prints_its_message_and_exits_130(workspace):
    (workspace / "all.yaml").write_text(
        yaml.safe_dump(_stage_config(sources=[{"kind": "synthetic", "generator": "icd10cm"}]))
    )
    process = _thce_process("generate", "-c", "all.yaml", "-n", "10000000", "-o", "big.jsonl", cwd=workspace)
    deadline = time.time() + 60
    while not any(tmp.stat().st_size for tmp in workspace.glob(".big.jsonl.thce-tmp-*")):  # records flow
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    # 130, or (4 runs in 70 here, after the message) killed by SIGINT: a shell reports 130 for both
    assert process.returncode in (130, -signal.SIGINT)
    assert err.strip().splitlines()[-1] == "thce: interrupted"
    assert not list(workspace.glob(".big.jsonl.thce-tmp-*")) and not (workspace / "big.jsonl").exists()


@pytest.mark.slow
def test_concurrent_writers_to_one_output_never_mix(workspace):
    (workspace / "all.yaml").write_text(
        yaml.safe_dump(_stage_config(sources=[{"kind": "synthetic", "generator": "icd10cm"}]))
    )
    processes = [
        _thce_process("generate", "-c", "all.yaml", "-n", str(n), "-o", "same.jsonl", cwd=workspace)
        for n in (300, 301)
    ]
    for process in processes:
        process.communicate(timeout=300)
        assert process.returncode == 0
    lines = (workspace / "same.jsonl").read_text().splitlines()
    assert len(lines) in (300, 301)
    assert all(json.loads(line)["text"] for line in lines)


@pytest.fixture
def tiny_checkpoint(tiny_llama, smollm2_tokenizer, tmp_path):
    from thce.utils.medical_chat_templates import prepare_model, prepare_tokenizer

    prepare_tokenizer(smollm2_tokenizer, "stage_1")
    prepare_model(tiny_llama, smollm2_tokenizer)
    path = tmp_path / "model"
    tiny_llama.save_pretrained(path)
    smollm2_tokenizer.save_pretrained(path)
    return path


def test_a_note_longer_than_the_context_is_refused(workspace, tiny_checkpoint, capsys):
    code = run(["-q", "predict", "-m", str(tiny_checkpoint), "hypertension " * 1000])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert "text 1 is" in line and "reads at most 512 tokens" in line


def test_corrupt_safetensors_is_one_line(workspace, tiny_checkpoint, capsys):
    weights = tiny_checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    code = run(["-q", "predict", "-m", str(tiny_checkpoint), "hypertension"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "is not a loadable causal language model" in err.strip().splitlines()[-1]
