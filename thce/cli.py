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


def run(args: list[str] | None = None) -> int:
    """Run the app on `args` (default: sys.argv) and return the exit code.

    Known errors become one line on stderr: a `UserError` or an OS error (exit 2), a usage error from
    the option parser (exit 2), Ctrl-C (exit 130). THCE_DEBUG=1 shows the traceback instead.
    """
    from pathlib import Path

    from dotenv import load_dotenv

    from thce.utils.errors import UserError

    # The working directory's .env (python-dotenv's own search starts from the calling module's folder).
    load_dotenv(Path.cwd() / ".env", override=False)
    debug = os.environ.get("THCE_DEBUG") == "1"
    try:
        code = app(args=args, prog_name="thce", standalone_mode=False)
    except (UserError, OSError) as err:
        if debug:
            raise
        if isinstance(err, UserError):
            message = str(err)
        elif isinstance(err, IsADirectoryError):
            message = f"{err.filename} is a directory, not a file"
        else:
            message = f"{err.filename}: {err.strerror}" if err.filename else str(err)
        print(f"thce: error: {message}", file=sys.stderr)
        return 2
    except Exception as err:
        # Click's exceptions, matched by shape: recent Typer versions vendor their own copy of click.
        kind = type(err).__name__
        if kind == "NoArgsIsHelpError":
            err.show()  # type: ignore[attr-defined]
            return err.exit_code  # type: ignore[attr-defined]
        if kind == "Abort":
            print("thce: aborted", file=sys.stderr)
            return 1
        if debug or not (hasattr(err, "format_message") and hasattr(err, "exit_code")):
            raise
        print(f"thce: error: {err.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
        return err.exit_code  # type: ignore[attr-defined]
    except KeyboardInterrupt:
        code = 130
    if code == 130:  # Typer turns Ctrl-C into exit code 130 before we see the KeyboardInterrupt
        print("thce: interrupted", file=sys.stderr)
    return code if isinstance(code, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    main()
