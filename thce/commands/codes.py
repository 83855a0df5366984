"""`thce validate` and `thce codes show|search`: check, look up and search medical codes.

Exit status of `validate`: 0 when every code is valid, 1 when one is not (or a records line is malformed),
2 for a user error (unknown system, missing file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from thce.commands.options import JsonOption

if TYPE_CHECKING:
    from thce.utils.code_validator import CodeCheck, RecordsReport, SearchHit

app = typer.Typer(
    help="Look up and search medical codes (ICD-10-CM; CPT and HCPCS with a configured code file).",
    no_args_is_help=True,
)

SystemOption = Annotated[
    str,
    typer.Option("--system", "-s", help="ICD10, CPT or HCPCS (aliases: ICD-10-CM, icd10cm, HCPCS2 ...)."),
]
CptFileOption = Annotated[
    Path | None,
    typer.Option(
        "--cpt-file", help="Licensed CPT code file (CSV/TSV code,description); default $THCE_CPT_FILE."
    ),
]
HcpcsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--hcpcs-file", help="CMS HCPCS release file (fixed-width .txt or CSV); default $THCE_HCPCS_FILE."
    ),
]


def _code_file(system: str, cpt_file: Path | None, hcpcs_file: Path | None) -> Path | None:
    from thce.utils.code_validator import resolve_system_name

    return {"CPT": cpt_file, "HCPCS": hcpcs_file}.get(resolve_system_name(system))


def _split_system(argument: str, default_system: str) -> tuple[str, str]:
    """`CPT:99213` -> ("CPT", "99213"); anything else is a code of the default system."""
    from thce.utils.code_validator import resolve_system_name
    from thce.utils.errors import UserError

    prefix, sep, rest = argument.partition(":")
    if sep:
        try:
            return resolve_system_name(prefix), rest
        except UserError:
            pass
    return default_system, argument


def validate(
    codes: Annotated[
        list[str] | None,
        typer.Argument(help="Codes to check; prefix one with its system to mix systems (CPT:99213)."),
    ] = None,
    system: SystemOption = "ICD10",
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="Validate every code of a canonical/preference records JSONL file."
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report", help="Where --file writes its JSON report [default: <file>.validation.json]."
        ),
    ] = None,
    require_billable: Annotated[
        bool, typer.Option("--require-billable", help="Treat valid but non-billable codes as failures.")
    ] = False,
    json_output: JsonOption = False,
    cpt_file: CptFileOption = None,
    hcpcs_file: HcpcsFileOption = None,
) -> None:
    """Check medical codes: valid? billable? and if not, why and what was meant.

    Exit 0 when all are valid, 1 otherwise. With --file, validates every code of a records file and
    writes a report (counts per system, invalid codes with record ids, non-billable codes).
    """
    from thce.utils.code_validator import check_code, resolve_system_name
    from thce.utils.errors import UserError

    system = resolve_system_name(system)
    if file is not None:
        if codes:
            raise UserError("give codes or --file, not both")
        _validate_file(file, report, json_output, {"CPT": cpt_file, "HCPCS": hcpcs_file}, require_billable)
        return
    if not codes:
        raise UserError("nothing to validate: give one or more codes, or --file records.jsonl")
    checks = []
    for argument in codes:
        code_system, code = _split_system(argument, system)
        checks.append(check_code(code, code_system, code_file=_code_file(code_system, cpt_file, hcpcs_file)))
    if json_output:
        payload: Any = [check.to_dict() for check in checks]
        typer.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2, ensure_ascii=False))
    else:
        _print_checks(checks)
    if not all(check.valid and (check.billable is not False or not require_billable) for check in checks):
        raise typer.Exit(1)


def _status(check: CodeCheck) -> str:
    if not check.valid:
        return "INVALID"
    if check.billable is None:
        return "WELL-FORMED"
    return "BILLABLE" if check.billable else "NOT BILLABLE"


def _print_checks(checks: list[CodeCheck]) -> None:
    for check in checks:
        typer.echo(f"{_status(check):<12}  {check.system:<5}  {check.code or '-':<9}  {check.message}")


def _validate_file(
    file: Path,
    report_path: Path | None,
    json_output: bool,
    code_files: dict[str, Path | None],
    require_billable: bool,
) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from thce.utils.code_validator import validate_records
    from thce.utils.io import check_input_file, check_output, write_json

    check_input_file(file, "records file")
    report_path = report_path or file.with_name(f"{file.stem}.validation.json")
    check_output(report_path, [file, *code_files.values()], "--report")
    files = {name: path for name, path in code_files.items() if path is not None}
    with Progress(
        TextColumn("validating {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=json_output,
    ) as progress:
        task = progress.add_task(file.name, total=file.stat().st_size)
        result = validate_records(file, files, on_progress=lambda n: progress.advance(task, n))
    data = result.to_dict()
    write_json(report_path, data)
    if json_output:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        _print_report(result, report_path)
    if result.failed or (require_billable and result.not_billable):
        raise typer.Exit(1)


def _print_report(result: RecordsReport, report_path: Path) -> None:
    typer.echo(f"{result.file}: {result.records:,} records, {len(result.malformed):,} malformed lines")
    typer.echo(f"{'system':<8} {'codes':>9} {'valid':>9} {'invalid':>9} {'billable':>9} {'not billable':>13}")
    for name, counts in sorted(result.systems.items()):
        # Format-only systems (CPT/HCPCS without a code file) cannot tell billable codes apart.
        billable = f"{counts['billable']:,}" if "billable" in counts else "-"
        not_billable = f"{counts['not_billable']:,}" if "not_billable" in counts else "-"
        typer.echo(
            f"{name:<8} {counts['codes']:>9,} {counts['valid']:>9,} {counts['invalid']:>9,} "
            f"{billable:>9} {not_billable:>13}"
        )
    for entry in result.malformed[:5]:
        typer.echo(f"  malformed line {entry['line']}: {entry['error']}")
    for entry in result.invalid[:10]:
        typer.echo(
            f"  invalid {entry['system']} {entry['code']!r} in record {entry['record']} "
            f"({entry['field']}, line {entry['line']}): {entry['reason']}"
        )
    hidden = len(result.invalid) - 10
    if hidden > 0:
        typer.echo(f"  ... and {hidden:,} more invalid codes")
    typer.echo(f"report: {report_path}")


@app.command("show")
def show(
    code: Annotated[
        str, typer.Argument(help="A code (E11.9), or an ICD-10-CM block (E08-E13) or chapter (4).")
    ],
    system: SystemOption = "ICD10",
    json_output: JsonOption = False,
    cpt_file: CptFileOption = None,
    hcpcs_file: HcpcsFileOption = None,
) -> None:
    """Show a code: description, billable or not, hierarchy, notes (Excludes1/2, inclusion terms, 7th chars)."""
    from thce.utils.code_validator import check_code, describe_code

    code_file = _code_file(system, cpt_file, hcpcs_file)
    details = describe_code(code, system, code_file=code_file)
    if details is None:
        check = check_code(code, system, code_file=code_file)
        if json_output:
            typer.echo(json.dumps(check.to_dict(), indent=2, ensure_ascii=False))
        else:
            _print_checks([check])
        raise typer.Exit(1)
    if json_output:
        typer.echo(json.dumps(details.to_dict(), indent=2, ensure_ascii=False))
        return
    if details.billable is None:
        billable = (
            "a heading, not a code" if details.basis == "code_set" else "billable: unknown (format check)"
        )
    else:
        billable = "billable" if details.billable else "not billable"
    typer.echo(f"{details.code}  {details.description}")
    typer.echo(f"  {details.system} {details.level}; {billable}; basis: {details.basis}")
    for depth, node in enumerate(details.ancestors):
        label = f"Chapter {node.code}" if node.level == "chapter" else node.code
        typer.echo(f"  {'  ' * depth}{label}  {node.description}")
    for note in details.notes:
        origin = "" if note.source == details.code else f" (from {note.source})"
        typer.echo(f"  {note.kind}{origin}:")
        for item in note.items:
            typer.echo(f"    - {item}")
    if details.seventh_characters:
        typer.echo("  7th characters:")
        for char, meaning in details.seventh_characters.items():
            typer.echo(f"    {char}  {meaning}")
    if details.children:
        listed = ", ".join(details.children[:20]) + (" ..." if len(details.children) > 20 else "")
        typer.echo(f"  children ({len(details.children)}): {listed}")


@app.command("search")
def search(
    query: Annotated[str, typer.Argument(help='Words to look for, e.g. "type 2 diabetes".')],
    top: Annotated[int, typer.Option("--top", "-k", help="How many results.")] = 10,
    system: SystemOption = "ICD10",
    json_output: JsonOption = False,
    cpt_file: CptFileOption = None,
    hcpcs_file: HcpcsFileOption = None,
) -> None:
    """Rank billable codes by BM25 over their descriptions and inclusion terms."""
    from thce.utils.code_validator import get_code_system

    hits = get_code_system(system, code_file=_code_file(system, cpt_file, hcpcs_file)).search(query, top=top)
    if json_output:
        typer.echo(json.dumps([_hit(hit) for hit in hits], indent=2, ensure_ascii=False))
        return
    if not hits:
        typer.echo(f"no {system} code matches {query!r}")
        raise typer.Exit(1)
    for rank, hit in enumerate(hits, 1):
        typer.echo(f"{rank:>3}. {hit.code:<9} {hit.score:6.2f}  {hit.description}")


def _hit(hit: SearchHit) -> dict[str, Any]:
    return {
        "system": hit.system,
        "code": hit.code,
        "description": hit.description,
        "score": round(hit.score, 4),
    }
