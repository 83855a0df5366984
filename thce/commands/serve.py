"""`thce serve`: the real-time coding API (the server itself is `thce.inference.server`)."""

from typing import Annotated

import typer

from thce.commands.options import DEFAULT_MODEL, ModelOption


def serve(
    model: ModelOption = DEFAULT_MODEL,
    host: Annotated[
        str, typer.Option(help="Address to bind; the default is loopback only. Set THCE_API_KEY beyond it.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8000,
    max_batch_size: Annotated[int, typer.Option(help="Most texts in one generate call.", min=1)] = 32,
    max_wait_ms: Annotated[
        float, typer.Option(help="Longest a text waits for others to share its batch (ms).", min=0)
    ] = 5.0,
    max_queue: Annotated[
        int, typer.Option(help="Most texts waiting; beyond it requests get 429.", min=1)
    ] = 256,
    max_text_chars: Annotated[
        int, typer.Option(help="Longest note (characters); beyond it 413.", min=1)
    ] = 20_000,
    max_batch_texts: Annotated[
        int, typer.Option(help="Most texts per batch request; beyond it 413.", min=1)
    ] = 64,
    request_timeout: Annotated[
        float, typer.Option(help="Seconds a request may wait for its answer; beyond it 504.", min=0.001)
    ] = 60.0,
    precision: Annotated[str, typer.Option(help="auto, bf16, fp16 or fp32.")] = "auto",
    constrain: Annotated[
        bool, typer.Option("--constrain/--no-constrain", help="Constrain codes to billable codes.")
    ] = True,
    max_new_tokens: Annotated[int | None, typer.Option(help="Default 32 (256 for reasoning models).")] = None,
    log_texts: Annotated[
        bool, typer.Option("--log-texts", help="Log note texts at DEBUG (they may hold PHI; off by default).")
    ] = False,
) -> None:
    """Serve the model over HTTP: POST /v1/code, /v1/code:batch; GET /health, /metrics, /docs.

    Bearer-token auth is on when THCE_API_KEY is set. Ctrl-C or SIGTERM finishes in-flight requests."""
    import os

    from thce.inference.server import ServeSettings, run_server

    settings = ServeSettings(
        max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_queue=max_queue,
        max_text_chars=max_text_chars, max_batch_texts=max_batch_texts, request_timeout_s=request_timeout,
        api_key=os.environ.get("THCE_API_KEY"), log_texts=log_texts,
    )  # fmt: skip
    run_server(
        model, settings, host=host, port=port,
        precision=precision, constrained=constrain, max_new_tokens=max_new_tokens,
    )  # fmt: skip
