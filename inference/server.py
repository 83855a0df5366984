"""`thce serve`: the coding API over HTTP (FastAPI on uvicorn), with dynamic batching and limits.

    POST /v1/code        {"text": "...", "top_k": 3}    -> the JSON of `thce predict`
    POST /v1/code:batch  {"texts": ["...", ...]}        -> {"results": [...]}, in input order
    GET  /health         model loaded, code-set versions, queue depth
    GET  /metrics        Prometheus text format
    GET  /docs           OpenAPI documentation

The model is loaded once; every text goes through one `DynamicBatcher` (batching.py) that calls the
Predictor's public batch API, `Predictor.predict(texts)`, in a single worker thread. What the Predictor
returns is what the client gets (less `raw`, as `thce predict` prints it), so new result fields such as
retrieved candidates reach clients without a server change.

Every error is one JSON line, `{"error": "<what is wrong>", "kind": "<kind>"}`, counted by kind in
/metrics. Note texts are never logged unless `log_texts` is set (PHI).
"""

import asyncio
import hmac
import importlib.metadata
import ipaddress
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field, field_validator

from thce.inference.batching import BatcherClosed, DynamicBatcher, QueueFull
from thce.inference.monitoring import ServerMetrics, chapter_label
from thce.utils.errors import UserError

ENDPOINTS = ("/v1/code", "/v1/code:batch", "/health", "/metrics", "/docs", "/openapi.json")
PUBLIC_PATHS = ("/health", "/docs", "/openapi.json")  # no bearer token needed: probes and docs


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of one server (the `thce serve` options)."""

    max_batch_size: int = 32  # texts per generate call
    max_wait_ms: float = 5.0  # longest a text waits for others to share its batch
    max_queue: int = 256  # texts waiting; more is 429
    max_text_chars: int = 20_000  # per note; more is 413
    max_batch_texts: int = 64  # per /v1/code:batch request; more is 413
    max_body_bytes: int = 2 * 1024 * 1024  # per request body; more is 413
    request_timeout_s: float = 60.0  # queue + generation; more is 504
    api_key: str | None = None  # bearer token required on /v1/* and /metrics when set
    log_texts: bool = False  # log note texts at DEBUG (they may hold PHI)

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue", "max_text_chars", "max_batch_texts", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise UserError(f"serve: {name} must be at least 1 (got {getattr(self, name)})")
        if self.max_wait_ms < 0 or self.request_timeout_s <= 0:
            raise UserError("serve: max_wait_ms must be >= 0 and request_timeout_s > 0")
        if self.max_queue < self.max_batch_texts:
            raise UserError(
                f"serve: max_queue ({self.max_queue}) must hold a whole batch request "
                f"(max_batch_texts {self.max_batch_texts})"
            )
        if self.api_key is not None and not self.api_key.strip():
            raise UserError("serve: THCE_API_KEY is set but empty; unset it or give it a value")


class ApiError(Exception):
    """An error answered to the client: HTTP status, kind (metrics label) and a one-line message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _not_blank(text: str, where: str = "") -> str:
    if not text.strip():
        raise ValueError(f"{where}must not be empty or only whitespace")
    return text


class CodeRequest(BaseModel):
    """One clinical note."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(description="The clinical note (plain text).")
    top_k: int | None = Field(None, ge=1, le=100, description="At most this many codes and candidates.")

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, text: str) -> str:
        return _not_blank(text)


class BatchRequest(BaseModel):
    """Many clinical notes, answered in input order."""

    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str] = Field(min_length=1, description="The clinical notes.")
    top_k: int | None = Field(None, ge=1, le=100, description="At most this many codes and candidates.")

    @field_validator("texts")
    @classmethod
    def _texts_not_blank(cls, texts: list[str]) -> list[str]:
        for index, text in enumerate(texts):
            _not_blank(text, f"item {index} ")
        return texts


class CodeResult(BaseModel):
    """The JSON of `thce predict` (`thce.utils.schemas.Prediction` less `raw`): the first code and its
    confidence, every code with its system, description, validity and confidence, the reasoning, and the
    ranked candidates. Fields that the Predictor adds later are passed through."""

    model_config = ConfigDict(extra="allow")
    code: str | None = None
    confidence: float | None = None
    codes: list[dict[str, Any]] = []
    reasoning: str | None = None
    candidates: list[dict[str, Any]] = []


class BatchResult(BaseModel):
    """One result per text, in input order."""

    results: list[CodeResult]


def create_app(predictor: Any, settings: ServeSettings, metrics: ServerMetrics | None = None) -> Any:
    """The FastAPI app serving `predictor` (a loaded `Predictor`) under `settings`."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    from thce import __version__

    metrics = metrics or ServerMetrics()
    batcher = DynamicBatcher(
        predictor.predict,
        max_batch_size=settings.max_batch_size,
        max_wait_s=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue,
        on_batch=metrics.observe_batch,
    )
    state = {"accepting": False}
    code_sets = code_set_versions(predictor)

    @asynccontextmanager
    async def lifespan(_app: Any):
        await batcher.start()
        # One prediction before the port opens (uvicorn serves after start-up): lazy set-up (kernels, code
        # tries, retrieval indexes) is paid here, in the thread that will run every batch.
        await batcher.warm_up(["Essential hypertension."])
        chapter_label("ICD10", "I10")  # loads the code set now, not in the first request
        state["accepting"] = True
        logger.info(f"serving {predictor.name}: {json.dumps(_describe(predictor, settings))}")
        yield
        state["accepting"] = False
        await batcher.close()  # uvicorn has already let in-flight requests finish
        logger.info("server stopped: every queued text was answered")

    app = FastAPI(
        title="THCE coding API",
        version=__version__,
        description="Clinical text in, ICD-10-CM / CPT / HCPCS codes out.",
        lifespan=lifespan,
    )

    def error(status: int, kind: str, message: str) -> JSONResponse:
        metrics.errors.labels(kind).inc()
        return JSONResponse({"error": message, "kind": kind}, status_code=status)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, err: ApiError) -> JSONResponse:
        return error(err.status, err.kind, err.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error(400, "invalid_json", "the request body is not valid JSON")
        return error(422, "invalid_request", "; ".join(_describe_problem(p) for p in problems[:5]))

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, err: HTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http")
        return error(err.status_code, kind, str(err.detail))

    @app.exception_handler(Exception)
    async def _internal(_request: Request, err: Exception) -> JSONResponse:
        logger.error(f"internal error: {type(err).__name__}")  # the message may quote a note: not logged
        return error(500, "internal", "internal server error")

    async def predict(texts: list[str], top_k: int | None, batch: bool) -> list[dict[str, Any]]:
        for index, text in enumerate(texts):
            if len(text) > settings.max_text_chars:
                where = f"texts[{index}]" if batch else "text"
                raise ApiError(
                    413,
                    "too_large",
                    f"{where} has {len(text)} characters; the limit is {settings.max_text_chars}",
                )
        if not state["accepting"]:
            raise ApiError(503, "shutting_down", "the server is shutting down")
        if settings.log_texts:
            logger.debug(f"coding {len(texts)} text(s): {texts!r}")
        metrics.queue_depth.set(batcher.queued)
        try:
            results = await asyncio.wait_for(batcher.submit(texts), settings.request_timeout_s)
        except QueueFull as err:
            raise ApiError(429, "queue_full", f"server busy: {err}; retry later") from None
        except BatcherClosed:
            raise ApiError(503, "shutting_down", "the server is shutting down") from None
        except TimeoutError:
            raise ApiError(
                504, "timeout", f"no answer within {settings.request_timeout_s:g} s; retry later"
            ) from None
        except Exception as err:
            logger.error(f"prediction failed: {type(err).__name__}")  # message not logged: may quote a note
            raise ApiError(500, "generation", "prediction failed; see the server log") from None
        finally:
            metrics.queue_depth.set(batcher.queued)
        metrics.observe_codes(results)
        return [_public(result, top_k) for result in results]

    @app.post("/v1/code", response_model=CodeResult, summary="Code one clinical note")
    async def code(request: CodeRequest) -> Any:
        [result] = await predict([request.text], request.top_k, batch=False)
        return result

    @app.post("/v1/code:batch", response_model=BatchResult, summary="Code many clinical notes")
    async def code_batch(request: BatchRequest) -> Any:
        if len(request.texts) > settings.max_batch_texts:
            raise ApiError(
                413,
                "too_large",
                f"{len(request.texts)} texts; the limit is {settings.max_batch_texts} per request",
            )
        return {"results": await predict(request.texts, request.top_k, batch=True)}

    @app.get("/health", summary="Model and code-set status")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok" if state["accepting"] else "shutting_down",
            "model_loaded": True,
            "model": predictor.name,
            "code_sets": code_sets,
            "queue_depth": batcher.queued,
            "version": __version__,
            "settings": _describe(predictor, settings),
        }

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        metrics.queue_depth.set(batcher.queued)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(_Gate, settings=settings, metrics=metrics, on_error=error)
    app.state.batcher = batcher
    app.state.metrics = metrics
    return app


class _Gate:
    """Pure ASGI middleware in front of every request: times it for /metrics, checks the bearer token,
    and refuses an oversized body before anything reads it (so memory per request stays bounded)."""

    def __init__(self, app: Any, settings: ServeSettings, metrics: ServerMetrics, on_error: Any) -> None:
        self.app, self.settings, self.metrics, self.on_error = app, settings, metrics, on_error
        self.token = f"Bearer {settings.api_key}".encode() if settings.api_key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else "other"
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            rejection, receive = await self._check(scope, receive)
            if rejection is not None:
                await rejection(scope, receive, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    async def _check(self, scope: dict, receive: Any) -> tuple[Any, Any]:
        headers = dict(scope["headers"])
        if self.token is not None and scope["path"] not in PUBLIC_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.token):
                response = self.on_error(
                    401,
                    "unauthorized",
                    "missing or wrong bearer token (Authorization: Bearer <THCE_API_KEY>)",
                )
                response.headers["WWW-Authenticate"] = "Bearer"
                return response, receive
        limit = self.settings.max_body_bytes
        too_large = f"request body over the limit of {limit} bytes"
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                return self.on_error(413, "too_large", too_large), receive
            return None, receive
        if scope["method"] in ("GET", "HEAD"):
            return None, receive
        # a chunked body: read it here, up to the limit, and replay it to the app
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return None, receive
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                return self.on_error(413, "too_large", too_large), receive

        async def replay() -> dict:
            nonlocal body
            chunk, body = body, b""
            return {"type": "http.request", "body": chunk, "more_body": False}

        return None, replay


def _describe_problem(problem: dict[str, Any]) -> str:
    """One validation problem as `field: message`, without echoing the input (it may hold PHI)."""
    location = ".".join(str(part) for part in problem.get("loc", ()) if part != "body") or "body"
    message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
    if problem.get("type") == "missing":
        message = "is required"
    elif problem.get("type") == "extra_forbidden":
        message = "is not a known field"
    elif location == "body" and problem.get("type") in ("model_attributes_type", "dict_type"):
        message = "must be a JSON object (send Content-Type: application/json)"
    return f"{location}: {message}"


def _public(result: dict[str, Any], top_k: int | None) -> dict[str, Any]:
    """What a client sees: the predictor's result less `raw` (as `thce predict` prints it), with `codes`
    and `candidates` cut to `top_k`."""
    public = {key: value for key, value in result.items() if key != "raw"}
    if top_k is not None:
        for key in ("codes", "candidates"):
            if isinstance(public.get(key), list):
                public[key] = public[key][:top_k]
    return public


def _describe(predictor: Any, settings: ServeSettings) -> dict[str, Any]:
    limits = {k: v for k, v in settings.__dict__.items() if k not in ("api_key", "log_texts")}
    return {**predictor.describe(), **limits, "auth": settings.api_key is not None}


def code_set_versions(predictor: Any) -> dict[str, str]:
    """Which code set each constrained system is checked against (ICD-10-CM: the packaged CDC release)."""
    systems = predictor.describe().get("constrained_systems") or ["ICD10"]
    versions = {}
    for system in systems:
        if system == "ICD10":
            versions[system] = (
                f"ICD-10-CM FY2026 (simple-icd-10-cm {importlib.metadata.version('simple-icd-10-cm')})"
            )
        else:
            versions[system] = "configured code file"
    return versions


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(
    model: str, settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, **predictor_options: Any
) -> None:
    """Load `model` once and serve it until SIGINT/SIGTERM, which finishes in-flight requests first."""
    import uvicorn

    from thce.inference.predictor import Predictor

    if not is_loopback(host) and settings.api_key is None:
        logger.warning(f"serving on {host} without THCE_API_KEY: anyone who can reach it can send notes")
    predictor = Predictor(model, batch_size=settings.max_batch_size, **predictor_options)
    app = create_app(predictor, settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        log_level="info",
    )
