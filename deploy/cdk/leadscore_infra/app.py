"""Build the CDK app: a bootstrap stack and a service stack for each environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import aws_cdk as cdk

from leadscore_infra.bootstrap import BootstrapStack
from leadscore_infra.config import configs_from_context
from leadscore_infra.service import ServiceStack


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> cdk.App:
    """The app with every environment's stacks (or only context `env`'s); `context` adds to cdk.json's."""
    app = cdk.App(context=dict(context or {}), outdir=outdir)
    settings = app.node.try_get_context("leadscore")
    only = app.node.try_get_context("env")
    for config in configs_from_context(settings, only):
        env = cdk.Environment(account=config.account or os.environ.get("CDK_DEFAULT_ACCOUNT"), region=config.region)
        description = f"leadscore {config.name}"
        BootstrapStack(app, config, env=env, description=f"{description}: image repository and CI role")
        ServiceStack(app, config, env=env, description=f"{description}: API on ECS Fargate, data lake, monitoring")
    return app
