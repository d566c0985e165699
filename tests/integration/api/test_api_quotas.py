"""Per-customer quotas at the API: a request that would take a customer over a quota is
a 409 naming the quota and its value, and changes nothing (behaviour.md §10, Quotas)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dialerd import metrics
from dialerd.api import targets_import
from dialerd.api.app import set_api_config
from dialerd.api.openapi import openapi_document
from dialerd.config import CustomerQuotas, QuotasConfig
from tests.integration.api.api_conftest import (
    CUSTOMER_A,
    TOKEN_B,
    ApiServer,
    api_config,
    create,
    error_of,
    runnable_campaign,
    running_api,
)

# A registry of every dialerd family, as the daemon makes one for /metrics.
REGISTRY = metrics.create_registry()
CSV = "text/csv"


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


def limit(server: ApiServer, **quotas: Any) -> None:
    """Give customer A these quotas (everyone else: none), as a reload would."""
    config = QuotasConfig(customers=[CustomerQuotas(customer_id=CUSTOMER_A, **quotas)])
    set_api_config(server.app, api_config(), quotas=config)


def refusals(quota: str) -> float:
    value = REGISTRY.get_sample_value(
        "dialerd_quota_refusals_total", {"customer_id": CUSTOMER_A, "quota": quota}
    )
    return value or 0.0


async def count(client: httpx.AsyncClient, path: str) -> int:
    return len((await client.get(path, params={"page_size": 100})).json()["result"])


def assert_quota_refusal(response: httpx.Response, quota: str, value: int) -> None:
    error = error_of(response, 409)
    assert error["reason"] == "QUOTA_EXCEEDED"
    assert error["message"].startswith(f"quota {quota} is {value}:")
    assert error["details"][0]["quota"] == quota


async def test_campaigns_past_the_quota_are_refused_and_not_created(
    api_server: ApiServer,
) -> None:
    limit(api_server, campaigns=2)
    before = refusals("campaigns")
    async with api_server.client() as client:
        await create(client, "/v1.0/campaigns", {"name": "one"})
        await create(client, "/v1.0/campaigns", {"name": "two"})

        refused = await client.post("/v1.0/campaigns", json={"name": "three"})

        assert_quota_refusal(refused, "campaigns", 2)
        assert await count(client, "/v1.0/campaigns") == 2
    assert refusals("campaigns") == before + 1
    used = REGISTRY.get_sample_value(
        "dialerd_quota_used", {"customer_id": CUSTOMER_A, "quota": "campaigns"}
    )
    assert used == 2
    # Another customer has no quota and is not held by A's.
    async with api_server.client(TOKEN_B) as other:
        for name in ("a", "b", "c"):
            await create(other, "/v1.0/campaigns", {"name": name})


async def test_a_deleted_campaign_gives_its_place_back(api_server: ApiServer) -> None:
    limit(api_server, campaigns=1)
    async with api_server.client() as client:
        first = await create(client, "/v1.0/campaigns", {"name": "one"})
        assert_quota_refusal(
            await client.post("/v1.0/campaigns", json={"name": "x"}), "campaigns", 1
        )
        await client.delete(f"/v1.0/campaigns/{first['id']}")

        await create(client, "/v1.0/campaigns", {"name": "two"})


async def test_outdials_past_the_quota_are_refused(api_server: ApiServer) -> None:
    limit(api_server, outdials=1)
    async with api_server.client() as client:
        await create(client, "/v1.0/outdials", {"name": "leads"})

        assert_quota_refusal(
            await client.post("/v1.0/outdials", json={"name": "more"}), "outdials", 1
        )
        assert await count(client, "/v1.0/outdials") == 1


async def test_running_campaigns_past_the_quota_are_refused_and_stay_stopped(
    api_server: ApiServer,
) -> None:
    limit(api_server, running_campaigns=1)
    async with api_server.client() as client:
        first = await runnable_campaign(client)
        second = await runnable_campaign(client)
        running = await client.put(f"/v1.0/campaigns/{first['id']}/status", json={"status": "run"})
        assert running.status_code == 200, running.text

        refused = await client.put(
            f"/v1.0/campaigns/{second['id']}", json={"status": "run", "name": "renamed"}
        )

        assert_quota_refusal(refused, "running_campaigns", 1)
        stored = (await client.get(f"/v1.0/campaigns/{second['id']}")).json()
        assert (stored["status"], stored["name"]) == ("stop", "spring")
        # Running the one that already runs again is no new place.
        again = await client.put(f"/v1.0/campaigns/{first['id']}/status", json={"status": "run"})
        assert again.status_code == 200, again.text


async def test_a_target_past_the_outdials_quota_is_refused(api_server: ApiServer) -> None:
    limit(api_server, targets_per_outdial=1, targets=10)
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {"name": "leads"})
        path = f"/v1.0/outdials/{outdial['id']}/targets"
        body = {"destination_0": {"type": "tel", "target": "+15555550001"}}
        await create(client, path, body)

        assert_quota_refusal(await client.post(path, json=body), "targets_per_outdial", 1)
        assert await count(client, path) == 1


@pytest.mark.parametrize("worker_bytes", [1024 * 1024, 0], ids=["in the daemon", "in a worker"])
async def test_an_import_past_the_target_quota_imports_nothing(
    api_server: ApiServer, monkeypatch: pytest.MonkeyPatch, worker_bytes: int
) -> None:
    monkeypatch.setattr(targets_import, "WORKER_BYTES", worker_bytes)
    limit(api_server, targets=1200)
    async with api_server.client() as client:
        first = await create(client, "/v1.0/outdials", {"name": "first"})
        second = await create(client, "/v1.0/outdials", {"name": "second"})
        rows = "\n".join(f"+1555{n:07d}" for n in range(1000))
        csv = ("destination_0\n" + rows + "\n").encode()
        accepted = await client.post(
            f"/v1.0/outdials/{first['id']}/targets", content=csv, headers={"content-type": CSV}
        )
        assert accepted.status_code == 200, accepted.text
        before = refusals("targets")

        # 1000 more rows, in two batches: the first fits, the second does not.
        refused = await client.post(
            f"/v1.0/outdials/{second['id']}/targets", content=csv, headers={"content-type": CSV}
        )

        assert_quota_refusal(refused, "targets", 1200)
        assert await count(client, f"/v1.0/outdials/{second['id']}/targets") == 0
        usage = api_server.call(api_server.store.quota_usage, CUSTOMER_A)
        assert usage.targets == 1000
    assert refusals("targets") == before + 1


async def test_do_not_call_numbers_past_the_quota_are_refused_and_relisting_is_free(
    api_server: ApiServer,
) -> None:
    limit(api_server, dnc_numbers=2)
    async with api_server.client() as client:
        listed = await client.post(
            "/v1.0/dnc_numbers", json=[{"number": "+15555550001"}, {"number": "+15555550002"}]
        )
        assert listed.status_code == 200, listed.text

        again = await client.post("/v1.0/dnc_numbers", json={"number": "+15555550001"})
        refused = await client.post(
            "/v1.0/dnc_numbers", json=[{"number": "+15555550002"}, {"number": "+15555550003"}]
        )
        imported = await client.post(
            "/v1.0/dnc_numbers",
            content=b"number\n+15555550004\n",
            headers={"content-type": CSV},
        )

        assert again.status_code == 200, again.text
        assert_quota_refusal(refused, "dnc_numbers", 2)
        assert_quota_refusal(imported, "dnc_numbers", 2)
        assert await count(client, "/v1.0/dnc_numbers") == 2


def test_the_openapi_document_names_the_quota_refusal() -> None:
    document = openapi_document()
    for path in ("/campaigns", "/outdials", "/outdials/{id}/targets", "/dnc_numbers"):
        responses = document["paths"][f"/v1.0{path}"]["post"]["responses"]
        assert "QUOTA_EXCEEDED" in responses["409"]["description"], path


async def test_targets_added_one_by_one_are_not_counted_in_the_store_each_time(
    api_server: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit(api_server, targets_per_outdial=5, targets=100)
    scans = 0
    count_in_store = api_server.store.quota_usage

    async def counted(*args: Any) -> Any:
        nonlocal scans
        scans += 1
        return await count_in_store(*args)

    monkeypatch.setattr(api_server.store, "quota_usage", counted)
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {"name": "leads"})
        path = f"/v1.0/outdials/{outdial['id']}/targets"
        for n in range(5):
            await create(
                client, path, {"destination_0": {"type": "tel", "target": f"+1555555{n:04d}"}}
            )

        refused = await client.post(
            path, json={"destination_0": {"type": "tel", "target": "+15555559999"}}
        )

    # One scan for the first target, the others added to it; one more before refusing.
    assert scans == 2
    assert_quota_refusal(refused, "targets_per_outdial", 5)
