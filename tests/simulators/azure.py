"""Local HTTPS simulator of the three Azure endpoints the Azure validator calls.

One threaded WSGI server on 127.0.0.1 with its own CA (msal accepts only
``https`` authorities), serving:

=====================================================  =====================================
path                                                   stands in for
=====================================================  =====================================
``GET /{tenant}/v2.0/.well-known/openid-configuration``  Entra ID tenant discovery (msal)
``POST /{tenant}/oauth2/v2.0/token``                     Entra ID client-credentials grant
``GET /arm{scope}/providers/Microsoft.CostManagement/     ARM: Cost Management exports list
exports?api-version=...&$expand=runHistory``
``GET /graph/v1.0/applications(appId='{client_id}')``    Microsoft Graph: the app registration
=====================================================  =====================================

So the service runs with ``AZURE_AUTHORITY_HOST=https://127.0.0.1:PORT``,
``PROVIDER_AZURE_BASE_URL=https://127.0.0.1:PORT/arm``,
``AZURE_GRAPH_BASE_URL=https://127.0.0.1:PORT/graph`` and
``AZURE_CA_BUNDLE=<ca.pem>`` (``env()`` returns them).

Unlike the marker-driven provider simulator (GUIDs cannot carry markers), this
one holds a small directory that tests fill: tenants, app registrations with
secrets (value, hint, keyId, endDateTime) or certificates, role assignments
at scopes (inherited by child scopes), exports with run history. Answers use
the real shapes: Entra's ``{error, error_description, error_codes, ...}``
(``AADSTS90002`` unknown tenant, ``AADSTS700016`` app not in tenant,
``AADSTS7000215`` wrong secret, ``AADSTS7000222`` expired secret,
``AADSTS700027`` unregistered certificate), ARM's ``{"error": {"code",
"message"}}`` envelope (``AuthorizationFailed``, ``SubscriptionNotFound``,
``InvalidAuthenticationToken``...), Graph's envelope with ``innerError``.
Faults: ``throttle(component, times)`` answers 429 with ``Retry-After``,
``set_down(component)`` answers 503.

Anything that would cost money or change something (any ARM or Graph call
other than those GETs, a Cost Management query, running an export, a POST
other than the token grant) is answered 405 and recorded in
``forbidden_calls``; tests assert that list stays empty.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import ssl
import string
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.simulators._serving import ServedInThread, serve_until_stopped

ARM_AUDIENCE = "https://management.azure.com"
GRAPH_AUDIENCE = "https://graph.microsoft.com"
API_VERSIONS = frozenset({"2023-07-01-preview", "2023-08-01", "2024-08-01", "2025-03-01"})
COMPONENTS = ("login", "arm", "graph")
SECRET_ALPHABET = string.ascii_letters + string.digits + "_-.~"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, mimetype="application/json")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_secret_value() -> str:
    """Shaped like an Entra secret Value: three-character hint, ``8Q~``, 34 more characters."""
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(3)) + "8Q~" + secrets.token_urlsafe(26)[:34]


@dataclass
class PasswordCredential:
    value: str
    end: datetime
    key_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    start: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=1))
    display_name: str = "cost-platform"

    def as_graph(self) -> dict[str, Any]:
        return {
            "customKeyIdentifier": None,
            "displayName": self.display_name,
            "endDateTime": _iso(self.end),
            "hint": self.value[:3],
            "keyId": self.key_id,
            "secretText": None,  # Graph never returns a secret's value again
            "startDateTime": _iso(self.start),
        }


@dataclass
class App:
    tenant_id: str
    client_id: str
    object_id: str
    display_name: str
    graph_readable: bool
    secrets: list[PasswordCredential] = field(default_factory=list)
    certificates: dict[str, Any] = field(default_factory=dict)  # sha-256 and sha-1 thumbprint -> certificate


@dataclass(frozen=True)
class ServicePrincipal:
    """What a customer copies from the portal: the request's ``credentials``."""

    tenant_id: str
    client_id: str
    client_secret: str
    secret_id: str

    def credentials(self, *, with_secret_id: bool = False) -> dict[str, str]:
        values = {"tenant_id": self.tenant_id, "client_id": self.client_id, "client_secret": self.client_secret}
        if with_secret_id:
            values["secret_id"] = self.secret_id
        return values


class AzureDirectory:
    """The simulator's world; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tenants: set[str] = set()
        self.apps: dict[str, App] = {}
        self.grants: list[tuple[str, str]] = []  # (client_id, scope lower-case)
        self.scopes: set[str] = set()  # scopes that exist (lower-case)
        self.exports: dict[str, list[dict[str, Any]]] = {}
        self.tokens: dict[str, tuple[str, str, str]] = {}  # token -> (tenant, client_id, audience)
        self.throttles: dict[str, list[int]] = {}  # component -> [remaining, retry_after]
        self.down: set[str] = set()
        self.requests: dict[str, int] = dict.fromkeys(COMPONENTS, 0)
        self.forbidden_calls: list[str] = []

    # Filling the directory ------------------------------------------------------------
    def add_tenant(self) -> str:
        tenant_id = str(uuid.uuid4())
        with self._lock:
            self.tenants.add(tenant_id)
        return tenant_id

    def add_app(
        self, *, tenant_id: str | None = None, secret_days: float = 365, graph_readable: bool = True
    ) -> ServicePrincipal:
        """An app registration with one client secret ending in ``secret_days`` (negative: expired)."""
        tenant_id = tenant_id or self.add_tenant()
        app = App(tenant_id, str(uuid.uuid4()), str(uuid.uuid4()), "cost-platform-reader", graph_readable)
        with self._lock:
            self.apps[app.client_id] = app
        value, key_id = self.add_secret(app.client_id, secret_days)
        return ServicePrincipal(tenant_id, app.client_id, value, key_id)

    def add_secret(self, client_id: str, days: float, value: str | None = None) -> tuple[str, str]:
        secret = PasswordCredential(value or new_secret_value(), datetime.now(UTC) + timedelta(days=days))
        with self._lock:
            self.apps[client_id].secrets.append(secret)
        return secret.value, secret.key_id

    def add_certificate(self, client_id: str, certificate_pem: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        with self._lock:
            for algorithm in (hashes.SHA256(), hashes.SHA1()):  # x5t is SHA-1 by definition
                self.apps[client_id].certificates[_b64url(certificate.fingerprint(algorithm))] = certificate

    def grant(self, client_id: str, scope: str) -> None:
        """A role assignment that can read Cost Management at ``scope`` and below."""
        with self._lock:
            self.grants.append((client_id, scope.lower()))

    def add_scope(self, scope: str) -> None:
        with self._lock:
            self.scopes.add(scope.lower())

    def add_export(
        self,
        scope: str,
        name: str,
        runs: list[tuple[str, float]] | None = None,
        *,
        schedule_status: str = "Active",
    ) -> None:
        """An export at ``scope``; ``runs`` are (status, hours ago), default one Completed run 6 h ago."""
        now = datetime.now(UTC)
        history = []
        for status, hours_ago in runs if runs is not None else [("Completed", 6.0)]:
            started = now - timedelta(hours=hours_ago)
            run: dict[str, Any] = {
                "id": f"{scope}/providers/Microsoft.CostManagement/exports/{name}/Run/{uuid.uuid4()}",
                "name": str(uuid.uuid4()),
                "type": "Microsoft.CostManagement/reports/Run",
                "properties": {
                    "executionType": "Scheduled",
                    "fileName": f"exports/{name}/{started:%Y%m%d}-{started:%Y%m%d}/part_0_0001.csv",
                    "processingStartTime": _iso(started),
                    "processingEndTime": _iso(started + timedelta(minutes=4)),
                    "status": status,
                    "submittedBy": "System",
                    "submittedTime": _iso(started - timedelta(minutes=1)),
                    "runSettings": {"format": "Csv", "definition": {"type": "ActualCost", "timeframe": "Custom"}},
                },
            }
            if status == "Failed":
                run["properties"]["error"] = {
                    "code": "StorageAccountNotFound",
                    "message": "The storage account of the export could not be found.",
                }
            history.append(run)
        export = {
            "id": f"{scope}/providers/Microsoft.CostManagement/exports/{name}",
            "name": name,
            "type": "Microsoft.CostManagement/exports",
            "eTag": f'"{uuid.uuid4().hex[:16]}"',
            "properties": {
                "schedule": {
                    "status": schedule_status,
                    "recurrence": "Daily",
                    "recurrencePeriod": {"from": "2026-01-01T00:00:00Z", "to": "2027-12-31T00:00:00Z"},
                },
                "format": "Csv",
                "deliveryInfo": {
                    "destination": {
                        "resourceId": f"{scope}/resourceGroups/billing/providers/Microsoft.Storage"
                        "/storageAccounts/costexports",
                        "container": "exports",
                        "rootFolderPath": "daily",
                    }
                },
                "definition": {"type": "ActualCost", "timeframe": "MonthToDate", "dataSet": {"granularity": "Daily"}},
                "partitionData": True,
                "runHistory": {"value": history},
                "nextRunTimeEstimate": _iso(now + timedelta(hours=18)),
            },
        }
        with self._lock:
            self.scopes.add(scope.lower())
            self.exports.setdefault(scope.lower(), []).append(export)

    def throttle(self, component: str, times: int, retry_after: int = 1) -> None:
        """The next ``times`` requests to ``component`` (login, arm, graph) answer 429."""
        with self._lock:
            self.throttles[component] = [times, retry_after]

    def set_down(self, component: str, down: bool = True) -> None:
        with self._lock:
            (self.down.add if down else self.down.discard)(component)

    # Used by the routes ------------------------------------------------------------------
    def fault(self, component: str) -> tuple[str, int] | None:
        with self._lock:
            self.requests[component] += 1
            if component in self.down:
                return "down", 0
            throttle = self.throttles.get(component)
            if throttle and throttle[0] > 0:
                throttle[0] -= 1
                return "throttled", throttle[1]
        return None

    def forbid(self, request: Request) -> None:
        with self._lock:
            self.forbidden_calls.append(f"{request.method} {request.full_path}")

    def issue_token(self, tenant_id: str, client_id: str, audience: str) -> str:
        now = int(datetime.now(UTC).timestamp())
        app = self.apps[client_id]
        claims = {"aud": audience, "tid": tenant_id, "appid": client_id, "oid": app.object_id, "iat": now}
        claims["exp"] = now + 3599
        header = _b64url(json.dumps({"typ": "JWT", "alg": "RS256"}).encode())
        token = f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(secrets.token_bytes(32))}"
        with self._lock:
            self.tokens[token] = (tenant_id, client_id, audience)
        return token

    def token_owner(self, request: Request) -> tuple[str, str, str] | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer":
            return None
        with self._lock:
            return self.tokens.get(token.strip())

    def covers(self, client_id: str, scope: str) -> bool:
        scope = scope.lower()
        with self._lock:
            return any(c == client_id and (scope == s or scope.startswith(s + "/")) for c, s in self.grants)

    def known_scope(self, scope: str) -> bool:
        scope = scope.lower()
        with self._lock:
            return any(scope == s or s.startswith(scope + "/") for s in self.scopes)


# ---------------------------------------------------------------------------------------
# Entra ID (login)
# ---------------------------------------------------------------------------------------


def entra_error(status: int, error: str, code: int, description: str) -> Response:
    now = datetime.now(UTC)
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    return _json(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
        status,
        {"Cache-Control": "no-store, no-cache"},
    )


def _assertion_app(directory: AzureDirectory, app: App, assertion: str, token_url: str) -> bool:
    """The client assertion is a JWT signed by a certificate registered on ``app``."""
    import jwt

    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        return False
    # Thumbprints are base64url, with or without padding (msal keeps it).
    certificate = app.certificates.get(str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("="))
    if certificate is None:
        return False
    try:
        claims = jwt.decode(
            assertion, certificate.public_key(), algorithms=["RS256", "PS256"], audience=token_url, leeway=60
        )
    except jwt.PyJWTError:
        return False
    return claims.get("iss") == app.client_id and claims.get("sub") == app.client_id


def login(directory: AzureDirectory, request: Request, tenant_id: str, rest: str) -> Response:
    if tenant_id not in directory.tenants:
        return entra_error(
            400,
            "invalid_tenant" if rest.endswith("openid-configuration") else "invalid_request",
            90002,
            f"Tenant '{tenant_id}' not found. Check to make sure you have the correct tenant ID and are signing"
            " into the correct cloud.",
        )
    base = request.host_url.rstrip("/")
    if rest == "/v2.0/.well-known/openid-configuration" and request.method == "GET":
        return _json(
            {
                "token_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/{tenant_id}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "issuer": f"{base}/{tenant_id}/v2.0",
                "authorization_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{tenant_id}/oauth2/v2.0/devicecode",
                "tenant_region_scope": "EU",
            }
        )
    if rest != "/oauth2/v2.0/token" or request.method != "POST":
        directory.forbid(request)
        return entra_error(405 if rest == "/oauth2/v2.0/token" else 404, "invalid_request", 900561, "Not supported.")
    form = request.form
    if form.get("grant_type") != "client_credentials":
        return entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
    app = directory.apps.get(form.get("client_id", ""))
    if app is None or app.tenant_id != tenant_id:
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{form.get('client_id', '')}' was not found in the directory '{tenant_id}'."
            " This can happen if the application has not been installed by the administrator of the tenant.",
        )
    if "client_assertion" in form:
        token_url = f"{base}/{tenant_id}/oauth2/v2.0/token"
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" or (
            not _assertion_app(directory, app, form["client_assertion"], token_url)
        ):
            return entra_error(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not registered on application.",
            )
    else:
        matched = [s for s in app.secrets if secrets.compare_digest(s.value, form.get("client_secret", ""))]
        if not matched:
            return entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret"
                f" value, not the client secret ID, for a secret added to app '{app.client_id}'.",
            )
        if matched[0].end <= datetime.now(UTC):
            return entra_error(
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.client_id}' are expired. Visit the Azure portal to"
                " create new keys for your app.",
            )
    audiences = {f"{ARM_AUDIENCE}/.default": ARM_AUDIENCE, f"{GRAPH_AUDIENCE}/.default": GRAPH_AUDIENCE}
    requested = form.get("scope", "").split()
    audience = next((audiences[s] for s in requested if s in audiences), None)
    if audience is None:
        return entra_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
    token = directory.issue_token(tenant_id, app.client_id, audience)
    return _json(
        {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token},
        headers={"Cache-Control": "no-store, no-cache"},
    )


# ---------------------------------------------------------------------------------------
# ARM and Graph
# ---------------------------------------------------------------------------------------


def arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    merged = {"x-ms-request-id": str(uuid.uuid4()), "x-ms-correlation-request-id": str(uuid.uuid4())}
    return _json({"error": {"code": code, "message": message}}, status, {**merged, **(headers or {})})


EXPORTS_SUFFIX = "/providers/microsoft.costmanagement/exports"


def arm(directory: AzureDirectory, request: Request, path: str) -> Response:
    if request.method != "GET" or not path.lower().endswith(EXPORTS_SUFFIX):
        # Running an export, a cost query, or writing anything: never from a validator.
        directory.forbid(request)
        return arm_error(405, "MethodNotAllowed", f"The simulator serves only GET ...{EXPORTS_SUFFIX}.")
    owner = directory.token_owner(request)
    if owner is None:
        if "Authorization" not in request.headers:
            return arm_error(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
    tenant_id, client_id, audience = owner
    if audience != ARM_AUDIENCE:
        return arm_error(
            401,
            "InvalidAuthenticationTokenAudience",
            "The access token has been obtained for wrong audience or resource.",
        )
    version = request.args.get("api-version")
    if not version:
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version not in API_VERSIONS:
        return arm_error(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for API version '{version}'."
            f" The supported api-versions are '{', '.join(sorted(API_VERSIONS))}'.",
        )
    scope = path[: -len(EXPORTS_SUFFIX)]
    if not directory.known_scope(scope):
        parts = scope.split("/")
        if scope.lower().startswith("/subscriptions/") and len(parts) == 3:
            return arm_error(404, "SubscriptionNotFound", f"The subscription '{parts[2]}' could not be found.")
        if "/resourcegroups/" in scope.lower():
            return arm_error(404, "ResourceGroupNotFound", f"Resource group '{parts[-1]}' could not be found.")
        return arm_error(404, "NotFound", f"The scope '{scope}' was not found.")
    if not directory.covers(client_id, scope):
        object_id = directory.apps[client_id].object_id
        return arm_error(
            403,
            "AuthorizationFailed",
            f"The client '{client_id}' with object id '{object_id}' does not have authorization to perform action"
            f" 'Microsoft.CostManagement/exports/read' over scope '{scope}' or the scope is invalid. If access was"
            " recently granted, please refresh your credentials.",
        )
    expand = request.args.get("$expand", "")
    exports = json.loads(json.dumps(directory.exports.get(scope.lower(), [])))
    if "runhistory" not in expand.lower():
        for export in exports:
            export["properties"].pop("runHistory", None)
    return _json({"value": exports}, headers={"x-ms-request-id": str(uuid.uuid4())})


def graph_error(status: int, code: str, message: str) -> Response:
    inner = {"date": _iso(datetime.now(UTC))[:-5], "request-id": str(uuid.uuid4())}
    inner["client-request-id"] = inner["request-id"]
    return _json({"error": {"code": code, "message": message, "innerError": inner}}, status)


def graph(directory: AzureDirectory, request: Request, path: str) -> Response:
    prefix, suffix = "/v1.0/applications(appId='", "')"
    if request.method != "GET" or not (path.startswith(prefix) and path.endswith(suffix)):
        directory.forbid(request)
        return graph_error(405, "Request_BadRequest", "The simulator serves only GET /v1.0/applications(appId='...').")
    owner = directory.token_owner(request)
    if owner is None or owner[2] != GRAPH_AUDIENCE:
        return graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
    tenant_id, client_id, _ = owner
    app = directory.apps.get(path[len(prefix) : -len(suffix)])
    if app is None or app.tenant_id != tenant_id:
        return graph_error(
            404, "Request_ResourceNotFound", f"Resource '{path[len(prefix) : -len(suffix)]}' does not exist."
        )
    if not directory.apps[client_id].graph_readable:
        return graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    body: dict[str, Any] = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#applications/$entity",
        "id": app.object_id,
        "appId": app.client_id,
        "displayName": app.display_name,
        "passwordCredentials": [secret.as_graph() for secret in app.secrets],
        "keyCredentials": [],
    }
    selected = [name for name in request.args.get("$select", "").split(",") if name]
    if selected:
        body = {k: v for k, v in body.items() if k in selected or k == "@odata.context"}
    return _json(body)


# ---------------------------------------------------------------------------------------
# WSGI app, TLS and the server
# ---------------------------------------------------------------------------------------


def _fault_response(component: str, kind: str, retry_after: int) -> Response:
    if component == "login":
        if kind == "throttled":
            response = entra_error(429, "temporarily_unavailable", 90055, "Too many requests; retry later.")
        else:
            response = entra_error(503, "temporarily_unavailable", 90033, "A transient error has occurred.")
    elif kind == "throttled":
        response = arm_error(429, "TooManyRequests", "Too many requests. Please retry.")
        response.headers["x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after"] = str(retry_after)
    else:
        response = arm_error(503, "ServiceUnavailable", "The service is temporarily unavailable.")
    if kind == "throttled":
        response.headers["Retry-After"] = str(retry_after)
    return response


class AzureSimulatorApp:
    def __init__(self, directory: AzureDirectory) -> None:
        self.directory = directory

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        request.max_content_length = 1024 * 1024
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = unquote(request.path)
        first, _, rest = path.lstrip("/").partition("/")
        component = first if first in ("arm", "graph") else "login"
        fault = self.directory.fault(component)
        if fault is not None:
            return _fault_response(component, *fault)
        if component == "arm":
            return arm(self.directory, request, "/" + rest)
        if component == "graph":
            return graph(self.directory, request, "/" + rest)
        return login(self.directory, request, first, "/" + rest)


def _self_signed_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Azure simulator test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class _QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    log_requests = False

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.log_requests:
            super().log_request(code, size)


class AzureSimulator(ServedInThread):
    """The simulator as a background HTTPS server on 127.0.0.1 (``with AzureSimulator() as sim``)."""

    host = "127.0.0.1"

    def __init__(self, port: int = 0, *, log_requests: bool = False) -> None:
        self._requested_port = port
        self._handler = type("Handler", (_QuietHandler,), {"log_requests": log_requests})
        self.directory = AzureDirectory()
        self._server: BaseWSGIServer | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="azure-sim-")
        self.ca_bundle = ""

    def start(self) -> Self:
        ca, cert, key = _self_signed_tls(Path(self._tmp.name))
        self.ca_bundle = str(ca)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = make_server(
            self.host,
            self._requested_port,
            AzureSimulatorApp(self.directory),
            threaded=True,
            ssl_context=context,
            request_handler=self._handler,
        )
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._tmp.cleanup()

    @property
    def url(self) -> str:
        assert self._server is not None, "simulator not started"
        return f"https://{self.host}:{self._server.server_port}"

    def env(self) -> dict[str, str]:
        """The settings that point the service at this simulator."""
        return {
            "AZURE_AUTHORITY_HOST": self.url,
            "PROVIDER_AZURE_BASE_URL": f"{self.url}/arm",
            "AZURE_GRAPH_BASE_URL": f"{self.url}/graph",
            "AZURE_CA_BUNDLE": self.ca_bundle,
        }

    def seed_demo(self, *, secret_days: float = 6) -> tuple[ServicePrincipal, str]:
        """A tenant, an app with Cost Management Reader on a subscription, and a fresh daily export."""
        principal = self.directory.add_app(secret_days=secret_days)
        scope = f"/subscriptions/{uuid.uuid4()}"
        self.directory.add_export(scope, "daily-actual-cost", [("Completed", 30.0), ("Completed", 6.0)])
        self.directory.grant(principal.client_id, scope)
        return principal, scope


def env_file_text(simulator: AzureSimulator, setup_body: dict[str, Any]) -> str:
    """Shell lines that point a service at ``simulator`` and hold the demo setup body."""
    lines = [f"export {name}={value}" for name, value in simulator.env().items()]
    lines.append(f"export AZURE_DEMO_SETUP='{json.dumps(setup_body)}'")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.simulators.azure --port 9998``: serve a demo directory until interrupted."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m tests.simulators.azure", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    parser.add_argument("--secret-days", type=float, default=6, help="days until the demo secret expires")
    parser.add_argument("--env-file", type=Path, help="also write the export lines to this file (for `source`)")
    args = parser.parse_args(argv)
    with AzureSimulator(args.port, log_requests=True) as simulator:
        principal, scope = simulator.seed_demo(secret_days=args.secret_days)
        text = env_file_text(simulator, {"credentials": principal.credentials(), "config": {"scope": scope}})
        if args.env_file:
            args.env_file.write_text(text)
        print(f"# Azure simulator on {simulator.url} (Ctrl-C to stop). Demo tenant, app and export:")
        print(text, end="")
        sys.stdout.flush()
        serve_until_stopped()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
