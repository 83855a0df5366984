"""`thce model ...`: where the model comes from."""

from typing import Annotated

import typer

from thce.commands.options import DEFAULT_MODEL, JsonOption

app = typer.Typer(help="Inspect the base model THCE trains (the embedded SmolLM2-135M-Instruct by default).")


@app.command("info")
def info(
    name_or_path: Annotated[
        str, typer.Argument(help="A local checkpoint, a hub id in the local cache, or the embedded default.")
    ] = DEFAULT_MODEL,
    json_output: JsonOption = False,
) -> None:
    """Resolve a model with no network and print where it came from, its size and parameter count."""
    import json

    from thce.utils.models import describe_model, resolve_model

    resolved = resolve_model(name_or_path)
    details = describe_model(resolved)
    if json_output:
        typer.echo(json.dumps(details, indent=2))
        return
    width = max(len(key) for key in details)
    for key, value in details.items():
        typer.echo(f"{key:<{width}}  {value}")
