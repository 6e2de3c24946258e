"""Azure service-principal credentials: the format check and the validator entry.

A service principal is more than one value, so ``credentials`` for Azure is an
object of named fields (the registry's ``credential.fields``):

- ``tenant_id``: Directory (tenant) ID, a GUID;
- ``client_id``: Application (client) ID, a GUID;
- ``client_secret``: the secret's *Value*, or ``client_certificate``: a PEM
  holding the certificate and its unencrypted private key (exactly one);
- ``secret_id`` (optional): the secret's ID from "Certificates & secrets",
  which picks the secret whose expiry is read when two share a hint.

``parse_service_principal`` checks every field on its own, so a 400 names the
field that is wrong; it never calls Azure. The stored secret is the canonical
JSON of these fields. The live check is ``azure_live.check_service_principal``,
loaded (with ``msal``) only when an Azure credential is checked.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.domain.errors import BadRequest, InvalidCredentialFormat

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SECRET_FIELDS = ("client_secret", "client_certificate")
MAX_SECRET_CHARS = 1024  # Entra secrets are 40 characters; anything near this is a paste error
PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")


def _certificate_problems(pem: str) -> list[str]:
    """What is wrong with a client certificate PEM, read with ``cryptography`` (no network)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    match = PEM_CERTIFICATE.search(pem)
    if match is None:
        return ["credentials.client_certificate holds no -----BEGIN CERTIFICATE----- block"]
    problems = []
    try:
        certificate = x509.load_pem_x509_certificate(match.group(0).encode())
    except ValueError:
        return ["credentials.client_certificate: the CERTIFICATE block is not a valid X.509 certificate"]
    if "PRIVATE KEY-----" not in pem:
        return ["credentials.client_certificate holds no private key (paste the PEM with the certificate and its key)"]
    if "ENCRYPTED PRIVATE KEY" in pem or "Proc-Type: 4,ENCRYPTED" in pem:
        return ["credentials.client_certificate: the private key is encrypted; export it without a passphrase"]
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        return ["credentials.client_certificate: the private key block is not a valid PEM private key"]
    public = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != (
        public
    ):
        problems.append("credentials.client_certificate: the private key does not belong to the certificate")
    return problems


def parse_service_principal(credentials: dict[str, Any], display_name: str) -> str:
    """The canonical JSON of a service principal, or a 400 naming each bad field.

    Missing or wrongly typed fields are ``BadRequest`` (like any request
    field); a value of the right type in the wrong shape is
    ``InvalidCredentialFormat`` with ``details.problems``, one per field.
    """
    for name in ("tenant_id", "client_id"):
        if not isinstance(credentials.get(name), str) or not credentials[name].strip():
            raise BadRequest(f"Field 'credentials.{name}' is required and must be a non-empty string")
    given = [name for name in SECRET_FIELDS if credentials.get(name) is not None]
    if len(given) != 1:
        raise BadRequest(
            f"Field 'credentials' for {display_name} needs exactly one of 'client_secret' or 'client_certificate'"
        )
    secret_field = given[0]
    value = credentials[secret_field]
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"Field 'credentials.{secret_field}' must be a non-empty string")
    secret_id = credentials.get("secret_id")
    if secret_id is not None and not isinstance(secret_id, str):
        raise BadRequest("Field 'credentials.secret_id' must be a string")

    document: dict[str, str] = {
        "tenant_id": credentials["tenant_id"].strip().lower(),
        "client_id": credentials["client_id"].strip().lower(),
    }
    problems = [
        f"credentials.{name} must be a GUID such as 00000000-0000-0000-0000-000000000000"
        f" (the {label} from the app registration's Overview)"
        for name, label in (("tenant_id", "Directory (tenant) ID"), ("client_id", "Application (client) ID"))
        if not GUID.fullmatch(document[name])
    ]
    if secret_field == "client_secret":
        secret = value.strip()
        if len(secret) > MAX_SECRET_CHARS or not secret.isprintable():
            problems.append(
                "credentials.client_secret must be the secret's Value:"
                f" printable, at most {MAX_SECRET_CHARS} characters"
            )
        document["client_secret"] = secret
    else:
        document["client_certificate"] = value.strip()
        problems.extend(_certificate_problems(document["client_certificate"]))
    if secret_id is not None:
        document["secret_id"] = secret_id.strip().lower()
        if not GUID.fullmatch(document["secret_id"]):
            problems.append("credentials.secret_id must be a GUID (the Secret ID shown beside the secret's Value)")
    if problems:
        raise InvalidCredentialFormat(f"Invalid API key format for {display_name}", details={"problems": problems})
    return json.dumps(document, sort_keys=True)
