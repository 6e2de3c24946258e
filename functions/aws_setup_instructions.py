"""GET /api/v1/integrations/{org}/aws/setup-instructions — what to create in AWS before setup.

Answers the org's external ID (generated once by the platform, never chosen by
the user), the platform's AWS principal, the trust and permissions policies
and a CloudFormation template. ``?export_bucket=&export_prefix=`` fill them in.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from shared.domain.errors import BadRequest
from shared.inbound.http import ApiCall, endpoint

QUERY_PARAMETERS = ("export_bucket", "export_prefix")


@functions_framework.http
@endpoint("GET", "/api/v1/integrations/<org_slug>/aws/setup-instructions")
def aws_setup_instructions(call: ApiCall) -> tuple[int, dict[str, Any]]:
    unknown = set(call.request.args) - set(QUERY_PARAMETERS)
    if unknown:
        raise BadRequest(f"Unknown query parameter(s) ({len(unknown)}); allowed: {', '.join(QUERY_PARAMETERS)}")
    bucket, prefix = (call.request.args.get(name) for name in QUERY_PARAMETERS)
    return 200, {"instructions": call.service.setup_instructions(call.caller, "aws", bucket, prefix)}
