"""The service's settings: one class, read from `LEADSCORE_*` environment variables."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    log_level: str = Field(default="INFO", description="Log level of the JSON logs (DEBUG, INFO, WARNING, ERROR).")
    max_leads_per_request: int = Field(
        default=500, ge=1, le=500, description="Most leads one scoring request may carry (the contract allows 500)."
    )

    # --- data lake ---------------------------------------------------------------------------------------
    lake_uri: str = Field(
        default="data/lake", description="Where Parquet files go: a local directory or s3://bucket/prefix."
    )
    spool_dir: Path = Field(
        default=Path("data/spool"), description="Local directory where acknowledged rows wait for upload."
    )


def load_settings() -> Settings:
    """Settings from the environment (the only place the environment is read)."""
    return Settings()
