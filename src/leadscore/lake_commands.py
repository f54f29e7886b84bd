"""`leadscore lake ...`: the lake's tools (Athena DDL, queries, compaction, erasure, quarantine).

They read the same settings as the service, but never need API keys or the web app: an analyst or an operator
runs them beside a running service.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from leadscore.config import Settings, load_settings
from leadscore.errors import LeadscoreError

if TYPE_CHECKING:
    from pyiceberg.table import Table

lake_app = typer.Typer(
    help="The data lake: Athena DDL, queries, compaction, erasure, quarantine.", no_args_is_help=True
)
# The exit status of a server that stopped with rows still on its spool (EX_TEMPFAIL): they are safe there, and the
# next server on that spool adopts them, but the stop was not clean.
EXIT_BACKLOG_LEFT: Final = 75


class Output(StrEnum):
    """How `lake query` prints rows."""

    TABLE = "table"
    VERTICAL = "vertical"
    JSON = "json"
    CSV = "csv"


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except LeadscoreError as exc:
        raise _fail(exc.message, 2) from exc


def _table(settings: Settings) -> Table:
    """The existing table (a tool never creates a lake)."""
    from leadscore.lake.errors import LakeError  # noqa: PLC0415 - keeps `leadscore --help` fast
    from leadscore.lake.table import load_table  # noqa: PLC0415

    try:
        return load_table(settings.lake_table_config(), create=False)
    except LakeError as exc:
        raise _fail(str(exc)) from exc


def spool_exit_status(spool_dir: Path) -> int:
    """0 when a stopped server left nothing on its spools; else log what it left and return EXIT_BACKLOG_LEFT.

    Both spools count: the predictions' (`spool_dir`) and the outcomes' (its `outcomes` directory).
    """
    from leadscore.lake.spool import OUTCOMES_SUBDIR, leftover_segments  # noqa: PLC0415
    from leadscore.telemetry.logging import get_logger  # noqa: PLC0415

    status = 0
    for table, root in (("predictions", spool_dir), ("outcomes", spool_dir / OUTCOMES_SUBDIR)):
        segments, size = leftover_segments(root)
        if segments:
            get_logger("leadscore.cli").error(
                "exit_with_lake_backlog",
                table=table,
                segments=segments,
                bytes=size,
                spool=str(root),
                exit_code=EXIT_BACKLOG_LEFT,
            )
            status = EXIT_BACKLOG_LEFT
    return status


@lake_app.command("ddl")
def lake_ddl(
    location: Annotated[
        str | None, typer.Option(help="Table location (s3://bucket/prefix); default LEADSCORE_LAKE_URI.")
    ] = None,
    table: Annotated[str | None, typer.Option(help="Table name; default lead_score_<env>.")] = None,
    database: Annotated[str | None, typer.Option(help="Glue database; default leadscore_<env>.")] = None,
) -> None:
    """Print Athena's CREATE TABLE for the lake's Iceberg table."""
    from leadscore.lake.ddl import athena_ddl  # noqa: PLC0415

    settings = _settings()
    sql = athena_ddl(database or settings.database_name, table or settings.table_name, location or settings.lake_uri)
    typer.echo(sql, nl=False)


def _print_rows(names: list[str], rows: list[tuple[Any, ...]], output: Output) -> None:
    if output is Output.JSON:
        typer.echo(json.dumps([dict(zip(names, row, strict=True)) for row in rows], default=str, indent=2))
        return
    if output is Output.CSV:
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
        return
    widths = [max([len(n)] + [len(str(r[i])) for r in rows]) for i, n in enumerate(names)]
    fits = sum(widths) + 2 * (len(widths) - 1) <= shutil.get_terminal_size((120, 40)).columns
    if output is Output.VERTICAL or not fits:
        # One `column  value` line per column and a blank line between rows, as psql's \x: wide rows stay readable.
        label = max((len(n) for n in names), default=0)
        for i, row in enumerate(rows):
            typer.echo(f"-[ row {i + 1} ]")
            for name, value in zip(names, row, strict=True):
                typer.echo(f"{name.ljust(label)}  {value}")
    else:
        typer.echo("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
        for row in rows:
            typer.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
    typer.echo(f"({len(rows)} rows)")


@lake_app.command("query")
def lake_query(
    sql: Annotated[str, typer.Argument(help="SQL; the lake is the table named as in Athena (lead_score_<env>).")],
    output: Annotated[
        Output, typer.Option(help="table (vertical when too wide), vertical, json or csv.")
    ] = Output.TABLE,
) -> None:
    """Run SQL over the lake's table (local or S3) with DuckDB."""
    import duckdb  # noqa: PLC0415

    from leadscore.lake.query import run_query  # noqa: PLC0415

    settings = _settings()
    table = _table(settings)
    config = settings.lake_table_config()
    try:
        names, rows = run_query(table, config, sql)
    except duckdb.CatalogException as exc:  # most often a table named otherwise than the lake's
        raise _fail(f"query failed: {exc}\nthe lake's table here is {config.name}", 2) from exc
    except duckdb.Error as exc:
        raise _fail(f"query failed: {exc}", 2) from exc
    except OSError as exc:
        raise _fail(f"could not read the lake: {exc}") from exc
    _print_rows(names, rows, output)


def _day(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC).date()
    except ValueError as exc:
        raise _fail(f"--date must be YYYY-MM-DD, got {value!r}", 2) from exc


@lake_app.command("compact")
def lake_compact(
    day: Annotated[str, typer.Option("--date", help="The UTC day to compact, YYYY-MM-DD.")],
    force: Annotated[bool, typer.Option(help="Allow today's partition (still being written).")] = False,
) -> None:
    """Merge a day's data files into one, in one snapshot: no row lost or duplicated, readers never see both."""
    from leadscore.lake.compact import CompactionConflict, compact_day  # noqa: PLC0415

    when = _day(day)
    if when >= datetime.now(UTC).date() and not force:
        raise _fail("today's partition is still being written; compact past days (or pass --force)", 2)
    table = _table(_settings())
    try:
        result = compact_day(table, when)
    except CompactionConflict as exc:
        raise _fail(str(exc), 3) from exc
    typer.echo(
        json.dumps(
            {"partition": result.partition, "input_files": result.input_files, "rows": result.rows,
             "output_files": result.output_files, "snapshot_id": result.snapshot_id}
        )
    )  # fmt: skip


@lake_app.command("forget")
def lake_forget(
    lead_id: Annotated[list[str] | None, typer.Option("--lead-id", help="A lead id to erase (repeatable).")] = None,
    request_id: Annotated[
        list[str] | None, typer.Option("--request-id", help="A request id whose rows to erase (repeatable).")
    ] = None,
) -> None:
    """Delete every row of the given leads or requests from the table (erasure requests); prints the count.

    Rows still on a service's spool are committed later: run it again once the backlog is empty (health shows it).
    """
    from leadscore.lake.compact import forget  # noqa: PLC0415

    if not lead_id and not request_id:
        raise _fail("name a lead with --lead-id or a request with --request-id", 2)
    table = _table(_settings())
    deleted = forget(table, list(lead_id or []), list(request_id or []))
    typer.echo(json.dumps({"deleted_rows": deleted, "lead_ids": lead_id or [], "request_ids": request_id or []}))


class RequeueTable(StrEnum):
    """Whose quarantine `lake requeue` re-drives."""

    PREDICTIONS = "predictions"
    OUTCOMES = "outcomes"


@lake_app.command("requeue")
def lake_requeue(
    segment: Annotated[
        list[str] | None, typer.Option(help="A quarantined segment id (repeatable); default: all of them.")
    ] = None,
    table: Annotated[
        RequeueTable, typer.Option(help="The predictions' quarantine, or the outcomes' (<spool>/outcomes/quarantine).")
    ] = RequeueTable.PREDICTIONS,
) -> None:
    """Commit the readable rows of quarantined segments that no snapshot holds yet.

    A segment that now reads whole (e.g. after an upgrade that reads its record version) leaves the quarantine;
    one that still has damaged bytes stays, with its report updated.
    """
    from leadscore.lake.quarantine import requeue  # noqa: PLC0415

    settings = _settings()
    if table is RequeueTable.OUTCOMES:
        from leadscore.lake.table import LakeNotFound  # noqa: PLC0415
        from leadscore.outcomes.sink import OUTCOMES  # noqa: PLC0415
        from leadscore.outcomes.table import load_outcomes_table, outcomes_lake_config  # noqa: PLC0415

        try:
            load_outcomes_table(settings, create=False)  # the table must exist
        except LakeNotFound as exc:
            raise _fail(str(exc)) from exc
        results = requeue(outcomes_lake_config(settings), segment or None, OUTCOMES)
    else:
        _table(settings)  # the table must exist
        results = requeue(settings.lake_config(), segment or None)
    typer.echo(json.dumps(results, indent=2))
