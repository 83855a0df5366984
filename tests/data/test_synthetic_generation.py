"""Synthetic generation: determinism, distinct texts, valid codes, faithful traces, hard-negative kinds,
option validation and the LLM backend against a local HTTP server."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from thce.data.synthetic_generation import (
    COMMON_CODES,
    REJECTION_KINDS,
    code_info,
    generate_records,
    negated_phrases,
    parse_options,
    scope_codes,
    write_records,
)
from thce.retrieval import NEGATION_CUES
from thce.utils.code_validator import describe_code, validate_code
from thce.utils.config import SourceConfig
from thce.utils.errors import UserError


def _records(generator, n=150, seed=42, **options):
    return list(generate_records(generator, n, seed, options or None))


def test_same_seed_same_records_other_seed_differs():
    first = _records("icd10cm", 120)
    assert first == _records("icd10cm", 120)
    assert [r["text"] for r in first] != [r["text"] for r in _records("icd10cm", 120, seed=7)]


@pytest.mark.parametrize("generator", ["icd10cm", "icd10cm_reasoning"])
def test_records_are_canonical_distinct_and_billable(generator):
    records = _records(generator, 200)
    assert len(records) == 200
    assert len({r["text"] for r in records}) == 200
    assert any(len(r["codes"]) > 1 for r in records), "multi-code examples expected"
    for record in records:
        assert set(record) == {"id", "text", "codes", "reasoning", "source", "meta"}
        assert record["meta"]["phi_free"] is True
        for ref in record["codes"]:
            assert ref["system"] == "ICD10"
            assert validate_code(ref["code"], "ICD10", require_billable=True), ref
    assert all(r["reasoning"] is None for r in records) == (generator == "icd10cm")


def test_reasoning_walks_the_true_hierarchy():
    for record in _records("icd10cm_reasoning", 200):
        for code in (c["code"] for c in record["codes"]):
            details = describe_code(code, "ICD10")
            chapter = next(a for a in details.ancestors if a.level == "chapter")
            assert f"Category {code[:3]}:" in record["reasoning"], (code, record["reasoning"])
            assert f"Chapter {chapter.code}:" in record["reasoning"]
            assert f"Billable code: {code}." in record["reasoning"]


def test_reasoning_cites_excludes1_and_specificity_from_the_tabular_list():
    [record] = _records("icd10cm_reasoning", 1, codes=["E11.9"], multi_code_rate=0)
    assert "Block E08-E13: Diabetes mellitus" in record["reasoning"]
    assert "Excludes1 at E11" in record["reasoning"]
    assert "complication: without complications" in record["reasoning"]
    [fracture] = _records("icd10cm_reasoning", 1, codes=["S72.001A"], multi_code_rate=0)
    assert "initial encounter" in fracture["reasoning"] and "Subcategory S72.001:" in fracture["reasoning"]


def test_preference_pairs_cover_every_rejection_kind_correctly():
    records = _records("icd10cm_preference", 400)
    kinds = {r["rejection_kind"] for r in records}
    assert kinds == set(REJECTION_KINDS)
    for record in records:
        chosen = [c["code"] for c in record["chosen"]["codes"]]
        rejected = [c["code"] for c in record["rejected"]["codes"]]
        assert chosen != rejected
        assert all(validate_code(c, "ICD10", require_billable=True) for c in chosen)
        kind = record["rejection_kind"]
        if kind == "sibling":
            assert rejected[0] in code_info(chosen[0]).siblings
        elif kind == "parent":
            assert chosen[0].replace(".", "").startswith(rejected[0].replace(".", ""))
            assert validate_code(rejected[0], "ICD10") and not validate_code(
                rejected[0], "ICD10", require_billable=True
            )
        elif kind == "invalid":
            assert not validate_code(rejected[0], "ICD10")
        elif kind == "wrong_chapter":
            assert code_info(rejected[0]).chapter != code_info(chosen[0]).chapter
        elif kind == "missing_secondary":
            assert rejected == chosen[:-1] and len(chosen) > 1


def test_scope_options():
    assert (
        scope_codes(parse_options({"top_n": 10}))
        == [c for c in COMMON_CODES if validate_code(c, "ICD10", True)][:10]
    )
    chapter_codes = scope_codes(parse_options({"chapters": [9]}))
    assert chapter_codes and all(c.startswith("I") for c in chapter_codes)
    assert scope_codes(parse_options({"codes": ["e119", "I10"]})) == ["E11.9", "I10"]
    records = _records("icd10cm", 50, top_n=5, multi_code_rate=0)
    assert {r["codes"][0]["code"] for r in records} <= set(COMMON_CODES[:6])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"topn": 5}, "'topn'"),
        ({"top_n": 0}, "top_n"),
        ({"codes": ["E11"]}, "not a billable"),
        ({"chapters": ["99"]}, "chapters"),
        ({"rejection_kinds": ["cousin"]}, "cousin"),
        ({"multi_code_rate": 2}, "multi_code_rate"),
        ({"negation_rate": -0.1}, "negation_rate"),
    ],
)
def test_bad_options_are_user_errors_naming_them(options, message):
    with pytest.raises(UserError, match=message):
        scope_codes(parse_options(options))


def test_negated_phrases_write_without_as_a_note_would():
    phrases = negated_phrases(code_info("E11.9").description)
    assert "type 2 diabetes mellitus, no complications" in phrases
    assert "type 2 diabetes mellitus, negative for complications" in phrases
    assert all("without" not in p for p in phrases)
    assert negated_phrases(code_info("I10").description) == []  # nothing is stated absent


def test_negation_rate_starts_that_share_of_rows_with_a_negated_without_code():
    records = _records("icd10cm", 200, negation_rate=0.5, multi_code_rate=0)
    negated = [r for r in records if r["meta"].get("negated")]
    assert 70 <= len(negated) <= 130
    for record in negated:
        code = record["codes"][0]["code"]
        absent = re.search(r"without (?:an? )?(\S+)", describe_code(code, "ICD10").description).group(1)
        assert any(f"{cue} {absent.lower()}" in record["text"].lower() for cue in NEGATION_CUES), record[
            "text"
        ]
    # Spread over categories: two thirds of the "without" codes are injuries; the rows are not.
    assert sum(r["codes"][0]["code"].startswith("S") for r in negated) < len(negated) / 3
    # Rate 0 (the default) leaves the generator's output as it was.
    assert _records("icd10cm", 30) == _records("icd10cm", 30, negation_rate=0.0)


def test_unknown_generator_is_a_user_error():
    with pytest.raises(UserError, match="unknown synthetic generator"):
        _records("icd9", 1)


class _FakeLlm(BaseHTTPRequestHandler):
    calls = 0
    fail_first = True
    answer_code = "E11.9"

    def do_POST(self):
        type(self).calls += 1
        length = int(self.headers["content-length"])
        body = json.loads(self.rfile.read(length))
        if type(self).fail_first and type(self).calls == 1:
            self.send_response(500)
            self.end_headers()
            return
        content = json.dumps(
            {
                "text": "Patient with type 2 diabetes, no complications noted.",
                "codes": [type(self).answer_code],
            }
        )
        if self.path.endswith("/messages"):
            payload = {
                "content": [{"type": "text", "text": content}],
                "usage": {"input_tokens": 100, "output_tokens": 50},
            }
        else:
            payload = {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
            }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def llm_server():
    _FakeLlm.calls, _FakeLlm.fail_first, _FakeLlm.answer_code = 0, True, "E11.9"
    server = HTTPServer(("127.0.0.1", 0), _FakeLlm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_llm_backend_retries_validates_and_tracks_cost(llm_server, monkeypatch, provider):
    from thce.data.synthetic_generation import LlmGenerator

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    base = f"{llm_server}/v1" if provider == "openai" else llm_server
    options = {
        "provider": provider,
        "model": "local-model",
        "base_url": base,
        "api_key_env": "TEST_LLM_KEY",
        "codes": ["E11.9"],
        "price_per_1k_input": 1.0,
        "price_per_1k_output": 2.0,
        "max_retries": 2,
    }
    generator = LlmGenerator(options)
    records = list(generator.records(2))
    assert [r["codes"] for r in records] == [[{"system": "ICD10", "code": "E11.9"}]] * 2
    assert _FakeLlm.calls == 3  # one failure retried
    assert generator.cost_usd == pytest.approx(2 * (0.1 + 0.1))


def test_llm_backend_rejects_wrong_codes_and_stops_at_budget(llm_server, monkeypatch):
    from thce.data.synthetic_generation import LlmGenerator

    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    _FakeLlm.fail_first, _FakeLlm.answer_code = False, "E11.99"  # a hallucinated code
    options = {
        "model": "m",
        "base_url": f"{llm_server}/v1",
        "api_key_env": "TEST_LLM_KEY",
        "codes": ["E11.9"],
    }
    generator = LlmGenerator({**options, "price_per_1k_input": 10.0, "max_cost_usd": 2.5})
    assert list(generator.records(5)) == []
    assert generator.rejected_responses == 3 and generator.cost_usd >= 2.5


def test_llm_backend_needs_a_key(monkeypatch):
    from thce.data.synthetic_generation import LlmGenerator

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        LlmGenerator({"model": "gpt-4o-mini"})


def test_write_records_writes_every_source_in_order_and_all_or_nothing(tmp_path):
    target = tmp_path / "synthetic.jsonl"
    plain = SourceConfig(kind="synthetic", generator="icd10cm", entries=3, options={"top_n": 20})
    traced = SourceConfig(kind="synthetic", generator="icd10cm_reasoning", entries=2, options={"top_n": 20})
    assert write_records(target, [plain, traced], seed=1, progress=False) == 5
    written = target.read_text(encoding="utf-8")
    records = [json.loads(line) for line in written.splitlines()]
    assert [r["reasoning"] is None for r in records] == [True, True, True, False, False]
    assert records[:3] == list(generate_records("icd10cm", 3, 1, {"top_n": 20}))
    assert write_records(target, [plain], entries=4, progress=False) == 4

    # The second source fails after the first one's records went out: the file is as it was.
    before = target.read_text(encoding="utf-8")
    broken = SourceConfig(kind="synthetic", generator="icd10cm", entries=2, options={"no_such_option": 1})
    with pytest.raises(UserError, match="no_such_option"):
        write_records(target, [plain, broken], progress=False)
    assert target.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic.jsonl"]
    with pytest.raises(UserError, match="has no 'entries'"):
        write_records(target, [SourceConfig(kind="synthetic", generator="icd10cm")], progress=False)
