"""ActionServices against real peers on loopback: an HTTP receiver, an SMTP server
(aiosmtpd), the SQLite store's do-not-call list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dialerd.adapters.action_services import ActionServices, special_address
from dialerd.config import SmtpConfig, WebhooksConfig
from dialerd.core.actions import Capability, EmailSendOption, WebhookSendOption
from dialerd.model import Address, AddressType
from dialerd.ports import ActionFailed
from dialerd.store.sqlite import SqliteStore
from tests.fakes.clock import FakeClock
from tests.integration.conftest import EPOCH
from tests.receivers import http_receiver, smtp_server

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
LOOPBACK = WebhooksConfig(allow_hosts=["127.0.0.1"], timeout=5.0)


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "dialerd.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def services(sqlite: SqliteStore) -> AsyncIterator[ActionServices]:
    made = ActionServices(sqlite, FakeClock(EPOCH), webhooks=LOOPBACK)
    yield made
    await made.aclose()


def webhook(uri: str, **changes: object) -> WebhookSendOption:
    return WebhookSendOption(uri=uri, **changes)  # type: ignore[arg-type]


async def test_a_webhook_posts_its_data_with_its_content_type(services: ActionServices) -> None:
    with http_receiver() as receiver:
        status = await services.webhook_send(
            webhook(f"{receiver.url}/hook?x=1", data='{"target": "t-1"}'), {}
        )
        (request,) = receiver.received()
    assert status == 200
    assert (request.method, request.path, request.body) == (
        "POST",
        "/hook?x=1",
        b'{"target": "t-1"}',
    )
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("dialerd/")


async def test_a_webhook_answered_500_reports_500(services: ActionServices) -> None:
    with http_receiver(status=500) as receiver:
        status = await services.webhook_send(webhook(receiver.url, method="PUT", data="x"), {})
        assert [request.method for request in receiver.received()] == ["PUT"]
    assert status == 500


async def test_a_redirect_is_not_followed(services: ActionServices) -> None:
    with (
        http_receiver() as target,
        http_receiver(status=307, headers={"Location": f"{target.url}/inside"}) as first,
    ):
        status = await services.webhook_send(webhook(first.url, data="x"), {})
        assert len(first.received()) == 1
        assert target.received() == []
    assert status == 307


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        # http:// to a host the operator did not allow
        ("http://127.0.0.2:{port}/", "http:// only to hosts in [webhooks] allow_hosts"),
        ("http://example.com/", "http:// only to hosts in [webhooks] allow_hosts"),
        # https:// to addresses that are not public (checked before connecting)
        ("https://127.0.0.1:{port}/", "loopback"),
        ("https://localhost:{port}/", "loopback"),
        ("https://10.1.2.3/", "private"),
        ("https://192.168.0.10/", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::1]:{port}/", "loopback"),
        ("https://[::ffff:127.0.0.1]:{port}/", "loopback"),
        ("https://0.0.0.0:{port}/", "unspecified"),
        ("https://100.64.0.1/", "special-purpose"),
        ("ftp://example.com/", "only http:// and https://"),
        ("https://user:pw@example.com/", "credentials"),
    ],
)
async def test_a_url_to_an_internal_address_is_refused_with_the_reason(
    sqlite: SqliteStore, uri: str, reason: str
) -> None:
    services = ActionServices(sqlite, FakeClock(EPOCH), webhooks=WebhooksConfig(timeout=5.0))
    with http_receiver() as receiver:
        with pytest.raises(ActionFailed, match=reason.replace("[", r"\[").replace("]", r"\]")):
            await services.webhook_send(webhook(uri.format(port=receiver.port), data="x"), {})
        assert receiver.received() == []
    await services.aclose()


async def test_an_allowed_host_may_be_any_address_but_others_are_still_checked(
    sqlite: SqliteStore,
) -> None:
    allowed = WebhooksConfig(allow_hosts=["localhost"], timeout=5.0)
    services = ActionServices(sqlite, FakeClock(EPOCH), webhooks=allowed)
    with http_receiver() as receiver:
        assert await services.webhook_send(webhook(f"http://localhost:{receiver.port}/"), {}) == 200
        with pytest.raises(ActionFailed, match="http:// only"):
            await services.webhook_send(webhook(receiver.url), {})
        assert len(receiver.received()) == 1
    await services.aclose()


async def test_a_webhook_nobody_answers_fails_naming_the_url(services: ActionServices) -> None:
    with http_receiver() as receiver:
        port = receiver.port
    with pytest.raises(ActionFailed, match=rf"127\.0\.0\.1:{port}"):
        await services.webhook_send(webhook(f"http://127.0.0.1:{port}/?secret=1"), {})


def test_special_addresses_are_named() -> None:
    assert special_address("8.8.8.8") is None
    assert special_address("2001:4860:4860::8888") is None
    assert special_address("127.0.0.1") == "loopback"
    assert special_address("fe80::1%eth0") == "link-local"
    assert special_address("fd00::1") == "private"
    assert special_address("224.0.0.1") == "multicast"


def smtp_config(port: int) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, starttls=False, sender="dialer@example.com")


async def test_an_email_reaches_the_smtp_server(sqlite: SqliteStore) -> None:
    option = EmailSendOption(
        destinations=[
            Address(type=AddressType.EMAIL, target="alice@example.com"),
            Address(type=AddressType.TEL, target="+15550100001"),
        ],
        subject="Your appointment\r\nBcc: evil@example.com",
        content="See you tomorrow.",
    )
    with smtp_server() as inbox:
        services = ActionServices(sqlite, FakeClock(EPOCH), smtp=smtp_config(inbox.port))
        assert Capability.EMAIL in services.capabilities()
        await services.email_send(option, {})
        ((sender, recipients, message),) = inbox.received()
    assert (sender, recipients) == ("dialer@example.com", ["alice@example.com"])
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Your appointment Bcc: evil@example.com"
    assert message["Bcc"] is None
    assert message.get_payload(decode=True).decode().strip() == "See you tomorrow."


async def test_an_email_refused_by_the_server_fails_with_its_reply(sqlite: SqliteStore) -> None:
    option = EmailSendOption(destinations=[Address(type=AddressType.EMAIL, target="a@example.com")])
    with smtp_server(answer="554 no thanks") as inbox:
        services = ActionServices(sqlite, FakeClock(EPOCH), smtp=smtp_config(inbox.port))
        with pytest.raises(ActionFailed, match="554 no thanks"):
            await services.email_send(option, {})


async def test_without_smtp_there_is_no_email(services: ActionServices) -> None:
    assert Capability.EMAIL not in services.capabilities()
    assert {Capability.WEBHOOK, Capability.DNC, Capability.CALL_MEDIA} <= services.capabilities()
    option = EmailSendOption(destinations=[Address(type=AddressType.EMAIL, target="a@example.com")])
    with pytest.raises(ActionFailed, match=r"\[smtp\]"):
        await services.email_send(option, {})


async def test_dnc_add_puts_the_number_on_the_customers_list(
    services: ActionServices, sqlite: SqliteStore
) -> None:
    await services.dnc_add(CUSTOMER, "+1 555-010-0101", "opted out in campaign c-1")
    entry = await sqlite.get_dnc_number(CUSTOMER, "+15550100101")
    assert entry is not None
    assert entry.detail == "opted out in campaign c-1"
    assert await sqlite.dnc_listed(CUSTOMER, ["+15550100101"]) == {"+15550100101"}
    with pytest.raises(ActionFailed, match="dnc_add"):
        await services.dnc_add(CUSTOMER, "not a number", "")
