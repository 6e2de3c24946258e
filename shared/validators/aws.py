"""AWS cross-account role: format checks, the stored credential and the setup instructions.

The customer creates an IAM role that trusts the platform's AWS role and
requires an external ID that the *platform* generated for the org (AWS's
confused-deputy guidance: the user never chooses it). What we store, encrypted
like any credential, is ``{"role_arn", "external_id"}``: the external ID goes
in with the ARN at setup, so validation and revalidation need no extra read.

Nothing here imports boto3: the live check is ``aws_live.check_role``, loaded
only when an AWS credential is validated; it builds on this module, never the
other way round.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from shared.domain.errors import InvalidCredentialFormat
from shared.domain.providers import ROLE_ARN_FIELD

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
ROLE_ARN = re.compile(
    r"^arn:(?P<partition>[a-z\-]+):iam::(?P<account>[^:]*):role/(?P<path>([\x21-\x7e]{0,510}/)?)(?P<name>[^/]*)$"
)
ROLE_NAME = re.compile(r"^[A-Za-z0-9+=,.@_\-]{1,64}$")
# botocore: ExternalId is 2-1224 characters of [\w+=,.@:/-].
EXTERNAL_ID = re.compile(r"^[\w+=,.@:/\-]{2,1224}$")
PLATFORM_SESSION_NAME = "provider-integrations"
READ_ONLY_EXPORT_ACTIONS = ("bcm-data-exports:ListExports", "bcm-data-exports:GetExport")


@dataclass(frozen=True)
class RoleArn:
    arn: str
    partition: str
    account_id: str
    name: str


def parse_role_arn(value: str, display_name: str, field_name: str = f"credentials.{ROLE_ARN_FIELD}") -> RoleArn:
    """The ARN's parts, or ``InvalidCredentialFormat`` saying which field and what is wrong."""
    expected = "arn:aws:iam::123456789012:role/cost-export-reader"
    match = ROLE_ARN.fullmatch(value.strip())
    problems = []
    if match is None:
        problems.append(f"{field_name} must be an IAM role ARN such as {expected}")
    else:
        if match["partition"] not in PARTITIONS:
            problems.append(f"{field_name} partition must be one of {', '.join(PARTITIONS)}")
        if not re.fullmatch(r"[0-9]{12}", match["account"]):
            problems.append(f"{field_name} account must be 12 digits")
        if not ROLE_NAME.fullmatch(match["name"]):
            problems.append(f"{field_name} role name must be 1-64 characters of letters, digits and +=,.@_-")
    if problems or match is None:
        raise InvalidCredentialFormat(
            f"Invalid API key format for {display_name}",
            details={"field": field_name, "problems": problems, "expected": expected},
        )
    return RoleArn(arn=value.strip(), partition=match["partition"], account_id=match["account"], name=match["name"])


def new_external_id() -> str:
    """Random, unguessable, within botocore's ExternalId limits."""
    return f"pi-{secrets.token_hex(16)}"


def stored_credential(role_arn: str, external_id: str) -> str:
    """What gets encrypted for an AWS integration."""
    return json.dumps({"role_arn": role_arn, "external_id": external_id}, sort_keys=True)


def read_stored_credential(secret: str) -> tuple[str, str]:
    document = json.loads(secret)
    return str(document["role_arn"]), str(document["external_id"])


def platform_account_id(platform_role_arn: str) -> str:
    return platform_role_arn.split(":")[4]


def trust_policy(platform_role_arn: str, external_id: str) -> dict[str, Any]:
    """The customer role's trust policy: only the platform's role, only with the org's external ID."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": platform_role_arn},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": external_id}},
            }
        ],
    }


def permissions_policy(partition: str, bucket: str, prefix: str) -> dict[str, Any]:
    """Least privilege for the cost export: list the prefix, read its objects, read the export's definition.

    Nothing that costs money: no Cost Explorer (``ce:*`` is billed per request).
    """
    prefix = prefix.strip("/")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListCostExport",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:{partition}:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
            },
            {
                "Sid": "ReadCostExport",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:{partition}:s3:::{bucket}/{prefix}/*",
            },
            {
                "Sid": "ReadExportDefinitions",
                "Effect": "Allow",
                "Action": list(READ_ONLY_EXPORT_ACTIONS),
                "Resource": "*",
            },
        ],
    }


def cloudformation_template(platform_role_arn: str, external_id: str, partition: str, bucket: str, prefix: str) -> str:
    """A ready-to-deploy CloudFormation template (JSON is valid YAML) creating the role."""
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "Read-only role for the cost platform: reads the Data Exports (CUR 2.0) files",
        "Resources": {
            "CostExportReaderRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": "cost-export-reader",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": trust_policy(platform_role_arn, external_id),
                    "Policies": [
                        {
                            "PolicyName": "read-cost-export",
                            "PolicyDocument": permissions_policy(partition, bucket, prefix),
                        }
                    ],
                },
            }
        },
        "Outputs": {"RoleArn": {"Value": {"Fn::GetAtt": ["CostExportReaderRole", "Arn"]}}},
    }
    return json.dumps(template, indent=2)


def setup_instructions(
    display_name: str, platform_role_arn: str, external_id: str, bucket: str | None, prefix: str | None
) -> dict[str, Any]:
    """What the user pastes into AWS before calling setup."""
    partition = platform_role_arn.split(":")[1]
    bucket_value = bucket or "EXPORT_BUCKET"
    prefix_value = (prefix or "EXPORT_PREFIX").strip("/")
    return {
        "provider": "aws",
        "display_name": display_name,
        "external_id": external_id,
        "platform_principal": {
            "role_arn": platform_role_arn,
            "account_id": platform_account_id(platform_role_arn),
        },
        "trust_policy": trust_policy(platform_role_arn, external_id),
        "permissions_policy": permissions_policy(partition, bucket_value, prefix_value),
        "cloudformation_template": cloudformation_template(
            platform_role_arn, external_id, partition, bucket_value, prefix_value
        ),
        "steps": [
            "Create a Data Exports (CUR 2.0) export that delivers to your S3 bucket and prefix.",
            "Create an IAM role with the trust_policy above (or deploy cloudformation_template); keep the "
            "sts:ExternalId condition: without it, anyone who learns the role ARN through the platform could use it.",
            "Attach permissions_policy to the role: read-only, the export prefix only, no Cost Explorer.",
            "POST /api/v1/integrations/{org}/aws/setup with credentials.role_arn and config "
            "{export_bucket, export_prefix, region}, then POST .../aws/validate.",
        ],
    }
