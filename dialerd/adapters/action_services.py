"""What an action does outside the call: webhooks, mail, the do-not-call list.

One ``ActionServices`` serves every executor (the flow runner, the simulated calls, the
Asterisk calls): ``webhook_send`` over HTTP, ``email_send`` over SMTP (``[smtp]``),
``dnc_add`` through the store (the list of ``/v1.0/dnc_numbers``).

A customer writes the webhook's URL, and dialerd sends it from inside the operator's
network: a URL must not reach what only dialerd can reach. So a URL is ``https://``
to a host whose every address is public, unless the operator allows the host in
``[webhooks] allow_hosts`` (then ``http://`` too, to any address). The addresses are
checked when the connection is made, on what the name resolved to, and the connection
goes to the address checked (``_GuardedBackend``): a name that resolves to a public
address for the check and a private one for the connection cannot slip through.
Redirects are not followed (a 3xx is not 2xx: the webhook failed).

Mail is sent with the standard library's ``smtplib`` in a worker thread: mail is rare
next to calls, and it keeps dialerd on anyio without an asyncio-only client.
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Final

import anyio
import anyio.to_thread
import httpcore
import httpx
import structlog

from dialerd import __version__
from dialerd.config import SmtpConfig, WebhooksConfig
from dialerd.core.actions import Capability, EmailSendOption, WebhookSendOption
from dialerd.model import AddressType, DncNumber, format_time, normalize_e164
from dialerd.ports import ActionFailed, Clock
from dialerd.store import DoNotCall, StoreError

log = structlog.get_logger("dialerd.actions")

USER_AGENT: Final = f"dialerd/{__version__}"
# Why an address is refused, in the order the checks run.
_SPECIAL: Final = (
    ("loopback", "is_loopback"),
    ("unspecified", "is_unspecified"),
    ("link-local", "is_link_local"),
    ("private", "is_private"),
    ("multicast", "is_multicast"),
    ("reserved", "is_reserved"),
)


def special_address(text: str) -> str | None:
    """What kind of non-public address ``text`` is ("loopback", "private"...), or None
    for a public one. IPv4 addresses mapped into IPv6 are judged as IPv4."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind, attribute in _SPECIAL:
        if getattr(address, attribute):
            return kind
    if not address.is_global:
        return "special-purpose"
    return None


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to public addresses, except to hosts the operator allows.

    httpcore hands it the URL's host; it resolves the name, refuses it when any of its
    addresses is not public, and connects to the address it checked (TLS still names
    the host, so certificates are checked against the name)."""

    def __init__(self, webhooks: Callable[[], WebhooksConfig]) -> None:
        # Read at each connection: a reload applies to the next one.
        self.webhooks = webhooks
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self.webhooks().allows(host):
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            with anyio.fail_after(timeout):
                found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise ActionFailed(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        for address in addresses:
            kind = special_address(address)
            if kind is not None:
                shown = host if host == address else f"{host} ({address})"
                raise ActionFailed(
                    f"{shown} is a {kind} address: not allowed "
                    "(only public addresses, or hosts in [webhooks] allow_hosts)"
                )
        if not addresses:
            raise ActionFailed(f"cannot resolve {host}: no address")
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ActionFailed("webhooks do not go to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool that connects through ``_GuardedBackend``."""

    def __init__(self, webhooks: Callable[[], WebhooksConfig]) -> None:
        # No proxy from the environment: the guard must see the real destination.
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(webhooks),
        )


def guarded_client(webhooks: Callable[[], WebhooksConfig]) -> httpx.AsyncClient:
    """An HTTP client that reaches only public addresses and the hosts ``webhooks()``
    allows (read at each connection), follows no redirect and reads no proxy setting."""
    return httpx.AsyncClient(
        transport=_GuardedTransport(webhooks),
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


def check_webhook_url(uri: str, webhooks: WebhooksConfig) -> httpx.URL:
    """The URL if its form may be sent (scheme, host); raise ``ActionFailed`` saying why
    not. The addresses it resolves to are checked when it is sent."""
    try:
        url = httpx.URL(uri)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ActionFailed(f"uri {uri!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ActionFailed(f"uri {uri!r}: only http:// and https:// URLs with a host")
    if url.userinfo:
        raise ActionFailed(f"uri {uri!r}: credentials in the URL are not sent")
    if url.scheme == "http" and not webhooks.allows(url.host):
        raise ActionFailed(
            f"uri {uri!r}: http:// only to hosts in [webhooks] allow_hosts; use https://"
        )
    return url


class ActionServices:
    """The side effects of actions, shared by every executor (``ports.ActionServices``)."""

    def __init__(
        self,
        store: DoNotCall,
        clock: Clock,
        *,
        webhooks: WebhooksConfig | None = None,
        smtp: SmtpConfig | None = None,
        call_media: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.webhooks = webhooks or WebhooksConfig()
        self.smtp = smtp
        # Raises ConfigError when the password file cannot be read.
        self._smtp_password = smtp.read_password() if smtp is not None else ""
        self.call_media = call_media
        self._client: httpx.AsyncClient | None = None

    def capabilities(self) -> frozenset[Capability]:
        """What this host can run: webhooks and the DNC list always, mail with ``[smtp]``,
        call media with a telephony backend that runs it; never messages (no SMS)."""
        found = {Capability.WEBHOOK, Capability.DNC}
        if self.smtp is not None:
            found.add(Capability.EMAIL)
        if self.call_media:
            found.add(Capability.CALL_MEDIA)
        return frozenset(found)

    def reconfigure(self, webhooks: WebhooksConfig, smtp: SmtpConfig | None) -> None:
        """Apply a reloaded ``[webhooks]`` and ``[smtp]`` (raises ``ConfigError``)."""
        password = smtp.read_password() if smtp is not None else ""
        self.webhooks, self.smtp, self._smtp_password = webhooks, smtp, password

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = guarded_client(lambda: self.webhooks)
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client's connections. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- webhook_send ---------------------------------------------------------------
    async def webhook_send(self, option: WebhookSendOption, variables: Mapping[str, str]) -> int:
        """Send the (already rendered) request; return its HTTP status. The answer's body
        is not read. Raise ``ActionFailed`` for a refused URL, a timeout, no answer."""
        url = check_webhook_url(option.uri, self.webhooks)
        method = (option.method or "POST").upper()
        content = option.data.encode() if option.data else None
        headers = {"Content-Type": option.data_type} if content and option.data_type else {}
        timeout = self.webhooks.timeout
        try:
            with anyio.fail_after(timeout):
                async with self._http().stream(
                    method, url, content=content, headers=headers, timeout=timeout
                ) as response:
                    return response.status_code
        except TimeoutError:
            raise ActionFailed(f"{_shown(url)}: no answer within {timeout:g} s") from None
        except httpx.TimeoutException:
            raise ActionFailed(f"{_shown(url)}: no answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ActionFailed(f"{_shown(url)}: {exc or type(exc).__name__}") from None

    # -- email_send -----------------------------------------------------------------
    async def email_send(self, option: EmailSendOption, variables: Mapping[str, str]) -> None:
        """Hand the mail to the ``[smtp]`` server for the option's email destinations.
        Raise ``ActionFailed`` without ``[smtp]``, without a recipient, or when the
        server refuses it."""
        smtp = self.smtp
        if smtp is None:
            raise ActionFailed("email_send needs an [smtp] section in the configuration")
        recipients = list(
            dict.fromkeys(
                address.target
                for address in option.destinations
                if address.type == AddressType.EMAIL and address.target
            )
        )
        if not recipients:
            raise ActionFailed("email_send: no destination of type email")
        message = EmailMessage()
        message["From"] = smtp.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = " ".join(option.subject.split())
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2] or None)
        message.set_content(option.content)
        try:
            await anyio.to_thread.run_sync(
                _send_mail, smtp, self._smtp_password, message, recipients,
                abandon_on_cancel=True,
            )  # fmt: skip
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise ActionFailed(f"smtp {smtp.host}:{smtp.port}: {_smtp_error(exc)}") from None

    # -- dnc_add --------------------------------------------------------------------
    async def dnc_add(self, customer_id: str, number: str, detail: str) -> None:
        """Put ``number`` on the customer's do-not-call list (a listed number keeps its
        first entry). Raise ``ActionFailed`` for a number that is not E.164, or when
        the store cannot be written."""
        try:
            e164 = normalize_e164(number)
        except ValueError:
            # The number stays out of the reason: reasons are logged at INFO.
            raise ActionFailed("dnc_add: the callee's number is not an E.164 number") from None
        entry = DncNumber(
            customer_id=customer_id,
            number=e164,
            detail=detail[:2048],
            tm_create=format_time(self.clock.now()),
        )
        try:
            await self.store.add_dnc_numbers([entry])
        except StoreError as exc:
            raise ActionFailed(f"dnc_add: the store did not take it: {exc}") from None


def _send_mail(
    smtp: SmtpConfig, password: str, message: EmailMessage, recipients: list[str]
) -> None:
    """One SMTP session (in a worker thread): connect, secure, log in, send, quit."""
    context = ssl.create_default_context()
    client = (
        smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
        if smtp.tls
        else smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    )
    with client:
        if smtp.starttls:
            client.starttls(context=context)
        if smtp.username:
            client.login(smtp.username, password)
        client.send_message(message, from_addr=smtp.sender, to_addrs=recipients)


def _smtp_error(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        return f"{exc.smtp_code} {text}".strip()
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "recipients refused: " + ", ".join(exc.recipients)
    return str(exc) or type(exc).__name__


def _shown(url: httpx.URL) -> str:
    """The URL without its query (which may carry a customer's secret)."""
    return str(url.copy_with(query=None, fragment=None))
