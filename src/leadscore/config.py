"""The service's settings: one class, read from `LEADSCORE_*` environment variables."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadscore.errors import ConfigError

if TYPE_CHECKING:
    from leadscore.lake.sink import LakeConfig
    from leadscore.lake.table import TableConfig


class Environment(StrEnum):
    """Where the service runs; selects defaults such as EMF output and key enforcement."""

    DEV = "dev"
    PROD = "prod"


class Settings(BaseSettings):
    """Every setting of the service. Each field is `LEADSCORE_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="LEADSCORE_", extra="ignore", frozen=True)

    env: Environment = Field(default=Environment.DEV, description="Deployment environment: dev or prod.")
    model_dir: Path | None = Field(
        default=None,
        description="Model bundle directory (booster + manifest); unset means the bundle shipped in the package.",
    )
    predictor: Literal["auto", "xgboost"] = Field(
        default="auto",
        description="auto: oneDAL's faster tree inference when it builds here and matches XGBoost on a load-time "
        "check (else XGBoost's, with a warning); xgboost: always XGBoost's own predictor.",
    )
    walk_small_calls: bool = Field(
        default=True,
        description="Score small calls (below 26 rows on Intel, 48 on CPUs with oneDAL's fixed 80-row blocks: the "
        "micro-batches of small requests) with the service's own tree "
        "walk (leadscore.model.walk), checked against XGBoost at load: 1-lead requests cost ~12% less CPU. It "
        "imports numba, ~110 MiB more per worker; false keeps every call with oneDAL (or XGBoost's predictor).",
    )
    explain_default: bool = Field(
        default=False,
        description="Explain every score (reasons and drivers) when a scoring request does not say; a request's "
        "`explain` wins. Explaining costs about a millisecond of CPU per lead.",
    )
    explainer_at_start: bool = Field(
        default=False,
        description="Build the explainer (TreeSHAP tables and compiled kernel) at start-up, before readiness, "
        "rather than at the first explained request (which then waits ~2 s). Costs ~120 MiB per worker; always on "
        "with explain_default.",
    )
    category_map_file: Path | None = Field(
        default=None,
        description="JSON or YAML file of CRM picklist forms, {field: {form: vocabulary value}}, added to the "
        "model bundle's own category map (where both list a form, this file wins).",
    )
    log_level: str = Field(default="INFO", description="Log level of the JSON logs (DEBUG, INFO, WARNING, ERROR).")

    # --- edge security and limits ------------------------------------------------------------------------
    api_keys: str = Field(
        default="",
        description="API keys as `id:label:sha256hex` entries (from `leadscore keys new`), comma-separated or a "
        "JSON list; hashes only, never keys. Required (here or in api_keys_file) to serve when env is prod.",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="File with more key entries, one per line (`#` comments allowed): e.g. a mounted secret.",
    )
    metrics_require_key: bool = Field(
        default=True, description="Whether /metrics needs an API key like the API does (when keys are configured)."
    )
    max_body_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest request body in bytes (2 MiB holds 500 full leads); larger gets 413 while reading.",
    )
    body_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Most seconds a client may take to send a request body; slower gets 408 and frees its slot.",
    )
    max_in_flight: int = Field(
        default=64,
        ge=1,
        description="Requests one worker handles at once; more get an immediate 503 with Retry-After, not a queue.",
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="Largest request line plus headers in bytes; larger gets 431 and the connection is closed.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Most seconds a client may take to send its request line and headers (slowloris); slower gets "
        "408 and the connection is closed.",
    )
    max_connections: int = Field(
        default=1024,
        ge=1,
        description="Open connections one worker keeps (a backstop below the file-descriptor limit); more get 503.",
    )

    # --- telemetry ---------------------------------------------------------------------------------------
    metrics_enabled: bool = Field(default=True, description="Record Prometheus metrics and serve them at GET /metrics.")
    emf_enabled: bool | None = Field(
        default=None,
        description="Write CloudWatch Embedded Metric Format lines to stdout; unset means on when env is prod.",
    )
    emf_namespace: str = Field(
        default="LeadScoring", min_length=1, max_length=255, description="CloudWatch namespace of the EMF metrics."
    )
    emf_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds each EMF line aggregates (one line per worker per interval, never one per request).",
    )

    # --- data lake ---------------------------------------------------------------------------------------
    lake_uri: str = Field(
        default="data/lake",
        description="The lake's Iceberg table location: a local directory or s3://bucket/prefix (data/ and "
        "metadata/ below it).",
    )
    lake_catalog: Literal["sql", "glue"] = Field(
        default="sql",
        description="Catalog of the lake's table: sql (SQLite or another SQLAlchemy database; local default) or "
        "glue (the AWS Glue Data Catalog, which Athena reads).",
    )
    lake_catalog_uri: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the sql catalog; default: a SQLite file catalog.db in a local lake_uri.",
    )
    lake_database: str | None = Field(
        default=None, description="Catalog namespace (Glue database) of the table; default leadscore_<env>."
    )
    spool_dir: Path = Field(
        default=Path("data/spool"),
        description="Directory where acknowledged rows wait for their commit (on ECS: EFS, shared by the tasks, "
        "so a live task adopts what a dead one left).",
    )
    lake_enabled: bool = Field(default=True, description="Record every prediction in the lake (off only for tests).")
    lake_durability: Literal["sync", "async"] = Field(
        default="sync",
        description="sync: a 2xx means the rows are fsync'd in the spool. async: a 2xx means they are written "
        "to it (in the OS's cache: a process crash loses nothing, a power loss or kernel crash can lose the last "
        "moments' rows); faster.",
    )
    lake_table: str | None = Field(
        default=None, description="Table name in Athena and `leadscore lake query`; default lead_score_<env>."
    )
    lake_segment_max_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=1024,
        description="Close a spool segment at this size (32 MiB: ~50k leads).",
    )
    lake_segment_max_age_seconds: float = Field(
        default=300.0, gt=0, description="Close a spool segment this long after its first row (data freshness)."
    )
    lake_spool_max_bytes: int = Field(
        default=2 * 1024 * 1024 * 1024,
        ge=1024,
        description="Spool cap per worker; at the cap scoring answers 503 until the table catches up.",
    )
    lake_commit_interval_seconds: float = Field(
        default=5.0,
        ge=0,
        description="Least time between two commits of a worker: closed segments arriving meanwhile share one.",
    )
    lake_commit_max_rows: int = Field(
        default=100_000, ge=1, description="Most rows in one commit (bounds the committer's memory)."
    )
    lake_commit_timeout_seconds: float = Field(
        default=120.0, gt=0, description="A commit taking longer is ended and retried (a hung store call)."
    )
    lake_adopt_interval_seconds: float = Field(
        default=30.0, gt=0, description="How often a worker looks for spools of dead processes to adopt."
    )
    lake_commit_in_subprocess: bool = Field(
        default=True,
        description="Commit in a child process of each worker, off the request worker's GIL.",
    )
    lake_retry_initial_seconds: float = Field(default=0.5, gt=0, description="First retry delay of a failed commit.")
    lake_retry_max_seconds: float = Field(default=30.0, gt=0, description="Longest retry delay of failed commits.")
    lake_snapshot_retention_hours: float = Field(
        default=24.0,
        gt=0,
        description="Snapshots older than this are expired by the committers (at most once an hour each): the "
        "table's metadata stays small. Also how long a committed spool segment is remembered, so keep it above the "
        "longest a segment can wait (a dead task's spool is adopted within a minute).",
    )
    lake_request_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Timeout of one request to S3 (the commit as a whole has its own)."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible store (Ceph, MinIO); unset means AWS S3."
    )
    s3_region: str | None = Field(default=None, description="S3 region; unset means the AWS SDK's default chain.")
    s3_checksum_when_required: bool | None = Field(
        default=None,
        description="Send request checksums only when required (needed by most non-AWS stores); default: on when "
        "s3_endpoint_url is set.",
    )
    glue_endpoint_url: str | None = Field(
        default=None, description="Endpoint of the Glue API (tests); unset means AWS Glue of the region."
    )
    test_request_patterns: list[str] = Field(
        default=["prod-verification", "prod-baseline-test", "prod-*", "load-test-*", "smoke-*"],
        description="Request ids (shell patterns) of smoke and load-test traffic; their rows get is_test = true.",
    )
    shutdown_grace_seconds: float = Field(
        default=25.0,
        gt=0,
        description="On SIGTERM: time for in-flight requests and the final lake flush (below ECS's stop timeout).",
    )

    @property
    def emf_on(self) -> bool:
        """Whether EMF lines are written (emf_enabled, or by default in prod)."""
        return self.env is Environment.PROD if self.emf_enabled is None else self.emf_enabled

    @property
    def table_name(self) -> str:
        """The lake's table name."""
        return self.lake_table or f"lead_score_{self.env.value}"

    @property
    def database_name(self) -> str:
        """The lake's catalog namespace (Glue database)."""
        return self.lake_database or f"leadscore_{self.env.value}"

    def lake_table_config(self) -> TableConfig:
        """Where the lake's table is, as the lake takes it."""
        from leadscore.lake.table import TableConfig  # noqa: PLC0415 - settings load without the lake's libraries

        return TableConfig(
            location=self.lake_uri,
            namespace=self.database_name,
            name=self.table_name,
            catalog=self.lake_catalog,
            catalog_uri=self.lake_catalog_uri,
            s3_endpoint_url=self.s3_endpoint_url,
            s3_region=self.s3_region,
            s3_checksum_when_required=self.s3_checksum_when_required,
            glue_endpoint_url=self.glue_endpoint_url,
            glue_region=self.s3_region,
            request_timeout_seconds=self.lake_request_timeout_seconds,
            snapshot_retention_seconds=self.lake_snapshot_retention_hours * 3600,
        )

    def lake_config(self) -> LakeConfig:
        """The lake sink's configuration (every default is this class's)."""
        from leadscore.lake.sink import LakeConfig  # noqa: PLC0415 - settings load without the lake's libraries

        return LakeConfig(
            spool_dir=self.spool_dir,
            table=self.lake_table_config(),
            durability=self.lake_durability,
            segment_max_bytes=self.lake_segment_max_bytes,
            segment_max_age_seconds=self.lake_segment_max_age_seconds,
            spool_max_bytes=self.lake_spool_max_bytes,
            retry_initial_seconds=self.lake_retry_initial_seconds,
            retry_max_seconds=self.lake_retry_max_seconds,
            commit_interval_seconds=self.lake_commit_interval_seconds,
            commit_max_rows=self.lake_commit_max_rows,
            commit_timeout_seconds=self.lake_commit_timeout_seconds,
            adopt_interval_seconds=self.lake_adopt_interval_seconds,
            commit_in_subprocess=self.lake_commit_in_subprocess,
        )

    @field_validator("api_keys_file", "category_map_file", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        # An empty LEADSCORE_API_KEYS_FILE (a blank task-definition entry) means no file, not the cwd.
        return None if value == "" else value


def load_settings() -> Settings:
    """Settings from the environment (the only place the environment is read); ConfigError if they are unusable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from exc
