"""Per-environment settings of the infrastructure: code defaults for dev and prod, overridden from CDK context.

The context key `leadscore` (cdk.json, or `-c leadscore='{...}'`) holds one object per environment, e.g.
`{"prod": {"account": "123456789012", "region": "eu-west-1", "maxTasks": 20}}`; keys are the camelCase field
names below. Unknown keys are an error, so a misspelt setting never passes silently.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

ENVIRONMENTS: Final = ("dev", "prod")
# The EMF namespace the service writes to (LEADSCORE_EMF_NAMESPACE); the alarms and dashboard read it.
METRICS_NAMESPACE: Final = "LeadScoring"
CONTAINER_PORT: Final = 8000
# Where the service writes; a volume, because the root filesystem is read-only.
DATA_DIR: Final = "/var/lib/leadscore"
# The spool root (LEADSCORE_SPOOL_DIR): an EFS access point shared by the service's tasks, so rows acknowledged
# by a task that died are adopted by a live one instead of being deleted with the task's storage.
SPOOL_DIR: Final = "/var/spool/leadscore"
# The image's service user (Dockerfile `USER 10001:10001`); the spool's access point writes as this user.
CONTAINER_UID: Final = 10001
CONTAINER_GID: Final = 10001
# ECS sends SIGKILL at most 120 s after SIGTERM, whatever the task definition asks for.
MAX_STOP_TIMEOUT_SECONDS: Final = 120
# Time past the service's own shutdown grace for the process to exit (S3 calls are bounded by the grace,
# then the exit itself) before ECS kills it.
STOP_MARGIN_SECONDS: Final = 10


@dataclass(frozen=True, slots=True)
class ExistingVpc:
    """An existing VPC to deploy into instead of a new one (all ids are needed: no lookup at synth time)."""

    vpc_id: str
    availability_zones: tuple[str, ...]
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EnvironmentConfig:
    """Everything that differs between dev and prod. One stack definition reads it."""

    name: str
    region: str = "eu-west-1"
    # None: the account of the credentials `cdk deploy` runs with (CDK_DEFAULT_ACCOUNT).
    account: str | None = None
    # Fargate task size: 512 CPU units (half a vCPU) and 1 GiB; one uvicorn worker per whole vCPU, at least one.
    cpu: int = 512
    memory_mib: int = 1024
    min_tasks: int = 1
    max_tasks: int = 4
    cpu_target_percent: int = 60
    requests_per_target_per_minute: int = 20_000
    # The ALB stops sending new requests at once; requests in flight finish well within this.
    deregistration_delay_seconds: int = 15
    # ECS waits this long after SIGTERM before SIGKILL; the service drains and flushes the lake within
    # shutdown_grace_seconds, which must be shorter.
    stop_timeout_seconds: int = 120
    shutdown_grace_seconds: int = 100
    nat_gateways: int = 1
    log_retention_days: int = 30
    # Lake objects move to Intelligent-Tiering after this many days; expire after lake_expiry_days (0: never).
    lake_tiering_days: int = 30
    lake_expiry_days: int = 0
    athena_results_days: int = 30
    athena_bytes_scanned_cutoff: int = 10 * 1024**3
    # Alarm thresholds (see README "Deploy: alarms").
    alarm_5xx_percent: float = 5.0
    alarm_p99_latency_seconds: float = 2.0
    alarm_lake_backlog_age_seconds: int = 900
    alarm_lake_backlog_bytes: int = 1024**3
    alarm_email: str | None = None
    api_keys_secret_name: str = ""
    log_level: str = "INFO"
    vpc: ExistingVpc | None = None
    # GitHub repository (owner/name) whose workflows may deploy this environment through OIDC; None: no role.
    github_repo: str | None = None
    github_branch: str = "dev"
    # ARN of the account's GitHub OIDC provider when it exists already (one per account); None creates it.
    github_oidc_provider_arn: str | None = None
    # Resources that hold data survive a stack deletion in prod (and the ALB cannot be deleted by accident).
    protect_data: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def stack_name(self) -> str:
        """The service stack: network, load balancer, ECS, lake and monitoring."""
        return f"leadscore-{self.name}"

    @property
    def bootstrap_stack_name(self) -> str:
        """The stack deployed once before the first image: the image repository and the CI role."""
        return f"leadscore-{self.name}-bootstrap"

    @property
    def repository_name(self) -> str:
        """ECR repository of this environment's images."""
        return f"leadscore-{self.name}"

    @property
    def table_name(self) -> str:
        """Athena table of the lake (the service's default table name, lead_score_<env>)."""
        return f"lead_score_{self.name}"

    @property
    def lake_prefix(self) -> str:
        """Key prefix of the lake in its bucket; the task may write under it and nowhere else."""
        return self.table_name

    @property
    def workers(self) -> int:
        """Uvicorn workers: one per whole vCPU, at least one."""
        return max(1, self.cpu // 1024)

    @property
    def secret_name(self) -> str:
        """Secrets Manager secret with the API key entries (hashes) for LEADSCORE_API_KEYS."""
        return self.api_keys_secret_name or f"leadscore/{self.name}/api-keys"


DEFAULTS: Final[dict[str, EnvironmentConfig]] = {
    "dev": EnvironmentConfig(name="dev", github_branch="dev", tags={"environment": "dev"}),
    "prod": EnvironmentConfig(
        name="prod",
        min_tasks=2,
        max_tasks=10,
        nat_gateways=2,
        log_retention_days=365,
        alarm_5xx_percent=1.0,
        alarm_p99_latency_seconds=1.0,
        github_branch="main",
        protect_data=True,
        tags={"environment": "prod"},
    ),
}

_FIELDS: Final = {f.name for f in dataclasses.fields(EnvironmentConfig)} - {"name"}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _vpc(value: Mapping[str, Any]) -> ExistingVpc:
    try:
        return ExistingVpc(
            vpc_id=str(value["vpcId"]),
            availability_zones=tuple(value["availabilityZones"]),
            public_subnet_ids=tuple(value["publicSubnetIds"]),
            private_subnet_ids=tuple(value["privateSubnetIds"]),
        )
    except KeyError as exc:
        raise ValueError(f"vpc needs vpcId, availabilityZones, publicSubnetIds and privateSubnetIds: {exc}") from exc


def environment_config(name: str, overrides: Mapping[str, Any] | None = None) -> EnvironmentConfig:
    """The settings of environment `name`: its defaults with `overrides` (camelCase keys) applied."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown environment {name!r}; expected one of {', '.join(ENVIRONMENTS)}")
    changes: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        attr = _snake(key)
        if attr not in _FIELDS:
            raise ValueError(f"unknown setting {key!r} for environment {name}")
        changes[attr] = _vpc(value) if attr == "vpc" and value is not None else value
    config = dataclasses.replace(DEFAULTS[name], **changes)
    if config.stop_timeout_seconds > MAX_STOP_TIMEOUT_SECONDS:
        raise ValueError(f"{name}: ECS allows a stop timeout of {MAX_STOP_TIMEOUT_SECONDS} s at most")
    if config.shutdown_grace_seconds + STOP_MARGIN_SECONDS > config.stop_timeout_seconds:
        raise ValueError(f"{name}: the stop timeout must cover the shutdown grace plus {STOP_MARGIN_SECONDS} s to exit")
    if config.min_tasks < 1 or config.max_tasks < config.min_tasks:
        raise ValueError(f"{name}: need 1 <= minTasks <= maxTasks")
    return config


def configs_from_context(context: Mapping[str, Any] | None, only: str | None = None) -> list[EnvironmentConfig]:
    """The environments to synthesize: all of them, or `only` (context `env`)."""
    context = context or {}
    unknown = set(context) - set(ENVIRONMENTS)
    if unknown:
        raise ValueError(f"context `leadscore` has unknown environments: {', '.join(sorted(unknown))}")
    names = [only] if only else list(ENVIRONMENTS)
    return [environment_config(name, context.get(name)) for name in names]
