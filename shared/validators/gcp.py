"""Google Cloud service-account validation.

``parse_service_account`` is the format check run at setup and rotate: the
uploaded JSON must be a service-account key whose ``token_uri`` is Google's,
written plainly. The live check never connects to the key's ``token_uri``
anyway (it uses the operator's ``GCP_TOKEN_URI``): the check only refuses
keys that are not what they claim to be.

The live check is ``gcp_live.check_service_account``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shared.common.jsonbody import loads_bounded
from shared.domain.errors import BadRequest, InvalidCredentialFormat

REQUIRED_FIELDS = ("type", "project_id", "private_key_id", "private_key", "client_email", "token_uri")


def parse_service_account(
    text: str, display_name: str, allowed_token_hosts: tuple[str, ...], operator_token_uri: str | None = None
) -> dict[str, Any]:
    """The key as a dict, or ``InvalidCredentialFormat`` naming every problem."""
    message = f"Invalid API key format for {display_name}"
    try:
        document = loads_bounded(text, what="service_account_json", max_depth=8)
    except BadRequest as error:
        raise InvalidCredentialFormat(message, details={"problems": [error.message]}) from None
    if not isinstance(document, dict):
        raise InvalidCredentialFormat(message, details={"problems": ["service_account_json must be a JSON object"]})
    problems = [
        f"missing field {name}"
        for name in REQUIRED_FIELDS
        if not isinstance(document.get(name), str) or not document[name]
    ]
    if document.get("type") not in (None, "service_account") and isinstance(document.get("type"), str):
        problems.append("type must be service_account")
    private_key = document.get("private_key")
    if isinstance(private_key, str) and private_key and "-----BEGIN PRIVATE KEY-----" not in private_key:
        problems.append("private_key is not a PEM private key")
    email = document.get("client_email")
    if isinstance(email, str) and email and "@" not in email:
        problems.append("client_email is not an email address")
    token_uri = document.get("token_uri")
    if isinstance(token_uri, str) and token_uri and token_uri != operator_token_uri:
        host = _plain_https_host(token_uri)
        if host is None or host not in allowed_token_hosts:
            # What was sent is not repeated (any field of a pasted key could hold its secret).
            problems.append(f"token_uri is not an allowed Google token endpoint ({', '.join(allowed_token_hosts)})")
    if problems:
        raise InvalidCredentialFormat(message, details={"problems": problems})
    return document


def _plain_https_host(url: str) -> str | None:
    """The host of an https URL written plainly (no userinfo, port, backslash), or None.

    Both parsers (``urlsplit`` and urllib3's, which requests connects with) must
    read the same host: ``https://127.0.0.1:1\\@oauth2.googleapis.com/`` is
    Google for one and loopback for the other.
    """
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    if "\\" in url or "@" in url or not url.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return None
    try:
        parsed, split = parse_url(url), urlsplit(url)
        split_port = split.port
    except (LocationParseError, ValueError):
        return None
    if parsed.scheme != "https" or split.scheme != "https" or parsed.port is not None or split_port is not None:
        return None
    if not parsed.host or parsed.host != split.hostname or parsed.host.endswith("."):
        return None
    return parsed.host
