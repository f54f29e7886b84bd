"""The per-environment stack deployed once, before any image exists: the ECR repository and the CI role.

The service stack pulls from the repository by name, so the two stacks share no CloudFormation exports and
either can be updated alone.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Environment, RemovalPolicy, Stack, Tags
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

from leadscore_infra.config import EnvironmentConfig

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
GITHUB_AUDIENCE = "sts.amazonaws.com"
# The roles `cdk bootstrap` creates (default qualifier); `cdk deploy` assumes them to publish and deploy.
CDK_BOOTSTRAP_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")
CDK_QUALIFIER = "hnb659fds"


class BootstrapStack(Stack):
    """ECR repository of one environment and, when a GitHub repository is configured, its OIDC deploy role."""

    def __init__(self, scope: Construct, config: EnvironmentConfig, *, env: Environment, description: str) -> None:
        super().__init__(scope, config.bootstrap_stack_name, env=env, description=description)
        self.config = config
        for key, value in config.tags.items():
            Tags.of(self).add(key, value)

        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=config.repository_name,
            # A tag names one image forever: what was tested is what runs, and a rollback is a redeploy.
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            image_scan_on_push=True,
            encryption=ecr.RepositoryEncryption.KMS,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description="Drop untagged layers left by interrupted pushes",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(7),
                    rule_priority=1,
                ),
                ecr.LifecycleRule(
                    description="Keep the last 100 images: enough to roll back weeks of releases",
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=100,
                    rule_priority=2,
                ),
            ],
        )
        CfnOutput(self, "RepositoryUri", value=self.repository.repository_uri)
        if config.github_repo:
            role = self._github_role(config, config.github_repo)
            CfnOutput(self, "GithubDeployRoleArn", value=role.role_arn)

    def _github_role(self, config: EnvironmentConfig, repo: str) -> iam.Role:
        """A role only this repository's workflows, in this environment's GitHub Environment, can assume."""
        provider_arn = config.github_oidc_provider_arn
        if provider_arn is None:
            provider = iam.CfnOIDCProvider(
                self, "GithubOidcProvider", url=GITHUB_OIDC_URL, client_id_list=[GITHUB_AUDIENCE]
            )
            provider_arn = provider.attr_arn
        role = iam.Role(
            self,
            "GithubDeployRole",
            role_name=f"leadscore-{config.name}-github-deploy",
            description=f"GitHub Actions of {repo} deploying leadscore {config.name}",
            max_session_duration=Duration.hours(1),
            assumed_by=iam.WebIdentityPrincipal(
                provider_arn,
                conditions={
                    "StringEquals": {
                        f"{GITHUB_OIDC_URL.removeprefix('https://')}:aud": GITHUB_AUDIENCE,
                        # Jobs must run in the GitHub Environment named after ours (its protection rules apply).
                        f"{GITHUB_OIDC_URL.removeprefix('https://')}:sub": f"repo:{repo}:environment:{config.name}",
                    }
                },
            ),
        )
        self.repository.grant_push(role)
        role.add_to_policy(
            iam.PolicyStatement(
                sid="AssumeCdkBootstrapRoles",
                actions=["sts:AssumeRole", "sts:TagSession"],
                resources=[
                    self.format_arn(
                        service="iam",
                        region="",
                        resource="role",
                        resource_name=f"cdk-{CDK_QUALIFIER}-{name}-role-{self.account}-{self.region}",
                    )
                    for name in CDK_BOOTSTRAP_ROLES
                ],
            )
        )
        return role
