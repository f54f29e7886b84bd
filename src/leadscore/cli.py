"""The `leadscore` command: serve, synth, train and the tools built on them."""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from leadscore.batch.command import EncodingOption
from leadscore.batch.command import score as score_command
from leadscore.config import load_settings
from leadscore.errors import ConfigError, LeadscoreError
from leadscore.lake_commands import lake_app, spool_exit_status
from leadscore.loadtest.thresholds import TargetEnv
from leadscore.outcomes.commands import outcomes_app
from leadscore.report.commands import drift_app
from leadscore.report.commands import report as report_command
from leadscore.runtime import collect_nothing_at_exit, leave_out_pandas
from leadscore.telemetry.logging import configure_logging, get_logger

if TYPE_CHECKING:
    from leadscore.api.security import ApiKey
    from leadscore.training.train import TrainConfig

app = typer.Typer(
    help="leadscore: B2B lead scoring with XGBoost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
log = get_logger("leadscore.cli")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"leadscore {metadata.version('leadscore')}")
        raise typer.Exit


@app.callback()
def _setup(
    version: Annotated[  # noqa: ARG001 - acted on by its eager callback
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
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
    from leadscore.model.bundle import check_bundle, default_bundle_dir  # noqa: PLC0415

    try:
        settings = load_settings()
    except LeadscoreError as exc:
        raise _fail(f"cannot start: {exc.message}") from exc
    configure_logging(settings.log_level)
    try:
        # Check the bundle and the keys before any worker starts: a bad bundle or a keyless prod must stop
        # the server with a clear message, not loop workers.
        # XGBoost's own predictor is enough for the check; the workers build the fast path themselves.
        model_version = check_bundle(settings.model_dir or default_bundle_dir(), settings.category_map_file).version
        load_keyring(settings)
    except LeadscoreError as exc:
        raise _fail(f"cannot start: {exc.message}") from exc
    log.info("starting", host=host, port=port, workers=workers, model_version=model_version, env=settings.env)
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting 0 then tells ECS (and tests) the stop
    # was clean: in-flight requests answered and the lake flushed.
    # ... unless rows were left on the spool (the store was down past the grace): then a non-zero exit says so.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(spool_exit_status(settings.spool_dir)))
    from leadscore.serving import run, server_config  # noqa: PLC0415

    try:
        run(server_config(settings, host, port, workers))
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    status = spool_exit_status(settings.spool_dir)
    if status:
        raise typer.Exit(status)


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Output file (.parquet or .csv).")] = Path("data/synthetic.parquet"),
    rows: Annotated[int, typer.Option(min=10, help="Number of leads.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 7,
) -> None:
    """Write a deterministic synthetic training set with an `outcome` column (1..5)."""
    from leadscore.training.synth import check_table_path, synthesize, write_table  # noqa: PLC0415

    try:
        check_table_path(out)  # before the rows are made
        write_table(synthesize(rows, seed), out)
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    typer.echo(f"wrote {rows} rows to {out}")


@app.command()
def train(
    data: Annotated[
        Path | None, typer.Argument(help="Training data (.parquet or .csv) with an `outcome` column.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Bundle directory to write.")] = Path("data/model"),
    rounds: Annotated[int, typer.Option(min=1, help="Boosting rounds per class.")] = 200,
    max_depth: Annotated[int, typer.Option(min=1, help="Tree depth.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed for the split and the trees.")] = 7,
    version: Annotated[str | None, typer.Option(help="Model version; default: date + hash.")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Reference time (ISO 8601) for recency features; default 2026-01-01.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace the bundle (or directory) already at --out.")] = False,
    allow_missing_columns: Annotated[
        bool, typer.Option(help="Train even when feature columns are absent (their values count as missing).")
    ] = False,
    category_map: Annotated[
        Path | None,
        typer.Option(help="JSON/YAML file of CRM picklist forms ({field: {form: value}}) added to the packaged map."),
    ] = None,
    from_lake: Annotated[
        bool,
        typer.Option(help="Train a challenger on the lake's production scores and the outcomes after them (no DATA)."),
    ] = False,
    window_days: Annotated[
        float | None,
        typer.Option(min=0.01, help="--from-lake: days after a score an outcome labels it (default 90)."),
    ] = None,
    holdout: Annotated[
        float | None,
        typer.Option(
            min=0.05, max=0.5, help="--from-lake: share of labelled leads held out to compare the models (default 0.2)."
        ),
    ] = None,
    encoding: EncodingOption = None,
) -> None:
    """Train a model bundle and print its evaluation on a held-out split (progress on stderr)."""
    from leadscore.features.picklists import load_category_map  # noqa: PLC0415
    from leadscore.model.bundle import default_category_map  # noqa: PLC0415
    from leadscore.training.contract import read_table  # noqa: PLC0415
    from leadscore.training.train import TrainConfig, check_output_dir, train_bundle  # noqa: PLC0415

    if (data is None) == (not from_lake):
        raise _fail("give a DATA file or --from-lake (one of them)")
    if not from_lake and (window_days is not None or holdout is not None):
        raise _fail("--window-days and --holdout choose the lake's training set: they go with --from-lake")
    if data is not None and not data.is_file():
        raise _fail(f"no such file: {data}")
    options: dict[str, Any] = {}
    if as_of:
        try:
            moment = datetime.fromisoformat(as_of)
        except ValueError as exc:
            raise _fail(f"--as-of must be an ISO 8601 time such as 2026-01-01T00:00:00Z, got {as_of!r}") from exc
        options["as_of"] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    config = TrainConfig(num_boost_round=rounds, max_depth=max_depth, seed=seed, version=version, **options)
    if data is None:
        _train_from_lake(out, config, force, window_days, holdout)
        return
    try:
        # Before reading the data: a wrong --out must not cost the time of a training run.
        check_output_dir(out, force)
        categories = default_category_map()
        if category_map is not None:
            categories = categories.merged(load_category_map(category_map))
        manifest = train_bundle(
            read_table(data, encoding),
            out,
            config,
            source=data.name,
            force=force,
            allow_missing=allow_missing_columns,
            progress=lambda line: typer.echo(line, err=True),
            categories=categories,
        )
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    metrics = {k: v for k, v in manifest.metrics.items() if k not in ("calibration", "confusion_matrix")}
    typer.echo(json.dumps({"version": manifest.version, "bundle": str(out), "metrics": metrics}, indent=2))


def _train_from_lake(
    out: Path, config: TrainConfig, force: bool, window_days: float | None, holdout: float | None
) -> None:
    from leadscore.training.from_lake import HOLDOUT_FRACTION, WINDOW_DAYS, train_from_lake  # noqa: PLC0415

    try:
        report = train_from_lake(
            load_settings(),
            out,
            config,
            window_days=WINDOW_DAYS if window_days is None else window_days,
            holdout_fraction=HOLDOUT_FRACTION if holdout is None else holdout,
            force=force,
            progress=lambda x: typer.echo(x, err=True),
        )
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    typer.echo(json.dumps(report.as_dict(), indent=2))


@app.command()
def importance(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory whose manifest gets the importance.")],
    rows: Annotated[int, typer.Option(min=10, help="Synthetic held-out leads to explain.")] = 5000,
    seed: Annotated[int, typer.Option(help="Seed of those leads.")] = 8,
) -> None:
    """Record a bundle's global importance (mean |SHAP| per field) in its manifest (`train` does it for new ones)."""
    from leadscore.training.train import record_importance  # noqa: PLC0415

    if not (bundle / "manifest.json").is_file():
        raise _fail(f"{bundle} is not a model bundle (no manifest.json)")
    try:
        manifest = record_importance(bundle, rows, seed)
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    typer.echo(json.dumps({"bundle": str(bundle), "importance": manifest.importance}, indent=2))


@app.command()
def onedal(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory to save the oneDAL model in.")],
) -> None:
    """Save a bundle's model converted to oneDAL in it (`train` does it): each process that loads it starts sooner."""
    from leadscore.model.bundle import save_bundle_onedal  # noqa: PLC0415
    from leadscore.model.saved import ONEDAL_FILE  # noqa: PLC0415

    try:
        save_bundle_onedal(bundle)
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    typer.echo(json.dumps({"bundle": str(bundle), "saved": ONEDAL_FILE}))


app.add_typer(lake_app, name="lake")
app.add_typer(outcomes_app, name="outcomes")
# `leadscore score`: rescoring a whole file (leadscore.batch).
app.command("score")(score_command)
app.command("report")(report_command)
app.add_typer(drift_app, name="drift")


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


class ListFormat(StrEnum):
    """How `keys list` prints."""

    TABLE = "table"
    JSON = "json"


_KEYS_ENV: Final = "LEADSCORE_API_KEYS"
_KEYS_FILE_ENV: Final = "LEADSCORE_API_KEYS_FILE"
# Read as the service reads them, without the rest of the settings: listing or revoking keys needs no keys.
KeysOption = Annotated[
    str, typer.Option("--keys", envvar=_KEYS_ENV, help="Key entries, as in LEADSCORE_API_KEYS.", show_default=False)
]


def _unset_if_empty(path: Path | None) -> Path | None:
    # An empty LEADSCORE_API_KEYS_FILE means no file, as for the service (typer reads it as the current directory).
    return None if path is None or str(path) in ("", ".") else path


KeysFileOption = Annotated[
    Path | None,
    typer.Option(
        "--keys-file",
        envvar=_KEYS_FILE_ENV,
        callback=_unset_if_empty,
        help="Keys file, as in LEADSCORE_API_KEYS_FILE.",
        show_default=False,
    ),
]


def _configured_keys(keys: str, keys_file: Path | None) -> list[tuple[ApiKey, str]]:
    """The keys of the variable and of the file, each with where it is configured (parsed as the service does)."""
    from leadscore.api.security import parse_keys  # noqa: PLC0415 - keeps `leadscore --help` fast

    found = [(k, _KEYS_ENV) for k in parse_keys(keys)]
    if keys_file is not None:
        found.extend((k, str(keys_file)) for k in parse_keys(_read_keys_file(keys_file), where=keys_file.name))
    return found


def _read_keys_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read keys file {path}: {exc.strerror or exc}") from exc


@dataclass(frozen=True, slots=True)
class _Revoked:
    file: Path | None  # the keys file the key was removed from
    env_value: str | None  # the new LEADSCORE_API_KEYS value, when the key was there
    remaining: int


def _without_entry(text: str, key_id: str) -> tuple[str, bool]:
    """The keys file's text without `key_id`'s entry (comments and other entries kept), and whether it was there."""
    stripped = text.strip()
    if stripped.startswith("["):  # a JSON list of entries
        entries = json.loads(stripped)
        kept = [e for e in entries if e.split(":", 1)[0].strip() != key_id]
        return json.dumps(kept, indent=2) + "\n", len(kept) != len(entries)
    lines: list[str] = []
    removed = False
    for line in text.splitlines():
        content, hash_sign, comment = line.partition("#")
        entries = [e.strip() for e in content.split(",") if e.strip()]
        kept = [e for e in entries if e.split(":", 1)[0].strip() != key_id]
        if len(kept) == len(entries):
            lines.append(line)
            continue
        removed = True
        if kept:
            lines.append(", ".join(kept) + (f"  {hash_sign}{comment}" if hash_sign else ""))
        elif comment.strip():
            lines.append(f"{hash_sign}{comment}")
    return "\n".join(lines) + ("\n" if lines else ""), removed


def _revoke_key(key_id: str, keys: str, keys_file: Path | None) -> _Revoked:
    """Remove `key_id` from the keys file (rewritten in place) and/or from the variable's value."""
    from leadscore.api.security import parse_keys  # noqa: PLC0415 - keeps `leadscore --help` fast

    configured = _configured_keys(keys, keys_file)
    if not any(k.key_id == key_id for k, _ in configured):
        raise ConfigError(f"no key {key_id} in {_KEYS_ENV} or the keys file (see `leadscore keys list`)")
    changed_file: Path | None = None
    if keys_file is not None:
        text, removed = _without_entry(_read_keys_file(keys_file), key_id)
        if removed:
            parse_keys(text, where=keys_file.name)  # what is written must still be a valid keys file
            staged = keys_file.with_name(f".{keys_file.name}.new")
            staged.write_text(text, encoding="utf-8")
            staged.chmod(keys_file.stat().st_mode & 0o777)
            staged.replace(keys_file)
            changed_file = keys_file
    env_keys = parse_keys(keys)
    env_value = None
    if any(k.key_id == key_id for k in env_keys):
        env_value = ",".join(k.entry() for k in env_keys if k.key_id != key_id)
    return _Revoked(changed_file, env_value, remaining=len(configured) - 1)


@keys_app.command("list")
def keys_list(
    keys: KeysOption = "",
    keys_file: KeysFileOption = None,
    output: Annotated[ListFormat, typer.Option(help="table or json.")] = ListFormat.TABLE,
) -> None:
    """List the configured keys (id, label and where each is configured); no key or hash is printed."""
    try:
        found = _configured_keys(keys, keys_file)
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    if output is ListFormat.JSON:
        typer.echo(json.dumps([{"id": k.key_id, "label": k.label, "source": source} for k, source in found], indent=2))
        return
    if not found:
        typer.echo(f"no API keys configured ({_KEYS_ENV}, {_KEYS_FILE_ENV})")
        return
    width = max(len("label"), *(len(k.label) for k, _ in found))
    typer.echo(f"{'id':<8}  {'label':<{width}}  source")
    for key, source in found:
        typer.echo(f"{key.key_id:<8}  {key.label:<{width}}  {source}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="Id of the key (8 hex digits, as `keys list` shows).")],
    keys: KeysOption = "",
    keys_file: KeysFileOption = None,
) -> None:
    """Revoke a key: removed from the keys file in place, or the new LEADSCORE_API_KEYS value printed."""
    try:
        outcome = _revoke_key(key_id, keys, keys_file)
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    if outcome.file is not None:
        typer.echo(f"revoked key {key_id}: removed from {outcome.file} (restart or redeploy the service to apply)")
    if outcome.env_value is not None:
        typer.echo(f"revoked key {key_id}: configure the service with")
        typer.echo(f"  {_KEYS_ENV}={outcome.env_value}")
    if outcome.remaining == 0:
        typer.echo("warning: no API keys are left; with LEADSCORE_ENV=prod the service will not start", err=True)


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
    try:
        result = asyncio.run(run_suite(env, url, api_key))
    except LeadscoreError as exc:
        raise _fail(exc.message) from exc
    path = report or Path("data/loadtest") / f"{env.value}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    result.write_json(path)
    typer.echo(result.text())
    typer.echo(f"JSON report: {path}")
    if not result.passed:
        raise typer.Exit(1)


@app.command("deploy-summary")
def deploy_summary(
    report: Annotated[Path, typer.Option(help="The JSON report of `leadscore loadtest --report`.")],
    image_tag: Annotated[str | None, typer.Option(help="Tag of the deployed image.")] = None,
    image_digest: Annotated[str | None, typer.Option(help="Digest of the deployed image (sha256:...).")] = None,
    model_version: Annotated[
        str | None, typer.Option(help="Model version deployed; default: the one the service answered with.")
    ] = None,
    environment: Annotated[str | None, typer.Option(help="Environment deployed to; default: the report's.")] = None,
    notify_url: Annotated[
        str | None, typer.Option(envvar="DEPLOY_NOTIFY_URL", help="Webhook to POST the summary to (JSON).")
    ] = None,
    sns_topic: Annotated[
        str | None, typer.Option(envvar="DEPLOY_SNS_TOPIC_ARN", help="SNS topic ARN to publish the summary to.")
    ] = None,
) -> None:
    """Print a deployment's summary in Markdown (for $GITHUB_STEP_SUMMARY) and optionally notify a channel."""
    from leadscore.loadtest.summary import (  # noqa: PLC0415 - keeps `leadscore --help` fast
        Deployment,
        Summary,
        SummaryError,
        post_webhook,
        publish_sns,
        read_report,
    )

    if notify_url and sns_topic:
        raise _fail("give --notify-url or --sns-topic, not both")
    try:
        summary = Summary(Deployment(environment, image_tag, image_digest, model_version), read_report(report))
    except SummaryError as exc:
        raise _fail(exc.message) from exc
    typer.echo(summary.markdown(), nl=False)
    try:
        if notify_url:
            post_webhook(notify_url, summary)
            typer.echo(f"notified {notify_url}", err=True)
        elif sns_topic:
            typer.echo(f"published to {sns_topic}: message {publish_sns(sns_topic, summary)}", err=True)
    except SummaryError as exc:
        raise _fail(exc.message, code=1) from exc


def main() -> None:
    """Entry point of the `leadscore` script."""
    leave_out_pandas()
    try:
        app()
    finally:  # the command has returned or raised SystemExit: what is left is the interpreter's exit
        collect_nothing_at_exit()
