"""What every simulated provider shares: the markers a credential carries, the faults they cause, the
request parameters' checks, the state shared by request threads and the base of a provider's routes."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.simulators._serving import dripping

PROVIDER_IDS = ("openai", "anthropic", "gemini", "google")

DEFAULT_SLOW_SECONDS = 3.0


MAX_BODY_BYTES = 1024 * 1024


MARKER_BAD = "bad"


MARKER_FORBIDDEN = "forbidden"


MARKER_RATELIMIT = "ratelimit"


MARKER_DOWN = "down"


MARKER_OVERLOADED = "overloaded"


MARKER_FLAKY = "flaky"


MARKER_FLAP = "flap"


MARKER_SLOW = "slow"


MARKER_DRIP = "drip"


MARKER_REVOKED = "revoked"


MARKER_EXPIRING = "expiring"  # IAM: the service-account key expires in 5 days


MARKER_NO_IAM = "noiam"  # IAM: the account may not read its own key's metadata


# A key the provider lets read the organization endpoints although it is not an
# admin key (and so can also list models): validation must not judge by prefix.
MARKER_ORG_READ = "orgread"


# Only the organization (cost) endpoints answer 429: one check rate-limited.
MARKER_COSTS_RATELIMIT = "costlimit"


# Fault kinds a provider renders in its own error format.
FAULT_RATELIMIT = "ratelimit"


FAULT_OVERLOADED = "overloaded"


FAULT_DOWN = "down"


FAULT_UNAVAILABLE = "unavailable"


JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


Route = Callable[[Request, str], Response]


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        headers=dict(headers or {}),
        mimetype="application/json",
    )


def utc_rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_to(unix_seconds: int, width_seconds: int) -> int:
    return unix_seconds - unix_seconds % width_seconds


class ParameterError(ValueError):
    """A query or form parameter is missing or malformed; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def int_param(
    request: Request,
    name: str,
    *,
    default: int | None,
    low: int,
    high: int | None = None,
) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ParameterError(name, f"Missing query parameter '{name}'")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParameterError(name, f"Invalid value for '{name}': expected an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ParameterError(name, f"Invalid value for '{name}': must be {bound}")
    return value


def choice_param(request: Request, name: str, choices: Mapping[str, int], default: str) -> str:
    value = request.args.get(name) or default
    if value not in choices:
        allowed = ", ".join(sorted(choices))
        raise ParameterError(name, f"Invalid value for '{name}': expected one of {allowed}")
    return value


def rfc3339_param(request: Request, name: str, *, required: bool) -> datetime | None:
    raw = request.args.get(name)
    if not raw:
        if required:
            raise ParameterError(name, f"{name}: Field required")
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ParameterError(name, f"{name}: Input should be a valid RFC 3339 datetime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class SimulatorState:
    """Counters, per-key attempt counts and settings shared by all request threads."""

    def __init__(self, latency_ms: float = 0.0, slow_seconds: float = DEFAULT_SLOW_SECONDS) -> None:
        self._lock = threading.Lock()
        self.latency_ms = float(latency_ms)
        self.slow_seconds = float(slow_seconds)
        self._requests = dict.fromkeys(PROVIDER_IDS, 0)
        self._in_flight = dict.fromkeys(PROVIDER_IDS, 0)
        self._max_concurrent = dict.fromkeys(PROVIDER_IDS, 0)
        self._attempts: dict[tuple[str, str], int] = {}
        self._revoked: set[str] = set()

    def enter(self, provider: str) -> None:
        with self._lock:
            self._requests[provider] += 1
            self._in_flight[provider] += 1
            self._max_concurrent[provider] = max(self._max_concurrent[provider], self._in_flight[provider])

    def leave(self, provider: str) -> None:
        with self._lock:
            self._in_flight[provider] -= 1

    def next_attempt(self, provider: str, credential: str) -> int:
        """Count one more request of ``credential`` at ``provider``; return the 1-based count."""
        with self._lock:
            attempt = self._attempts.get((provider, credential), 0) + 1
            self._attempts[(provider, credential)] = attempt
            return attempt

    def revoke(self, credential: str) -> None:
        with self._lock:
            self._revoked.add(credential)

    def is_revoked(self, credential: str) -> bool:
        with self._lock:
            return credential in self._revoked

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "requests": dict(self._requests),
                "max_concurrent": dict(self._max_concurrent),
                "in_flight": dict(self._in_flight),
            }

    def reset(self) -> None:
        """Clear counters, flaky/flap state and revocations; settings and live in-flight counts stay."""
        with self._lock:
            self._revoked.clear()
            self._requests = dict.fromkeys(PROVIDER_IDS, 0)
            # A request still running keeps counting towards the new peak.
            self._max_concurrent = dict(self._in_flight)
            self._attempts.clear()

    def config(self) -> dict[str, float]:
        with self._lock:
            return {"latency_ms": self.latency_ms, "slow_seconds": self.slow_seconds}

    def configure(self, latency_ms: float | None = None, slow_seconds: float | None = None) -> dict[str, float]:
        for name, value in (("latency_ms", latency_ms), ("slow_seconds", slow_seconds)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        with self._lock:
            if latency_ms is not None:
                self.latency_ms = float(latency_ms)
            if slow_seconds is not None:
                self.slow_seconds = float(slow_seconds)
            return {"latency_ms": self.latency_ms, "slow_seconds": self.slow_seconds}


class ProviderFake:
    """One provider family: its routes, credential extraction and error format."""

    provider_id = ""
    key_prefix = ""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    # Hooks every provider fills in -------------------------------------------------
    def routes(self) -> dict[str, Route]:
        raise NotImplementedError

    def credential(self, request: Request) -> str | None:
        raise NotImplementedError

    def missing_credential(self) -> Response:
        raise NotImplementedError

    def invalid_credential(self, credential: str) -> Response:
        raise NotImplementedError

    def fault(self, kind: str) -> Response:
        raise NotImplementedError

    def forbidden(self, message: str) -> Response:
        raise NotImplementedError

    def bad_request(self, error: ParameterError) -> Response:
        raise NotImplementedError

    def not_found(self, request: Request) -> Response:
        raise NotImplementedError

    def method_not_allowed(self, request: Request, allowed: str) -> Response:
        raise NotImplementedError

    def precheck(self, request: Request) -> Response | None:
        """A request-level rejection that comes before the credential is looked at."""
        return None

    # Shared decision path ------------------------------------------------------------
    def handle(self, request: Request, subpath: str) -> Response:
        response = self.decide(request, subpath)
        return dripping(response) if MARKER_DRIP in (self.credential(request) or "") else response

    def decide(self, request: Request, subpath: str) -> Response:
        route = self.routes().get(subpath.rstrip("/") or "/")
        if route is None:
            return self.not_found(request)
        if request.method not in ("GET", "HEAD"):
            return self.method_not_allowed(request, "GET")
        rejection = self.precheck(request)
        if rejection is not None:
            return rejection
        credential = self.credential(request)
        if not credential:
            return self.missing_credential()
        if MARKER_SLOW in credential:
            time.sleep(self.state.slow_seconds)
        if not credential.startswith(self.key_prefix) or MARKER_BAD in credential or self.state.is_revoked(credential):
            return self.invalid_credential(credential)
        fault = transient_fault(self.state, self.provider_id, credential)
        if fault is not None:
            return self.fault(fault)
        if MARKER_FORBIDDEN in credential:
            return self.forbidden(self.forbidden_message)
        try:
            return route(request, credential)
        except ParameterError as error:
            return self.bad_request(error)

    forbidden_message = "Permission denied."


def transient_fault(state: SimulatorState, provider: str, credential: str) -> str | None:
    """The availability fault the markers in ``credential`` ask for on this request, if any."""
    if MARKER_RATELIMIT in credential:
        return FAULT_RATELIMIT
    if MARKER_OVERLOADED in credential:
        return FAULT_OVERLOADED
    if MARKER_DOWN in credential:
        return FAULT_DOWN
    flaky = MARKER_FLAKY in credential
    flap = MARKER_FLAP in credential
    if flaky or flap:
        attempt = state.next_attempt(provider, credential)
        if (flaky and attempt == 1) or (flap and attempt % 2 == 1):
            return FAULT_UNAVAILABLE
    return None
