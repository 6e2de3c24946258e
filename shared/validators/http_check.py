"""Declarative provider checks: the registry's ``validation.kind: http``.

Every declared check runs, each one free GET whose response is classified by
the registry's ``responses`` matchers; the key's prefix (``key_hints``) only
decides the order, never which checks run or what they mean. Adding a provider with a standard "who am I" request
is a YAML change.
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from shared.domain.providers import ProviderSpec
from shared.domain.validation import CheckResult, Failure, FailureClass
from shared.validators.context import ValidationContext
from shared.validators.retry import Answer, request_with_retries

MAX_MODELS_REPORTED = 200


def _placeholders(secret: str, config: dict[str, Any]) -> dict[str, str]:
    window_end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window_start = window_end - timedelta(days=1)
    values = {
        "secret": secret,
        # HTTP Basic with the key as the user name and no password (Cursor's Admin API).
        "secret_basic": base64.b64encode(f"{secret}:".encode()).decode(),
        "window_start_unix": str(int(window_start.timestamp())),
        "window_start_rfc3339": window_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "window_end_unix": str(int(window_end.timestamp())),
        "window_end_rfc3339": window_end.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    values.update({f"config.{name}": str(value) for name, value in config.items() if value not in (None, "")})
    return values


def _render(template: str, values: dict[str, str]) -> str | None:
    """Fill ``{name}`` placeholders; None when one is unset (optional header)."""
    rendered = template
    while "{" in rendered:
        start = rendered.index("{")
        end = rendered.index("}", start)
        name = rendered[start + 1 : end]
        if name not in values:
            return None
        rendered = rendered[:start] + values[name] + rendered[end + 1 :]
    return rendered


def check_order(spec: ProviderSpec, secret: str) -> list[str]:
    """Every check, those a matching key hint names first (likely needed ones answer first)."""
    checks = list(spec.validation["checks"])
    for hint in spec.validation.get("key_hints", []):
        if secret.startswith(hint["prefix"]):
            return list(dict.fromkeys([*hint["order"], *checks]))
    return checks


def _json_fields_match(response: Answer, wanted: dict[str, Any]) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    for name, allowed in wanted.items():
        choices = allowed if isinstance(allowed, list) else [allowed]
        if name not in body or body[name] not in choices:
            return False
    return True


def _matches(response: Answer, matchers: list[dict[str, Any]]) -> bool:
    for matcher in matchers:
        if response.status_code != matcher["status"]:
            continue
        needle = matcher.get("body_contains")
        if needle is not None and needle not in response.text:
            continue
        if "json" in matcher and not _json_fields_match(response, matcher["json"]):
            continue
        return True
    return False


def classify(spec: ProviderSpec, capability: str, response: Answer | None) -> CheckResult:
    """Turn one (final) response into a CheckResult; provider text is never kept."""
    if response is None:
        return CheckResult(
            capability,
            tested=True,
            passed=False,
            failure=Failure.UNREACHABLE,
            failure_class=FailureClass.TRANSIENT,
            reason="network error or timeout",
        )
    status = response.status_code
    responses = spec.validation["responses"]
    # Matchers first: some APIs (Slack's auth.test) answer a bad token with 200 and "ok": false,
    # and GitHub answers throttling with 403.
    if _matches(response, responses.get("rate_limited", [])):
        failure, failure_class, reason = Failure.RATE_LIMITED, FailureClass.TRANSIENT, "rate limited"
    elif _matches(response, responses["invalid_key"]):
        failure, failure_class, reason = Failure.INVALID_KEY, FailureClass.CONFIG, "key rejected"
    elif _matches(response, responses["forbidden"]):
        failure, failure_class, reason = (
            Failure.FORBIDDEN,
            FailureClass.CONFIG,
            "key lacks permission for this endpoint",
        )
    elif 200 <= status < 300 and ("success" not in responses or _matches(response, responses["success"])):
        return CheckResult(capability, tested=True, passed=True, http_status=status)
    elif 200 <= status < 300:
        # A 2xx that is not the provider's success shape (Slack's ok:false with an error we do not know).
        failure, failure_class, reason = Failure.FORBIDDEN, FailureClass.CONFIG, "provider refused the call"
    elif status == 429:
        failure, failure_class, reason = Failure.RATE_LIMITED, FailureClass.TRANSIENT, "rate limited"
    elif status >= 500:
        failure, failure_class, reason = Failure.UNREACHABLE, FailureClass.PROVIDER_OUTAGE, f"provider error {status}"
    else:
        failure, failure_class, reason = Failure.UNREACHABLE, FailureClass.CONFIG, f"unexpected status {status}"
    return CheckResult(
        capability,
        tested=True,
        passed=False,
        failure=failure,
        failure_class=failure_class,
        reason=reason,
        http_status=status,
    )


def _models(response: Answer, models_spec: dict[str, str]) -> list[str] | None:
    try:
        items = response.json().get(models_spec["items"], [])
        return [str(item[models_spec["id"]]) for item in items][:MAX_MODELS_REPORTED]
    except (ValueError, AttributeError, KeyError, TypeError):
        return None


def run_http_checks(
    spec: ProviderSpec, secret: str, config: dict[str, Any], context: ValidationContext
) -> list[CheckResult]:
    """Run every check (until the provider throttles or fails); ``summarize`` weighs them."""
    validation = spec.validation
    values = _placeholders(secret, config)
    headers = {
        name: rendered
        for name, template in validation["headers"].items()
        if (rendered := _render(template, values)) is not None
    }
    deadline = time.monotonic() + context.settings.validation_deadline_seconds
    results = []
    for capability in check_order(spec, secret):
        check = validation["checks"][capability]
        params = {
            name: rendered
            for name, template in check.get("query", {}).items()
            if (rendered := _render(template, values)) is not None
        }
        # Config values in a path are required fields (the registry checks it) and URL-encoded here.
        path = _render(check["path"], {name: quote(value, safe="") for name, value in values.items()})
        attempted = request_with_retries(
            check["method"],
            context.base_url + (path or check["path"]),
            headers=headers,
            params=params,
            context=context,
            deadline=deadline,
        )
        result = classify(spec, capability, attempted.response)
        result.lists_models = "models" in check
        if attempted.response is not None:
            if result.passed and "models" in check:
                result.models = _models(attempted.response, check["models"])
            result.headers = {
                label: attempted.response.headers[header]
                for label, header in validation.get("tier_headers", {}).items()
                if header in attempted.response.headers
            }
        results.append(result)
        if result.failure_class in (FailureClass.TRANSIENT, FailureClass.PROVIDER_OUTAGE):
            # The provider is throttling us or down: asking it again now would only
            # add load; the checks left are reported as not run, and summarize
            # reports this one (rate limit / unreachable), not a permission.
            break
    return results
