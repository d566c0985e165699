"""Where a customer's events may go, and how each delivery is signed.

URL policy (the same as a campaign's ``webhook_send``, ``[webhooks]`` in the config):
``https://`` to a public host, or ``http://`` to a host the operator lists in
``allow_hosts``; a literal loopback, link-local, private or otherwise special address
(and ``localhost``) is refused unless listed. A name that resolves to such an address
is refused when a delivery connects (``dialerd.adapters.action_services``).

Signature: header ``Dialerd-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256 under the customer's ``webhook_secret`` of ``"<t>." + body``. A receiver
recomputes it, compares in constant time and refuses a ``t`` too far from its clock
(a replay)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from typing import Final

import httpx

from dialerd.adapters.action_services import special_address
from dialerd.config import WebhooksConfig

SIGNATURE_HEADER: Final = "Dialerd-Signature"
EVENT_ID_HEADER: Final = "Dialerd-Event-Id"


def url_problem(uri: str, webhooks: WebhooksConfig) -> str | None:
    """Why ``uri`` may not receive events (None: it may)."""
    try:
        url = httpx.URL(uri)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        return f"{uri!r} is not a URL: {exc}"
    if url.scheme not in ("http", "https") or not url.host:
        return f"{uri!r}: only https:// URLs with a host (http:// to allowed hosts)"
    if url.userinfo:
        return f"{uri!r}: credentials in the URL are not sent"
    host = url.host
    if webhooks.allows(host):
        return None
    if url.scheme == "http":
        return f"{uri!r}: http:// only to hosts in [webhooks] allow_hosts; use https://"
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return f"{uri!r}: {host} is a loopback address: not allowed"
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    kind = special_address(host.strip("[]"))
    if kind is not None:
        return f"{uri!r}: {host} is a {kind} address: not allowed"
    return None


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` within ``tolerance`` seconds of
    ``now`` (what a receiver does; used by the tests and the docs' example)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
