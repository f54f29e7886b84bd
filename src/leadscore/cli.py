"""The `leadscore` command: serve, synth, train and the tools built on them."""

from __future__ import annotations

import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from leadscore.config import load_settings
from leadscore.errors import LeadscoreError
from leadscore.loadtest.thresholds import TargetEnv
from leadscore.telemetry.logging import configure_logging, get_logger

app = typer.Typer(
    help="leadscore: B2B lead scoring with XGBoost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
log = get_logger("leadscore.cli")


@app.callback()
def _setup() -> None:
    """leadscore: B2B lead scoring with XGBoost."""
    # Tools keep stdout for their results; `serve` switches the logs to stdout.
    configure_logging("INFO", stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (one per core is right).")] = 1,
) -> None:
    """Serve the API (settings from LEADSCORE_* variables; defaults: packaged model, local lake)."""
    from leadscore.telemetry.multiprocess import prepare_multiprocess_dir  # noqa: PLC0415 - keeps --help fast

    # Before anything imports prometheus_client: every worker inherits the directory, so their counts add up.
    prepare_multiprocess_dir()
    from leadscore.api.security import load_keyring  # noqa: PLC0415 - keeps `leadscore --help` fast
    from leadscore.model.bundle import default_bundle_dir, load_bundle  # noqa: PLC0415

    try:
        settings = load_settings()
    except LeadscoreError as exc:
        raise _fail(f"cannot start: {exc.message}") from exc
    configure_logging(settings.log_level)
    try:
        # Check the bundle and the keys before any worker starts: a bad bundle or a keyless prod must stop
        # the server with a clear message, not loop workers.
        # XGBoost's own predictor is enough for the check; the workers build the fast path themselves.
        model_version = load_bundle(settings.model_dir or default_bundle_dir(), predictor="xgboost").version
        load_keyring(settings)
    except LeadscoreError as exc:
        raise _fail(f"cannot start: {exc.message}") from exc
    log.info("starting", host=host, port=port, workers=workers, model_version=model_version, env=settings.env)
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting 0 then tells ECS (and tests) the stop
    # was clean: in-flight requests answered and the lake flushed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    from leadscore.serving import run, server_config  # noqa: PLC0415

    try:
        run(server_config(settings, host, port, workers))
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).")] = Path("data/synthetic.parquet"),
    rows: Annotated[int, typer.Option(min=10, help="Number of leads.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 7,
) -> None:
    """Write a deterministic synthetic training set with an `outcome` column (1..5)."""
    from leadscore.training.synth import synthesize, write_table  # noqa: PLC0415

    write_table(synthesize(rows, seed), out)
    typer.echo(f"wrote {rows} rows to {out}")


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Training data (.parquet or .csv) with an `outcome` column.")],
    out: Annotated[Path, typer.Option(help="Bundle directory to write.")] = Path("data/model"),
    rounds: Annotated[int, typer.Option(min=1, help="Boosting rounds per class.")] = 200,
    max_depth: Annotated[int, typer.Option(min=1, help="Tree depth.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed for the split and the trees.")] = 7,
    version: Annotated[str | None, typer.Option(help="Model version; default: date + hash.")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Reference time (ISO 8601) for recency features; default 2026-01-01.")
    ] = None,
) -> None:
    """Train a model bundle and print its evaluation on a held-out split."""
    from leadscore.training.synth import read_table  # noqa: PLC0415
    from leadscore.training.train import TrainConfig, train_bundle  # noqa: PLC0415

    if not data.is_file():
        raise _fail(f"no such file: {data}")
    config = TrainConfig(num_boost_round=rounds, max_depth=max_depth, seed=seed, version=version)
    if as_of:
        try:
            moment = datetime.fromisoformat(as_of)
        except ValueError as exc:
            raise _fail(f"--as-of must be an ISO 8601 time such as 2026-01-01T00:00:00Z, got {as_of!r}") from exc
        config = TrainConfig(
            num_boost_round=rounds,
            max_depth=max_depth,
            seed=seed,
            version=version,
            as_of=moment if moment.tzinfo else moment.replace(tzinfo=UTC),
        )
    try:
        manifest = train_bundle(read_table(data), out, config, source=data.name)
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    metrics = {k: v for k, v in manifest.metrics.items() if k not in ("calibration", "confusion_matrix")}
    typer.echo(json.dumps({"version": manifest.version, "bundle": str(out), "metrics": metrics}, indent=2))


lake_app = typer.Typer(help="The data lake: Athena DDL, queries, compaction.", no_args_is_help=True)
app.add_typer(lake_app, name="lake")


@lake_app.command("ddl")
def lake_ddl(
    location: Annotated[
        str | None, typer.Option(help="Table location (s3://bucket/prefix); default LEADSCORE_LAKE_URI.")
    ] = None,
    table: Annotated[str | None, typer.Option(help="Table name; default lead_score_<env>.")] = None,
) -> None:
    """Print the Athena CREATE EXTERNAL TABLE (partition projection: no MSCK REPAIR needed)."""
    from leadscore.lake.ddl import athena_ddl  # noqa: PLC0415

    settings = load_settings()
    typer.echo(athena_ddl(table or settings.table_name, location or settings.lake_uri), nl=False)


@lake_app.command("query")
def lake_query(
    sql: Annotated[str, typer.Argument(help="SQL; the lake is the table named as in Athena (lead_score_<env>).")],
    output: Annotated[str, typer.Option(help="table, json or csv.")] = "table",
) -> None:
    """Run SQL over the lake (local or S3) with DuckDB."""
    import csv  # noqa: PLC0415

    from leadscore.app import open_lake_store  # noqa: PLC0415
    from leadscore.lake.query import run_query  # noqa: PLC0415

    settings = load_settings()
    try:
        names, rows = run_query(open_lake_store(settings), settings.table_name, sql)
    except Exception as exc:  # any SQL or storage error is reported to the user as such
        raise _fail(f"query failed: {exc}") from exc
    if output == "json":
        typer.echo(json.dumps([dict(zip(names, row, strict=True)) for row in rows], default=str, indent=2))
    elif output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
    else:
        widths = [max([len(n)] + [len(str(r[i])) for r in rows]) for i, n in enumerate(names)]
        typer.echo("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
        for row in rows:
            typer.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))
        typer.echo(f"({len(rows)} rows)")


@lake_app.command("compact")
def lake_compact(
    day: Annotated[str, typer.Option("--date", help="The UTC day to compact, YYYY-MM-DD.")],
    force: Annotated[bool, typer.Option(help="Allow today's partition (still being written).")] = False,
) -> None:
    """Merge a day's small Parquet files into one; no row lost or duplicated."""
    from leadscore.app import open_lake_store  # noqa: PLC0415
    from leadscore.lake.compact import compact_day  # noqa: PLC0415

    try:
        when = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).date()
    except ValueError as exc:
        raise _fail(f"--date must be YYYY-MM-DD, got {day!r}") from exc
    if when >= datetime.now(UTC).date() and not force:
        raise _fail("today's partition is still being written; compact past days (or pass --force)")
    result = compact_day(open_lake_store(load_settings()), when)
    typer.echo(
        json.dumps(
            {"partition": result.partition, "input_files": result.input_files, "rows": result.rows,
             "output": result.output_key}
        )
    )  # fmt: skip


keys_app = typer.Typer(help="API keys: the service stores only their hashes.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    label: Annotated[str, typer.Option(help="Who holds the key, e.g. crm-sync (letters, digits, '.', '_', '-').")],
) -> None:
    """Create an API key: prints the key once, and the entry that configures the service with its hash."""
    from leadscore.api.security import generate_key  # noqa: PLC0415

    try:
        key, entry = generate_key(label)
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    typer.echo(f"API key {entry.key_id} for {entry.label} (shown only now; it cannot be recovered, only replaced):")
    typer.echo(f"  {key}")
    typer.echo("Configure the service with its hash (join entries with commas; a keys file takes one a line):")
    typer.echo(f"  LEADSCORE_API_KEYS={entry.entry()}")


@app.command()
def loadtest(
    env: Annotated[TargetEnv, typer.Option(help="dev: the full load test; prod: the conservative smoke test.")],
    url: Annotated[str, typer.Option(envvar="LOADTEST_URL", help="Base URL of the running service.")],
    api_key: Annotated[
        str | None, typer.Option(envvar="LOADTEST_API_KEY", help="API key, sent as X-API-Key.", show_default=False)
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Where to write the JSON report; default data/loadtest/<env>-<time>.json.")
    ] = None,
) -> None:
    """Load-test (dev) or smoke-test (prod) a running service; exits 1 when a published threshold fails."""
    import asyncio  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from leadscore.loadtest.suites import run_suite  # noqa: PLC0415

    # One log line per request would bury the report.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    result = asyncio.run(run_suite(env, url, api_key))
    path = report or Path("data/loadtest") / f"{env.value}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    result.write_json(path)
    typer.echo(result.text())
    typer.echo(f"JSON report: {path}")
    if not result.passed:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the `leadscore` script."""
    app()
