"""`leadscore outcomes ...`: outcomes from CRM exports into the outcomes table.

Exit status: 0 every row imported; 1 some rows rejected (the valid ones are imported unless --strict) or the lake
failed; 2 the file or the settings cannot be used.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Final

import typer

from leadscore.batch.command import EncodingOption
from leadscore.config import load_settings
from leadscore.errors import LeadscoreError

outcomes_app = typer.Typer(help="Outcomes of scored leads: import them from a CRM export.", no_args_is_help=True)
# Rejected rows printed one a line; past this only their count (the summary has it).
MAX_REJECTS_SHOWN: Final = 100


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@outcomes_app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet: lead_id, occurred_at, outcome and/or converted.")],
    source: Annotated[
        str | None, typer.Option(help="Source of rows without their own `source` (default: import).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Import nothing when any row is rejected.")] = False,
    date_as_end_of_day: Annotated[
        bool,
        typer.Option(
            "--date-as-end-of-day",
            help="Read an occurred_at that is a date alone (a CRM close date) as the end of that day, UTC.",
        ),
    ] = False,
    encoding: EncodingOption = None,
) -> None:
    """Import outcomes (CRM booleans yes/no, 1/0, true/false read right); rejects are named by row and field."""
    from leadscore.lake.errors import LakeError  # noqa: PLC0415 - keeps `leadscore --help` fast
    from leadscore.outcomes.importer import import_outcomes  # noqa: PLC0415

    if not file.is_file():
        raise _fail(f"no such file: {file}", 2)
    try:
        report = import_outcomes(
            load_settings(), file, source=source, strict=strict, end_of_day_dates=date_as_end_of_day, encoding=encoding
        )
    except LeadscoreError as exc:
        raise _fail(exc.message, 2) from exc
    except LakeError as exc:
        raise _fail(f"the outcomes table refused the commit: {exc}", 1) from exc
    for problem in report.rejected[:MAX_REJECTS_SHOWN]:
        where = f"row {problem.index + 1}" + (f", {problem.field}" if problem.field else "")
        typer.echo(f"{where}: {problem.message}", err=True)
    if len(report.rejected) > MAX_REJECTS_SHOWN:
        typer.echo(f"... and {len(report.rejected) - MAX_REJECTS_SHOWN} more problems", err=True)
    summary = {
        **{k: v for k, v in asdict(report).items() if k != "rejected"},
        "rejected_rows": report.rejected_rows,
    }
    typer.echo(json.dumps(summary, indent=2))
    if report.rejected:
        raise typer.Exit(1)
