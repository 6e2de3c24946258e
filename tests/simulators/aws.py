"""AWS stand-in: moto (server mode) for STS, IAM and S3, behind a thin layer of our own.

moto answers STS and S3 for boto3, but its ``AssumeRole`` succeeds for any
role and any external ID (trust policies are not evaluated) and it enforces
no IAM permissions. This layer sits in front and does what moto does not,
answering AWS's real error shapes:

- ``AssumeRoleWithWebIdentity``: only for the platform role, only with an ID
  token this stand-in's metadata endpoint issued for the configured audience
  (it plays the GCP metadata server too: ``/computeMetadata/v1/...``);
- ``AssumeRole``: evaluates the target role's trust policy, as stored in moto
  (principal, ``sts:ExternalId`` / ``StringEquals`` / ``StringLike``), and
  answers 403 ``AccessDenied`` XML like STS when it does not allow the caller;
- S3 ``ListObjectsV2`` / ``GetObject`` / ``HeadObject``: evaluates the calling
  role's inline policies (actions, resources, ``s3:prefix`` conditions) and
  answers 403 ``AccessDenied`` like S3;
- faults on demand: ``Throttling`` (STS, 400) / ``SlowDown`` (S3, 503), or ``drip``: the
  answer's headers at once and its body one byte per 0.5 s (a slow-drip server);
- counts every call by service and action, so tests can assert that no paid
  API (Cost Explorer) was ever called.

Policy evaluation is deliberately small: Allow/Deny statements with
Action/Resource wildcards and the condition operators above; anything else
denies. It is a stand-in, not IAM.

``make demo`` runs it for the AWS walkthrough (docs/walkthroughs/aws.md; tests/demo.py); on its own:
``python -m tests.simulators.aws`` (a free port, or ``--port N``) prints the settings to export.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.simulators._serving import ServedInThread, dripping, serve_until_stopped

PLATFORM_ACCOUNT = "111111111111"
PLATFORM_ROLE_ARN = f"arn:aws:iam::{PLATFORM_ACCOUNT}:role/provider-integrations-platform"
AUDIENCE = "provider-integrations-aws"
CUSTOMER_ACCOUNT = "222222222222"
METADATA_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
ADMIN_PATH = "/_stand_in/customer"
# Billed per request: a validation must never call these.
PAID_SERVICES = frozenset({"ce"})
DRIP = "drip"  # the fault that answers slowly rather than with an error
STAND_IN_KEY = "stand-in"  # moto accepts any key; this names what it is, and is no AWS key
CREDENTIAL_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


def _xml_error(status: int, code: str, message: str, *, sts: bool) -> Response:
    request_id = str(uuid.uuid4())
    if sts:
        body = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    else:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
        )
    return Response(body, status=status, content_type="text/xml", headers={"x-amzn-RequestId": request_id})


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _conditions_hold(condition: dict[str, Any], context: dict[str, str]) -> bool:
    for operator, pairs in condition.items():
        for key, expected in pairs.items():
            actual = context.get(key)
            values = [str(value) for value in _as_list(expected)]
            if operator == "StringEquals":
                holds = actual in values
            elif operator == "StringLike":
                holds = actual is not None and any(fnmatchcase(actual, value) for value in values)
            else:
                holds = False  # an operator the stand-in does not model denies
            if not holds:
                return False
    return True


def _principal_matches(principal: Any, caller_arn: str, caller_role_arn: str) -> bool:
    if principal == "*":
        return True
    account = caller_role_arn.split(":")[4]
    for name in _as_list(principal.get("AWS", []) if isinstance(principal, dict) else []):
        if name in ("*", account, caller_arn, caller_role_arn, f"arn:aws:iam::{account}:root"):
            return True
    return False


def policy_allows(
    policy: dict[str, Any],
    action: str,
    resource: str | None,
    context: dict[str, str],
    *,
    caller: tuple[str, str] | None = None,
) -> bool:
    """Deny wins, then any Allow; ``caller`` (session ARN, role ARN) is matched against Principal (trust policies)."""
    allowed = False
    for statement in _as_list(policy.get("Statement", [])):
        actions = [str(a).lower() for a in _as_list(statement.get("Action", []))]
        if not any(fnmatchcase(action.lower(), pattern) for pattern in actions):
            continue
        if resource is not None and not any(
            fnmatchcase(resource, str(pattern)) for pattern in _as_list(statement.get("Resource", "*"))
        ):
            continue
        if caller is not None and not _principal_matches(statement.get("Principal"), *caller):
            continue
        if not _conditions_hold(statement.get("Condition", {}), context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        allowed = True
    return allowed


@dataclass
class StandInState:
    platform_role_arn: str = PLATFORM_ROLE_ARN
    audience: str = AUDIENCE
    calls: Counter[str] = field(default_factory=Counter)
    # AccessKeyId -> (session ARN, role ARN) of every session the stand-in handed out.
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)
    issued_tokens: set[str] = field(default_factory=set)
    # action -> (error code, times left)
    faults: dict[str, list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, service: str, action: str) -> None:
        with self.lock:
            self.calls[f"{service}:{action}"] += 1

    def take_fault(self, action: str) -> str | None:
        with self.lock:
            fault = self.faults.get(action)
            if not fault or fault[1] == 0:
                return None
            fault[1] -= 1
            return str(fault[0])

    @property
    def paid_calls(self) -> int:
        return sum(count for name, count in self.calls.items() if name.split(":")[0] in PAID_SERVICES)


class _QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's handler without its access log line."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class AwsStandIn(ServedInThread):
    """moto on a private port, and the evaluating layer on 127.0.0.1:``port``."""

    host = "127.0.0.1"

    def __init__(self, port: int = 0, *, log_requests: bool = False) -> None:
        self.state = StandInState()
        self._requested_port = port
        self._log_requests = log_requests
        self._moto: Any = None
        self._server: BaseWSGIServer | None = None
        self._admin_sessions: dict[str, Any] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        from moto.server import ThreadedMotoServer

        self._moto = ThreadedMotoServer(ip_address=self.host, port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.backend_url = f"http://{host}:{port}"
        handler = WSGIRequestHandler if self._log_requests else _QuietRequestHandler
        self._server = make_server(self.host, self._requested_port, self._app, threaded=True, request_handler=handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_port}"

    def env(self) -> dict[str, str]:
        """Settings that point the service at this stand-in (no AWS key among them)."""
        return {
            "PROVIDER_AWS_BASE_URL": self.url,
            "AWS_PLATFORM_ROLE_ARN": self.state.platform_role_arn,
            "AWS_WEB_IDENTITY_AUDIENCE": self.state.audience,
            "AWS_ID_TOKEN_URL": self.url + METADATA_PATH,
        }

    def reset(self) -> None:
        with self.state.lock:
            self.state.calls.clear()
            self.state.faults.clear()

    def fail(self, action: str, code: str, times: int = 1) -> None:
        """The next ``times`` calls of ``action`` (AssumeRole, ListObjectsV2, ...) answer ``code``
        (``DRIP``: a slow-drip 503 whose body takes minutes to arrive)."""
        with self.state.lock:
            self.state.faults[action] = [code, times]

    # --- the customer's side (what they do in their AWS account) ----------------------------

    def admin(self, service: str, account_id: str, region: str = "us-east-1") -> Any:
        """A boto3 client straight to moto, acting as the account's administrator (not through the layer)."""
        import boto3

        if account_id not in self._admin_sessions:
            sts = boto3.client(
                "sts",
                endpoint_url=self.backend_url,
                region_name="us-east-1",
                aws_access_key_id=STAND_IN_KEY,
                aws_secret_access_key=STAND_IN_KEY,
            )
            # moto ties an assumed role's credentials to the role's account.
            answer = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/stand-in-admin", RoleSessionName="admin")
            self._admin_sessions[account_id] = answer["Credentials"]
        credentials = self._admin_sessions[account_id]
        return boto3.client(
            service,
            endpoint_url=self.backend_url,
            region_name=region,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )

    def create_customer(
        self,
        *,
        external_id: str | None,
        account_id: str = CUSTOMER_ACCOUNT,
        role_name: str = "cost-export-reader",
        bucket: str = "acme-cost-exports",
        prefix: str = "cur",
        region: str = "us-east-1",
        trust_platform: bool = True,
        allow_list: bool = True,
        allow_read: bool = True,
        export_age_hours: float | None = 2.0,
        export_name: str = "daily-cur2",
    ) -> dict[str, str]:
        """A customer account: the role (trust + permissions as set up by the instructions), bucket and export.

        ``external_id=None`` leaves the ``sts:ExternalId`` condition out (the
        confused-deputy mistake); ``export_age_hours=None`` creates no files.
        """
        iam = self.admin("iam", account_id)
        principal = self.state.platform_role_arn if trust_platform else f"arn:aws:iam::{'3' * 12}:root"
        statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
        if external_id is not None:
            statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
        try:
            iam.delete_role_policy(RoleName=role_name, PolicyName="read-cost-export")
            iam.delete_role(RoleName=role_name)
        except Exception:
            pass
        arn = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
        )["Role"]["Arn"]
        statements = []
        if allow_list:
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": f"arn:aws:s3:::{bucket}",
                    "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
                }
            )
        if allow_read:
            statements.append(
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*"}
            )
        statements.append({"Effect": "Allow", "Action": "bcm-data-exports:GetExport", "Resource": "*"})
        iam.put_role_policy(
            RoleName=role_name,
            PolicyName="read-cost-export",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        s3 = self.admin("s3", account_id, region)
        try:
            if region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        for listed in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=listed["Key"])
        if export_age_hours is not None:
            self._deliver_export(account_id, s3, bucket, prefix, export_name, export_age_hours)
        return {"role_arn": arn, "export_bucket": bucket, "export_prefix": prefix, "region": region}

    def _deliver_export(self, account_id: str, s3: Any, bucket: str, prefix: str, name: str, age_hours: float) -> None:
        """Data Exports (CUR 2.0) layout: data files plus a manifest per billing period."""
        delivered = datetime.now(UTC) - timedelta(hours=age_hours)
        for period in (delivered - timedelta(days=31), delivered):
            billing_period = period.strftime("%Y-%m")
            data_key = f"{prefix}/{name}/data/BILLING_PERIOD={billing_period}/{name}-00001.snappy.parquet"
            manifest_key = f"{prefix}/{name}/metadata/BILLING_PERIOD={billing_period}/{name}-Manifest.json"
            s3.put_object(Bucket=bucket, Key=data_key, Body=b"PAR1 stand-in")
            s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps({"dataFiles": [data_key]}).encode())
            self._backdate(account_id, bucket, [data_key, manifest_key], period)

    def _backdate(self, account_id: str, bucket: str, keys: list[str], when: datetime) -> None:
        # moto stamps objects with the time of upload; a delivery "hours ago" needs an older stamp.
        from moto.s3.models import s3_backends

        stored = s3_backends[account_id]["aws"].buckets[bucket]
        for key in keys:
            stored.keys[key].last_modified = when.replace(tzinfo=None)

    # --- the layer -----------------------------------------------------------------------------

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._handle(request)
        except Exception as error:
            response = _xml_error(500, "InternalFailure", error.__class__.__name__, sts=True)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if request.path == METADATA_PATH:
            return self._id_token(request)
        if request.path == ADMIN_PATH and request.method == "POST":
            return Response(json.dumps(self.create_customer(**request.get_json())), content_type="application/json")
        body = request.get_data()
        scope = CREDENTIAL_SCOPE.search(request.headers.get("Authorization", ""))
        form = {key: values[0] for key, values in parse_qs(body.decode("latin-1")).items()} if body else {}
        service = scope.group(3) if scope else ("sts" if "Action" in form else "unknown")
        if service == "sts":
            return self._sts(request, body, form, scope.group(1) if scope else None)
        if service == "s3":
            return self._s3(request, body, scope.group(1) if scope else None)
        target = request.headers.get("X-Amz-Target", request.method)
        self.state.record(service, target.split(".")[-1])
        if service in PAID_SERVICES:
            return _xml_error(400, "UnrecognizedClientException", "The stand-in does not serve paid APIs", sts=False)
        return self._forward(request, body)

    def _id_token(self, request: Request) -> Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return Response("Missing Metadata-Flavor:Google header", status=403)
        claims = {
            "iss": "https://accounts.google.com",
            "aud": request.args.get("audience", ""),
            "sub": "107000000000000000001",
            "email": "integrations-runtime@stand-in.iam.gserviceaccount.com",
            "exp": int(time.time()) + 3600,
        }
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        token = f"eyJhbGciOiJSUzI1NiJ9.{payload}.stand-in-signature"
        with self.state.lock:
            self.state.issued_tokens.add(token)
        return Response(token, content_type="text/plain")

    def _forward(self, request: Request, body: bytes) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        url = f"{self.backend_url}{request.full_path if request.query_string else request.path}"
        answer = requests.request(request.method, url, headers=headers, data=body, timeout=10, allow_redirects=False)
        dropped = ("content-length", "transfer-encoding", "connection", "content-encoding", "server", "date")
        kept = [(k, v) for k, v in answer.headers.items() if k.lower() not in dropped]
        return Response(answer.content, status=answer.status_code, headers=kept)

    def _remember_session(self, response: Response, role_arn: str) -> None:
        text = response.get_data(as_text=True)
        key = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", text)
        session_arn = re.search(r"<Arn>([^<]+)</Arn>", text)
        if response.status_code == 200 and key and session_arn:
            with self.state.lock:
                self.state.sessions[key.group(1)] = (session_arn.group(1), role_arn)

    def _caller(self, access_key: str | None) -> tuple[str, str] | None:
        with self.state.lock:
            return self.state.sessions.get(access_key or "")

    def _sts(self, request: Request, body: bytes, form: dict[str, str], access_key: str | None) -> Response:
        action = form.get("Action", "")
        self.state.record("sts", action)
        fault = self.state.take_fault(action)
        if fault == DRIP:
            return dripping(_xml_error(503, "ServiceUnavailable", "Service is slow: " + "x" * 64, sts=True))
        if fault:
            return _xml_error(400 if fault == "Throttling" else 503, fault, "Rate exceeded", sts=True)
        role_arn = form.get("RoleArn", "")
        if action == "AssumeRoleWithWebIdentity":
            token = form.get("WebIdentityToken", "")
            with self.state.lock:
                issued = token in self.state.issued_tokens
            if not issued:
                return _xml_error(
                    400,
                    "InvalidIdentityToken",
                    "Couldn't retrieve verification key from your identity provider",
                    sts=True,
                )
            claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
            if role_arn != self.state.platform_role_arn or claims.get("aud") != self.state.audience:
                return _xml_error(
                    403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", sts=True
                )
            response = self._forward(request, body)
            self._remember_session(response, role_arn)
            return response
        caller = self._caller(access_key)
        if caller is None:
            return _xml_error(
                403, "InvalidClientTokenId", "The security token included in the request is invalid.", sts=True
            )
        if action == "AssumeRole":
            if not self._trusts(role_arn, caller, form.get("ExternalId")):
                message = f"User: {caller[0]} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
                return _xml_error(403, "AccessDenied", message, sts=True)
            response = self._forward(request, body)
            self._remember_session(response, role_arn)
            return response
        return self._forward(request, body)

    def _trusts(self, role_arn: str, caller: tuple[str, str], external_id: str | None) -> bool:
        parts = role_arn.split(":")
        if len(parts) != 6 or not parts[5].startswith("role/"):
            return False
        try:
            role = self.admin("iam", parts[4]).get_role(RoleName=parts[5].split("/")[-1])["Role"]
        except Exception:
            return False
        document = role["AssumeRolePolicyDocument"]
        trust = json.loads(document) if isinstance(document, str) else document
        context = {"sts:ExternalId": external_id} if external_id is not None else {}
        return policy_allows(trust, "sts:AssumeRole", None, context, caller=caller)

    def _s3(self, request: Request, body: bytes, access_key: str | None) -> Response:
        parts = urlsplit(request.url)
        bucket, _, key = parts.path.lstrip("/").partition("/")
        if request.method == "GET" and not key and request.args.get("list-type") == "2":
            action, permission, resource = "ListObjectsV2", "s3:ListBucket", f"arn:aws:s3:::{bucket}"
        elif request.method in ("GET", "HEAD") and key:
            action = "HeadObject" if request.method == "HEAD" else "GetObject"
            permission, resource = "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"
        else:
            action, permission, resource = f"{request.method}Other", "", ""
        self.state.record("s3", action)
        fault = self.state.take_fault(action)
        if fault == DRIP:
            return dripping(_xml_error(503, "SlowDown", "Service is slow: " + "x" * 64, sts=False))
        if fault:
            return _xml_error(503, fault, "Please reduce your request rate.", sts=False)
        caller = self._caller(access_key)
        if caller is None:
            return _xml_error(
                403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist.", sts=False
            )
        if permission and not self._role_allows(
            caller[1], permission, resource, {"s3:prefix": request.args.get("prefix", "")}
        ):
            message = f'User: {caller[0]} is not authorized to perform: {permission} on resource: "{resource}"'
            return _xml_error(403, "AccessDenied", message, sts=False)
        return self._forward(request, body)

    def _role_allows(self, role_arn: str, action: str, resource: str, context: dict[str, str]) -> bool:
        account, name = role_arn.split(":")[4], role_arn.split("/")[-1]
        iam = self.admin("iam", account)
        try:
            names = iam.list_role_policies(RoleName=name)["PolicyNames"]
        except Exception:
            return False
        for policy_name in names:
            document = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
            policy = json.loads(document) if isinstance(document, str) else document
            if policy_allows(policy, action, resource, context):
                return True
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulators.aws", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    with AwsStandIn(args.port, log_requests=not args.quiet) as stand_in:
        print(f"# AWS stand-in on {stand_in.url} (moto behind it on {stand_in.backend_url}); Ctrl-C to stop")
        for name, value in stand_in.env().items():
            print(f"export {name}={value}")
        print(f"# create the customer's role, bucket and export: POST {stand_in.url}{ADMIN_PATH}")
        sys.stdout.flush()
        serve_until_stopped()
    return 0


if __name__ == "__main__":
    sys.exit(main())
