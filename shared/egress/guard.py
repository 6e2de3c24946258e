"""Outbound HTTP to a host a user named (alert webhooks): only to public
addresses, and only to the address that was checked.

Two parsers that disagree about a URL are how a check passes for one host
while the client connects to another (``https://127.0.0.1:1\\@good.example/``:
``urlsplit`` sees good.example, urllib3 127.0.0.1). So:

- ``parse_target`` parses once, with urllib3's parser (the client's), and
  refuses what parsers disagree on: backslashes, userinfo, whitespace and
  control characters, a host that ``urlsplit`` reads differently;
- ``canonical_host`` maps every IPv4 spelling ``inet_aton`` accepts
  (``2130706433``, ``0x7f000001``, ``127.1``, ``0177.0.0.1``, ``0``),
  IPv4-mapped IPv6 and trailing dots to one form; a URL not already in that
  form is refused (it would mean something else to some resolver);
- ``resolve_public`` resolves the host at send time and refuses it if *any*
  address is loopback, private, link-local (the metadata server), CGNAT,
  multicast, reserved or unspecified;
- ``request_url`` is what the delivery hands the service's HTTP client,
  with ``connect_to`` that address (no second lookup between check and
  connect): the hostname is kept for TLS SNI, the certificate check and
  ``Host``, no proxy is used, and no redirect is followed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.domain.errors import BadRequest

DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_URL_CHARS = 2048
# Names that are internal whatever DNS says (the metadata server answers on them).
INTERNAL_NAMES = ("localhost", "metadata", "metadata.google.internal")
INTERNAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa")
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Well-known NAT64 prefix: its addresses reach whatever IPv4 address they embed.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
CGNAT = ipaddress.ip_network("100.64.0.0/10")


class OutboundRefused(BadRequest):
    """The URL names a host the service must not connect to (or names it ambiguously)."""

    code = "outbound_url_refused"


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # canonical: lower-case name without trailing dot, or a compressed IP literal
    port: int
    request_target: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def request_url(self) -> str:
        """The URL rebuilt from its checked parts: what the client is given, never the stored text."""
        return f"{self.scheme}://{self.host_header}{self.request_target}"


def canonical_host(raw: str) -> str:
    """The one spelling of ``raw``; ``OutboundRefused`` if it is not a valid host."""
    host = raw.lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if "%" in host:
            raise OutboundRefused("Webhook URL host must not carry an IPv6 zone")
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise OutboundRefused(f"Webhook URL host {raw[:100]} is not a valid IPv6 address") from None
        mapped = address.ipv4_mapped
        return str(mapped) if mapped is not None else str(address)
    host = host.rstrip(".")
    if not host or not host.isascii():
        raise OutboundRefused("Webhook URL host must be an ASCII host name (IDNA/punycode) or an IP address")
    labels = host.split(".")
    if _is_number(labels[-1]) or labels[-1].startswith("0x"):
        # WHATWG: a host whose last label is numeric is an IPv4 address or nothing.
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            raise OutboundRefused(f"Webhook URL host {raw[:100]} is not a valid IPv4 address") from None
    if len(host) > 253 or not all(LABEL.match(label) for label in labels):
        raise OutboundRefused(f"Webhook URL host {raw[:100]} is not a valid host name")
    return host


def _is_number(label: str) -> bool:
    return label.isdigit() or (label.startswith("0x") and all(c in "0123456789abcdef" for c in label[2:]))


def address_refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why the service must not connect to ``address``, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local (metadata server)"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved"),
        (isinstance(address, ipaddress.IPv4Address) and address in CGNAT, "carrier-grade NAT"),
        (address.is_private, "private"),
        (not address.is_global, "not globally routable"),
    )
    return next((reason for matched, reason in checks if matched), None)


def parse_target(url: str, *, insecure_hosts: tuple[str, ...] = ()) -> Target:
    """The URL as the connection will see it, or ``OutboundRefused`` saying why not.

    ``insecure_hosts`` (tests only: ``WEBHOOK_INSECURE_HOSTS``) may use
    plain http, any port and internal addresses; they are still parsed and
    pinned the same way.
    """
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    if not url or len(url) > MAX_URL_CHARS:
        raise OutboundRefused(f"Webhook URL must be an absolute https:// URL of at most {MAX_URL_CHARS} characters")
    if "\\" in url or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url) or not url.isascii():
        raise OutboundRefused("Webhook URL must not contain backslashes, spaces, control or non-ASCII characters")
    try:
        parsed = parse_url(url)
        split = urlsplit(url)
        split_port = split.port
    except (LocationParseError, ValueError):
        raise OutboundRefused("Webhook URL is not a valid URL") from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or not parsed.host:
        raise OutboundRefused("Webhook URL must be an absolute https:// URL")
    if parsed.auth is not None or "@" in (split.netloc or ""):
        raise OutboundRefused("Webhook URL must not contain a user name or password")
    if (split.hostname or "") != parsed.host.lower().strip("[]") or split_port != parsed.port:
        raise OutboundRefused("Webhook URL is ambiguous (parsers disagree on its host)")
    host = canonical_host(parsed.host)
    raw_host = parsed.host.lower().strip("[]")
    port = DEFAULT_PORTS[scheme] if parsed.port is None else parsed.port
    if not 0 < port < 65536:
        raise OutboundRefused("Webhook URL port must be from 1 to 65535")
    request_target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query is not None else "")
    target = Target(scheme, host, port, request_target)
    if raw_host in insecure_hosts:
        return target
    if scheme != "https":
        raise OutboundRefused("Webhook URL must use https://")
    refusal = _name_refusal(host)
    if refusal is not None:
        raise OutboundRefused(f"Webhook URL host {raw_host[:100]} is {refusal}; use a public https:// endpoint")
    if host != raw_host:
        raise OutboundRefused(f"Webhook URL host {raw_host[:100]} is not in canonical form; write it as {host}")
    if port != DEFAULT_PORTS[scheme]:
        raise OutboundRefused("Webhook URL must use the default https port (443)")
    return target


def _name_refusal(host: str) -> str | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host in INTERNAL_NAMES or host.endswith(INTERNAL_SUFFIXES):
            return "an internal name"
        return None
    reason = address_refusal(address)
    return None if reason is None else f"an internal address ({reason})"


def resolve_public(target: Target, *, insecure_hosts: tuple[str, ...] = ()) -> str:
    """The address to connect to: every address the host resolves to must be public.

    Refusing when any address is internal (not just the first) stops a name
    that answers both a public and an internal address from choosing later.
    """
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise OutboundRefused(f"Webhook URL host {target.host} does not resolve") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise OutboundRefused(f"Webhook URL host {target.host} does not resolve")
    if target.host not in insecure_hosts:
        for address in addresses:
            reason = address_refusal(address)
            if reason is not None:
                raise OutboundRefused(
                    f"Webhook URL host {target.host} resolves to an internal address ({reason});"
                    " use a public https:// endpoint"
                )
    return str(addresses[0])


def check_resolved(target: Target, *, insecure_hosts: tuple[str, ...] = ()) -> None:
    """At set time: refuse a host that resolves inside now; a name that does not resolve
    yet is accepted (it is checked again at every delivery)."""
    try:
        resolve_public(target, insecure_hosts=insecure_hosts)
    except OutboundRefused as refused:
        if "does not resolve" not in refused.message:
            raise
