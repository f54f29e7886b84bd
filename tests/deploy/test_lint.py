"""Linters and policy checks of the deployment (cfn-lint, checkov, hadolint, actionlint, shellcheck, cdk synth).

And the pipelines' own rules: pinned actions, signing, attestations, verification before deploy, summaries.
"""

from __future__ import annotations

import json
import os
import re
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


WORKFLOWS = ROOT / ".github" / "workflows"
OIDC_ISSUER = "https://token.actions.githubusercontent.com"


def workflow(name: str) -> dict[str, Any]:
    """A workflow file, parsed (PyYAML reads the `on:` key as True; no rule here looks at it)."""
    import yaml  # noqa: PLC0415 - only the workflow rules need it

    loaded: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def steps(name: str, job: str) -> list[dict[str, Any]]:
    """The steps of one job of a workflow."""
    found: list[dict[str, Any]] = workflow(name)["jobs"][job]["steps"]
    return found


def step_index(job_steps: list[dict[str, Any]], text: str) -> int:
    """Index of the first step whose `uses` or `run` contains `text`."""
    return next(i for i, s in enumerate(job_steps) if text in s.get("uses", "") + s.get("run", ""))


def test_every_action_is_pinned_to_a_commit() -> None:
    """Each `uses:` of another repository names a full commit SHA, with its version as a comment."""
    pattern = re.compile(r"^\s*-?\s*uses:\s*(\S+)(.*)$")
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text().splitlines():
            match = pattern.match(line)
            if not match or match.group(1).startswith("./"):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match.group(1)), f"{path.name}: {line}"
            assert re.fullmatch(r"\s*# v\d+(\.\d+)*", match.group(2)), f"{path.name}: {line}"


def test_release_signs_the_pushed_digest_keylessly() -> None:
    """The build job signs the image by digest with cosign, keyless (an OIDC token, no key)."""
    build = workflow("release.yml")["jobs"]["build"]
    assert build["permissions"]["id-token"] == "write"
    sign = steps("release.yml", "build")[step_index(steps("release.yml", "build"), "cosign sign")]
    assert sign["run"] == 'cosign sign --yes "$IMAGE"'
    assert sign["env"]["IMAGE"].endswith("@${{ steps.digest.outputs.digest }}")
    assert "--key" not in sign["run"]


def test_release_attaches_an_sbom_and_slsa_provenance() -> None:
    """The build job makes an SPDX SBOM, attests it with cosign, and attests SLSA provenance pushed to ECR."""
    build = steps("release.yml", "build")
    sbom = build[step_index(build, "anchore/sbom-action@")]
    assert sbom["with"]["format"] == "spdx-json"
    assert (
        "cosign attest --yes --type spdxjson --predicate sbom.spdx.json"
        in build[step_index(build, "cosign attest")]["run"]
    )
    provenance = build[step_index(build, "actions/attest-build-provenance@")]
    assert provenance["with"]["push-to-registry"] is True
    assert workflow("release.yml")["jobs"]["build"]["permissions"]["attestations"] == "write"


def test_deploy_verifies_the_signature_before_cdk_deploy() -> None:
    """Before `cdk deploy`, cosign verifies signature and SBOM against this repository's release workflow identity."""
    deploy = steps("release.yml", "deploy")
    verify = step_index(deploy, "cosign verify ")
    assert verify < step_index(deploy, "cdk deploy")
    script = deploy[verify]["run"]
    assert "--certificate-identity-regexp" in script
    assert "${GITHUB_REPOSITORY//./" in script  # the identity is this repository's, dots escaped
    assert r"/\\.github/workflows/release\\.yml@refs/heads/(dev|main)$" in script
    assert workflow("release.yml")["env"]["OIDC_ISSUER"] == OIDC_ISSUER
    assert script.count('--certificate-oidc-issuer "$OIDC_ISSUER"') == 2  # signature and SBOM attestation
    assert "gh attestation verify" in script


def test_vulnerability_gates_allow_no_high_finding() -> None:
    """Both trivy gates fail on any HIGH or CRITICAL finding (stricter than "at most 3 high")."""
    scans = [
        s["run"]
        for name, job in (("checks.yml", "scans"), ("release.yml", "build"))
        for s in steps(name, job)
        if "trivy" in s.get("run", "")
    ]
    assert len(scans) == 2
    assert all("--exit-code 1" in s and "--severity HIGH,CRITICAL" in s for s in scans)


def test_test_job_writes_the_deployment_summary() -> None:
    """After the load or smoke test, `leadscore deploy-summary` writes the job summary, even when the test failed."""
    job = steps("release.yml", "test")
    summary = job[step_index(job, "leadscore deploy-summary")]
    assert step_index(job, "leadscore loadtest") < step_index(job, "leadscore deploy-summary")
    assert summary["if"].startswith("always()")
    assert summary["run"].rstrip().endswith('>> "$GITHUB_STEP_SUMMARY"')
    for option in ("--report", "--environment", "--image-tag", "--image-digest"):
        assert option in summary["run"]
    assert set(summary["env"]) >= {"DEPLOY_NOTIFY_URL", "DEPLOY_SNS_TOPIC_ARN"}
