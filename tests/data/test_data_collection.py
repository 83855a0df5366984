"""Collection: artefact layout, metadata, held-out codes, byte-identical parquet, atomic replacement and
clear errors on bad input."""

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from thce.data.data_collection import collect
from thce.data.splits import is_heldout_code
from thce.utils.config import load_config
from thce.utils.data_quality import parse_answer_codes
from thce.utils.errors import UserError

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"


def _config(tmp_path, sources, stage=1, name="out", **data):
    raw = {
        "stage": stage,
        "seed": 42,
        "data": {
            "sources": sources,
            "preprocess": {"phi_engine": "rules"},
            "split": {"heldout_code_fraction": 0.1, "test_seen_fraction": 0.05, "validation_fraction": 0.05},
            "output_dir": str(tmp_path / name),
            **data,
        },
        "chat": {"template": f"stage_{stage}"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def _synthetic(generator="icd10cm", entries=300):
    return {"kind": "synthetic", "generator": generator, "entries": entries, "options": {"top_n": 60}}


def test_collect_writes_the_artefact_layout_with_metadata(tmp_path):
    config = _config(tmp_path, [_synthetic(), {"kind": "jsonl", "path": str(SAMPLES / "stage_1.jsonl")}])
    result = collect(config, progress=False)
    out = result.output_dir
    for name in (
        "train.parquet",
        "validation.parquet",
        "test_seen.jsonl",
        "test_unseen.jsonl",
        "dataset_metadata.json",
        "README.md",
        "thce_config.yaml",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "dataset_metadata.json").read_text())
    synthetic, samples = meta["sources"]
    assert (synthetic["requested"], synthetic["read"]) == (300, 300)
    assert samples["requested"] is None and samples["read"] == 10
    train = pq.read_table(out / "train.parquet").to_pylist()
    assert meta["splits"]["train"] == len(train)
    assert sum(meta["splits"].values()) == synthetic["kept"] + samples["kept"]
    assert meta["code_systems"]["ICD10"] > 0
    row = train[0]
    assert set(row) == {"prompt", "completion", "id", "source"}
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["completion"][0]["role"] == "assistant" and "<think>" not in row["completion"][0]["content"]
    # Held-out codes never reach train; test_unseen holds only records that have one.
    train_codes = {c["code"] for r in train for c in parse_answer_codes(r["completion"][0]["content"])}
    assert not any(is_heldout_code(c, 42, 0.1) for c in train_codes)
    unseen = [json.loads(line) for line in (out / "test_unseen.jsonl").open()]
    assert unseen and all(any(is_heldout_code(c["code"], 42, 0.1) for c in r["codes"]) for r in unseen)
    seen = [json.loads(line) for line in (out / "test_seen.jsonl").open()]
    assert seen and not {r["id"] for r in seen} & {r["id"] for r in train}
    assert "| train |" in (out / "README.md").read_text()


def test_same_seed_gives_byte_identical_parquet(tmp_path):
    digests = []
    for name in ("a", "b"):
        config = _config(tmp_path, [_synthetic("icd10cm_preference", 200)], stage=3, name=name)
        out = collect(config, progress=False).output_dir
        digests.append(hashlib.sha256((out / "train.parquet").read_bytes()).hexdigest())
        row = pq.read_table(out / "train.parquet").to_pylist()[0]
        assert set(row) == {"prompt", "chosen", "rejected", "id", "source", "rejection_kind"}
    assert digests[0] == digests[1]


def test_stage_2_rows_carry_reasoning(tmp_path):
    config = _config(
        tmp_path,
        [_synthetic("icd10cm_reasoning", 60), {"kind": "jsonl", "path": str(SAMPLES / "stage_2.jsonl")}],
        stage=2,
    )
    out = collect(config, progress=False).output_dir
    rows = pq.read_table(out / "train.parquet").to_pylist()
    assert all(r["completion"][0]["content"].startswith("<think>") for r in rows)


def test_failed_run_leaves_previous_output_intact(tmp_path):
    good = _config(tmp_path, [_synthetic(entries=50)])
    out = collect(good, progress=False).output_dir
    before = (out / "train.parquet").read_bytes()
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "Assessment: essential hypertension.", "codes": ["I10"]}\n{"text": oops}\n')
    bad = _config(tmp_path, [_synthetic(entries=50), {"kind": "jsonl", "path": str(broken)}])
    with pytest.raises(UserError, match=r"broken.jsonl:2: malformed JSON"):
        collect(bad, progress=False)
    assert (out / "train.parquet").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def _write(tmp_path, name, content, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(content.encode(encoding) if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "kind", "options", "message"),
    [
        (
            "missing.jsonl",
            '{"note": "Assessment: essential hypertension.", "codes": ["I10"]}\n',
            "jsonl",
            {},
            r"missing.jsonl:1: record has no 'text' field",
        ),
        (
            "nocodes.csv",
            "text,dx\nAssessment: essential hypertension.,I10\n",
            "csv",
            {},
            r"nocodes.csv:2: record has no 'codes' field",
        ),
        (
            "latin.csv",
            "text,codes\nCaf\xe9 worker with essential hypertension.,I10\n".encode("latin-1"),
            "csv",
            {},
            r"latin.csv:2: not valid utf-8.*encoding: cp1252",
        ),
        (
            "garbage.jsonl",
            '{"text": "Assessment: essential hypertension.", "codes": ["???"]}\n',
            "jsonl",
            {},
            r"no usable records.*garbage.jsonl:1 '\?\?\?'",
        ),
        ("empty.jsonl", "", "jsonl", {}, r"empty.jsonl: source is empty"),
        (
            "typed.jsonl",
            '{"text": "Assessment: essential hypertension.", "codes": 12.5}\n',
            "jsonl",
            {},
            r"typed.jsonl:1: field 'codes'",
        ),
    ],
)
def test_bad_input_names_file_and_line(tmp_path, name, content, kind, options, message):
    path = _write(tmp_path, name, content)
    config = _config(tmp_path, [{"kind": kind, "path": str(path), "options": options}])
    with pytest.raises(UserError, match=message):
        collect(config, progress=False)


def test_missing_path_and_unknown_option_fail_before_any_work(tmp_path):
    with pytest.raises(UserError, match="path does not exist"):
        collect(_config(tmp_path, [{"kind": "jsonl", "path": str(tmp_path / "nope.jsonl")}]), progress=False)
    path = _write(tmp_path, "ok.jsonl", '{"text": "Assessment: essential hypertension.", "codes": ["I10"]}\n')
    with pytest.raises(UserError, match="unknown option.*'colour'"):
        collect(
            _config(tmp_path, [{"kind": "jsonl", "path": str(path), "options": {"colour": 1}}]),
            progress=False,
        )


def test_csv_with_bom_latin1_option_rename_and_drop(tmp_path):
    bom = _write(
        tmp_path,
        "bom.csv",
        "\ufeffnote,dx,secret\nAssessment: essential hypertension.,I10,x\nT2DM without complications noted today.,E11.9;E78.5,y\n",
    )
    latin = _write(
        tmp_path,
        "latin.csv",
        "text,codes\nCaf\xe9 worker with essential hypertension.,I10\n".encode("cp1252"),
    )
    sources = [
        {"kind": "csv", "path": str(bom), "rename": {"note": "text", "dx": "codes"}, "drop": ["secret"]},
        {"kind": "csv", "path": str(latin), "options": {"encoding": "cp1252"}},
    ]
    config = _config(
        tmp_path,
        sources,
        split={"heldout_code_fraction": 0.0, "test_seen_fraction": 0.0, "validation_fraction": 0.0},
    )
    out = collect(config, progress=False).output_dir
    rows = pq.read_table(out / "train.parquet").to_pylist()
    answers = sorted(r["completion"][0]["content"] for r in rows)
    assert answers == ["ICD10: E11.9\nICD10: E78.5", "ICD10: I10", "ICD10: I10"]
    assert any("Café" in r["prompt"][1]["content"] for r in rows)


def test_mimic_notes_join_diagnoses_through_the_gem(tmp_path):
    notes = _write(
        tmp_path,
        "NOTEEVENTS.csv",
        'ROW_ID,HADM_ID,CATEGORY,TEXT\n1,100,Discharge summary,"Discharge diagnosis: essential hypertension and type 2 diabetes."\n2,100,Nursing,"Vitals stable overnight."\n3,200,Discharge summary,"Patient discharged after observation."\n',
    )
    diagnoses = _write(
        tmp_path,
        "DIAGNOSES_ICD.csv",
        "ROW_ID,HADM_ID,SEQ_NUM,ICD9_CODE\n1,100,1,4019\n2,100,2,25000\n3,200,1,9999\n",
    )
    gem = _write(tmp_path, "2018_I9gem.txt", "4019  I10  00000\n25000 E119 10000\n9999  NoDx 11000\n")
    source = {
        "kind": "mimic",
        "path": str(notes),
        "options": {"diagnoses": str(diagnoses), "icd9_map": str(gem)},
    }
    config = _config(
        tmp_path,
        [source],
        split={"heldout_code_fraction": 0.0, "test_seen_fraction": 0.0, "validation_fraction": 0.0},
    )
    out = collect(config, progress=False).output_dir
    [row] = pq.read_table(out / "train.parquet").to_pylist()
    assert row["completion"][0]["content"] == "ICD10: I10\nICD10: E11.9"


def test_mtsamples_and_parquet_sources(tmp_path):
    import pyarrow as pa

    mts = _write(
        tmp_path,
        "mtsamples.csv",
        'description,medical_specialty,transcription,codes\nx,Cardiology,"HISTORY: Patient with essential hypertension, on lisinopril.",I10\ny,Cardiology,,I10\n',
    )
    table = pa.table({"text": ["Assessment: acute upper respiratory infection."], "codes": [["J06.9"]]})
    parquet = tmp_path / "in.parquet"
    pq.write_table(table, parquet)
    sources = [{"kind": "mtsamples", "path": str(mts)}, {"kind": "parquet", "path": str(parquet)}]
    config = _config(
        tmp_path,
        sources,
        split={"heldout_code_fraction": 0.0, "test_seen_fraction": 0.0, "validation_fraction": 0.0},
    )
    meta = collect(config, progress=False).metadata
    assert [s["kept"] for s in meta["sources"]] == [1, 1]
