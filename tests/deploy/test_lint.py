"""The linters and policy checks of the deployment: cfn-lint, checkov, hadolint, actionlint, shellcheck, cdk synth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.deploy.conftest import CDK_DIR, ROOT, TOOLS_VENV, require_tool, venv_tool

# W3005: CDK states DependsOn next to a Ref/GetAtt on purpose (ordering it must guarantee even if the
# reference changes); the warning only says the dependency is stated twice.
# W3010: a stack bound to an account pins the availability zones CDK looked up (cdk.context.json), so a
# subnet never moves to another zone between deployments; that is the point, not an oversight.
CFN_LINT_IGNORED = "W3005,W3010"


def run(command: list[str], cwd: Path = ROOT, timeout: float = 180, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion, capturing its output."""
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env={**os.environ, **env}
    )


def checkov() -> str:
    """Checkov from its own virtual environment (scripts/setup-iac.sh)."""
    return require_tool(TOOLS_VENV / "checkov" / "bin" / "checkov", "checkov")


def checkov_report(*args: str) -> dict[str, Any]:
    """Checkov's JSON report (one framework) for the given target."""
    result = run([checkov(), *args, "--skip-download", "--quiet", "--compact", "--output", "json"])
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report, dict), report
    return report


def failures(report: dict[str, Any]) -> list[str]:
    """One line per failed check."""
    return [f"{c['check_id']} {c['resource']} {c['check_name']}" for c in report["results"]["failed_checks"]]


def test_cfn_lint_passes_on_every_template(cdk_out: Path) -> None:
    """cfn-lint reports no error (and no warning beyond the ignored one) on the synthesized templates."""
    templates = sorted(str(p) for p in cdk_out.glob("*.template.json"))
    result = run([venv_tool("cfn-lint"), "--ignore-checks", CFN_LINT_IGNORED, "--", *templates])
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_on_the_templates(cdk_out: Path) -> None:
    """Checkov finds no failed check in the CloudFormation of both environments."""
    report = checkov_report("--directory", str(cdk_out), "--framework", "cloudformation")
    assert report["summary"]["resource_count"] > 100
    assert failures(report) == []


def test_every_checkov_skip_says_why(cdk_out: Path) -> None:
    """Each checkov skip in the templates carries a reason."""
    skips = [
        skip
        for path in cdk_out.glob("*.template.json")
        for resource in json.loads(path.read_text())["Resources"].values()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    assert all(len(skip["comment"]) > 20 for skip in skips), skips


def test_checkov_passes_on_the_dockerfile() -> None:
    """Checkov finds nothing to fail or skip in the Dockerfile."""
    report = checkov_report("--file", str(ROOT / "Dockerfile"), "--framework", "dockerfile")
    assert failures(report) == []
    assert report["summary"]["skipped"] == 0
    assert report["summary"]["passed"] > 0


def test_hadolint_passes_on_the_dockerfile() -> None:
    """Hadolint reports nothing on the Dockerfile."""
    result = run([venv_tool("hadolint"), "Dockerfile"])
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_actionlint_passes_on_the_workflows() -> None:
    """Actionlint (with shellcheck on the run scripts) reports nothing on .github/workflows."""
    require_tool(shutil.which("shellcheck"), "shellcheck")
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert len(workflows) >= 3
    result = run([venv_tool("actionlint"), *workflows])
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_shellcheck_passes_on_the_deploy_scripts() -> None:
    """The container test and the set-up scripts (IaC, signing) pass shellcheck."""
    shellcheck = require_tool(shutil.which("shellcheck"), "shellcheck")
    result = run([shellcheck, "scripts/container-test.sh", "scripts/setup-iac.sh", "scripts/setup-signing.sh"])
    assert result.returncode == 0, result.stdout


def test_cdk_command_line_synthesizes_the_app(tmp_path: Path) -> None:
    """`cdk synth` with cdk.json (the command the pipelines deploy with) writes all four templates."""
    cdk = require_tool(CDK_DIR / "node_modules" / ".bin" / "cdk", "the AWS CDK command line")
    require_tool(shutil.which("uv"), "uv")
    result = run(
        [cdk, "synth", "--quiet", "--no-notices", "--output", str(tmp_path)],
        cwd=CDK_DIR,
        timeout=300,
        CDK_DISABLE_CLI_TELEMETRY="true",
        JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION="1",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.template.json")) == [
        "leadscore-dev-bootstrap.template.json",
        "leadscore-dev.template.json",
        "leadscore-prod-bootstrap.template.json",
        "leadscore-prod.template.json",
    ]


def test_ruff_passes_on_the_cdk_app() -> None:
    """The CDK app meets the project's ruff rules and format, like src/ (./dev lint covers src, tests, bench)."""
    ruff = venv_tool("ruff")
    check = run([ruff, "check", "deploy/cdk"])
    assert check.returncode == 0, check.stdout
    formatted = run([ruff, "format", "--check", "deploy/cdk"])
    assert formatted.returncode == 0, formatted.stdout
