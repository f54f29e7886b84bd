"""The synthesized CloudFormation: the resources the service needs, configured as the service expects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from leadscore.lake.schema import COLUMNS
from tests.deploy.conftest import ACCOUNT, GITHUB_REPO, ROOT, synth_app, template


@pytest.fixture(scope="module")
def variant_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dev alone, synthesized with an existing VPC and without a GitHub repository."""
    vpc = {
        "vpcId": "vpc-0a1b2c3d4e5f60718",
        "availabilityZones": ["eu-west-1a", "eu-west-1b"],
        "publicSubnetIds": ["subnet-0a0000000000000a1", "subnet-0a0000000000000a2"],
        "privateSubnetIds": ["subnet-0b0000000000000b1", "subnet-0b0000000000000b2"],
    }
    outdir = tmp_path_factory.mktemp("cdk.variant")
    synth_app({"env": "dev", "leadscore": {"dev": {"account": ACCOUNT, "vpc": vpc}}}, outdir)
    return outdir


def render(value: Any) -> Any:
    """A template value with Ref/GetAtt/Join written out as text (`<LogicalId>` for references)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            return f"<{'.'.join(value['Fn::GetAtt'])}>"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(render(p)) for p in parts)
        return {k: render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v) for v in value]
    return value


def only(t: Template, resource_type: str) -> tuple[str, dict[str, Any]]:
    """The logical id and properties of the one resource of that type."""
    found = t.find_resources(resource_type)
    assert len(found) == 1, sorted(found)
    logical_id, resource = next(iter(found.items()))
    return logical_id, resource.get("Properties", {})


def service_task(t: Template) -> tuple[str, dict[str, Any]]:
    """The logical id and properties of the service's task definition (not the scheduled drift export's)."""
    found = {
        k: r for k, r in t.find_resources("AWS::ECS::TaskDefinition").items()
        if not r["Properties"]["Family"].endswith("-drift")
    }  # fmt: skip
    assert len(found) == 1, sorted(found)
    logical_id, resource = next(iter(found.items()))
    return logical_id, resource["Properties"]


def container(t: Template) -> dict[str, Any]:
    """The service's container definition."""
    _, task = service_task(t)
    (definition,) = task["ContainerDefinitions"]
    return dict(definition)


def lake_bucket_id(t: Template) -> str:
    """Logical id of the lake bucket."""
    return next(i for i in t.find_resources("AWS::S3::Bucket") if i.startswith("LakeBucket"))


def test_app_has_a_bootstrap_and_a_service_stack_per_environment(cdk_out: Path) -> None:
    """One definition gives the same four stacks: bootstrap and service, for dev and prod."""
    assert sorted(p.name for p in cdk_out.glob("*.template.json")) == [
        "leadscore-dev-bootstrap.template.json",
        "leadscore-dev.template.json",
        "leadscore-prod-bootstrap.template.json",
        "leadscore-prod.template.json",
    ]


def test_task_size_and_stop_timeout(dev: Template) -> None:
    """The Fargate task has 512 CPU units, 1 GiB and a 120 s stop timeout."""
    dev.has_resource_properties("AWS::ECS::TaskDefinition", {"Cpu": "512", "Memory": "1024"})
    assert container(dev)["StopTimeout"] == 120


def test_stop_timeout_covers_the_shutdown_grace_with_a_margin(dev: Template, prod: Template) -> None:
    """ECS kills no sooner than 10 s after the service's own grace ends, and within the 120 s ECS allows."""
    for t in (dev, prod):
        environment = {e["Name"]: e["Value"] for e in container(t)["Environment"]}
        grace = int(environment["LEADSCORE_SHUTDOWN_GRACE_SECONDS"])
        assert grace + 10 <= container(t)["StopTimeout"] <= 120


def test_container_runs_locked_down(dev: Template) -> None:
    """Read-only root, an init process for signals, temporary files on a task volume, the spool on EFS."""
    definition = container(dev)
    assert definition["ReadonlyRootFilesystem"] is True
    assert definition["LinuxParameters"]["InitProcessEnabled"] is True
    assert definition["MountPoints"] == [
        {"ContainerPath": "/var/lib/leadscore", "ReadOnly": False, "SourceVolume": "data"},
        {"ContainerPath": "/var/spool/leadscore", "ReadOnly": False, "SourceVolume": "spool"},
    ]


def test_spool_dir_is_the_efs_mount(dev: Template) -> None:
    """LEADSCORE_SPOOL_DIR is where the EFS volume is mounted, so the spool outlives the task."""
    environment = {e["Name"]: e["Value"] for e in container(dev)["Environment"]}
    mounts = {m["SourceVolume"]: m["ContainerPath"] for m in container(dev)["MountPoints"]}
    assert environment["LEADSCORE_SPOOL_DIR"] == mounts["spool"]


def test_spool_volume_is_efs_with_tls_and_iam(dev: Template) -> None:
    """The spool volume mounts the file system through its access point, TLS in transit, IAM authorization."""
    _, task = service_task(dev)
    (volume,) = [v for v in task["Volumes"] if v["Name"] == "spool"]
    efs = volume["EFSVolumeConfiguration"]
    assert efs["FilesystemId"] == {"Ref": only(dev, "AWS::EFS::FileSystem")[0]}
    assert efs["TransitEncryption"] == "ENABLED"
    assert efs["AuthorizationConfig"] == {
        "AccessPointId": {"Ref": only(dev, "AWS::EFS::AccessPoint")[0]},
        "IAM": "ENABLED",
    }


def test_spool_file_system_is_encrypted_and_backed_up(dev: Template) -> None:
    """EFS is encrypted with the environment key, backed up, elastic, and TLS-only by its own policy."""
    _, file_system = only(dev, "AWS::EFS::FileSystem")
    assert file_system["Encrypted"] is True
    assert render(file_system["KmsKeyId"]).startswith("<Key")
    assert file_system["BackupPolicy"] == {"Status": "ENABLED"}
    (statement,) = file_system["FileSystemPolicy"]["Statement"]
    assert (statement["Effect"], statement["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})


def test_spool_file_system_follows_protect_data(dev_json: dict[str, Any], cdk_out: Path) -> None:
    """Dev deletes the spool file system with the stack; prod keeps it."""
    prod_json = json.loads((cdk_out / "leadscore-prod.template.json").read_text())
    policies = [
        next(r["DeletionPolicy"] for r in t["Resources"].values() if r["Type"] == "AWS::EFS::FileSystem")
        for t in (dev_json, prod_json)
    ]
    assert policies == ["Delete", "Retain"]


def test_spool_access_point_writes_as_the_image_user(dev: Template) -> None:
    """The access point's POSIX user and root directory owner are the Dockerfile's final USER (the runtime's)."""
    users = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    user = users[-1]
    uid, gid = user.split(":")
    _, access_point = only(dev, "AWS::EFS::AccessPoint")
    assert access_point["PosixUser"] == {"Uid": uid, "Gid": gid}
    assert access_point["RootDirectory"]["CreationInfo"] == {"OwnerUid": uid, "OwnerGid": gid, "Permissions": "750"}


def test_spool_mount_targets_admit_nfs_from_the_service_only(dev: Template, dev_json: dict[str, Any]) -> None:
    """One mount target per private subnet; the file system's group admits TCP 2049 from the service's group."""
    targets = dev.find_resources("AWS::EFS::MountTarget")
    assert sorted(render(t["Properties"]["SubnetId"]) for t in targets.values()) == [
        "<VpcprivateSubnet1SubnetCEAD3716>",
        "<VpcprivateSubnet2Subnet2DE7549C>",
    ]
    _, service = only(dev, "AWS::ECS::Service")
    (service_group,) = service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    (mount_group,) = {render(g) for t in targets.values() for g in t["Properties"]["SecurityGroups"]}
    ingress = [
        r["Properties"]
        for r in dev_json["Resources"].values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress" and render(r["Properties"]["GroupId"]) == mount_group
    ]
    assert [(i["FromPort"], i["ToPort"], i["SourceSecurityGroupId"]) for i in ingress] == [(2049, 2049, service_group)]


def test_service_runs_on_a_fargate_platform_that_mounts_efs(dev: Template) -> None:
    """The service pins Fargate platform 1.4.0, the first that mounts EFS."""
    _, service = only(dev, "AWS::ECS::Service")
    assert service["PlatformVersion"] == "1.4.0"


def test_container_health_check_probes_liveness(dev: Template) -> None:
    """The ECS health check calls the liveness endpoint without curl."""
    command = container(dev)["HealthCheck"]["Command"]
    assert command[:3] == ["CMD", "python", "-c"]
    assert "/api/v1/health/live" in command[3]


def test_container_settings_point_at_this_environment(dev: Template) -> None:
    """The service gets its environment, lake prefix and Glue catalog, EMF on, and a grace below the stop timeout."""
    environment = {e["Name"]: render(e["Value"]) for e in container(dev)["Environment"]}
    assert environment["LEADSCORE_ENV"] == "dev"
    assert environment["LEADSCORE_LAKE_URI"] == f"s3://<{lake_bucket_id(dev)}>/lead_score_dev"
    assert environment["LEADSCORE_LAKE_CATALOG"] == "glue"
    assert environment["LEADSCORE_EMF_ENABLED"] == "true"
    assert environment["LEADSCORE_EMF_NAMESPACE"] == "LeadScoring"
    assert int(environment["LEADSCORE_SHUTDOWN_GRACE_SECONDS"]) < container(dev)["StopTimeout"]


def test_api_keys_come_from_secrets_manager(dev: Template) -> None:
    """LEADSCORE_API_KEYS is injected from the environment's secret, never written in the template."""
    (secret,) = container(dev)["Secrets"]
    assert secret["Name"] == "LEADSCORE_API_KEYS"
    assert ":secret:leadscore/dev/api-keys" in render(secret["ValueFrom"])


def test_image_comes_from_the_environment_repository_by_tag_parameter(dev: Template) -> None:
    """The image is leadscore-dev:<ImageTag>; the tag is a deploy-time parameter."""
    image = render(container(dev)["Image"])
    assert image.endswith("/leadscore-dev:<ImageTag>")
    dev.has_parameter("ImageTag", {"Type": "String"})


def test_server_command_binds_all_interfaces_on_8000(dev: Template) -> None:
    """The container command serves on 0.0.0.0:8000 with one worker per vCPU."""
    # Every interface of the task's own network namespace: the load balancer reaches it on its private IP.
    assert container(dev)["Command"] == ["--host", "0.0.0.0", "--port", "8000", "--workers", "1"]  # noqa: S104


def test_target_group_checks_readiness_and_drains_quickly(dev: Template) -> None:
    """The ALB health check is the readiness endpoint; deregistration takes 15 s."""
    dev.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "HealthCheckPath": "/api/v1/health/ready",
            "Port": 8000,
            "TargetType": "ip",
            "TargetGroupAttributes": Match.array_with([{"Key": "deregistration_delay.timeout_seconds", "Value": "15"}]),
        },
    )


def test_load_balancer_serves_https_only(dev: Template) -> None:
    """One listener, HTTPS on 443 with the certificate parameter; the security group admits only 443."""
    _, listener = only(dev, "AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Port"], listener["Protocol"]) == (443, "HTTPS")
    assert listener["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    dev.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {"SecurityGroupIngress": [Match.object_like({"CidrIp": "0.0.0.0/0", "FromPort": 443, "ToPort": 443})]},
    )


def test_load_balancer_drops_invalid_headers_and_logs_access(dev: Template) -> None:
    """Invalid header fields are dropped and access logs are on."""
    _, alb = only(dev, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    attributes = {a["Key"]: a["Value"] for a in alb["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert attributes["access_logs.s3.enabled"] == "true"


def test_service_rolls_back_failed_deployments(dev: Template) -> None:
    """The deployment circuit breaker rolls back, and tasks run in private subnets without public IPs."""
    _, service = only(dev, "AWS::ECS::Service")
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert service["LaunchType"] == "FARGATE"


def test_autoscaling_on_cpu_and_requests_per_target(dev: Template) -> None:
    """Two target-tracking policies: CPU and ALB requests per target."""
    policies = dev.find_resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    metrics = sorted(
        p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]
        for p in policies.values()
    )
    assert metrics == ["ALBRequestCountPerTarget", "ECSServiceAverageCPUUtilization"]
    dev.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 1, "MaxCapacity": 4})


def test_cluster_has_container_insights(dev: Template) -> None:
    """Container Insights is on (task counts and per-task figures)."""
    dev.has_resource_properties(
        "AWS::ECS::Cluster", {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]}
    )


def test_new_vpc_spans_two_zones_with_s3_endpoint(dev: Template) -> None:
    """A new VPC has public and private subnets in two zones and an S3 gateway endpoint."""
    dev.resource_count_is("AWS::EC2::VPC", 1)
    dev.resource_count_is("AWS::EC2::Subnet", 4)
    dev.resource_count_is("AWS::EC2::NatGateway", 1)
    dev.has_resource_properties("AWS::EC2::VPCEndpoint", {"VpcEndpointType": "Gateway"})


def test_existing_vpc_is_used_when_configured(variant_out: Path) -> None:
    """With an existing VPC configured no VPC is created and the tasks use the given private subnets."""
    t = template(variant_out, "leadscore-dev")
    t.resource_count_is("AWS::EC2::VPC", 0)
    _, service = only(t, "AWS::ECS::Service")
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == [
        "subnet-0b0000000000000b1",
        "subnet-0b0000000000000b2",
    ]


def test_lake_bucket_is_encrypted_private_and_tls_only(dev: Template, dev_json: dict[str, Any]) -> None:
    """The lake bucket uses the KMS key, blocks public access and denies requests without TLS."""
    bucket = dev_json["Resources"][lake_bucket_id(dev)]["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    dev.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": lake_bucket_id(dev)},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            },
        },
    )


def test_lake_bucket_has_lifecycle_rules(dev: Template, dev_json: dict[str, Any]) -> None:
    """Incomplete uploads are aborted, old versions expire and objects move to Intelligent-Tiering."""
    rules = {
        r["Id"]: r for r in dev_json["Resources"][lake_bucket_id(dev)]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert rules["expire-old-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert rules["tiering"]["Transitions"][0]["StorageClass"] == "INTELLIGENT_TIERING"


def glue_table(t: Template, name: str = "lead_score_dev") -> dict[str, Any]:
    """The properties of the Glue table called `name`."""
    (table,) = t.find_resources("AWS::Glue::Table", {"Properties": {"Name": name}}).values()
    properties: dict[str, Any] = table["Properties"]
    return properties


def iceberg_table_input(t: Template, name: str = "lead_score_dev") -> dict[str, Any]:
    """The IcebergTableInput of the Glue table called `name`."""
    table = glue_table(t, name)
    iceberg = table["OpenTableFormatInput"]["IcebergInput"]
    assert (iceberg["MetadataOperation"], iceberg["Version"]) == ("CREATE", "2")
    return dict(iceberg["IcebergTableInput"])


def test_glue_table_is_the_iceberg_table_at_the_lake_location(dev: Template) -> None:
    """Glue creates an Iceberg v2 table lead_score_dev in leadscore_dev, located at the lake URI."""
    table = glue_table(dev)
    assert (table["Name"], table["DatabaseName"]) == ("lead_score_dev", "leadscore_dev")
    assert "TableInput" not in table
    assert render(iceberg_table_input(dev)["Location"]) == f"s3://<{lake_bucket_id(dev)}>/lead_score_dev"


def test_iceberg_schema_is_the_lake_columns_up_to_the_first_list(dev: Template) -> None:
    """Fields are COLUMNS in order with ids from 1 up to the first list (the service adds the rest), none required."""
    fields = iceberg_table_input(dev)["Schema"]["Fields"]
    names = [c.name for c in COLUMNS]
    expected = names[: names.index("reason_raising_fields")]
    assert {"year", "month", "day", "explained"} <= set(expected)
    assert [f["Name"] for f in fields] == expected
    assert [f["Id"] for f in fields] == list(range(1, len(expected) + 1))
    assert not any(f["Required"] for f in fields)
    types = {f["Name"]: f["Type"] for f in fields}
    assert (types["timestamp"], types["request_id"], types["year"]) == ("timestamp", "string", "int")
    assert set(types.values()) <= {"string", "int", "long", "double", "boolean", "timestamp"}


def test_iceberg_partition_spec_is_identity_on_the_day_columns(dev: Template) -> None:
    """The table is partitioned by identity(year), identity(month), identity(day), with no projection."""
    table_input = iceberg_table_input(dev)
    ids = {f["Name"]: f["Id"] for f in table_input["Schema"]["Fields"]}
    assert [(f["Name"], f["Transform"], f["SourceId"]) for f in table_input["PartitionSpec"]["Fields"]] == [
        (name, "identity", ids[name]) for name in ("year", "month", "day")
    ]
    assert not any(key.startswith("projection.") for key in table_input["Properties"])


def test_iceberg_table_writes_zstd_parquet_and_drops_old_metadata(dev: Template) -> None:
    """Data is zstd Parquet; old metadata files are deleted after commits (the role may delete under the prefix)."""
    properties = iceberg_table_input(dev)["Properties"]
    assert properties["write.format.default"] == "parquet"
    assert properties["write.parquet.compression-codec"] == "zstd"
    assert properties["write.metadata.delete-after-commit.enabled"] == "true"


def test_athena_workgroup_enforces_encrypted_results(dev: Template) -> None:
    """The workgroup forces results into its own bucket, KMS-encrypted, with a per-query scan limit."""
    _, workgroup = only(dev, "AWS::Athena::WorkGroup")
    configuration = workgroup["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["BytesScannedCutoffPerQuery"] > 0
    result = render(configuration["ResultConfiguration"])
    assert result["EncryptionConfiguration"]["EncryptionOption"] == "SSE_KMS"
    assert result["OutputLocation"].startswith("s3://<LakeAthenaResults")


def test_log_group_has_retention_and_encryption(dev: Template, prod: Template) -> None:
    """Logs are kept 30 days in dev and a year in prod, encrypted with the environment key."""
    dev.has_resource_properties(
        "AWS::Logs::LogGroup",
        {"LogGroupName": "/leadscore/dev/api", "RetentionInDays": 30, "KmsKeyId": Match.any_value()},
    )
    prod.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 365})


def test_alarms_cover_errors_latency_health_and_lake(dev: Template) -> None:
    """Seven alarms, each notifying the alarm topic."""
    alarms = dev.find_resources("AWS::CloudWatch::Alarm")
    names = sorted(a["Properties"]["AlarmName"] for a in alarms.values())
    assert names == [
        "leadscore-dev-Http5xxRate",
        "leadscore-dev-InputDrift",
        "leadscore-dev-LakeBacklogAge",
        "leadscore-dev-LakeBacklogBytes",
        "leadscore-dev-LakeQuarantinedSegments",
        "leadscore-dev-LatencyP99",
        "leadscore-dev-NoHealthyTargets",
    ]
    topic_id, _ = only(dev, "AWS::SNS::Topic")
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic_id}] for a in alarms.values())


def test_latency_alarm_uses_p99_of_target_response_time(dev: Template) -> None:
    """The latency alarm watches the ALB's p99 target response time."""
    dev.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"AlarmName": "leadscore-dev-LatencyP99", "MetricName": "TargetResponseTime", "ExtendedStatistic": "p99"},
    )


def test_lake_alarm_reads_the_emf_namespace_across_model_versions(dev: Template) -> None:
    """The lake backlog alarm queries LeadScoring for this environment, whatever the model version."""
    alarms = dev.find_resources("AWS::CloudWatch::Alarm", {"Properties": {"AlarmName": "leadscore-dev-LakeBacklogAge"}})
    (alarm,) = alarms.values()
    (query,) = alarm["Properties"]["Metrics"]
    assert query["Expression"] == (
        'SELECT MAX("LakeOldestUnflushedAge") FROM SCHEMA("LeadScoring", Environment, ModelVersion) '
        "WHERE Environment = 'dev'"
    )


def test_quarantine_alarm_fires_on_the_first_quarantined_segment(dev: Template) -> None:
    """Any quarantined segment, on any worker and model version, alarms within one period."""
    alarms = dev.find_resources(
        "AWS::CloudWatch::Alarm", {"Properties": {"AlarmName": "leadscore-dev-LakeQuarantinedSegments"}}
    )
    (alarm,) = alarms.values()
    (query,) = alarm["Properties"]["Metrics"]
    assert query["Expression"] == (
        'SELECT MAX("LakeQuarantinedSegments") FROM SCHEMA("LeadScoring", Environment, ModelVersion) '
        "WHERE Environment = 'dev'"
    )
    assert (alarm["Properties"]["Threshold"], alarm["Properties"]["ComparisonOperator"]) == (
        0,
        "GreaterThanThreshold",
    )
    assert alarm["Properties"]["EvaluationPeriods"] == 1


def test_drift_alarm_fires_when_an_inputs_psi_passes_a_quarter(dev: Template) -> None:
    """The drift alarm takes the largest DriftMaxPsi over model versions, hourly, and fires above 0.25."""
    alarms = dev.find_resources("AWS::CloudWatch::Alarm", {"Properties": {"AlarmName": "leadscore-dev-InputDrift"}})
    (alarm,) = alarms.values()
    (query,) = alarm["Properties"]["Metrics"]
    assert query["Expression"] == (
        'SELECT MAX("DriftMaxPsi") FROM SCHEMA("LeadScoring", Environment, ModelVersion) WHERE Environment = \'dev\''
    )
    assert query["Period"] == 3600
    assert (alarm["Properties"]["Threshold"], alarm["Properties"]["ComparisonOperator"]) == (
        0.25,
        "GreaterThanThreshold",
    )


def test_drift_export_runs_hourly_as_a_fargate_task_of_the_service_image(dev: Template) -> None:
    """An EventBridge rule runs `leadscore drift export` every hour, with the service's task role and settings."""
    _, rule = only(dev, "AWS::Events::Rule")
    assert rule["ScheduleExpression"] == "rate(1 hour)"
    (target,) = rule["Targets"]
    assert target["EcsParameters"]["LaunchType"] == "FARGATE"
    drift = next(
        r["Properties"] for r in dev.find_resources("AWS::ECS::TaskDefinition").values()
        if r["Properties"]["Family"] == "leadscore-dev-drift"
    )  # fmt: skip
    (definition,) = drift["ContainerDefinitions"]
    assert definition["EntryPoint"] == ["/opt/venv/bin/python", "-m", "leadscore"]
    assert definition["Command"] == ["drift", "export", "--hours", "24"]
    assert {"Name": "LEADSCORE_LAKE_CATALOG", "Value": "glue"} in definition["Environment"]
    _, service = service_task(dev)
    assert drift["TaskRoleArn"] == service["TaskRoleArn"]


def test_error_rate_alarm_ignores_quiet_minutes(dev: Template) -> None:
    """The 5xx rate counts target and load-balancer 5xx, and only when there is traffic."""
    alarms = dev.find_resources("AWS::CloudWatch::Alarm", {"Properties": {"AlarmName": "leadscore-dev-Http5xxRate"}})
    (alarm,) = alarms.values()
    expression = next(m["Expression"] for m in alarm["Properties"]["Metrics"] if "Expression" in m)
    assert expression.startswith("IF(requests >= 20,")
    assert alarm["Properties"]["Threshold"] == 5


def test_prod_is_larger_and_stricter(prod: Template) -> None:
    """Prod runs at least two tasks, protects its load balancer and alarms at 1 % 5xx."""
    prod.has_resource_properties("AWS::ApplicationAutoScaling::ScalableTarget", {"MinCapacity": 2, "MaxCapacity": 10})
    _, alb = only(prod, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert {"Key": "deletion_protection.enabled", "Value": "true"} in alb["LoadBalancerAttributes"]
    prod.has_resource_properties("AWS::CloudWatch::Alarm", {"AlarmName": "leadscore-prod-Http5xxRate", "Threshold": 1})


def test_dashboard_exists(dev: Template) -> None:
    """One dashboard per environment."""
    dev.has_resource_properties("AWS::CloudWatch::Dashboard", {"DashboardName": "leadscore-dev"})


def task_role_statements(dev: Template, dev_json: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of the policies attached to the task role."""
    _, task = service_task(dev)
    role_id = task["TaskRoleArn"]["Fn::GetAtt"][0]
    statements = []
    for resource in dev_json["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
            statements.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return statements


def actions_of(statement: dict[str, Any]) -> list[str]:
    """A statement's actions as a list."""
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_task_s3_rights_are_the_measured_minimum_under_the_lake_prefix(dev: Template, dev_json: dict[str, Any]) -> None:
    """Objects: get/put/delete/abort under the predictions' and outcomes' prefixes; listing: prefix-limited."""
    s3 = {s["Sid"]: s for s in task_role_statements(dev, dev_json) if actions_of(s)[0].startswith("s3:")}
    assert sorted(s3) == ["LakeObjects", "ListLakePrefix"]
    objects, listing = s3["LakeObjects"], s3["ListLakePrefix"]
    assert sorted(actions_of(objects)) == ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert sorted(render(objects["Resource"])) == [
        f"<{lake_bucket_id(dev)}.Arn>/lead_outcomes_dev/*",
        f"<{lake_bucket_id(dev)}.Arn>/lead_score_dev/*",
    ]
    assert actions_of(listing) == ["s3:ListBucket"]
    assert render(listing["Resource"]) == f"<{lake_bucket_id(dev)}.Arn>"
    assert listing["Condition"] == {"StringLikeIfExists": {"s3:prefix": ["lead_score_dev/*", "lead_outcomes_dev/*"]}}


def test_task_glue_rights_are_load_and_commit_on_the_lake_table(dev: Template, dev_json: dict[str, Any]) -> None:
    """Pyiceberg's load_table and commit: GetDatabase, GetTable, UpdateTable on the catalog, database and tables."""
    (glue,) = [s for s in task_role_statements(dev, dev_json) if actions_of(s)[0].startswith("glue:")]
    assert sorted(actions_of(glue)) == ["glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"]
    assert sorted(glue["Resource"]) == [
        f"arn:aws:glue:eu-west-1:{ACCOUNT}:catalog",
        f"arn:aws:glue:eu-west-1:{ACCOUNT}:database/leadscore_dev",
        f"arn:aws:glue:eu-west-1:{ACCOUNT}:table/leadscore_dev/lead_outcomes_dev",
        f"arn:aws:glue:eu-west-1:{ACCOUNT}:table/leadscore_dev/lead_score_dev",
    ]


def test_task_may_mount_the_spool_only_through_its_access_point(dev: Template, dev_json: dict[str, Any]) -> None:
    """EFS: ClientMount and ClientWrite on the spool file system, through the spool access point only (no root)."""
    (efs,) = [s for s in task_role_statements(dev, dev_json) if actions_of(s)[0].startswith("elasticfilesystem:")]
    assert sorted(actions_of(efs)) == ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    assert render(efs["Resource"]) == f"<{only(dev, 'AWS::EFS::FileSystem')[0]}.Arn>"
    access_point = render(efs["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"])
    assert access_point.endswith(f":access-point/<{only(dev, 'AWS::EFS::AccessPoint')[0]}>")


def test_task_role_has_no_wildcards(dev: Template, dev_json: dict[str, Any]) -> None:
    """No statement of the task role allows every action or every resource."""
    for statement in task_role_statements(dev, dev_json):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement
        assert statement["Resource"] != "*", statement


def test_task_may_use_the_key_only_through_s3(dev: Template, dev_json: dict[str, Any]) -> None:
    """KMS use of the task role is limited to S3 on the lake bucket."""
    (kms,) = [s for s in task_role_statements(dev, dev_json) if actions_of(s)[0].startswith("kms:")]
    assert "kms:ViaService" in kms["Condition"]["StringEquals"]
    assert "kms:EncryptionContext:aws:s3:arn" in kms["Condition"]["StringLike"]


def test_ecr_repository_is_immutable_scanned_and_encrypted(dev_bootstrap: Template) -> None:
    """Image tags cannot be overwritten, pushes are scanned, and images are KMS-encrypted."""
    dev_bootstrap.has_resource_properties(
        "AWS::ECR::Repository",
        {
            "RepositoryName": "leadscore-dev",
            "ImageTagMutability": "IMMUTABLE",
            "ImageScanningConfiguration": {"ScanOnPush": True},
            "EncryptionConfiguration": {"EncryptionType": "KMS"},
        },
    )


def test_github_role_trusts_only_this_repository_environment(dev_bootstrap: Template) -> None:
    """The deploy role can be assumed by GitHub OIDC tokens of the repository's dev environment only."""
    dev_bootstrap.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Action": "sts:AssumeRoleWithWebIdentity",
                            "Condition": {
                                "StringEquals": {
                                    "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                                    "token.actions.githubusercontent.com:sub": f"repo:{GITHUB_REPO}:environment:dev",
                                }
                            },
                        }
                    )
                ]
            }
        },
    )


def test_github_role_can_push_images_and_assume_cdk_roles(dev_bootstrap: Template) -> None:
    """The deploy role may push to the repository and assume the CDK bootstrap roles, nothing more."""
    policies = dev_bootstrap.find_resources("AWS::IAM::Policy")
    actions = sorted(
        action
        for policy in policies.values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    )
    assert "ecr:PutImage" in actions
    assert "sts:AssumeRole" in actions
    assert not any(a.startswith(("s3:", "iam:", "ecs:")) for a in actions)


def test_bootstrap_without_github_repo_has_no_role(variant_out: Path) -> None:
    """Without a GitHub repository configured the bootstrap stack holds only the repository."""
    t = template(variant_out, "leadscore-dev-bootstrap")
    t.resource_count_is("AWS::IAM::Role", 0)
    t.resource_count_is("AWS::ECR::Repository", 1)


@pytest.mark.parametrize("stack", ["leadscore-dev", "leadscore-prod"])
def test_service_stack_needs_only_image_tag_and_certificate(cdk_out: Path, stack: str) -> None:
    """The only deploy-time inputs of a service stack are ImageTag and CertificateArn (CDK adds its own)."""
    parameters = json.loads((cdk_out / f"{stack}.template.json").read_text())["Parameters"]
    assert sorted(p for p in parameters if p != "BootstrapVersion") == ["CertificateArn", "ImageTag"]
