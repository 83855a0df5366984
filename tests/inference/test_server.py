"""`thce serve` over real HTTP: a uvicorn process on a free loopback port serving a tiny random model,
spoken to with httpx. Limits that need precise timing (429, 504) use an in-process uvicorn with a slow
fake predictor instead."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from thce.inference.server import ServeSettings, create_app, is_loopback
from thce.utils.code_validator import validate_code
from thce.utils.errors import UserError

TEXTS = [
    "Patient has essential hypertension.",
    "Type 2 diabetes mellitus without complications.",
    "Closed fracture of the right femoral neck, initial encounter.",
    "Asthma exacerbation.",
    "Low back pain.",
]
API_KEY = "test-secret-1234"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random 2-layer Llama with the real SmolLM2 tokenizer, saved as a checkpoint."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from thce.utils.models import EMBEDDED_MODEL_ID, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(EMBEDDED_MODEL_ID).path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("tiny-model")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@contextmanager
def server_process(model: Path, *options: str, api_key: str | None = None):
    """`thce serve` in a child process; yields (process, base URL) once /health answers."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    env.pop("THCE_API_KEY", None)
    if api_key:
        env["THCE_API_KEY"] = api_key
    command = [sys.executable, "-m", "thce.cli", "serve", "--model", str(model), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--precision", "fp32", *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # generous: a loaded CI machine, a retrieval index to build
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start in 600 s"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def server(tiny_model):
    with server_process(tiny_model, "--max-wait-ms", "50") as (process, url):
        yield url, process


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server[0], timeout=60) as client:
        yield client


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """A sample's value from /metrics (0 when it has not appeared yet)."""
    text = client.get("/metrics").text
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow  # starts a server process
def test_code_one_note_gives_the_predict_json(client, tiny_model):
    from thce.inference.predictor import Predictor

    response = client.post("/v1/code", json={"text": TEXTS[0]})
    assert response.status_code == 200
    result = response.json()
    assert set(result) >= {"code", "confidence", "codes", "reasoning", "candidates"} and "raw" not in result
    assert result["codes"] and all(
        validate_code(c["code"], "ICD10", require_billable=True) for c in result["codes"]
    )
    assert all(set(c) >= {"system", "code", "description", "valid", "confidence"} for c in result["codes"])
    # the same answer as the Predictor in this process (what `thce predict` prints)
    [expected] = Predictor(tiny_model, precision="fp32").predict([TEXTS[0]])
    assert [c["code"] for c in result["codes"]] == [c["code"] for c in expected["codes"]]
    assert result["code"] == expected["code"]

    limited = client.post("/v1/code", json={"text": TEXTS[0], "top_k": 1}).json()
    assert len(limited["codes"]) == 1 and len(limited["candidates"]) <= 1


@pytest.mark.slow  # starts a server process
def test_batch_endpoint_answers_in_input_order(client):
    response = client.post("/v1/code:batch", json={"texts": TEXTS})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == len(TEXTS)
    singles = [client.post("/v1/code", json={"text": text}).json() for text in TEXTS]
    assert [r["code"] for r in results] == [s["code"] for s in singles]


@pytest.mark.slow  # starts a server process
def test_concurrent_requests_share_generate_calls(client, server):
    batches_before = metric(client, "thce_batch_size_count")
    texts_before = metric(client, "thce_batch_size_sum")
    with httpx.Client(base_url=server[0], timeout=60) as other, ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda i: other.post("/v1/code", json={"text": TEXTS[i % 5]}), range(16)))
    assert all(r.status_code == 200 for r in responses)
    assert metric(client, "thce_batch_size_sum") - texts_before == 16
    assert metric(client, "thce_batch_size_count") - batches_before < 16  # some requests shared a call


BAD_REQUESTS = [
    # (path, body (bytes or JSON), status, kind, message fragment)
    ("/v1/code", {"text": ""}, 422, "invalid_request", "text: must not be empty"),
    ("/v1/code", {"text": "   \n"}, 422, "invalid_request", "text: must not be empty"),
    (
        "/v1/code",
        {"text": "x" * 1_000_000},
        413,
        "too_large",
        "text has 1000000 characters; the limit is 20000",
    ),
    ("/v1/code", {"text": "x" * 3_000_000}, 413, "too_large", "request body over the limit"),
    ("/v1/code", b'{"text": "unterminated', 400, "invalid_json", "not valid JSON"),
    ("/v1/code", b"", 422, "invalid_request", "body: is required"),
    ("/v1/code", {"text": 42}, 422, "invalid_request", "text: Input should be a valid string"),
    ("/v1/code", {"text": ["a"]}, 422, "invalid_request", "text: Input should be a valid string"),
    (
        "/v1/code",
        {"text": "ok", "top_k": "3"},
        422,
        "invalid_request",
        "top_k: Input should be a valid integer",
    ),
    ("/v1/code", {"text": "ok", "top_k": 0}, 422, "invalid_request", "top_k: Input should be greater than"),
    ("/v1/code", {"text": "ok", "patient": "x"}, 422, "invalid_request", "patient: is not a known field"),
    ("/v1/code", {}, 422, "invalid_request", "text: is required"),
    ("/v1/code", [1, 2], 422, "invalid_request", "body: must be a JSON object"),
    ("/v1/code:batch", {"texts": []}, 422, "invalid_request", "texts: List should have at least 1 item"),
    ("/v1/code:batch", {"texts": ["a", ""]}, 422, "invalid_request", "texts: item 1 must not be empty"),
    ("/v1/code:batch", {"texts": "a"}, 422, "invalid_request", "texts: Input should be a valid list"),
    ("/v1/code:batch", {"texts": ["a"] * 65}, 413, "too_large", "65 texts; the limit is 64"),
    ("/v1/code:batch", {"texts": ["a", "x" * 30_000]}, 413, "too_large", "texts[1] has 30000 characters"),
    (
        "/v1/code:batch",
        {"text": "a"},
        422,
        "invalid_request",
        "texts: is required; text: is not a known field",
    ),
    ("/v1/nothing", {"text": "a"}, 404, "not_found", "Not Found"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "body", "status", "kind", "fragment"), BAD_REQUESTS)
def test_bad_request_is_one_clear_line_and_the_server_keeps_serving(
    client, path, body, status, kind, fragment
):
    errors_before = metric(client, "thce_errors_total", kind=kind)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert "\n" not in response.text and response.json() == {"error": response.json()["error"], "kind": kind}
    assert fragment in response.json()["error"]
    assert "xxxxxxxx" not in response.text  # the note is never echoed back
    assert metric(client, "thce_errors_total", kind=kind) == errors_before + 1
    assert client.post("/v1/code", json={"text": TEXTS[1]}).status_code == 200


@pytest.mark.slow  # starts a server process
def test_health_and_metrics(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_loaded"] is True
    assert health["code_sets"]["ICD10"].startswith("ICD-10-CM FY2026")
    before = metric(client, "thce_requests_total", endpoint="/v1/code", status="200")
    latency_before = metric(client, "thce_request_duration_seconds_count", endpoint="/v1/code")
    texts_before = metric(client, "thce_texts_total")
    result = client.post("/v1/code", json={"text": TEXTS[2]}).json()
    assert metric(client, "thce_requests_total", endpoint="/v1/code", status="200") == before + 1
    assert metric(client, "thce_request_duration_seconds_count", endpoint="/v1/code") == latency_before + 1
    assert metric(client, "thce_texts_total") == texts_before + 1
    text = client.get("/metrics").text
    chapters = re.findall(r'^thce_codes_emitted_total\{chapter="(ICD10:\d+)"\} (\S+)$', text, re.MULTILINE)
    assert chapters and sum(float(n) for _, n in chapters) >= len(result["codes"])
    assert client.get("/docs").status_code == 200
    assert "/v1/code:batch" in client.get("/openapi.json").json()["paths"]


@pytest.mark.slow  # starts a server process
def test_bearer_auth_then_graceful_shutdown(tiny_model):
    # Unconstrained, a random model writes until max_new_tokens: slow enough to keep a request in flight.
    options = (
        "--no-constrain",
        "--max-new-tokens",
        "48",
        "--max-batch-size",
        "2",
        "--request-timeout",
        "600",
    )
    with server_process(tiny_model, *options, api_key=API_KEY) as (process, url):
        body = {"text": TEXTS[0]}
        missing = httpx.post(f"{url}/v1/code", json=body, timeout=60)
        wrong = httpx.post(f"{url}/v1/code", json=body, headers={"authorization": "Bearer nope"}, timeout=60)
        for response in (missing, wrong):
            assert response.status_code == 401 and response.json()["kind"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/health").status_code == 200  # probes need no token
        auth = {"authorization": f"Bearer {API_KEY}"}
        assert httpx.post(f"{url}/v1/code", json=body, headers=auth, timeout=60).status_code == 200

        outcome = {}
        texts = [f"{TEXTS[i % 5]} Visit {i}." for i in range(16)]

        def in_flight():
            outcome["response"] = httpx.post(
                f"{url}/v1/code:batch", json={"texts": texts}, headers=auth, timeout=120
            )

        thread = threading.Thread(target=in_flight)
        thread.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").json()["queue_depth"] == 0:  # 2 generating, 14 queued
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        thread.join(120)
        response = outcome["response"]
        assert response.status_code == 200 and len(response.json()["results"]) == 16
        # uvicorn re-raises SIGTERM once shut down, so the exit is "terminated by SIGTERM", after the drain
        assert process.wait(60) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health")
        log = process.stdout.read().decode()
        assert "every queued text was answered" in log
        assert TEXTS[0] not in log  # note texts are not logged without --log-texts


@pytest.mark.slow  # starts a server process
def test_retrieval_checkpoint_is_served_with_its_offered_candidates(tiny_model, tmp_path):
    import shutil

    import yaml

    checkpoint = tmp_path / "retrieval-checkpoint"
    shutil.copytree(tiny_model, checkpoint)
    (checkpoint / "thce_config.yaml").write_text(
        yaml.safe_dump({"stage": 1, "retrieval": {"enabled": True, "k": 3}})
    )
    with server_process(checkpoint) as (_process, url):
        assert httpx.get(f"{url}/health").json()["settings"]["retrieval"]["k"] == 3
        response = httpx.post(f"{url}/v1/code", json={"text": TEXTS[1]}, timeout=60)
        assert response.status_code == 200
        result = response.json()
        assert len(result["offered"]) == 3 and "E11.9" in {c["code"] for c in result["offered"]}
        assert result["codes"] and {c["code"] for c in result["codes"]} <= {
            c["code"] for c in result["offered"]
        }


# -- limits that need precise timing: an in-process uvicorn with a slow fake predictor -----------------


class SlowPredictor:
    name = "slow-fake"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def predict(self, texts):
        time.sleep(self.delay)
        return [{"code": "I10", "confidence": 0.5, "codes": [{"system": "ICD10", "code": "I10"}],
                 "reasoning": None, "candidates": [], "raw": "ICD10: I10"} for _ in texts]  # fmt: skip

    def describe(self):
        return {"constrained_systems": ["ICD10"]}


@contextmanager
def server_thread(predictor, settings: ServeSettings):
    import uvicorn

    config = uvicorn.Config(
        create_app(predictor, settings), host="127.0.0.1", port=free_port(), log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_full_queue_is_429_and_slow_answer_is_504():
    settings = ServeSettings(
        max_batch_size=1, max_queue=2, max_batch_texts=2, max_wait_ms=0, request_timeout_s=2
    )
    with server_thread(SlowPredictor(delay=0.3), settings) as url:
        with ThreadPoolExecutor(8) as pool:
            responses = list(
                pool.map(lambda i: httpx.post(f"{url}/v1/code", json={"text": f"n{i}"}, timeout=30), range(8))
            )
        statuses = sorted(r.status_code for r in responses)
        assert 200 in statuses and 429 in statuses and set(statuses) <= {200, 429, 504}
        busy = next(r for r in responses if r.status_code == 429).json()
        assert busy["kind"] == "queue_full" and "retry later" in busy["error"]
        metrics = httpx.get(f"{url}/metrics").text
        assert re.search(r'^thce_errors_total\{kind="queue_full"\} [1-9]', metrics, re.MULTILINE)

    with server_thread(SlowPredictor(delay=0.5), ServeSettings(request_timeout_s=0.1)) as url:
        response = httpx.post(f"{url}/v1/code", json={"text": "slow"}, timeout=30)
        assert response.status_code == 504 and response.json()["kind"] == "timeout"
        assert httpx.get(f"{url}/health").status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be at least 1"),
        ({"max_queue": 10, "max_batch_texts": 20}, "must hold a whole batch request"),
        ({"request_timeout_s": 0}, "request_timeout_s > 0"),
        ({"api_key": " "}, "THCE_API_KEY is set but empty"),
    ],
)
def test_settings_are_checked(kwargs, message):
    with pytest.raises(UserError, match=re.escape(message)):
        ServeSettings(**kwargs)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
