"""The pipelines' in-process entry: credential access without HTTP.

A pipeline that runs next to the service (a Cloud Run job with the service's
settings and runtime service account) imports ``access_credential`` instead of
calling ``POST /api/v1/integrations/{org}/{provider}/access``; both run
``shared.usecases.credential_access.access``, with the same audit row.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shared.domain.caller import Caller
from shared.domain.errors import BadRequest
from shared.domain.models import new_id
from shared.usecases.credential_access import CredentialAccess, access

if TYPE_CHECKING:
    from shared.usecases.integrations import IntegrationService

REQUESTED_BY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/-]{0,127}")


def access_credential(
    org_slug: str,
    provider_id: str,
    pipeline: str,
    *,
    requested_by: str,
    service: IntegrationService | None = None,
) -> CredentialAccess:
    """The route's answer without HTTP, for a pipeline that runs next to the service and imports it.

    ``requested_by`` names the pipeline job in the audit log (e.g. its Cloud
    Run job name). The process must hold what the service does: its settings
    (``INTEGRATIONS_BACKEND=gcp`` with the dataset and KMS key) and the
    runtime service account's permissions. ``service`` defaults to the
    process's own (built from the environment on first use, as a Cloud
    Function's is). Raises the service's errors
    (``shared.domain.errors.ServiceError``: ``status_code``, ``message``) on refusal.
    """
    if not REQUESTED_BY.fullmatch(requested_by):
        raise BadRequest("requested_by must be 1-128 characters of letters, digits and . _ @ : / -")
    if service is None:
        from shared.inbound.http import get_service

        service = get_service()
    caller = Caller(key_id=f"job:{requested_by}", org_slug="*", is_admin=True, request_id=new_id())
    return access(service, caller, org_slug, provider_id, pipeline)
