"""Webhook endpoints: registering them, checking their URLs (no SSRF), signing and
posting one delivery per the Standard Webhooks specification.

Signature: ``v1,`` + base64 HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}``
keyed with the base64-decoded part of the ``whsec_`` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import re
import secrets
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from app import audit
from app.models import Client
from app.outbound.models import WebhookEndpoint

EVENT_TYPES = ("learner.enrolled", "learner.completed", "learner.passed", "learner.failed",
               "licence.threshold", "licence.forecast", "licence.term_ending", "origin.refused", "identity.drift")
TIMEOUT_SECONDS = 10
MAX_URL_LENGTH = 2000


class EndpointError(ValueError):
    """An endpoint URL or setting refused; the message says why."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


# IPv6 forms that carry an IPv4 address a router or the host's stack may reach in IPv4:
# mapped ::ffff:a.b.c.d, translated ::ffff:0:a.b.c.d, compatible ::a.b.c.d (deprecated, still
# routed by some stacks), NAT64 64:ff9b::a.b.c.d (RFC 6052) and 6to4 2002:aabb:ccdd:: (RFC 3056).
_LOW_32_BITS = tuple(ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96"))
# Local-use NAT64 (RFC 8215) puts the IPv4 address at a place its operator chooses: never public.
_NEVER_PUBLIC = (ipaddress.ip_network("64:ff9b:1::/48"),)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, translated, compatible, NAT64, 6to4), or None."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in network for network in _LOW_32_BITS):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def public_address(address: str) -> bool:
    """Whether a webhook may be sent to this address: globally reachable, in any spelling.

    An IPv6 address that carries an IPv4 one is judged by that IPv4 address; a Teredo
    address by both the server and the client it names.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in network for network in _NEVER_PUBLIC):
            return False
        if ip.teredo is not None:
            return all(public_address(str(part)) for part in ip.teredo) and ip.is_global
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


_public = public_address


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Letters, digits, dots and hyphens (IDNs as their xn-- form), or an IPv6 literal's hex and colons.
_HOST = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]+")


def check_url(url: str, *, production: bool, resolve=socket.getaddrinfo) -> str:
    """The URL if an endpoint may have it: ``https://`` (``http://`` only to loopback
    outside production) and, in production, a host that resolves to public addresses only."""
    url = (url or "").strip()
    if len(url) > MAX_URL_LENGTH:
        raise EndpointError("the URL is too long")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise EndpointError("the endpoint URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EndpointError("the endpoint URL is not a valid address") from None
    host = (parts.hostname or "").lower()
    if not host or parts.scheme.lower() not in ("https", "http"):
        raise EndpointError("the endpoint URL must be an https:// address")
    if not _HOST.fullmatch(host):
        raise EndpointError(f"{host!r} is not a host name or IP address")
    if parts.fragment:
        raise EndpointError("the endpoint URL must not have a #fragment (it is never sent)")
    if parts.username or parts.password:
        raise EndpointError("the endpoint URL must not carry a user name or password")
    if parts.scheme.lower() == "http" and (production or not _loopback(host)):
        raise EndpointError("the endpoint URL must be https:// (http:// only to this machine, in development)")
    if production:
        addresses = resolved_addresses(host, port or 443, resolve)
        if not addresses:
            raise EndpointError(f"{host} does not resolve")
        if not all(_public(a) for a in addresses):
            raise EndpointError(f"{host} is a private, loopback or link-local address; webhooks go to public hosts")
    return url


def resolved_addresses(host: str, port: int, resolve=socket.getaddrinfo) -> list[str]:
    try:
        return sorted({info[4][0] for info in resolve(host, port, proto=socket.IPPROTO_TCP)})
    except (socket.gaierror, UnicodeError):
        return []


def add_endpoint(session: Session, *, url: str, client: Client | None, event_types: list[str], actor: str,
                 production: bool) -> WebhookEndpoint:
    """Register an endpoint (audited, commits); its ``secret`` is shown to the caller once."""
    url = check_url(url, production=production)
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise EndpointError(f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    endpoint = WebhookEndpoint(client_id=client.id if client else None, url=url, secret=new_secret(),
                               event_types=sorted(set(event_types)))
    session.add(endpoint)
    session.flush()
    audit.record(session, actor, "webhook.add", client.id if client else None, None,
                 {"id": endpoint.id, "url": url, "event_types": endpoint.event_types})
    session.commit()
    return endpoint


def set_endpoint_active(session: Session, endpoint: WebhookEndpoint, active: bool, *, actor: str) -> bool:
    """Pause (False) or resume (True) an endpoint (audited, commits); True when it changed.

    A paused endpoint is sent nothing: its events are queued as usual and wait until it is
    resumed, each with its webhook-id (a delivery older than three days when it is resumed
    gets one try before it is dead-lettered).
    """
    if endpoint.active == active:
        return False
    endpoint.active = active
    audit.record(session, actor, "webhook.resume" if active else "webhook.pause", endpoint.client_id,
                 {"id": endpoint.id, "active": not active}, {"id": endpoint.id, "active": active})
    session.commit()
    return True


@dataclass(frozen=True)
class PostResult:
    ok: bool
    detail: str


class RefusedAddress(OSError):
    """The socket reached an address a webhook may not go to; nothing was sent."""


def _check_peer(sock: socket.socket, production: bool) -> None:
    """In production, the address the socket actually reached must be public (checked before a byte is sent)."""
    if not production:
        return
    peer = sock.getpeername()[0]
    if not public_address(peer):
        sock.close()
        raise RefusedAddress(f"connected to {peer}, a private, loopback or link-local address; not sent")


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to an address already checked, verifying the certificate for the host name."""

    def __init__(self, host: str, port: int, address: str, context: ssl.SSLContext, timeout: float,
                 production: bool):
        super().__init__(host, port, context=context, timeout=timeout)
        self._address = address
        self._ssl_context = context
        self._production = production

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        _check_peer(sock, self._production)
        self.sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)


def post(url: str, *, secret: str, webhook_id: str, timestamp: int, body: str, production: bool,
         ca_file: str | None = None, resolve=socket.getaddrinfo) -> PostResult:
    """POST one signed delivery. 2xx is success; a redirect is never followed (it is a failure)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolved_addresses(host, port, resolve)
    if not addresses:
        return PostResult(False, f"{host} does not resolve")
    if production and not all(_public(a) for a in addresses):
        return PostResult(False, f"{host} now resolves to a private or link-local address; not sent")
    headers = {
        "Content-Type": "application/json", "User-Agent": "scorm-usage-tracker-webhooks",
        "webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        connection = _PinnedHTTPSConnection(host, port, addresses[0], context, TIMEOUT_SECONDS, production)
    else:
        connection = http.client.HTTPConnection(addresses[0], port, timeout=TIMEOUT_SECONDS)
        headers["Host"] = parts.netloc
    try:
        connection.request("POST", path, body=body.encode(), headers=headers)
        response = connection.getresponse()
        response.read(65536)
        status = response.status
    except RefusedAddress as exc:
        return PostResult(False, str(exc))
    except (OSError, http.client.HTTPException) as exc:
        return PostResult(False, f"{type(exc).__name__}: {exc}"[:300])
    finally:
        connection.close()
    if 200 <= status < 300:
        return PostResult(True, f"HTTP {status}")
    if 300 <= status < 400:
        return PostResult(False, f"HTTP {status}: redirects are not followed")
    return PostResult(False, f"HTTP {status}")
