"""Checkov skips written next to the resource they concern, each with the reason it does not apply."""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import IConstruct


def cfn_resource(construct: IConstruct) -> CfnResource:
    """The CloudFormation resource behind an L2 construct (or the construct itself when it is one)."""
    if isinstance(construct, CfnResource):
        return construct
    child = construct.node.default_child
    if not isinstance(child, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to annotate")
    return child


def skip(construct: IConstruct, **reasons: str) -> None:
    """Tell checkov to skip checks on this resource, each with its reason (`CKV_AWS_18="why"`)."""
    resource = cfn_resource(construct)
    existing = resource.get_metadata("checkov") or {}
    entries = list(existing.get("skip", []))
    entries.extend({"id": check, "comment": reason} for check, reason in sorted(reasons.items()))
    resource.add_metadata("checkov", {"skip": entries})
