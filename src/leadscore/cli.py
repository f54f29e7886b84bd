"""The `leadscore` command: serve, synth, train and the tools built on them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from leadscore.config import load_settings
from leadscore.errors import LeadscoreError
from leadscore.telemetry.logging import configure_logging, get_logger

app = typer.Typer(help="leadscore: B2B lead scoring with XGBoost.", no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False
)
log = get_logger("leadscore.cli")


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
    from leadscore.app import load_scorer  # noqa: PLC0415 - keeps `leadscore --help` fast

    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        # Check the bundle before any worker starts: a bad bundle must stop the server, not loop workers.
        scorer = load_scorer(settings)
    except LeadscoreError as exc:
        raise _fail(f"cannot start: {exc.message}") from exc
    log.info("starting", host=host, port=port, workers=workers, model_version=scorer.version, env=settings.env)
    uvicorn.run(
        "leadscore.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        # Above an ALB's 60 s idle timeout, so the balancer closes idle connections, not us.
        timeout_keep_alive=75,
    )


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
        moment = datetime.fromisoformat(as_of)
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


def main() -> None:
    """Entry point of the `leadscore` script."""
    app()
