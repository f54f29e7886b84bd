"""The `leadscore score` command: options in, `score_file` run, summary out."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from leadscore.batch.options import DEFAULT_CHUNK_ROWS, RECORDED_COMMIT_ROWS, FileFormat
from leadscore.columns import parse_column_options
from leadscore.errors import LeadscoreError

# `--encoding`, as every command that reads a CSV file takes it.
EncodingOption = Annotated[
    str | None,
    typer.Option(help="The CSV input's character encoding, e.g. cp1252 (Excel on Windows), latin-1; default UTF-8."),
]

EXIT_REJECTED = 1
EXIT_USAGE = 2
# Interrupted (SIGINT, SIGTERM): 128 + the signal's number, as shells report it.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the run stops as on Ctrl-C (no output left under its name).

    A BaseException, as KeyboardInterrupt: no `except Exception` on the way may take it for an error.
    """


@contextmanager
def _model_info_unlogged() -> Iterator[None]:
    """The model's info lines (which predictor it chose) off for the run; its warnings (a fallback) still show.

    The info lines are for the service's logs, and the summary names the model. The level is put back after: the
    command may run inside another program (a test runner, a notebook).
    """
    logger = logging.getLogger("leadscore.model")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _sigterm_stops_the_run() -> Iterator[None]:
    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"must be an ISO 8601 time such as 2026-01-01T00:00:00Z, got {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def score(
    input: Annotated[str, typer.Argument(help="Leads to score: a .csv or .parquet file, local or s3://bucket/key.")],
    out: Annotated[str, typer.Option("--out", help="Where to write the scores (.csv or .parquet, local or s3://).")],
    input_format: Annotated[
        FileFormat | None, typer.Option("--format", help="Input format; default: from the extension.")
    ] = None,
    out_format: Annotated[
        FileFormat | None, typer.Option("--out-format", help="Output format; default: from the extension.")
    ] = None,
    rejects: Annotated[
        str | None,
        typer.Option(
            help="CSV of the rows refused (row, data_row, lead_id, field, message); default <out>.rejects.csv."
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Scoring threads; default: one per core.")] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help=f"Rows per chunk; default {DEFAULT_CHUNK_ROWS:,}. With --record: rows per lake commit too "
            f"(default {RECORDED_COMMIT_ROWS:,} per commit).",
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Time recency features are measured from (ISO 8601); default: now.")
    ] = None,
    explain: Annotated[bool, typer.Option(help="Add the reasons and drivers of each score.")] = False,
    bundle: Annotated[
        Path | None, typer.Option(help="Model bundle directory; default: LEADSCORE_MODEL_DIR or the packaged one.")
    ] = None,
    record: Annotated[bool, typer.Option(help="Write the predictions to the lake as a batch run.")] = False,
    run_id: Annotated[
        str | None, typer.Option(help="Id of the recorded run; the same id again adds nothing already recorded.")
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            metavar="'INPUT=FIELD'",
            help="Read an input column as a lead field, e.g. --column 'Company Size=company_size' (repeat it for "
            "each). Other columns are read by the API's field names.",
        ),
    ] = None,
    encoding: EncodingOption = None,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the summary as JSON to this file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score every lead of a CSV or Parquet file (a CRM export), writing the scores in input order.

    Rows that fail validation are not scored: they go to the rejects file (the output's `row`, the
    1-based data row, field, message).

    Exit status: 0 when every row was scored, 1 when some were rejected, 2 for usage errors or a failed run,
    130 / 143 when interrupted (SIGINT / SIGTERM: no output file is left under its name).
    """
    import pyarrow as pa  # noqa: PLC0415 - keeps `leadscore --help` fast

    from leadscore.batch.run import score_file  # noqa: PLC0415
    from leadscore.heap import reuse_freed_heap  # noqa: PLC0415

    if run_id is not None and not record:
        raise typer.BadParameter("--run-id names a recorded run: add --record", param_hint="--run-id")
    try:
        renames = parse_column_options(column or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--column") from None
    model_dir = bundle
    if model_dir is None and os.environ.get("LEADSCORE_MODEL_DIR"):
        model_dir = Path(os.environ["LEADSCORE_MODEL_DIR"])
    reuse_freed_heap()  # this process's own heap: the run reallocates the same arrays chunk after chunk
    try:
        with _sigterm_stops_the_run(), _model_info_unlogged():
            summary = score_file(
                input,
                out,
                input_format=input_format,
                output_format=out_format,
                rejects=rejects,
                workers=workers,
                chunk_rows=chunk_rows,
                as_of=_as_of(as_of),
                explain=explain,
                bundle=model_dir,
                record=record,
                run_id=run_id,
                progress=not quiet,
                columns=renames,
                encoding=encoding,
            )
    except LeadscoreError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    except (OSError, pa.ArrowException) as exc:  # a store or file failing mid-run
        typer.echo(f"error: the run failed: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    except KeyboardInterrupt:
        typer.echo("interrupted: no output written", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except _Terminated:
        typer.echo("terminated: no output written", err=True)
        raise typer.Exit(EXIT_TERMINATED) from None
    typer.echo(summary.text())
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    if summary.rejected:
        raise typer.Exit(EXIT_REJECTED)
