"""utils/io.py: one-line errors from the readers, and writers that never lose data."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thce.utils import io
from thce.utils.errors import UserError


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{"a": \n', r"x.jsonl:2: malformed JSON"),
        (b'{"a": 1}\n[1, 2]\n', r"x.jsonl:2: expected a JSON object, got list"),
        (b'{"a": 1}\n{"a": "caf\xe9"}\n', r"x.jsonl:2: not valid UTF-8 \(byte 0xe9"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        io.read_jsonl(path)


def test_bom_is_accepted_by_every_text_reader(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "x"}\n\n{"text": "y"}\n')
    (tmp_path / "a.json").write_bytes(b'\xef\xbb\xbf{"k": [1]}')
    (tmp_path / "a.yaml").write_bytes(b"\xef\xbb\xbfstage: 1\n")
    assert [n for n, _ in io.iter_jsonl(tmp_path / "a.jsonl")] == [1, 3]
    assert io.read_json(tmp_path / "a.json") == {"k": [1]}
    assert io.read_yaml(tmp_path / "a.yaml") == {"stage": 1}


def test_missing_file_and_directory_are_named_as_such(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        io.read_text(tmp_path / "nope.json", "dataset")
    with pytest.raises(UserError, match=r"dataset .* is a directory, not a file"):
        io.read_jsonl(tmp_path, "dataset")


def test_yaml_alias_bomb_under_a_nested_key_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    bomb = "data:\n  options:\n" + "".join(f"    {line}\n" for line in lines)
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    with pytest.raises(UserError, match="alias bomb"):
        io.read_yaml(path)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage: 1\ndata: [\n")
    with pytest.raises(UserError, match=r"c.yaml:\d+: not valid YAML"):
        io.read_yaml(path)


def test_corrupt_parquet_is_one_error(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": ["a", "b"]}), good)
    assert list(io.iter_parquet_rows(good)) == [{"text": "a"}, {"text": "b"}]
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[:-20] + b"\0" * 20)
    with pytest.raises(UserError, match="bad.parquet: not a readable parquet file"):
        list(io.iter_parquet_rows(bad))


def test_check_output_refuses_inputs_directories_and_paths_under_files(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n")
    with pytest.raises(UserError, match="is also an input"):
        io.check_output(source, [source])
    with pytest.raises(UserError, match="holds the input"):
        io.check_output(tmp_path, [source], directory=True)
    with pytest.raises(UserError, match="is a directory"):
        io.check_output(tmp_path, [])
    with pytest.raises(UserError, match="is a file, not a directory"):
        io.check_output(source / "out.json", [])
    assert io.check_output(tmp_path / "new.json", [source]) == tmp_path / "new.json"


def test_atomic_file_leaves_the_previous_file_on_error(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), io.atomic_file(target) as handle:
        handle.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    assert io.write_jsonl(target, [{"a": 1}, {"b": 2}]) == 2
    assert target.read_text() == '{"a": 1}\n{"b": 2}\n'


def test_temporaries_are_unique_and_stale_ones_of_dead_processes_are_cleaned(tmp_path):
    target = tmp_path / "out.json"
    assert io.temporary_path(target) != io.temporary_path(target)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".out.json{io.TEMP_MARK}{dead.stdout.strip()}-abcd1234"
    stale.mkdir()
    (stale / "big.bin").write_bytes(b"x" * 100)
    alive = tmp_path / f".out.json{io.TEMP_MARK}{os.getppid()}-abcd1234"
    alive.write_text("in use")
    mine = tmp_path / ".notes.tmp"
    mine.write_text("not ours")
    io.write_json(target, {"k": 1})
    assert not stale.exists()
    assert alive.exists() and mine.exists()


def test_staged_directory_refuses_a_directory_it_did_not_write(tmp_path):
    target = tmp_path / "results"
    target.mkdir()
    (target / "thesis.docx").write_bytes(b"precious")
    with pytest.raises(UserError, match="THCE will not delete it"), io.staged_directory(target, "results"):
        pass
    assert (target / "thesis.docx").read_bytes() == b"precious"


def test_staged_directory_swaps_its_own_output_and_keeps_it_when_the_gate_fails(tmp_path):
    target = tmp_path / "dataset"
    with io.staged_directory(target, "dataset") as staging:
        (staging / "train.txt").write_text("v1")
    assert (target / "train.txt").read_text() == "v1"
    assert json.loads((target / io.MANIFEST).read_text())["kind"] == "dataset"
    with pytest.raises(UserError, match="gate failed"), io.staged_directory(target, "dataset") as staging:
        (staging / "train.txt").write_text("v2")
        raise UserError("gate failed")
    assert (target / "train.txt").read_text() == "v1"
    with io.staged_directory(target, "dataset") as staging:
        (staging / "train.txt").write_text("v2")
    assert (target / "train.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]
    with (
        pytest.raises(UserError, match="not written by THCE as a results"),
        io.staged_directory(target, "results"),
    ):
        pass


def test_remove_directory_deletes_only_what_thce_wrote(tmp_path):
    ours = tmp_path / "outputs"
    ours.mkdir()
    io.write_manifest(ours, "training")
    (ours / "checkpoint-1").mkdir()
    io.remove_directory(ours, "training")
    assert not ours.exists()
    theirs = tmp_path / "home"
    theirs.mkdir()
    (theirs / "photos.zip").write_bytes(b"x")
    with pytest.raises(UserError, match="THCE will not delete it"):
        io.remove_directory(theirs, "training")
    assert (theirs / "photos.zip").read_bytes() == b"x"
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "thce_config.yaml").write_text("stage: 1\n")
    assert io.is_ours(legacy, "training") and not io.is_ours(legacy, "results")
