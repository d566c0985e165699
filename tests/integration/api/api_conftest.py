"""A running control API for tests: real SQLite store, real Hypercorn on a loopback port.

The server runs in its own event loop thread (an anyio blocking portal), so tests may
talk to it with sync clients (CLI, schemathesis) as well as async ones, and reach the
store through ``ApiServer.call``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import anyio
import httpx
import msgspec
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.applications import Starlette

from dialerd.api.app import create_app
from dialerd.api.server import serve_api
from dialerd.campaigns import CampaignService
from dialerd.config import ApiConfig, ApiToken
from dialerd.model import Campaign, Campaigncall, Outdial, OutdialTarget, Outplan, new_id
from dialerd.service.clock import SystemClock
from dialerd.store.base import AttemptPlan
from dialerd.store.sqlite import SqliteStore
from tests.conftest import free_port
from tests.integration.conftest import queues_of
from tests.unit.reference import component_schemas, reference_available, schema_errors

R = TypeVar("R")

CUSTOMER_A: Final = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
CUSTOMER_B: Final = "0b7e2d36-1c55-4f0e-9a33-2b8f0c6d1e47"
TOKEN_A: Final = "token-of-customer-a"
TOKEN_B: Final = "token-of-customer-b"
MAX_BODY: Final = 8 * 1024 * 1024


class ApiServer:
    """The API served on ``url``; ``call`` runs a store or control coroutine in its loop."""

    def __init__(
        self,
        portal: BlockingPortal,
        store: SqliteStore,
        control: CampaignService,
        app: Starlette,
        url: str,
    ) -> None:
        self.portal = portal
        self.app = app
        self.store = store
        self.control = control
        self.url = url

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` (sync or async) in the server's event loop."""
        return self.portal.call(func, *args)

    def client(self, token: str | None = TOKEN_A) -> httpx.AsyncClient:
        """An async client of the API, authenticated as ``token``'s customer."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


def api_config() -> ApiConfig:
    return ApiConfig(
        max_body_bytes=MAX_BODY,
        tokens=[
            ApiToken(token=TOKEN_A, customer_id=CUSTOMER_A),
            ApiToken(token=TOKEN_B, customer_id=CUSTOMER_B),
        ],
    )


@contextmanager
def running_api(tmp_path: Path) -> Iterator[ApiServer]:
    """A live API on 127.0.0.1 with an empty SQLite store and tokens for customers A and B.

    Each test module makes it its ``api_server`` fixture.
    """
    with start_blocking_portal(backend="asyncio") as portal:
        store = SqliteStore(tmp_path / "api.sqlite3")
        portal.call(store.open)
        clock = SystemClock()
        control = CampaignService(store, clock, queues=queues_of(CUSTOMER_A, CUSTOMER_B))
        app = create_app(store=store, campaigns=control, clock=clock, config=api_config())
        stop = portal.call(anyio.Event)
        listen = f"127.0.0.1:{free_port()}"
        future, _ = portal.start_task(
            partial(serve_api, app, listen, shutdown_trigger=stop.wait), name="api"
        )
        try:
            yield ApiServer(portal, store, control, app, f"http://{listen}")
        finally:
            portal.call(stop.set)
            future.result(timeout=15)
            portal.call(store.close)


RESOURCE_COMPONENTS: Final = {
    "campaign": "CampaignManagerCampaign",
    "campaigncall": "CampaignManagerCampaigncall",
    "outplan": "CampaignManagerOutplan",
    "outdial": "OutdialManagerOutdial",
    "target": "OutdialManagerOutdialtarget",
}


RESOURCE_MODELS: Final[dict[str, Any]] = {
    "campaign": Campaign,
    "campaigncall": Campaigncall,
    "outplan": Outplan,
    "outdial": Outdial,
    "target": OutdialTarget,
}


def conforms(kind: str, body: Any) -> dict[str, Any]:
    """Assert ``body`` matches the reference component of ``kind`` and carries all its fields.

    Without the reference folder (a bare clone), ``body`` is checked against dialerd's own
    model instead; the reference itself is then checked by no test (they skip, saying why).
    """
    if not reference_available():
        msgspec.convert(body, RESOURCE_MODELS[kind])
        resource_: dict[str, Any] = body
        return resource_
    name = RESOURCE_COMPONENTS[kind]
    errors = schema_errors(name, body)
    assert not errors, f"{kind} does not match {name}: {errors}"
    missing = set(component_schemas()[name]["properties"]) - set(body)
    assert not missing, f"{kind} lacks reference fields {sorted(missing)}"
    resource: dict[str, Any] = body
    return resource


def conforming_page(kind: str, body: Any) -> list[dict[str, Any]]:
    """Assert a list response's shape; return its items."""
    assert set(body) == {"result", "next_page_token"}
    assert isinstance(body["next_page_token"], str)
    return [conforms(kind, item) for item in body["result"]]


def error_of(response: httpx.Response, status_code: int) -> dict[str, Any]:
    """Assert ``response`` is the error envelope with ``status_code``; return its body."""
    assert response.status_code == status_code, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert {"status", "reason", "message", "request_id"} <= set(error)
    assert error["request_id"] == response.headers["x-request-id"]
    return error


OUTPLAN_BODY: Final = {
    "name": "three tries",
    "detail": "retry every minute",
    "source": {"type": "tel", "target": "+15559876543"},
    "dial_timeout": 30000,
    "try_interval": 60000,
    "max_try_count_0": 3,
    "max_try_count_1": 2,
    "max_try_count_2": 0,
    "max_try_count_3": 0,
    "max_try_count_4": 0,
}
TARGET_BODY: Final = {
    "name": "Jo Lead",
    "detail": "vip",
    "data": "crm-17",
    "destination_0": {"type": "tel", "target": "+15551230001"},
}


async def create(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST a resource and return it, asserting success."""
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def runnable_campaign(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """A stopped campaign with an outplan and an outdial holding one target."""
    outplan = await create(client, "/v1.0/outplans", OUTPLAN_BODY)
    outdial = await create(client, "/v1.0/outdials", {"name": "leads"})
    await create(client, f"/v1.0/outdials/{outdial['id']}/targets", TARGET_BODY)
    body = {"name": "spring", "outplan_id": outplan["id"], "outdial_id": outdial["id"], **fields}
    return await create(client, "/v1.0/campaigns", body)


def start_attempt(server: ApiServer, campaign_id: str) -> dict[str, Any]:
    """Have the store start one attempt of the campaign, as the engine would."""
    campaign = server.call(server.store.get_campaign, None, campaign_id)
    outplan = server.call(server.store.get_outplan, None, campaign.outplan_id)
    plan = AttemptPlan(
        campaign=campaign,
        outplan=outplan,
        campaigncall_id=new_id(),
        reference_id=new_id(),
        activeflow_id=new_id(),
        now=server.control.clock.now(),
    )
    campaigncall = server.call(server.store.start_attempt, plan)
    assert campaigncall is not None
    return {"id": campaigncall.id, "outdial_target_id": campaigncall.outdial_target_id}
