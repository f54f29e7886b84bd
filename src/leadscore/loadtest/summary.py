"""Deployment summaries: what was deployed and how its load or smoke test went, from the loadtest JSON report.

The Markdown goes to a pipeline's job summary (`$GITHUB_STEP_SUMMARY`); the same facts can be sent to a channel
(a webhook URL, or an SNS topic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from leadscore.errors import LeadscoreError
from leadscore.loadtest.report import format_value

# SNS limits a subject to 100 characters.
SNS_SUBJECT_LIMIT = 100


class SummaryError(LeadscoreError):
    """The report cannot be read, or a notification was not delivered."""

    status_code = 500
    code = "summary_error"


class ReportStats(BaseModel):
    """The figures of a run, as the JSON report gives them (times in seconds)."""

    requests: int
    successes: int
    success_rate: float
    p95: float
    throughput: float


class ReportCheck(BaseModel):
    """One threshold check of the JSON report."""

    name: str
    measured: float
    limit: float
    at_least: bool
    unit: str
    passed: bool


class ReportPhase(BaseModel):
    """One phase of the JSON report: its checks and first errors."""

    name: str
    checks: list[ReportCheck]
    errors: list[str]


class LoadtestReport(BaseModel):
    """The JSON report `leadscore loadtest --report` writes (leadscore.loadtest.report.Report.as_dict)."""

    env: str
    url: str
    started_at: str
    model_version: str | None
    passed: bool
    overall: ReportStats
    phases: list[ReportPhase]
    checks: list[ReportCheck]

    @property
    def all_checks(self) -> list[ReportCheck]:
        """Phase checks, then run-wide checks (the order of the text report)."""
        return [c for p in self.phases for c in p.checks] + self.checks


def read_report(path: Path) -> LoadtestReport:
    """The JSON report at `path`; SummaryError when it is missing or not a loadtest report."""
    try:
        return LoadtestReport.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise SummaryError(f"no loadtest report at {path}") from exc
    except ValidationError as exc:
        raise SummaryError(f"{path} is not a loadtest report: {exc.error_count()} problem(s), {exc}") from exc


@dataclass(frozen=True, slots=True)
class Deployment:
    """What was deployed; None where the pipeline did not say (the model version then comes from the report)."""

    environment: str | None = None
    image_tag: str | None = None
    image_digest: str | None = None
    model_version: str | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """A deployment and its test report, rendered for people (Markdown) and for channels (JSON)."""

    deployment: Deployment
    report: LoadtestReport

    @property
    def environment(self) -> str:
        """The environment deployed to: the pipeline's word, else the report's suite."""
        return self.deployment.environment or self.report.env

    @property
    def model_version(self) -> str | None:
        """The model version: the pipeline's word, else what the service answered during the test."""
        return self.deployment.model_version or self.report.model_version

    @property
    def verdict(self) -> str:
        """PASSED or FAILED: the report's own verdict."""
        return "PASSED" if self.report.passed else "FAILED"

    @property
    def title(self) -> str:
        """One line: environment, tag and verdict (the notification's subject)."""
        test = "load test" if self.report.env == "dev" else "smoke test"
        tag = f" {self.deployment.image_tag}" if self.deployment.image_tag else ""
        return f"leadscore{tag} deployed to {self.environment}: {test} {self.verdict}"

    def markdown(self) -> str:
        """The job summary: what was deployed, the run's figures, every threshold, the verdict."""
        report, overall = self.report, self.report.overall
        failed = [c for c in report.all_checks if not c.passed]
        lines = [
            f"## {'✅' if report.passed else '❌'} {_escape(self.title)}",
            "",
            "| | |",
            "| --- | --- |",
            f"| Environment | {_escape(self.environment)} |",
            f"| Image tag | {_code(self.deployment.image_tag)} |",
            f"| Image digest | {_code(self.deployment.image_digest)} |",
            f"| Model version | {_code(self.model_version)} |",
            f"| Tested | {_escape(report.url)}, {report.env} suite, started {_escape(report.started_at)} |",
            "",
            "| Requests | Success rate | p95 | Requests/s |",
            "| ---: | ---: | ---: | ---: |",
            f"| {overall.requests} | {format_value(overall.success_rate, '%')} | {format_value(overall.p95, 's')} "
            f"| {format_value(overall.throughput, 'req/s')} |",
            "",
            "| Threshold | Measured | Limit | Result |",
            "| --- | ---: | ---: | --- |",
        ]
        for check in report.all_checks:
            limit = f"{'≥' if check.at_least else '<'} {format_value(check.limit, check.unit)}"
            result = "pass" if check.passed else "**FAIL**"
            lines.append(f"| {_escape(check.name)} | {format_value(check.measured, check.unit)} | {limit} | {result} |")
        errors = [f"{p.name}: {e}" for p in report.phases for e in p.errors]
        if errors:
            lines += ["", "First failed requests:", ""]
            lines += [f"- {_escape(e)}" for e in errors[:10]]
        total = len(report.all_checks)
        lines += ["", f"**Verdict: {self.verdict}** ({total - len(failed)} of {total} thresholds met)", ""]
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """The notification: `text` (Markdown, which chat webhooks show) and the same facts as fields."""
        overall = self.report.overall
        return {
            "text": self.markdown(),
            "title": self.title,
            "verdict": self.verdict,
            "passed": self.report.passed,
            "environment": self.environment,
            "image_tag": self.deployment.image_tag,
            "image_digest": self.deployment.image_digest,
            "model_version": self.model_version,
            "url": self.report.url,
            "requests": overall.requests,
            "success_rate": overall.success_rate,
            "p95_seconds": overall.p95,
            "throughput_rps": overall.throughput,
            "failed_checks": [c.name for c in self.report.all_checks if not c.passed],
        }


def _code(value: str | None) -> str:
    return f"`{value}`" if value else "not given"


def _escape(text: str) -> str:
    # A pipe would end a table cell; a newline would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def post_webhook(url: str, summary: Summary, timeout: float = 10.0) -> None:
    """POST the notification as JSON to `url`; SummaryError unless it answers 2xx."""
    try:
        response = httpx.post(url, json=summary.payload(), timeout=timeout)
    except httpx.HTTPError as exc:
        raise SummaryError(f"notification to {url} failed: {exc}") from exc
    if not response.is_success:
        raise SummaryError(f"notification to {url} answered {response.status_code}: {response.text[:200]}")


def publish_sns(topic_arn: str, summary: Summary) -> str:
    """Publish the notification to an SNS topic (credentials and region from the AWS SDK's chain); its id."""
    try:
        import boto3  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415 - only this path needs it
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
    except ImportError as exc:
        raise SummaryError("--sns-topic needs boto3: install it beside leadscore (pip install boto3)") from exc
    region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else None
    try:
        answer = boto3.client("sns", region_name=region or None).publish(
            TopicArn=topic_arn,
            Subject=summary.title[:SNS_SUBJECT_LIMIT],
            Message=json.dumps(summary.payload()),
        )
    except (BotoCoreError, ClientError) as exc:
        raise SummaryError(f"publishing to {topic_arn} failed: {exc}") from exc
    return str(answer["MessageId"])
