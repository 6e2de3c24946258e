"""Live check of a customer's AWS role against what the cost pipeline needs, through boto3.

1. platform identity: the function's Google-signed ID token (metadata server)
   -> ``sts:AssumeRoleWithWebIdentity`` on the platform's role (no static AWS
   key exists anywhere); cached per instance until shortly before it expires;
2. ``assume_role``: ``sts:AssumeRole`` on the customer's role with the org's
   external ID, chained from the platform role;
3. ``caller_identity``: ``GetCallerIdentity`` (free, needs no permission) with
   those credentials: the session's account is the ARN's account;
4. ``external_id_required``: the same AssumeRole *without* the external ID
   must be refused - if it succeeds, anyone who learns the role ARN could have
   the platform read this account (the confused deputy);
5. ``list_export``: one key under ``s3://export_bucket/export_prefix/``;
6. ``read_cost_export``: the newest Data Exports (CUR 2.0) manifest
   (``<prefix>/<export>/metadata/BILLING_PERIOD=YYYY-MM/*-Manifest.json``):
   ``HeadObject`` proves ``s3:GetObject`` and dates the last delivery.

Only free, read-only calls: never Cost Explorer (billed per request). boto3
is imported in this module only, which is loaded only when an AWS credential
is validated, so no other function's cold start pays for it.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

# This module is the AWS adapter: it is imported only when an AWS credential
# is validated, so these imports cost no other function's cold start.
import boto3
from botocore import UNSIGNED
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shared.common.retries import attempt, retry_after_seconds
from shared.domain.providers import ProviderSpec
from shared.domain.validation import CheckResult, Failure, FailureClass, ValidationResult
from shared.egress.http_client import HttpStatusError, Response
from shared.validators.aws import PLATFORM_SESSION_NAME, parse_role_arn, read_stored_credential
from shared.validators.context import ValidationContext
from shared.validators.retry import CHECKS, RETRYABLE_STATUS, check_policy
from shared.validators.summary import summarize

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "Forbidden", "403"})
WRONG_REGION_CODES = frozenset(
    {"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}
)
MAX_EXPORTS_SCANNED = 10
ID_TOKEN_MAX_BYTES = 64 * 1024  # a Google ID token is ~1 KB
# An STS answer is ~2 KB; a ListObjectsV2 page of 1,000 keys ~0.4 MB.
AWS_ANSWER_MAX_BYTES = 4 * 1024 * 1024
ERROR_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")
PLATFORM_CREDENTIALS_MARGIN_SECONDS = 300

# botocore logs whole requests and responses at DEBUG - signed headers and the
# session credentials STS returns. Whatever LOG_LEVEL says, it never logs below WARNING.
for _library in ("botocore", "boto3"):
    logging.getLogger(_library).setLevel(logging.WARNING)

_platform_cache: dict[tuple[str, str, str | None], tuple[dict[str, str], float]] = {}
_platform_lock = threading.Lock()
_sessions = threading.local()


class AwsUnreachable(BotoCoreError):
    """An AWS endpoint gave no usable answer before the validation's end time (names the host only)."""

    fmt = "{host} did not answer in time or could not be reached"


class _Body(io.BytesIO):
    """An answer's body as botocore reads it (``AWSResponse.raw``: ``stream()``, or ``read()`` for a stream)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


def _aws_fault(response: Response | None, error: Exception | None) -> bool:
    """A transport failure, a 429/5xx, or AWS's throttling answer (STS says ``Throttling`` with a 400)."""
    if error is not None:
        return isinstance(error, OSError)
    if response is None:
        return False
    if response.status_code in RETRYABLE_STATUS:
        return True
    code = ERROR_CODE.search(response.content) if response.status_code == 400 else None
    return code is not None and code.group(1).decode(errors="replace") in THROTTLING_CODES


@dataclass
class _Aws:
    """Builds boto3 clients for one validation (boto3 sessions are per thread: they are not thread-safe)."""

    context: ValidationContext
    region: str
    endpoint_url: str | None
    deadline: float  # time.monotonic() by which the whole validation ends

    def client(self, service: str, credentials: dict[str, str] | None = None) -> BaseClient:
        boto_session = getattr(_sessions, "session", None)
        if boto_session is None:
            boto_session = _sessions.session = boto3.session.Session()
        # botocore signs and parses; its transport never sends (``_send`` answers every request first), and it
        # never retries: the service's client and retry policy carry each call, within the validation's deadline.
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            s3={"addressing_style": "path"} if self.endpoint_url else None,
            signature_version=UNSIGNED if credentials is None else None,
        )
        keys: dict[str, str] = {}
        if credentials is not None:
            keys = {
                "aws_access_key_id": credentials["AccessKeyId"],
                "aws_secret_access_key": credentials["SecretAccessKey"],
                "aws_session_token": credentials["SessionToken"],
            }
        client = boto_session.client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, config=config, **keys
        )
        client.meta.events.register("before-send", self._send)
        return client

    def _send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        """botocore's ``before-send`` hook: the signed request goes out through the service's HTTP client.

        botocore's own transport reads with a per-read timeout, which a server sending one byte at a
        time never trips, and reads an answer of any size. Here every attempt gets only what is left
        of the validation's deadline, the answer is read up to ``AWS_ANSWER_MAX_BYTES``, proxies and
        NO_PROXY are read as for every other call, and the one retry policy decides the attempts.
        """
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        # The client sets Content-Length and Host itself.
        headers = {
            name: value.decode() if isinstance(value, bytes) else str(value)
            for name, value in request.headers.items()
            if name.lower() not in ("content-length", "host")
        }
        timeout = self.context.settings.request_timeout_seconds

        def send(_: int) -> Response:
            if time.monotonic() >= self.deadline:
                raise TimeoutError("the validation's deadline passed")
            return CHECKS.request(
                request.method,
                request.url,
                headers=headers,
                data=body or None,
                timeout=timeout,
                deadline=self.deadline,
                max_body_bytes=AWS_ANSWER_MAX_BYTES,
            )

        tried = attempt(
            send,
            policy=check_policy(self.context),
            retryable=_aws_fault,
            deadline=self.deadline,
            retry_after=lambda answer, _: retry_after_seconds(answer.headers) if answer is not None else None,
        )
        if tried.error is not None:
            if isinstance(tried.error, OSError):
                raise AwsUnreachable(host=urlsplit(request.url).hostname) from None
            raise tried.error
        answer: Response = tried.result
        return AWSResponse(request.url, answer.status_code, dict(answer.headers.items()), _Body(answer.content))


def _classify(
    capability: str,
    error: Exception,
    fix: str,
    denied_failure: Failure = Failure.FORBIDDEN,
    denied_reason: str | None = None,
) -> CheckResult:
    """A boto3/botocore error as a check result; the fix goes into the details, provider text never does."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in THROTTLING_CODES or status == 429:
            return CheckResult(
                capability,
                True,
                False,
                Failure.RATE_LIMITED,
                FailureClass.TRANSIENT,
                f"{code or status} after retries",
                status,
            )
        if status >= 500:
            return CheckResult(
                capability,
                True,
                False,
                Failure.UNREACHABLE,
                FailureClass.PROVIDER_OUTAGE,
                f"{code or 'server error'} ({status})",
                status,
            )
        if code in DENIED_CODES or status == 403:
            reason = denied_reason or code or str(status)
            return CheckResult(
                capability, True, False, denied_failure, FailureClass.CONFIG, reason, status, facts={"fix": fix}
            )
        return CheckResult(
            capability, True, False, Failure.MISSING_CAPABILITY, FailureClass.CONFIG, code, status, facts={"fix": fix}
        )
    reason = "network error or timeout" if isinstance(error, BotoCoreError) else error.__class__.__name__
    return CheckResult(capability, True, False, Failure.UNREACHABLE, FailureClass.TRANSIENT, reason)


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _id_token(context: ValidationContext, deadline: float) -> str:
    """A Google-signed ID token of the function's service account, for the platform role's audience."""
    response = CHECKS.request(
        "GET",
        context.settings.aws_id_token_url,
        params={"audience": context.settings.aws_web_identity_audience, "format": "full"},
        headers={"Metadata-Flavor": "Google"},
        timeout=context.settings.request_timeout_seconds,
        deadline=deadline,
        max_body_bytes=ID_TOKEN_MAX_BYTES,
    )
    response.raise_for_status()
    return response.text.strip()


def _platform_credentials(aws: _Aws) -> tuple[dict[str, str] | None, CheckResult | None]:
    context = aws.context
    role = context.settings.aws_platform_role_arn
    operator_fix = (
        "Operator: set AWS_PLATFORM_ROLE_ARN to the platform's AWS role, which must trust this function's "
        "Google service account (accounts.google.com) for AWS_WEB_IDENTITY_AUDIENCE; see terraform/aws-platform-role."
    )
    if not role:
        return None, CheckResult(
            "assume_role",
            False,
            False,
            Failure.UNREACHABLE,
            FailureClass.PROVIDER_OUTAGE,
            "the platform has no AWS identity (AWS_PLATFORM_ROLE_ARN is unset)",
            facts={"fix": operator_fix},
        )
    key = (role, context.settings.aws_web_identity_audience, aws.endpoint_url)
    with _platform_lock:
        cached = _platform_cache.get(key)
    if cached is not None and cached[1] - time.time() > PLATFORM_CREDENTIALS_MARGIN_SECONDS:
        return cached[0], None
    try:
        token = _id_token(context, aws.deadline)
    except (OSError, HttpStatusError):
        return None, CheckResult(
            "assume_role",
            True,
            False,
            Failure.UNREACHABLE,
            FailureClass.PROVIDER_OUTAGE,
            "the platform could not get its Google ID token from the metadata server",
            facts={"fix": operator_fix},
        )
    try:
        answer = aws.client("sts").assume_role_with_web_identity(
            RoleArn=role, RoleSessionName=PLATFORM_SESSION_NAME, WebIdentityToken=token, DurationSeconds=3600
        )
    except Exception as error:  # noqa: BLE001 - classified below, never re-raised
        result = _classify("assume_role", error, operator_fix, denied_failure=Failure.UNREACHABLE)
        if result.failure_class == FailureClass.CONFIG:
            # The platform's own role refused us: not the customer's doing, so not a config error of theirs.
            result.failure_class = FailureClass.PROVIDER_OUTAGE
        result.reason = f"platform identity: {result.reason}"
        return None, result
    credentials = answer["Credentials"]
    expires = credentials["Expiration"].timestamp()
    with _platform_lock:
        _platform_cache[key] = (credentials, expires)
    return credentials, None


def _assume_customer_role(
    aws: _Aws,
    platform: dict[str, str],
    role_arn: str,
    external_id: str,
    context: ValidationContext,
    *,
    session_name: str = PLATFORM_SESSION_NAME,
    duration_seconds: int = 900,
) -> tuple[dict[str, Any] | None, CheckResult]:
    fix = (
        f"Let the platform assume the role: its trust policy must allow sts:AssumeRole for "
        f"{context.settings.aws_platform_role_arn} with the condition StringEquals sts:ExternalId = {external_id} "
        "(GET /api/v1/integrations/{org}/aws/setup-instructions has the exact policy). "
        "Check the role ARN too: AWS answers the same for a role that does not exist."
    )
    try:
        answer = aws.client("sts", platform).assume_role(
            RoleArn=role_arn, RoleSessionName=session_name, ExternalId=external_id, DurationSeconds=duration_seconds
        )
    except Exception as error:  # noqa: BLE001
        code = _error_code(error)
        if code == "RegionDisabledException":
            region_fix = (
                f"STS is deactivated in {aws.region}: activate it (IAM > Account settings > STS endpoints) "
                "or set config.region to a region where it is active."
            )
            return None, CheckResult(
                "assume_role", True, False, Failure.FORBIDDEN, FailureClass.CONFIG, code, 403, facts={"fix": region_fix}
            )
        if code == "ValidationError":
            return None, CheckResult(
                "assume_role",
                True,
                False,
                Failure.INVALID_KEY,
                FailureClass.CONFIG,
                code,
                400,
                facts={"fix": "AWS rejected the role ARN: rotate with the ARN shown on the role's IAM page."},
            )
        return None, _classify("assume_role", error, fix)
    return answer["Credentials"], CheckResult("assume_role", True, True, http_status=200)


def _caller_identity(aws: _Aws, customer: dict[str, str], role_arn: str) -> CheckResult:
    expected_account = role_arn.split(":")[4]
    try:
        identity = aws.client("sts", customer).get_caller_identity()
    except Exception as error:  # noqa: BLE001
        return _classify("caller_identity", error, "Try again; GetCallerIdentity needs no permission.")
    account = str(identity.get("Account", ""))
    if account != expected_account:
        return CheckResult(
            "caller_identity",
            True,
            False,
            Failure.MISSING_CAPABILITY,
            FailureClass.CONFIG,
            f"the session belongs to account {account}, not {expected_account}",
            200,
            facts={"fix": "Rotate with the ARN of the role in the account whose costs you want to import."},
        )
    return CheckResult("caller_identity", True, True, http_status=200, facts={"account_id": account})


def _external_id_required(aws: _Aws, platform: dict[str, str], role_arn: str, external_id: str) -> CheckResult:
    condition = f'{{"StringEquals": {{"sts:ExternalId": "{external_id}"}}}}'
    fix = (
        f"Add the condition {condition} to the trust policy of {role_arn}: without it, anyone who learns "
        "the role ARN could have the platform read this account (the confused deputy)."
    )
    try:
        aws.client("sts", platform).assume_role(RoleArn=role_arn, RoleSessionName=PLATFORM_SESSION_NAME)
    except Exception as error:  # noqa: BLE001
        if _error_code(error) in DENIED_CODES:
            return CheckResult("external_id_required", True, True, http_status=403)
        return _classify("external_id_required", error, fix)
    return CheckResult(
        "external_id_required",
        True,
        False,
        Failure.MISSING_CAPABILITY,
        FailureClass.CONFIG,
        "the role can be assumed without the external ID",
        200,
        facts={"fix": fix, "condition": condition},
    )


def _list_export(s3: BaseClient, bucket: str, prefix: str, partition: str, region: str) -> CheckResult:
    try:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/", MaxKeys=1)
    except Exception as error:  # noqa: BLE001
        code = _error_code(error)
        if code == "NoSuchBucket":
            return CheckResult(
                "list_export",
                True,
                False,
                Failure.MISSING_CAPABILITY,
                FailureClass.CONFIG,
                f"bucket {bucket} does not exist",
                404,
                facts={"fix": "Set config.export_bucket to the bucket of the export's S3 destination."},
            )
        if code in WRONG_REGION_CODES:
            actual = error.response.get("Error", {}).get("Region") or "another region"  # type: ignore[attr-defined]
            return CheckResult(
                "list_export",
                True,
                False,
                Failure.MISSING_CAPABILITY,
                FailureClass.CONFIG,
                f"bucket {bucket} is not in {region}",
                400,
                facts={"fix": f"Set config.region to the bucket's region ({actual})."},
            )
        return _classify(
            "list_export",
            error,
            denied_reason=f"s3:ListBucket denied on arn:{partition}:s3:::{bucket} for the prefix {prefix}/",
            fix=f"Allow s3:ListBucket on arn:{partition}:s3:::{bucket} for the prefix {prefix}/ in the role's "
            "permissions policy, and check that no bucket policy denies the role.",
        )
    if not listed.get("KeyCount"):
        return CheckResult(
            "list_export",
            True,
            False,
            Failure.MISSING_CAPABILITY,
            FailureClass.CONFIG,
            f"no files under s3://{bucket}/{prefix}/",
            200,
            facts={
                "fix": "Check that the export's S3 destination is this bucket and prefix; "
                "the first delivery can take up to 24 hours after the export is created."
            },
        )
    return CheckResult("list_export", True, True, http_status=200)


def _newest_manifest(s3: BaseClient, bucket: str, prefix: str) -> tuple[str, datetime] | None:
    """The newest ``*Manifest.json`` of the current billing period of each export under the prefix."""
    exports = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/", Delimiter="/", MaxKeys=MAX_EXPORTS_SCANNED)
    # The prefix may name one export itself, or hold several.
    folders = [f"{prefix}/"] + [entry["Prefix"] for entry in exports.get("CommonPrefixes", [])]
    newest: tuple[str, datetime] | None = None
    for folder in folders[: MAX_EXPORTS_SCANNED + 1]:
        periods = s3.list_objects_v2(Bucket=bucket, Prefix=f"{folder}metadata/", Delimiter="/")
        period_prefixes = sorted(entry["Prefix"] for entry in periods.get("CommonPrefixes", []))
        if not period_prefixes:
            continue
        objects = s3.list_objects_v2(Bucket=bucket, Prefix=period_prefixes[-1])
        for item in objects.get("Contents", []):
            if item["Key"].endswith("Manifest.json") and (newest is None or item["LastModified"] > newest[1]):
                newest = (item["Key"], item["LastModified"])
    return newest


def _read_cost_export(
    s3: BaseClient, bucket: str, prefix: str, partition: str, context: ValidationContext
) -> CheckResult:
    read_denied = f"s3:GetObject denied on arn:{partition}:s3:::{bucket}/{prefix}/*"
    read_fix = (
        f"Allow s3:GetObject on arn:{partition}:s3:::{bucket}/{prefix}/* in the role's permissions policy, "
        "and check that no bucket policy or KMS key policy denies the role."
    )
    try:
        manifest = _newest_manifest(s3, bucket, prefix)
    except Exception as error:  # noqa: BLE001
        return _classify("read_cost_export", error, read_fix, denied_reason=read_denied)
    if manifest is None:
        return CheckResult(
            "read_cost_export",
            True,
            False,
            Failure.MISSING_CAPABILITY,
            FailureClass.CONFIG,
            f"no Data Exports manifest (<export>/metadata/BILLING_PERIOD=YYYY-MM/*-Manifest.json) under s3://{bucket}/{prefix}/",
            200,
            facts={"fix": "Set config.export_prefix to the S3 path prefix of a Data Exports (CUR 2.0) export."},
        )
    key, _ = manifest
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception as error:  # noqa: BLE001
        return _classify("read_cost_export", error, read_fix, denied_reason=read_denied)
    modified: datetime = head["LastModified"]
    age_hours = max((datetime.now(UTC) - modified).total_seconds(), 0) / 3600
    facts: dict[str, Any] = {
        "manifest": key,
        "newest_data_at": modified.astimezone(UTC).isoformat(),
        "newest_data_age_hours": round(age_hours, 1),
    }
    if age_hours > context.settings.billing_export_max_age_hours:
        facts["fix"] = "Check that the export is still active in Billing and Cost Management > Data Exports."
        return CheckResult(
            "read_cost_export",
            True,
            False,
            Failure.MISSING_CAPABILITY,
            FailureClass.CONFIG,
            f"the newest export manifest is {age_hours:.1f} h old"
            f" (limit {context.settings.billing_export_max_age_hours:g} h)",
            200,
            facts=facts,
        )
    return CheckResult("read_cost_export", True, True, http_status=200, facts=facts)


def _other_partition(partition: str, platform_partition: str) -> CheckResult:
    return CheckResult(
        "assume_role",
        False,
        False,
        Failure.FORBIDDEN,
        FailureClass.CONFIG,
        f"the role is in partition {partition}, the platform's role in {platform_partition}: "
        "trust cannot cross partitions",
        facts={
            "fix": f"Connect a role in the {platform_partition} partition, or ask the operator for a deployment "
            f"whose AWS_PLATFORM_ROLE_ARN is in {partition}."
        },
    )


def _not_a_role_credential() -> CheckResult:
    return CheckResult(
        "assume_role",
        False,
        False,
        Failure.INVALID_KEY,
        FailureClass.CONFIG,
        "the stored credential is not a role ARN with the org's external ID",
        facts={"fix": "Rotate it: POST /api/v1/integrations/{org}/aws/rotate with new_credentials.role_arn."},
    )


def _in_time(deadline: float, capability: str, step: Callable[[], CheckResult]) -> CheckResult:
    """Run ``step`` unless the validation's deadline has passed (then it counts as unreachable)."""
    if time.monotonic() < deadline:
        return step()
    return CheckResult(
        capability, True, False, Failure.UNREACHABLE, FailureClass.TRANSIENT, "validation deadline reached"
    )


def _finish(spec: ProviderSpec, checks: list[CheckResult]) -> ValidationResult:
    """The spec's message, plus the one fix that matters most in ``details.fix``."""
    result = summarize(spec, checks)
    if result.ok:
        return result
    deputy = next((c for c in checks if c.capability == "external_id_required" and c.failure), None)
    if deputy is not None and deputy.failure_class == FailureClass.CONFIG:
        # A role anyone can have us assume is a security hole: it outranks every other finding.
        result.message = (
            f"{spec.display_name} role does not require the external ID: "
            f"add the condition {deputy.facts['condition']} to its trust policy"
        )
        result.failure = Failure.MISSING_CAPABILITY
        result.failure_class = FailureClass.CONFIG
        result.details["message"] = result.message
        result.details["fix"] = deputy.facts["fix"]
        return result
    worst = next((c for c in checks if c.failure == result.failure and not c.passed), None)
    if worst is not None and worst.facts.get("fix"):
        result.details["fix"] = worst.facts["fix"]
    return result


class AwsSession(NamedTuple):
    """Temporary credentials of the customer's role (an STS session), for a pipeline; never a long-lived key."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: datetime


def assume_for_pipeline(
    spec: ProviderSpec,
    secret: str,
    config: dict[str, Any],
    context: ValidationContext,
    *,
    session_name: str,
    duration_seconds: int,
) -> AwsSession | CheckResult:
    """``sts:AssumeRole`` on the org's role with the org's external ID: one call once the platform
    identity is cached. ``session_name`` shows in the customer's CloudTrail; a refusal comes back as
    the validator's ``assume_role`` check."""
    try:
        role_arn, external_id = read_stored_credential(secret)
    except (ValueError, KeyError, TypeError):
        return _not_a_role_credential()
    endpoint = None if context.base_url == spec.base_url else context.base_url
    deadline = time.monotonic() + context.settings.validation_deadline_seconds
    aws = _Aws(context, config.get("region", "us-east-1"), endpoint, deadline)
    platform, failed = _platform_credentials(aws)
    if platform is None:
        return failed or CheckResult("assume_role", False, False, Failure.UNREACHABLE, FailureClass.PROVIDER_OUTAGE)
    session, assumed = _assume_customer_role(
        aws, platform, role_arn, external_id, context, session_name=session_name, duration_seconds=duration_seconds
    )
    if session is None:
        return assumed
    return AwsSession(
        session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"], session["Expiration"]
    )


def check_role(spec: ProviderSpec, secret: str, config: dict[str, Any], context: ValidationContext) -> ValidationResult:
    try:
        role_arn, external_id = read_stored_credential(secret)
    except (ValueError, KeyError, TypeError):
        # Only a credential stored without the org's external ID (never by setup, rotate or import).
        return _finish(spec, [_not_a_role_credential()])
    role = parse_role_arn(role_arn, spec.display_name)
    region, bucket = config.get("region", "us-east-1"), config.get("export_bucket", "")
    prefix = str(config.get("export_prefix", "")).strip("/")
    deadline = time.monotonic() + context.settings.validation_deadline_seconds
    endpoint = None if context.base_url == spec.base_url else context.base_url
    aws = _Aws(context, region, endpoint, deadline)

    platform_partition = (context.settings.aws_platform_role_arn or "arn:aws").split(":")[1]
    if role.partition != platform_partition:
        # IAM trust never crosses partitions: an aws-cn role cannot trust a principal in aws.
        return _finish(spec, [_other_partition(role.partition, platform_partition)])
    platform, failed = _platform_credentials(aws)
    if platform is None:
        return _finish(spec, [failed] if failed else [])
    customer, assumed = _assume_customer_role(aws, platform, role_arn, external_id, context)
    checks = [assumed]
    if customer is None:
        return _finish(spec, checks)
    checks.append(_in_time(deadline, "caller_identity", lambda: _caller_identity(aws, customer, role_arn)))
    checks.append(
        _in_time(deadline, "external_id_required", lambda: _external_id_required(aws, platform, role_arn, external_id))
    )
    s3 = aws.client("s3", customer)
    listed = _in_time(deadline, "list_export", lambda: _list_export(s3, bucket, prefix, role.partition, region))
    checks.append(listed)
    if listed.passed:
        checks.append(
            _in_time(
                deadline, "read_cost_export", lambda: _read_cost_export(s3, bucket, prefix, role.partition, context)
            )
        )
    return _finish(spec, checks)
