"""Bulk import of targets: CSV and NDJSON, all or nothing, bad rows named by line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dialerd.api import targets_import
from tests.integration.api.api_conftest import (
    ApiServer,
    conforming_page,
    create,
    error_of,
    running_api,
)


@pytest.fixture(params=["in the daemon", "in an import worker"])
def api_server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiServer]:
    """Every import read by the daemon itself, or (as a file over ``WORKER_BYTES`` is)
    parsed and staged by an import worker process."""
    if request.param == "in an import worker":
        monkeypatch.setattr(targets_import, "WORKER_BYTES", 0)
    with running_api(tmp_path) as server:
        yield server


CSV = "text/csv"
NDJSON = "application/x-ndjson"


async def post_file(
    client: httpx.AsyncClient, outdial_id: str, content: bytes, media_type: str
) -> httpx.Response:
    return await client.post(
        f"/v1.0/outdials/{outdial_id}/targets",
        content=content,
        headers={"content-type": media_type},
    )


async def all_targets(client: httpx.AsyncClient, outdial_id: str) -> list[dict[str, Any]]:
    page = (await client.get(f"/v1.0/outdials/{outdial_id}/targets")).json()
    return conforming_page("target", page)


async def test_csv_import_stores_every_row_with_phone_numbers_and_addresses(
    api_server: ApiServer,
) -> None:

    sip = json.dumps({"type": "sip", "target": "jo@example.org", "name": "desk"}).replace('"', '""')
    content = (
        "name,detail,data,destination_0,destination_1\r\n"
        'Jo,"vip, call early",crm-1,+15551230001,"' + sip + '"\r\n'
        '"Al\nSmith",,crm-2,,+442071838750\r\n'
    ).encode()
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        response = await post_file(client, outdial["id"], content, f"{CSV}; charset=utf-8")
        assert response.status_code == 200, response.text
        assert response.json() == {"count": 2}
        targets = {t["name"]: t for t in await all_targets(client, outdial["id"])}
        jo, al = targets["Jo"], targets["Al\nSmith"]
        assert (jo["detail"], jo["data"], jo["status"]) == ("vip, call early", "crm-1", "idle")
        assert jo["destination_0"] == {
            "type": "tel", "target": "+15551230001", "target_name": "", "name": "", "detail": ""
        }  # fmt: skip
        assert jo["destination_1"]["type"] == "sip"
        assert jo["destination_1"]["name"] == "desk"
        assert al["destination_0"] is None
        assert al["destination_1"]["target"] == "+442071838750"


async def test_an_import_is_listed_newest_first_in_the_order_of_its_file(
    api_server: ApiServer,
) -> None:
    """All rows of an import are created at the same moment: the listing, newest first,
    shows them from the file's last row back to its first, page after page."""
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        response = await post_file(client, outdial["id"], _csv_of_leads(250), CSV)
        assert response.json() == {"count": 250}
        names: list[str] = []
        token = ""
        while True:
            page = (
                await client.get(
                    f"/v1.0/outdials/{outdial['id']}/targets",
                    params={"page_size": 100, "page_token": token},
                )
            ).json()
            names += [target["name"] for target in page["result"]]
            token = page["next_page_token"]
            if not token:
                break
        assert names == [f"lead {n}" for n in reversed(range(250))]


async def test_ndjson_import_stores_every_line(api_server: ApiServer) -> None:
    lines = [
        {"name": "Jo", "destination_0": {"type": "tel", "target": "+15551230001"}},
        {"name": "Al", "destination_2": {"type": "tel", "target": "+15551230002"}},
    ]
    content = b"\n".join(json.dumps(line).encode() for line in lines) + b"\n\n"
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        response = await post_file(client, outdial["id"], content, NDJSON)
        assert response.json() == {"count": 2}
        names = sorted(t["name"] for t in await all_targets(client, outdial["id"]))
        assert names == ["Al", "Jo"]


async def test_bad_csv_rows_are_listed_by_line_and_nothing_is_imported(
    api_server: ApiServer,
) -> None:
    rows = ["name,destination_0,destination_1"]
    rows += [f"good {n},+1555123{n:04d}," for n in range(5)]
    rows += ["no number,,", "letters,555-CALL-NOW,", 'bad json,"{""type"": ""fax""}",', "short"]
    rows += [f"bad {n},0{n}," for n in range(20)]
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        response = await post_file(client, outdial["id"], "\n".join(rows).encode(), CSV)
        error = error_of(response, 400)
        assert error["reason"] == "IMPORT_REJECTED"
        assert error["message"].startswith("24 bad row(s), nothing imported")
        details = error["details"]
        assert len(details) == 10
        assert [d["line"] for d in details[:4]] == [7, 8, 9, 10]
        assert "no destination" in details[0]["problem"]
        assert "'555-CALL-NOW' is neither an E.164 number" in details[1]["problem"]
        assert "Invalid enum value 'fax' - at `$.destination_0.type`" in details[2]["problem"]
        assert "1 cells, the header has 3 columns" in details[3]["problem"]
        assert await all_targets(client, outdial["id"]) == []


async def test_csv_header_problems_are_400(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        for content, problem in [
            (b"", "a header row is needed"),
            (b"name,phone\nJo,+15551230001\n", "unknown column(s) 'phone'"),
            (b"name,detail\nJo,x\n", "no destination column"),
            (b"name,destination_0,destination_0\n", "given twice"),
            (b"name,destination_0\n\xff\xfe,+15551230001\n", "not UTF-8"),
        ]:
            error = error_of(await post_file(client, outdial["id"], content, CSV), 400)
            assert problem in error["message"], error
        assert await all_targets(client, outdial["id"]) == []


async def test_bad_ndjson_lines_are_listed_by_line(api_server: ApiServer) -> None:
    content = b'{"name": "ok", "destination_0": {"target": "+15551230001"}}\n{"name": 3}\n[1]\n'
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        error = error_of(await post_file(client, outdial["id"], content, NDJSON), 400)
        assert [d["line"] for d in error["details"]] == [2, 3]
        assert "$.name" in error["details"][0]["problem"]
        assert await all_targets(client, outdial["id"]) == []


async def test_a_target_whose_data_names_no_iana_zone_is_refused(api_server: ApiServer) -> None:
    mars = json.dumps({"timezone": "Mars/Olympus", "crm": 7})
    good = json.dumps({"timezone": "America/Chicago"})
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        path = f"/v1.0/outdials/{outdial['id']}/targets"
        tel = {"type": "tel", "target": "+15551230001"}
        error = error_of(await client.post(path, json={"data": mars, "destination_0": tel}), 400)
        assert "data.timezone: 'Mars/Olympus' is not an IANA time zone" in error["message"]
        number = error_of(
            await client.post(path, json={"data": '{"timezone": 5}', "destination_0": tel}), 400
        )
        assert "data.timezone: 5 is not a time zone name" in number["message"]

        csv_cell = '"' + mars.replace('"', '""') + '"'
        good_cell = '"' + good.replace('"', '""') + '"'
        content = (
            f"name,data,destination_0\nok,{good_cell},+15551230001\nmars,{csv_cell},+15551230002\n"
        ).encode()
        error = error_of(await post_file(client, outdial["id"], content, CSV), 400)
        assert error["reason"] == "IMPORT_REJECTED"
        assert [d["line"] for d in error["details"]] == [3]
        assert "data.timezone: 'Mars/Olympus'" in error["details"][0]["problem"]

        lines = [
            {"name": "ok", "data": good, "destination_0": tel},
            {"name": "mars", "data": mars, "destination_0": tel},
        ]
        ndjson = b"\n".join(json.dumps(line).encode() for line in lines)
        error = error_of(await post_file(client, outdial["id"], ndjson, NDJSON), 400)
        assert [d["line"] for d in error["details"]] == [2]
        assert "data.timezone: 'Mars/Olympus'" in error["details"][0]["problem"]
        assert await all_targets(client, outdial["id"]) == []

        created = await client.post(path, json={"data": good, "destination_0": tel})
        assert created.status_code == 200, created.text


def _csv_of_leads(rows: int) -> bytes:
    lines = ["name,data,destination_0,destination_1"]
    lines += [f"lead {n},crm-{n},+1555{n:07d},+1666{n:07d}" for n in range(rows)]
    return ("\n".join(lines) + "\n").encode()


# How many times the rate of the sample import the big one may take per row before the
# client gives up: generous, since a loaded machine slows unevenly, but bounded.
SLACK = 10


async def test_import_of_100000_csv_rows(api_server: ApiServer) -> None:
    rows, sample = 100_000, 5_000
    async with api_server.client() as client:
        # The bound follows this machine now: a sample import measures its rate.
        warm = await create(client, "/v1.0/outdials", {})
        started = time.perf_counter()
        response = await post_file(client, warm["id"], _csv_of_leads(sample), CSV)
        assert response.json() == {"count": sample}
        per_row = (time.perf_counter() - started) / sample
    timeout = max(30.0, SLACK * per_row * rows)
    async with api_server.client() as client:
        client.timeout = httpx.Timeout(timeout)
        outdial = await create(client, "/v1.0/outdials", {})
        response = await post_file(client, outdial["id"], _csv_of_leads(rows), CSV)
        assert response.status_code == 200, response.text[:500]
        assert response.json() == {"count": rows}
        page = (await client.get(f"/v1.0/outdials/{outdial['id']}/targets")).json()
        assert len(page["result"]) == 100
        assert page["next_page_token"]
        for target in page["result"]:
            n = int(str(target["name"]).removeprefix("lead "))
            assert target["data"] == f"crm-{n}"
            assert target["destination_1"]["target"] == f"+1666{n:07d}"
