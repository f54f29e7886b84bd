"""The service stack of one environment: network, HTTPS load balancer, ECS Fargate service, lake, monitoring.

Two values change per deploy and are CloudFormation parameters, so the template itself is the same for every
release: `ImageTag` (the image in this environment's ECR repository) and `CertificateArn` (ACM certificate of
the service's domain). On later deploys an omitted parameter keeps its previous value.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, CfnParameter, CfnResource, Duration, Environment, RemovalPolicy, Size, Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_efs as efs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from leadscore_infra import checkov
from leadscore_infra.batch import RescoreJob
from leadscore_infra.config import (
    CONTAINER_GID,
    CONTAINER_PORT,
    CONTAINER_UID,
    DATA_DIR,
    METRICS_NAMESPACE,
    SPOOL_DIR,
    EnvironmentConfig,
)
from leadscore_infra.lake import Lake, secure_bucket
from leadscore_infra.monitoring import Monitoring, ServiceParts
from leadscore_infra.permissions import LakeAccess, grant_lake

READINESS_PATH = "/api/v1/health/ready"
LIVENESS_URL = f"http://127.0.0.1:{CONTAINER_PORT}/api/v1/health/live"
# The image's HEALTHCHECK, repeated: ECS ignores the one in the image.
LIVENESS_COMMAND = f"import urllib.request; urllib.request.urlopen('{LIVENESS_URL}', timeout=4)"
LOG_RETENTION = {
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
}


class ServiceStack(Stack):
    """Everything one environment runs on, from one definition."""

    def __init__(self, scope: Construct, config: EnvironmentConfig, *, env: Environment, description: str) -> None:
        super().__init__(scope, config.stack_name, env=env, description=description)
        self.config = config
        for tag_key, tag_value in config.tags.items():
            Tags.of(self).add(tag_key, tag_value)
        retain = RemovalPolicy.RETAIN if config.protect_data else RemovalPolicy.DESTROY

        self.image_tag = CfnParameter(
            self,
            "ImageTag",
            type="String",
            description=f"Tag of the image in the {config.repository_name} ECR repository (the commit SHA).",
            allowed_pattern=r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}",
        )
        self.certificate_arn = CfnParameter(
            self,
            "CertificateArn",
            type="String",
            description="ACM certificate (same region) for the service's domain; the load balancer serves HTTPS only.",
            allowed_pattern=r"arn:aws[a-z\-]*:acm:[a-z0-9\-]+:\d{12}:certificate/[A-Za-z0-9\-]+",
        )

        # One key for everything this environment stores (lake, query results, logs, alarm topic).
        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/leadscore-{config.name}",
            description=f"leadscore {config.name}: lake, Athena results, logs, alarms",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.key.grant_encrypt_decrypt(iam.ServicePrincipal(f"logs.{self.region}.{self.url_suffix}"))

        self.access_logs = secure_bucket(
            self,
            "AccessLogs",
            key=None,
            access_logs=None,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(config.log_retention_days))],
        )
        checkov.skip(self.access_logs, CKV_AWS_18="This is the access-log bucket; logging its own access would loop.")

        self.vpc = self._vpc(config)
        self.lake = Lake(self, "Lake", config=config, key=self.key, logs=self.access_logs)
        self.spool, self.spool_access_point = self._spool(config, retain)

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/leadscore/{config.name}/api",
            retention=LOG_RETENTION[config.log_retention_days],
            encryption_key=self.key,
            removal_policy=retain,
        )

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            cluster_name=f"leadscore-{config.name}",
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        self.task_definition = self._task_definition(config)
        self.load_balancer, self.listener = self._load_balancer(config)
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            service_name=f"leadscore-{config.name}",
            desired_count=config.min_tasks,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            health_check_grace_period=Duration.seconds(60),
            # 1.4.0 is the first Fargate platform that mounts EFS volumes.
            platform_version=ecs.FargatePlatformVersion.VERSION1_4,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            assign_public_ip=False,
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )
        # NFS from the service's tasks only; the file system's group admits nothing else.
        self.spool.connections.allow_default_port_from(self.service, "NFS from the service's tasks")
        self.target_group = self.listener.add_targets(
            "Service",
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service.load_balancer_target(container_name="api", container_port=CONTAINER_PORT)],
            health_check=elbv2.HealthCheck(
                path=READINESS_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
            # Short: ECS sends SIGTERM only after the delay, and the service itself drains on SIGTERM.
            deregistration_delay=Duration.seconds(config.deregistration_delay_seconds),
        )

        scaling = self.service.auto_scale_task_count(min_capacity=config.min_tasks, max_capacity=config.max_tasks)
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=config.cpu_target_percent,
            scale_out_cooldown=Duration.seconds(60),
            scale_in_cooldown=Duration.seconds(300),
        )
        scaling.scale_on_request_count(
            "Requests",
            requests_per_target=config.requests_per_target_per_minute,
            target_group=self.target_group,
            scale_out_cooldown=Duration.seconds(60),
            scale_in_cooldown=Duration.seconds(300),
        )

        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            parts=ServiceParts(
                self.load_balancer, self.target_group, self.service, self.image, self.container_environment
            ),
            key=self.key,
        )

        self.rescore = RescoreJob(self, "Rescore", config=config, key=self.key, logs=self.access_logs)

        CfnOutput(self, "LoadBalancerDns", value=self.load_balancer.load_balancer_dns_name)
        CfnOutput(self, "LakeUri", value=self.lake.uri)
        CfnOutput(self, "AthenaWorkGroup", value=self.lake.workgroup.name)
        CfnOutput(self, "LogGroup", value=self.log_group.log_group_name)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        self._skip_cdk_handlers()

    def _skip_cdk_handlers(self) -> None:
        """Justify checkov's Lambda findings on the handler CDK adds to empty the VPC's default security group."""
        for construct in self.node.find_all():
            if isinstance(construct, CfnResource) and construct.cfn_resource_type == "AWS::Lambda::Function":
                checkov.skip(
                    construct,
                    CKV_AWS_115="CDK's custom-resource handler runs once per deployment; no concurrency to limit.",
                    CKV_AWS_116="Invoked synchronously by CloudFormation, which reports its failures: no DLQ needed.",
                    CKV_AWS_117="Calls only the EC2 API during deployments; a VPC adds a NAT dependency, not safety.",
                )

    def _vpc(self, config: EnvironmentConfig) -> ec2.IVpc:
        """A new two-AZ VPC, or the existing one named in the settings."""
        if config.vpc is not None:
            return ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=config.vpc.vpc_id,
                availability_zones=list(config.vpc.availability_zones),
                public_subnet_ids=list(config.vpc.public_subnet_ids),
                private_subnet_ids=list(config.vpc.private_subnet_ids),
            )
        return ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
            ],
            # Lake uploads go to S3 through the gateway endpoint: no NAT charges, no internet path.
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
            flow_logs={
                "ToS3": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_s3(self.access_logs, "vpc-flow-logs/"),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
            restrict_default_security_group=True,
        )

    def _spool(self, config: EnvironmentConfig, removal: RemovalPolicy) -> tuple[efs.FileSystem, efs.AccessPoint]:
        """The spool root on EFS: encrypted, backed up, one access point that writes as the service user."""
        security_group = ec2.SecurityGroup(
            self,
            "SpoolSecurityGroup",
            vpc=self.vpc,
            description=f"leadscore {config.name} spool file system: NFS from the service tasks only",
            allow_all_outbound=False,
        )
        file_system = efs.FileSystem(
            self,
            "Spool",
            vpc=self.vpc,
            # Mount targets in the subnets the tasks run in.
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_group=security_group,
            encrypted=True,
            kms_key=self.key,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            # Small fsync'd appends from every task: elastic throughput has no burst credits to run out of.
            throughput_mode=efs.ThroughputMode.ELASTIC,
            enable_automatic_backups=True,
            # Our own policy instead of CDK's default (which lets any principal write as root through a mount
            # target): TLS only, and no Allow at all, so a client is let in only by its identity policy (the task
            # role's, bound to the access point) and an unauthenticated NFS client not at all.
            allow_anonymous_access=True,
            file_system_policy=iam.PolicyDocument(
                statements=[
                    iam.PolicyStatement(
                        sid="TlsOnly",
                        effect=iam.Effect.DENY,
                        principals=[iam.AnyPrincipal()],
                        actions=["*"],
                        conditions={"Bool": {"aws:SecureTransport": "false"}},
                    )
                ]
            ),
            removal_policy=removal,
        )
        access_point = file_system.add_access_point(
            "SpoolAccessPoint",
            path="/spool",
            create_acl=efs.Acl(owner_uid=str(CONTAINER_UID), owner_gid=str(CONTAINER_GID), permissions="750"),
            posix_user=efs.PosixUser(uid=str(CONTAINER_UID), gid=str(CONTAINER_GID)),
        )
        return file_system, access_point

    def _task_definition(self, config: EnvironmentConfig) -> ecs.FargateTaskDefinition:
        task = ecs.FargateTaskDefinition(
            self,
            "Task",
            family=f"leadscore-{config.name}",
            cpu=config.cpu,
            memory_limit_mib=config.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        # Task storage for temporary files: the root filesystem is read-only. The image declares the directory as a
        # VOLUME owned by the service user, which Fargate copies into the volume with its ownership.
        task.add_volume(name="data")
        # The spool on EFS (Fargate platform 1.4+): TLS in transit, mounted with the task role's IAM identity.
        task.add_volume(
            name="spool",
            efs_volume_configuration=ecs.EfsVolumeConfiguration(
                file_system_id=self.spool.file_system_id,
                transit_encryption="ENABLED",
                authorization_config=ecs.AuthorizationConfig(
                    access_point_id=self.spool_access_point.access_point_id, iam="ENABLED"
                ),
            ),
        )
        repository = ecr.Repository.from_repository_name(self, "Repository", config.repository_name)
        api_keys = secretsmanager.Secret.from_secret_name_v2(self, "ApiKeys", config.secret_name)
        self.image = ecs.ContainerImage.from_ecr_repository(repository, tag=self.image_tag.value_as_string)
        self.container_environment = {
            "LEADSCORE_ENV": config.name,
            "LEADSCORE_LOG_LEVEL": config.log_level,
            "LEADSCORE_LAKE_URI": self.lake.uri,
            # The stack's Glue table (database leadscore_<env>, table lead_score_<env>: the service's defaults).
            "LEADSCORE_LAKE_CATALOG": "glue",
            "LEADSCORE_SPOOL_DIR": SPOOL_DIR,
            "LEADSCORE_S3_REGION": self.region,
            "LEADSCORE_EMF_ENABLED": "true",
            "LEADSCORE_EMF_NAMESPACE": METRICS_NAMESPACE,
            "LEADSCORE_SHUTDOWN_GRACE_SECONDS": str(config.shutdown_grace_seconds),
        }
        container = task.add_container(
            "api",
            container_name="api",
            image=self.image,
            command=["--host", "0.0.0.0", "--port", str(CONTAINER_PORT), "--workers", str(config.workers)],  # noqa: S104
            environment=self.container_environment,
            secrets={"LEADSCORE_API_KEYS": ecs.Secret.from_secrets_manager(api_keys)},
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="api",
                log_group=self.log_group,
                # Never block a request on log delivery; the buffer absorbs bursts.
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=Size.mebibytes(25),
            ),
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT, name="http")],
            readonly_root_filesystem=True,
            stop_timeout=Duration.seconds(config.stop_timeout_seconds),
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c", LIVENESS_COMMAND],
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(30),
            ),
            # A tiny init as PID 1 forwards SIGTERM to the server and reaps worker processes.
            linux_parameters=ecs.LinuxParameters(self, "LinuxParameters", init_process_enabled=True),
        )
        container.add_mount_points(
            ecs.MountPoint(container_path=DATA_DIR, source_volume="data", read_only=False),
            ecs.MountPoint(container_path=SPOOL_DIR, source_volume="spool", read_only=False),
        )
        grant_lake(
            task.task_role,
            LakeAccess(
                bucket=self.lake.bucket,
                prefix=config.lake_prefix,
                key=self.lake.bucket.encryption_key,
                database_name=self.lake.database_name,
                table_name=self.lake.table_name,
                file_system=self.spool,
                access_point=self.spool_access_point,
            ),
        )
        return task

    def _load_balancer(
        self, config: EnvironmentConfig
    ) -> tuple[elbv2.ApplicationLoadBalancer, elbv2.ApplicationListener]:
        security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurityGroup",
            vpc=self.vpc,
            description=f"leadscore {config.name} load balancer: HTTPS from anywhere, to the tasks only",
            allow_all_outbound=False,
        )
        security_group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS from clients")
        load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            internet_facing=True,
            security_group=security_group,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            drop_invalid_header_fields=True,
            deletion_protection=config.protect_data,
            # The service keeps idle connections 75 s, longer than this: the balancer closes them first.
            idle_timeout=Duration.seconds(60),
        )
        load_balancer.log_access_logs(self.access_logs, prefix="alb")
        listener = load_balancer.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[elbv2.ListenerCertificate.from_arn(self.certificate_arn.value_as_string)],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            open=False,
        )
        return load_balancer, listener
