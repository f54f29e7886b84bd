"""`leadscore report` and `leadscore drift ...`: the model judged on outcomes, and drift over the lake.

Both read the lake as `leadscore lake query` does (DuckDB over the current snapshot's data files) beside the
outcomes table; they need no API keys and never create a table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadscore.batch.command import EncodingOption
from leadscore.config import Settings, load_settings
from leadscore.errors import LeadscoreError

if TYPE_CHECKING:
    import duckdb

    from leadscore.drift.figures import Drift
    from leadscore.features.picklists import CategoryMap
    from leadscore.report.sql import Scope

drift_app = typer.Typer(help="Drift of the model's inputs against its training data.", no_args_is_help=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _moment(text: str | None, option: str) -> datetime | None:
    """An ISO 8601 date or time as naive UTC (the lake's timestamps); None when not given."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _fail(f"{option} must be an ISO 8601 date or time such as 2026-11-01, got {text!r}", 2) from exc
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@dataclass(frozen=True, slots=True)
class Lake:
    """A DuckDB connection with the predictions and the outcomes registered under their Athena names."""

    connection: duckdb.DuckDBPyConnection
    predictions: str
    outcomes: str


def open_lake(settings: Settings, *, outcomes: bool = True) -> Lake:
    """The lake's current snapshot and (`outcomes`) the outcomes, deduplicated, registered on a fresh connection."""
    import duckdb  # noqa: PLC0415 - keeps `leadscore --help` fast

    from leadscore.lake.errors import LakeError  # noqa: PLC0415
    from leadscore.lake.query import table_dataset  # noqa: PLC0415
    from leadscore.lake.table import has_delete_files, load_table  # noqa: PLC0415
    from leadscore.outcomes.table import read_outcomes, table_name  # noqa: PLC0415

    config = settings.lake_table_config()
    try:
        table = load_table(config, create=False)
    except LakeError as exc:
        raise _fail(str(exc)) from exc
    connection = duckdb.connect()
    source: object = table.scan().to_arrow() if has_delete_files(table) else table_dataset(table, config)
    connection.register(config.name, source)
    name = table_name(settings)
    if outcomes:
        connection.register(name, read_outcomes(settings))
    return Lake(connection, config.name, name)


def _bundle(settings: Settings, bundle: Path | None) -> tuple[dict[str, Any] | None, CategoryMap]:
    from leadscore.model.bundle import bundle_category_map, default_bundle_dir, load_reference  # noqa: PLC0415

    directory = bundle or settings.model_dir or default_bundle_dir()
    try:
        return load_reference(directory), bundle_category_map(directory, settings.category_map_file)
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc


def _drift(lake: Lake, scope: Scope, settings: Settings, bundle: Path | None) -> Drift | None:
    from leadscore.drift.figures import drift  # noqa: PLC0415

    reference, categories = _bundle(settings, bundle)
    if reference is None:
        typer.echo("no drift: the model bundle has no reference.json (see `leadscore drift reference`)", err=True)
        return None
    return drift(lake.connection, scope, reference, categories)


WindowOption = Annotated[int, typer.Option(min=1, help="Days after its first score an outcome counts for a lead.")]
SinceOption = Annotated[str | None, typer.Option(help="Only scores from this UTC date/time (ISO 8601).")]
UntilOption = Annotated[str | None, typer.Option(help="Only scores before this UTC date/time (ISO 8601).")]
BundleOption = Annotated[
    Path | None, typer.Option(help="Bundle whose reference bins drift is measured against; default: the served one.")
]


def report(
    window_days: WindowOption = 90,
    since: SinceOption = None,
    until: UntilOption = None,
    converted_from_score: Annotated[
        int, typer.Option(min=2, max=5, help="An outcome without `converted` is a conversion from this score up.")
    ] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    html: Annotated[Path | None, typer.Option(help="Also write the report with charts as one HTML file.")] = None,
    bundle: BundleOption = None,
    sql: Annotated[bool, typer.Option("--sql", help="Print the report's SQL (runs in Athena as is) and exit.")] = False,
) -> None:
    """Judge the model on outcomes: per score share, conversions, recall, rate and lift; calibration, AUC, drift."""
    from leadscore.report import sql as statements  # noqa: PLC0415
    from leadscore.report.judge import as_json as report_json  # noqa: PLC0415
    from leadscore.report.judge import judge  # noqa: PLC0415
    from leadscore.report.sql import Scope  # noqa: PLC0415
    from leadscore.report.text import report_text  # noqa: PLC0415

    try:
        settings = load_settings()
    except LeadscoreError as exc:
        raise _fail(exc.message, 2) from exc
    from leadscore.outcomes.table import table_name  # noqa: PLC0415

    scope = Scope(
        predictions=settings.table_name,
        outcomes=table_name(settings),
        test_patterns=tuple(settings.test_request_patterns),
        since=_moment(since, "--since"),
        until=_moment(until, "--until"),
        window_days=window_days,
        converted_from_score=converted_from_score,
    )
    if sql:
        judged = statements.judged(scope)
        typer.echo(f"CREATE TABLE judged AS\n{judged};\n\n{statements.by_score('judged')};")
        typer.echo(f"\n{statements.calibration('judged')};\n\n{statements.probability_auc('judged')};")
        return
    started = time.perf_counter()
    lake = open_lake(settings)
    try:
        reports = judge(lake.connection, scope)
        figures = _drift(lake, scope, settings, bundle)
    finally:
        lake.connection.close()
    probability = statements.probability(scope)
    if as_json:
        body = {
            "window_days": window_days,
            "probability": probability,
            "models": [report_json(r) for r in reports],
            "drift": figures.as_json() if figures is not None else None,
        }
        typer.echo(json.dumps(body, indent=2, default=str))
    else:
        typer.echo(report_text(reports, figures, probability), nl=False)
    if html is not None:
        from leadscore.report.html import report_page  # noqa: PLC0415

        where = f"Leads first scored {since or 'any time'} to {until or 'now'}; outcomes within {window_days} days."
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(report_page(reports, figures, probability, where), encoding="utf-8")
        typer.echo(f"wrote {html}", err=True)
    typer.echo(f"report took {time.perf_counter() - started:.2f} s", err=True)


@drift_app.command("export")
def drift_export(
    hours: Annotated[
        float, typer.Option(min=0.1, help="Measure the production rows of the last this many hours.")
    ] = 24,
    bundle: BundleOption = None,
    prometheus_file: Annotated[
        Path | None, typer.Option(help="Also write the gauges in Prometheus text format (node exporter textfile).")
    ] = None,
) -> None:
    """Measure drift once and export it: EMF lines on stdout (CloudWatch) and Prometheus gauges; run on a schedule."""
    from leadscore.report.sql import Scope  # noqa: PLC0415
    from leadscore.telemetry.emf import drift_documents, write_stdout  # noqa: PLC0415
    from leadscore.telemetry.metrics import set_drift, write_drift_textfile  # noqa: PLC0415

    try:
        settings = load_settings()
    except LeadscoreError as exc:
        raise _fail(exc.message, 2) from exc
    until = datetime.now(UTC).replace(tzinfo=None)
    scope = Scope(
        predictions=settings.table_name,
        outcomes="",
        test_patterns=tuple(settings.test_request_patterns),
        since=until - timedelta(hours=hours),
        until=until,
    )
    lake = open_lake(settings, outcomes=False)  # drift reads the predictions only
    try:
        figures = _drift(lake, scope, settings, bundle)
        version = _model_version(settings, bundle)
    finally:
        lake.connection.close()
    if figures is None:
        raise typer.Exit(1)
    psi = {i.field: i.psi for i in figures.inputs}
    unknown = {i.field: i.unknown_share for i in figures.inputs if i.unknown_share is not None}
    rows = sum(d.leads for d in figures.days)
    low = sum(d.low_confidence_share * d.leads for d in figures.days) / rows if rows else 0.0
    set_drift(psi, unknown, low)
    for document in drift_documents(
        settings.emf_namespace, settings.env.value, version, int(time.time() * 1000), psi, unknown, low
    ):
        write_stdout(json.dumps(document))
    if prometheus_file is not None:
        write_drift_textfile(prometheus_file)
    typer.echo(f"drift over {rows:,} rows: largest PSI {figures.max_psi:.3f}, drifting: {figures.drifted}", err=True)


def _model_version(settings: Settings, bundle: Path | None) -> str:
    from leadscore.model.bundle import MANIFEST_FILE, Manifest, default_bundle_dir  # noqa: PLC0415

    directory = bundle or settings.model_dir or default_bundle_dir()
    return Manifest.from_json((directory / MANIFEST_FILE).read_text(encoding="utf-8")).version


@drift_app.command("reference")
def drift_reference(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory that gets reference.json.")],
    data: Annotated[Path, typer.Argument(help="The table (.parquet or .csv) the bundle was trained on.")],
    as_of: Annotated[str, typer.Option(help="The training run's --as-of (recency is measured from it).")] = (
        "2026-01-01T00:00:00+00:00"
    ),
    encoding: EncodingOption = None,
) -> None:
    """Compute a bundle's reference bins from its training data (`train` does it for new bundles)."""
    from leadscore.training.contract import read_table  # noqa: PLC0415
    from leadscore.training.train import record_reference  # noqa: PLC0415

    moment = _moment(as_of, "--as-of") or datetime(2026, 1, 1)  # noqa: DTZ001 - naive UTC, zoned below
    if not (bundle / "manifest.json").is_file():
        raise _fail(f"{bundle} is not a model bundle (no manifest.json)", 2)
    try:
        reference = record_reference(bundle, read_table(data, encoding), moment.replace(tzinfo=UTC))
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    typer.echo(f"wrote {bundle / 'reference.json'} from {reference['rows']} rows")
