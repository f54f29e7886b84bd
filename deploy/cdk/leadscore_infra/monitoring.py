"""Alarms and the dashboard of one environment.

Client-facing figures (5xx rate, p99 latency, healthy targets) come from the load balancer: they count what
clients saw, including requests no task answered. The lake's figures come from the service's CloudWatch EMF
lines (namespace LeadScoring, dimensions Environment and ModelVersion); so do the drift figures, from
`leadscore drift export`, which a scheduled ECS task runs every hour with the service's image and task role.
Alarms on them use a Metrics Insights query that takes the maximum over every model version, so a new model
never silences an alarm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from leadscore_infra.config import METRICS_NAMESPACE, EnvironmentConfig

# The service's gauge of spool segments set aside as unreadable (Prometheus leadscore_lake_quarantined_segments).
QUARANTINE_METRIC = "LakeQuarantinedSegments"
ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
# The largest input PSI `leadscore drift export` measured (leadscore.telemetry.emf.drift_documents).
DRIFT_METRIC = "DriftMaxPsi"
# Above 0.25 a PSI is a significant shift (0.1-0.25 moderate): the level leadscore.drift.reference flags.
DRIFT_PSI_THRESHOLD = 0.25
DRIFT_EVERY = Duration.hours(1)
# Each run measures the production rows of the last day: hourly points of a sliding day-long window.
DRIFT_WINDOW_HOURS = 24
# Below this many requests a minute, a single error is no "rate": a quiet dev service must not page anyone.
MIN_REQUESTS_FOR_RATE = 20


@dataclass(frozen=True, slots=True)
class ServiceParts:
    """What the monitoring watches."""

    load_balancer: elbv2.ApplicationLoadBalancer
    target_group: elbv2.ApplicationTargetGroup
    service: ecs.FargateService
    # The service's image and container settings, for the scheduled drift export; without them it is not scheduled.
    image: ecs.ContainerImage | None = None
    environment: Mapping[str, str] = field(default_factory=dict)


def emf_query(statistic: str, metric: str, environment: str) -> str:
    """Metrics Insights query over the service's EMF metric `metric`, across model versions."""
    # A CloudWatch Metrics Insights query built from constants of this module, not a database query.
    schema = f'SCHEMA("{METRICS_NAMESPACE}", Environment, ModelVersion)'
    return f"SELECT {statistic}(\"{metric}\") FROM {schema} WHERE Environment = '{environment}'"  # noqa: S608


def emf_search(metric: str, statistic: str, environment: str, period: Duration = FIVE_MINUTES) -> cw.MathExpression:
    """Dashboard series of an EMF metric, one line per model version."""
    return cw.MathExpression(
        expression=(
            f'SEARCH(\'{{{METRICS_NAMESPACE},Environment,ModelVersion}} MetricName="{metric}" '
            f"Environment=\"{environment}\"', '{statistic}', {int(period.to_seconds())})"
        ),
        using_metrics={},
        label=metric,
        period=period,
    )


class Monitoring(Construct):
    """SNS topic for alarms, the alarms, and a dashboard."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, parts: ServiceParts, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        env = config.name
        self._prefix = f"leadscore-{env}"
        self.topic = sns.Topic(self, "AlarmTopic", display_name=f"leadscore {env} alarms", master_key=key)
        # CloudWatch publishes to the encrypted topic, so it needs the key.
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        alb, tg = parts.load_balancer, parts.target_group
        requests = alb.metrics.request_count(period=ONE_MINUTE, statistic="Sum")
        target_5xx = tg.metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=ONE_MINUTE)
        elb_5xx = alb.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=ONE_MINUTE)
        error_rate = cw.MathExpression(
            expression=f"IF(requests >= {MIN_REQUESTS_FOR_RATE}, 100 * (FILL(t5xx, 0) + FILL(e5xx, 0)) / requests, 0)",
            using_metrics={"requests": requests, "t5xx": target_5xx, "e5xx": elb_5xx},
            label="5xx % of requests",
            period=ONE_MINUTE,
        )
        p99 = tg.metrics.target_response_time(period=FIVE_MINUTES, statistic="p99")
        healthy = tg.metrics.healthy_host_count(period=ONE_MINUTE, statistic="Minimum")
        backlog_age = cw.MathExpression(
            expression=emf_query("MAX", "LakeOldestUnflushedAge", env),
            using_metrics={},
            label="oldest row not yet in S3 (s)",
            period=FIVE_MINUTES,
        )
        backlog_bytes = cw.MathExpression(
            expression=emf_query("MAX", "LakeBacklogBytes", env),
            using_metrics={},
            label="spool backlog of the fullest worker (bytes)",
            period=FIVE_MINUTES,
        )
        quarantined = cw.MathExpression(
            expression=emf_query("MAX", QUARANTINE_METRIC, env),
            using_metrics={},
            label="quarantined spool segments (fullest worker)",
            period=FIVE_MINUTES,
        )

        drift = cw.MathExpression(
            expression=emf_query("MAX", DRIFT_METRIC, env),
            using_metrics={},
            label="largest input PSI against the training data",
            period=DRIFT_EVERY,
        )

        self.alarms = [
            self._alarm(
                "Http5xxRate",
                error_rate,
                config.alarm_5xx_percent,
                f"More than {config.alarm_5xx_percent}% of requests answered 5xx in 3 of 5 minutes.",
                evaluation_periods=5,
                datapoints=3,
            ),
            self._alarm(
                "LatencyP99",
                p99,
                config.alarm_p99_latency_seconds,
                f"p99 response time over {config.alarm_p99_latency_seconds} s for 15 minutes.",
                evaluation_periods=3,
                datapoints=3,
            ),
            self._alarm(
                "NoHealthyTargets",
                healthy,
                1,
                "No task passes the readiness check: the service cannot answer.",
                evaluation_periods=2,
                datapoints=2,
                comparison=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                missing=cw.TreatMissingData.BREACHING,
            ),
            self._alarm(
                "LakeBacklogAge",
                backlog_age,
                config.alarm_lake_backlog_age_seconds,
                f"Rows wait more than {config.alarm_lake_backlog_age_seconds} s to reach S3: uploads fail "
                "(permissions, KMS, S3) and the spool is growing.",
                evaluation_periods=3,
                datapoints=3,
            ),
            self._alarm(
                "LakeBacklogBytes",
                backlog_bytes,
                config.alarm_lake_backlog_bytes,
                "A worker's spool holds more than the threshold: at the spool cap scoring answers 503.",
                evaluation_periods=2,
                datapoints=2,
            ),
            self._alarm(
                "LakeQuarantinedSegments",
                quarantined,
                0,
                "A spool segment had bad bytes and was quarantined: its rows are not in the table until an operator "
                "runs `leadscore lake requeue`.",
                evaluation_periods=1,
                datapoints=1,
            ),
            self._alarm(
                "InputDrift",
                drift,
                DRIFT_PSI_THRESHOLD,
                f"An input's PSI against the training data is above {DRIFT_PSI_THRESHOLD} over the last "
                f"{DRIFT_WINDOW_HOURS} h: production leads no longer look like the ones the model learnt from "
                "(`leadscore report` names the inputs and shows their distributions).",
                evaluation_periods=1,
                datapoints=1,
            ),
        ]
        self.drift_schedule = self._drift_schedule(config, parts) if parts.image is not None else None

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"leadscore-{env}")
        cpu = parts.service.metric_cpu_utilization(period=ONE_MINUTE)
        memory = parts.service.metric_memory_utilization(period=ONE_MINUTE)
        running = cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={
                "ClusterName": parts.service.cluster.cluster_name,
                "ServiceName": parts.service.service_name,
            },
            period=ONE_MINUTE,
            statistic="Average",
        )
        self.dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=24, height=3),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Requests / minute (ALB)", left=[requests], width=8),
            cw.GraphWidget(title="5xx %", left=[error_rate], width=8),
            cw.GraphWidget(
                title="Response time (ALB)",
                left=[tg.metrics.target_response_time(period=ONE_MINUTE, statistic=s) for s in ("p50", "p95", "p99")],
                width=8,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Leads scored", left=[emf_search("Leads", "Sum", env)], width=8),
            cw.GraphWidget(
                title="Scores 1..5",
                left=[emf_search(f"LeadsScore{s}", "Sum", env) for s in range(1, 6)],
                stacked=True,
                width=8,
            ),
            cw.GraphWidget(title="Mean confidence", left=[emf_search("Confidence", "Average", env)], width=8),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Lake backlog",
                left=[emf_search("LakeBacklogRows", "Maximum", env)],
                right=[emf_search("LakeOldestUnflushedAge", "Maximum", env)],
                width=8,
            ),
            cw.GraphWidget(
                title="Lake uploads",
                left=[emf_search("LakeFlushes", "Sum", env), emf_search("LakeUploadFailures", "Sum", env)],
                right=[emf_search(QUARANTINE_METRIC, "Maximum", env)],
                width=8,
            ),
            cw.GraphWidget(
                title="Tasks",
                left=[cpu, memory],
                right=[healthy, running],
                width=8,
            ),
        )

    def _drift_schedule(self, config: EnvironmentConfig, parts: ServiceParts) -> events.Rule:
        """An hourly ECS task that runs `leadscore drift export` with the service's image, settings and task role."""
        service_task = parts.service.task_definition
        task = ecs.FargateTaskDefinition(
            self,
            "DriftTask",
            family=f"{self._prefix}-drift",
            cpu=512,
            memory_limit_mib=1024,
            task_role=service_task.task_role,
            execution_role=service_task.execution_role,
        )
        task.add_container(
            "drift",
            container_name="drift",
            image=parts.image or ecs.ContainerImage.from_registry("unused"),
            entry_point=["/opt/venv/bin/python", "-m", "leadscore"],
            command=["drift", "export", "--hours", str(DRIFT_WINDOW_HOURS)],
            environment=dict(parts.environment),
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="drift",
                log_group=logs.LogGroup.from_log_group_name(self, "ServiceLogs", f"/leadscore/{config.name}/api"),
            ),
            readonly_root_filesystem=True,
        )
        rule = events.Rule(
            self,
            "DriftSchedule",
            rule_name=f"{self._prefix}-drift-export",
            description="Measure input drift against the training data and publish it as EMF (DriftMaxPsi).",
            schedule=events.Schedule.rate(DRIFT_EVERY),
        )
        rule.add_target(
            targets.EcsTask(
                cluster=parts.service.cluster,
                task_definition=task,
                launch_type=ecs.LaunchType.FARGATE,
                platform_version=ecs.FargatePlatformVersion.VERSION1_4,
                subnet_selection=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                security_groups=parts.service.connections.security_groups,
                assign_public_ip=False,
            )
        )
        return rule

    def _alarm(
        self,
        name: str,
        metric: cw.IMetric,
        threshold: float,
        description: str,
        *,
        evaluation_periods: int,
        datapoints: int,
        comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        missing: cw.TreatMissingData = cw.TreatMissingData.NOT_BREACHING,
    ) -> cw.Alarm:
        alarm = cw.Alarm(
            self,
            name,
            alarm_name=f"{self._prefix}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        return alarm
