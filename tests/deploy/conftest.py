"""Fixtures for the infrastructure tests: the CDK app synthesized once, and the external linters.

Outside CI a missing linter skips its test (run scripts/setup-iac.sh); with CI set it fails, so nothing is
silently left unchecked.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK_DIR = ROOT / "deploy" / "cdk"
TOOLS_VENV = ROOT / ".venv-tools"
if str(CDK_DIR) not in sys.path:
    sys.path.insert(0, str(CDK_DIR))

# jsii (the bridge from Python to the CDK's JavaScript) warns loudly about the Node version on every start.
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")

from aws_cdk import App  # noqa: E402 - after the jsii settings above
from aws_cdk.assertions import Template  # noqa: E402
from leadscore_infra.app import build_app  # noqa: E402

ACCOUNT = "123456789012"
GITHUB_REPO = "example-org/leadscore"


def require_tool(path: Path | str | None, name: str) -> str:
    """The tool's path; a skip outside CI when it is missing, a failure in CI."""
    if path is not None and Path(path).is_file() and os.access(path, os.X_OK):
        return str(path)
    message = f"{name} is not installed: run scripts/setup-iac.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def venv_tool(name: str) -> str:
    """A tool installed in the project's virtual environment (the `deploy` dependency group)."""
    return require_tool(Path(sys.executable).parent / name, name)


def cdk_json_context() -> dict[str, Any]:
    """The context the CDK command line would pass from cdk.json (feature flags and settings)."""
    context: dict[str, Any] = json.loads((CDK_DIR / "cdk.json").read_text())["context"]
    return context


# What `cdk synth` with credentials would look up and cache in cdk.context.json for a known account.
LOOKUPS = {f"availability-zones:account={ACCOUNT}:region=eu-west-1": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]}


def synth_app(overrides: Mapping[str, Any], outdir: Path) -> App:
    """The app with cdk.json's context plus `overrides` for the `leadscore` settings (and `env`)."""
    context = {**cdk_json_context(), **LOOKUPS}
    settings = dict(context.get("leadscore", {}))
    for name, values in overrides.get("leadscore", {}).items():
        settings[name] = {**settings.get(name, {}), **values}
    context.update({k: v for k, v in overrides.items() if k != "leadscore"}, leadscore=settings)
    app = build_app(context, outdir=str(outdir))
    app.synth()
    return app


@pytest.fixture(scope="session")
def cdk_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The app synthesized once for both environments, with an account and a GitHub repository configured."""
    if shutil.which("node") is None:
        require_tool(None, "node")
    outdir = tmp_path_factory.mktemp("cdk.out")
    overrides = {
        "leadscore": {
            name: {"account": ACCOUNT, "githubRepo": GITHUB_REPO, "alarmEmail": f"ops-{name}@example.com"}
            for name in ("dev", "prod")
        }
    }
    synth_app(overrides, outdir)
    return outdir


def template(cdk_out: Path, stack: str) -> Template:
    """Assertions over one synthesized stack."""
    return Template.from_json(json.loads((cdk_out / f"{stack}.template.json").read_text()))


@pytest.fixture(scope="session")
def dev(cdk_out: Path) -> Template:
    """The dev service stack."""
    return template(cdk_out, "leadscore-dev")


@pytest.fixture(scope="session")
def prod(cdk_out: Path) -> Template:
    """The prod service stack."""
    return template(cdk_out, "leadscore-prod")


@pytest.fixture(scope="session")
def dev_bootstrap(cdk_out: Path) -> Template:
    """The dev bootstrap stack (ECR repository, CI role)."""
    return template(cdk_out, "leadscore-dev-bootstrap")


@pytest.fixture(scope="session")
def dev_json(cdk_out: Path) -> dict[str, Any]:
    """The dev service template as plain JSON (for walking policies and intrinsic functions)."""
    loaded: dict[str, Any] = json.loads((cdk_out / "leadscore-dev.template.json").read_text())
    return loaded
