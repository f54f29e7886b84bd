"""Per-environment settings: defaults, context overrides and their checks."""

from __future__ import annotations

import pytest
from leadscore_infra.config import configs_from_context, environment_config


def test_defaults_give_the_issue_task_size() -> None:
    """Both environments default to 512 CPU units, 1 GiB and a 120 s stop timeout."""
    for name in ("dev", "prod"):
        config = environment_config(name)
        assert (config.cpu, config.memory_mib, config.stop_timeout_seconds) == (512, 1024, 120)


def test_camel_case_context_overrides_a_setting() -> None:
    """A camelCase context key replaces the matching setting."""
    assert environment_config("prod", {"maxTasks": 20}).max_tasks == 20


def test_unknown_setting_is_refused() -> None:
    """A misspelt setting is an error, not silently ignored."""
    with pytest.raises(ValueError, match="unknown setting 'maxTask'"):
        environment_config("dev", {"maxTask": 3})


def test_unknown_environment_is_refused() -> None:
    """Only dev and prod exist."""
    with pytest.raises(ValueError, match="unknown environment"):
        environment_config("staging")


def test_unknown_environment_in_context_is_refused() -> None:
    """The `leadscore` context may only hold dev and prod."""
    with pytest.raises(ValueError, match="unknown environments: qa"):
        configs_from_context({"qa": {}})


def test_stop_timeout_must_cover_grace_plus_margin() -> None:
    """The service's own shutdown, plus time to exit, must end before ECS kills the container."""
    with pytest.raises(ValueError, match="cover the shutdown grace plus 10 s"):
        environment_config("dev", {"shutdownGraceSeconds": 111})


def test_stop_timeout_above_what_ecs_allows_is_refused() -> None:
    """ECS kills 120 s after SIGTERM at most, so a longer stop timeout is an error, not a promise."""
    with pytest.raises(ValueError, match="120 s at most"):
        environment_config("dev", {"stopTimeoutSeconds": 180})


def test_task_counts_are_checked() -> None:
    """MaxTasks below minTasks is refused."""
    with pytest.raises(ValueError, match="minTasks <= maxTasks"):
        environment_config("dev", {"minTasks": 3, "maxTasks": 2})


def test_existing_vpc_needs_every_id() -> None:
    """An existing VPC without its subnet ids is refused (nothing is looked up at synth time)."""
    with pytest.raises(ValueError, match="privateSubnetIds"):
        environment_config(
            "dev", {"vpc": {"vpcId": "vpc-1", "availabilityZones": ["a"], "publicSubnetIds": ["subnet-1"]}}
        )


def test_workers_follow_whole_vcpus() -> None:
    """One worker per whole vCPU, at least one."""
    assert [environment_config("dev", {"cpu": cpu}).workers for cpu in (256, 512, 1024, 4096)] == [1, 1, 1, 4]


def test_env_context_selects_one_environment() -> None:
    """`-c env=prod` synthesizes prod only."""
    assert [c.name for c in configs_from_context({}, "prod")] == ["prod"]


def test_names_derive_from_the_environment() -> None:
    """Stack, repository, table and secret names are derived from the environment name."""
    config = environment_config("prod")
    assert (config.stack_name, config.repository_name, config.table_name, config.secret_name) == (
        "leadscore-prod",
        "leadscore-prod",
        "lead_score_prod",
        "leadscore/prod/api-keys",
    )
