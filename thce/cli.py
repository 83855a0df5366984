"""The `thce` command line: a thin Typer app whose verbs call into the packages.

Known user errors (`UserError`, missing files) become one line on stderr and a non-zero exit; set
THCE_DEBUG=1 to see the traceback instead.
"""

import os
import sys
from typing import Annotated

import typer

from thce import __version__
from thce.commands import codes as codes_commands
from thce.commands import data as data_commands
from thce.commands import evaluate as evaluate_commands
from thce.commands import model as model_commands
from thce.commands import serve as serve_commands
from thce.commands import train as train_commands

app = typer.Typer(
    name="thce",
    help="Train and run tiny language models that turn clinical text into ICD-10-CM, CPT and HCPCS codes.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Verbs in the order of the workflow: codes -> data -> training -> evaluation.
app.command("validate")(codes_commands.validate)
app.add_typer(codes_commands.app, name="codes")
app.command("generate")(data_commands.generate)
app.command("collect")(data_commands.collect)
app.command("preprocess")(data_commands.preprocess)
app.command("quality")(data_commands.quality)
app.add_typer(model_commands.app, name="model")
app.command("train")(train_commands.train)
app.command("pipeline")(train_commands.pipeline)
app.command("predict")(evaluate_commands.predict)
app.command("evaluate")(evaluate_commands.evaluate)
app.command("baseline")(evaluate_commands.baseline)
app.command("compare")(evaluate_commands.compare)
app.command("serve")(serve_commands.serve)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"thce {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings and errors only.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """THCE: Tiny Reasoning Language Model for Health Code Extraction."""
    from thce.utils.logging import configure_logging

    configure_logging(verbose=verbose, quiet=quiet)


def main() -> None:
    """Console-script entry point: load `.env`, run the app, turn known errors into one line."""
    from dotenv import load_dotenv

    from thce.utils.errors import UserError

    load_dotenv(override=False)
    try:
        app()
    except (UserError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        if os.environ.get("THCE_DEBUG") == "1":
            raise
        message = str(err) if isinstance(err, UserError) else f"{err.strerror}: {err.filename}"
        print(f"thce: error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("thce: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
