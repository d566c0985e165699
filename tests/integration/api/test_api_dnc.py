"""``/v1.0/dnc_numbers``: a customer's do-not-call list (add, list, get, remove, import)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.api.api_conftest import CUSTOMER_A, TOKEN_B, ApiServer, error_of, running_api


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


PATH = "/v1.0/dnc_numbers"


async def listed(client: httpx.AsyncClient, page_size: int = 100) -> list[str]:
    numbers: list[str] = []
    params = {"page_size": str(page_size)}
    while True:
        page = (await client.get(PATH, params=params)).json()
        assert set(page) == {"result", "next_page_token"}
        numbers += [item["number"] for item in page["result"]]
        if not page["result"] or not page["next_page_token"]:
            return numbers
        params["page_token"] = page["next_page_token"]


async def post_file(client: httpx.AsyncClient, content: str, media_type: str) -> httpx.Response:
    return await client.post(PATH, content=content.encode(), headers={"content-type": media_type})


async def test_a_number_is_added_shown_listed_and_removed(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        response = await client.post(PATH, json={"number": "+1 555-010-0101", "detail": "asked"})
        assert response.status_code == 200, response.text
        entry: dict[str, Any] = response.json()
        assert set(entry) == {"customer_id", "number", "detail", "tm_create"}
        assert entry["number"] == "+15550100101"
        assert entry["customer_id"] == CUSTOMER_A
        assert (await client.get(f"{PATH}/+15550100101")).json() == entry
        assert await listed(client) == ["+15550100101"]

        removed = await client.delete(f"{PATH}/%2B15550100101")
        assert removed.json() == entry
        error = error_of(await client.get(f"{PATH}/+15550100101"), 404)
        assert error["reason"] == "DNC_NUMBER_NOT_FOUND"
        error_of(await client.delete(f"{PATH}/+15550100101"), 404)
        assert await listed(client) == []


async def test_adding_a_listed_number_again_is_not_an_error(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        first = (await client.post(PATH, json={"number": "+15550100101", "detail": "one"})).json()
        again = await client.post(
            PATH, json=[{"number": "+15550100101"}, {"number": "+15550100102"}]
        )
        assert again.status_code == 200, again.text
        assert again.json()["result"][0] == first
        assert sorted(await listed(client)) == ["+15550100101", "+15550100102"]


async def test_bad_numbers_are_rejected_naming_them_and_nothing_is_added(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        error = error_of(await client.post(PATH, json={"number": "5550100101"}), 400)
        assert error["message"].startswith("number: '5550100101' is not an E.164 number")
        body = [{"number": "+15550100101"}, {"number": "+1555"}]
        error = error_of(await client.post(PATH, json=body), 400)
        assert "$[1]" in error["message"]
        error_of(await client.post(PATH, json={"number": "+15550100101", "extra": 1}), 400)
        error = error_of(await client.get(f"{PATH}/not-a-number"), 400)
        assert error["message"].startswith("number:")
        assert await listed(client) == []


async def test_a_customer_cannot_see_or_remove_another_customers_numbers(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as a, api_server.client(TOKEN_B) as b:
        await a.post(PATH, json={"number": "+15550100101"})
        error_of(await b.get(f"{PATH}/+15550100101"), 404)
        error_of(await b.delete(f"{PATH}/+15550100101"), 404)
        assert await listed(b) == []
        assert await listed(a) == ["+15550100101"]


async def test_paging_walks_every_number_once(api_server: ApiServer) -> None:
    numbers = [f"+155501002{n:02d}" for n in range(23)]
    async with api_server.client() as client:
        await client.post(PATH, json=[{"number": number} for number in numbers])
        got = await listed(client, page_size=5)
        assert got == sorted(numbers, reverse=True)


async def test_csv_and_ndjson_imports_list_every_number(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        csv_file = 'number,detail\r\n+15550100301,"asked, twice"\r\n+44 20 7183 8750,\r\n'
        response = await post_file(client, csv_file, "text/csv")
        assert response.json() == {"count": 2}, response.text
        ndjson = '{"number": "+15550100302"}\n\n{"number": "+15550100301", "detail": "x"}\n'
        assert (await post_file(client, ndjson, "application/x-ndjson")).json() == {"count": 2}
        assert sorted(await listed(client)) == [
            "+15550100301",
            "+15550100302",
            "+442071838750",
        ]
        kept = (await client.get(f"{PATH}/+15550100301")).json()
        assert kept["detail"] == "asked, twice"


async def test_an_import_with_a_bad_last_row_adds_nothing(api_server: ApiServer) -> None:
    rows = "".join(f"+1555010{n:04d}\n" for n in range(1200))
    async with api_server.client() as client:
        error = error_of(await post_file(client, f"number\n{rows}12345\n", "text/csv"), 400)
        assert error["reason"] == "IMPORT_REJECTED"
        assert error["details"] == [
            {"line": 1202, "problem": error["details"][0]["problem"]},
        ]
        assert "E.164" in error["details"][0]["problem"]
        error = error_of(await post_file(client, "detail\nx\n", "text/csv"), 400)
        assert "no number column" in error["message"]
        assert await listed(client) == []
