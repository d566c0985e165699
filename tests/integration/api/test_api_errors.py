"""Bad requests get the error envelope with the right status, and change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dialerd.api.app import set_api_config
from dialerd.config import ApiConfig, ApiToken
from tests.integration.api.api_conftest import (
    CUSTOMER_A,
    MAX_BODY,
    TOKEN_A,
    ApiServer,
    create,
    error_of,
    running_api,
)


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[ApiServer]:
    with running_api(tmp_path) as server:
        yield server


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("/v1.0/outplans", {"try_interval": -1}, "Expected `int` >= 0 - at `$.try_interval`"),
    ("/v1.0/outplans", {"max_try_count_2": -3}, "at `$.max_try_count_2`"),
    ("/v1.0/outplans", {"dial_timeout": "30s"}, "Expected `int`, got `str` - at `$.dial_timeout`"),
    ("/v1.0/outplans", {"source": {"type": "fax"}}, "at `$.source.type`"),
    ("/v1.0/campaigns", {"service_level": -1}, "Expected `int` >= 0 - at `$.service_level`"),
    ("/v1.0/campaigns", {"type": "sms"}, "Invalid enum value 'sms' - at `$.type`"),
    ("/v1.0/campaigns", {"end_handle": "pause"}, "at `$.end_handle`"),
    (
        "/v1.0/campaigns",
        {"outplan_id": "not-a-uuid"},
        'Expected a UUID, "" or null - at `$.outplan_id`',
    ),
    ("/v1.0/campaigns", {"actions": [{"type": "dance"}]}, "at `$.actions[0].type`"),
    ("/v1.0/campaigns", {"actions": {"type": "talk"}}, "Expected `array`"),
    ("/v1.0/campaigns", {"name": 7}, "Expected `str`, got `int` - at `$.name`"),
    ("/v1.0/outdials", {"campaign_id": "1234"}, 'Expected a UUID, "" or null - at `$.campaign_id`'),
    # Unknown fields are refused, not ignored: a typo would otherwise change nothing silently.
    ("/v1.0/campaigns", {"servicelevel": 5}, "unknown field `servicelevel`"),
    (
        "/v1.0/outplans",
        {"source": {"type": "tel", "number": "+15551230001"}},
        "unknown field `number`",
    ),
    ("/v1.0/campaigns", {"actions": [{"type": "talk", "options": {}}]}, "unknown field `options`"),
    # Length limits.
    ("/v1.0/campaigns", {"name": "n" * 256}, "Expected `str` of length <= 255 - at `$.name`"),
    ("/v1.0/outdials", {"detail": "d" * 2049}, "of length <= 2048 - at `$.detail`"),
    ("/v1.0/outdials", {"data": "d" * 8193}, "of length <= 8192 - at `$.data`"),
    ("/v1.0/campaigns", {"actions": [{"type": "talk"}] * 101}, "of length <= 100 - at `$.actions`"),
    (
        "/v1.0/campaigns",
        {"actions": [{"type": "talk", "option": {f"k{i}": i for i in range(65)}}]},
        "of length <= 64 - at `$.actions[0].option`",
    ),
    (
        "/v1.0/campaigns",
        {"actions": [{"type": "talk", "option": {"text": "x" * 17000}}]},
        "option: 17011 bytes as JSON, at most 16384 - at `$.actions[0]`",
    ),
    # A tel address is an E.164 number.
    (
        "/v1.0/outplans",
        {"source": {"type": "tel", "target": "5551230001"}},
        "target: '5551230001' is not an E.164 number (like +15551234567) - at `$.source`",
    ),
    ("/v1.0/outplans", {"source": {"type": "tel", "target": "+1555"}}, "at `$.source`"),
]


@pytest.mark.parametrize(("path", "body", "message"), BAD_BODIES)
async def test_bad_fields_are_400_naming_the_field_and_nothing_is_stored(
    api_server: ApiServer, path: str, body: dict[str, Any], message: str
) -> None:

    async with api_server.client() as client:
        error = error_of(await client.post(path, json=body), 400)
        assert error["status"] == "INVALID_ARGUMENT"
        assert message in error["message"]
        assert (await client.get(path)).json()["result"] == []


async def test_malformed_json_is_400(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        response = await client.post(
            "/v1.0/campaigns", content=b'{"name": ', headers={"content-type": "application/json"}
        )
        assert "not valid JSON" in error_of(response, 400)["message"]
        response = await client.post("/v1.0/campaigns", json=["a list"])
        assert "Expected `object`, got `array`" in error_of(response, 400)["message"]


async def test_references_to_unknown_resources_are_400(api_server: ApiServer) -> None:
    unknown = "0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11"
    async with api_server.client() as client:
        response = await client.post("/v1.0/campaigns", json={"outplan_id": unknown})
        assert f"outplan_id: outplan {unknown} not found" in error_of(response, 400)["message"]
        response = await client.post("/v1.0/outdials", json={"campaign_id": unknown})
        assert "campaign_id" in error_of(response, 400)["message"]
        assert (await client.get("/v1.0/campaigns")).json()["result"] == []


async def test_target_without_destination_is_400(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        targets = f"/v1.0/outdials/{outdial['id']}/targets"
        for body in ({"name": "nobody"}, {"destination_0": {"type": "tel", "target": ""}}):
            error = error_of(await client.post(targets, json=body), 400)
            assert "no destination" in error["message"]
        assert (await client.get(targets)).json()["result"] == []


@pytest.mark.parametrize("page_size", ["ten", "1.5", "²", "١٢", "", "99999999999999999999"])
async def test_page_size_that_is_not_an_integer_is_400(
    api_server: ApiServer, page_size: str
) -> None:
    async with api_server.client() as client:
        response = await client.get("/v1.0/campaigns", params={"page_size": page_size or " "})
        assert "page_size" in error_of(response, 400)["message"]


@pytest.mark.parametrize(("page_size", "items"), [("0", 1), ("-1", 1), ("2", 2), ("101", 3)])
async def test_page_size_outside_1_to_100_is_clamped_like_the_reference(
    api_server: ApiServer, page_size: str, items: int
) -> None:
    async with api_server.client() as client:
        for _ in range(3):
            await create(client, "/v1.0/outdials", {})
        response = await client.get("/v1.0/outdials", params={"page_size": page_size})
        assert response.status_code == 200, response.text
        assert len(response.json()["result"]) == items


async def test_malformed_page_token_is_400(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        response = await client.get("/v1.0/outplans", params={"page_token": "yesterday"})
        assert "page_token" in error_of(response, 400)["message"]


async def test_missing_or_wrong_token_is_401(api_server: ApiServer) -> None:
    async with api_server.client(token=None) as client:
        error = error_of(await client.get("/v1.0/campaigns"), 401)
        assert error["status"] == "UNAUTHENTICATED"
        response = await client.get(
            "/v1.0/campaigns", headers={"cookie": "accesskey=guessed-token"}
        )
        error_of(response, 401)
        response = await client.post(
            "/v1.0/campaigns", json={}, headers={"authorization": "Bearer guessed-token"}
        )
        error_of(response, 401)
        response = await client.get(
            "/v1.0/campaigns", headers={"authorization": f"Basic {TOKEN_A}"}
        )
        error_of(response, 401)
    async with api_server.client() as client:
        assert (await client.get("/v1.0/campaigns")).json()["result"] == []


async def test_reloaded_tokens_take_effect_on_the_next_request(api_server: ApiServer) -> None:
    app = api_server.app
    reloaded = ApiConfig(
        max_body_bytes=MAX_BODY, tokens=[ApiToken(token="rotated-token", customer_id=CUSTOMER_A)]
    )
    api_server.call(set_api_config, app, reloaded)
    async with api_server.client() as client:
        error_of(await client.get("/v1.0/campaigns"), 401)
    async with api_server.client(token="rotated-token") as client:
        assert (await client.get("/v1.0/campaigns")).status_code == 200


async def test_trailing_slash_is_a_404_never_a_redirect_echoing_host_and_query(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        response = await client.get(
            "/v1.0/campaigns/?page_size=5&token=token-of-customer-a",
            headers={"host": "evil.example"},
        )
        assert "location" not in response.headers
        assert error_of(response, 404)["reason"] == "NO_SUCH_PATH"


async def test_out_of_range_number_names_its_field_as_an_in_range_one_does(
    api_server: ApiServer,
) -> None:
    async with api_server.client() as client:
        for text in ("1e400", "1e300", "-1e999"):
            response = await client.post(
                "/v1.0/campaigns",
                content=f'{{"service_level": {text}}}',
                headers={"content-type": "application/json"},
            )
            assert "`$.service_level`" in error_of(response, 400)["message"], text
        response = await client.post(
            "/v1.0/campaigns",
            content=b'{"actions": [{"type": "talk", "option": {"gain": [1, 1e400]}}]}',
            headers={"content-type": "application/json"},
        )
        assert "`$.actions[0].option.gain[1]`" in error_of(response, 400)["message"]
        assert (await client.get("/v1.0/campaigns")).json()["result"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/v1.0/campaigns/0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11",
        "/v1.0/outplans/0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11",
        "/v1.0/campaigncalls/0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11",
        "/v1.0/outdials/0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11/targets",
        "/v1.0/campaigns/0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11/campaigncalls",
        "/v1.0/no-such-resource",
    ],
)
async def test_unknown_ids_and_paths_are_404(api_server: ApiServer, path: str) -> None:
    async with api_server.client() as client:
        assert error_of(await client.get(path), 404)["status"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/v1.0/campaigns/not-a-uuid", "id"),
        ("DELETE", "/v1.0/outdials/12345", "id"),
        ("PUT", "/v1.0/outplans/%F0%9F%98%80", "id"),
        ("GET", f"/v1.0/outdials/{CUSTOMER_A}/targets/0d7e9a06", "target_id"),
    ],
)
async def test_a_malformed_id_in_the_path_is_400_like_the_reference(
    api_server: ApiServer, method: str, path: str, name: str
) -> None:
    async with api_server.client() as client:
        response = await client.request(method, path, json={})
        assert error_of(response, 400)["message"].startswith(f"{name}: expected a")


async def test_unknown_target_of_a_known_outdial_is_404(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        path = f"/v1.0/outdials/{outdial['id']}/targets/0d7e9a06-6f43-4b27-9b46-9b3f3a1f2c11"
        error_of(await client.get(path), 404)
        error_of(await client.delete(path), 404)


async def test_wrong_method_is_405_listing_the_allowed_ones(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        response = await client.patch("/v1.0/outplans", json={})
        error_of(response, 405)
        assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


async def test_non_json_content_type_is_415(api_server: ApiServer) -> None:
    async with api_server.client() as client:
        response = await client.post(
            "/v1.0/outplans", content=b"name=x", headers={"content-type": "text/plain"}
        )
        assert "text/plain" in error_of(response, 415)["message"]
        response = await client.post(
            "/v1.0/campaigns",
            data={"name": "x"},  # a form, as curl sends without -H
        )
        error_of(response, 415)
        assert (await client.get("/v1.0/outplans")).json()["result"] == []


async def test_body_over_the_limit_is_413_by_content_length(api_server: ApiServer) -> None:
    big = b'{"name": "' + b"x" * (MAX_BODY + 10) + b'"}'
    async with api_server.client() as client:
        response = await client.post(
            "/v1.0/campaigns", content=big, headers={"content-type": "application/json"}
        )
        assert error_of(response, 413)["message"].startswith("the request body is larger")
        assert (await client.get("/v1.0/campaigns")).json()["result"] == []


async def test_body_over_the_limit_is_413_when_streamed_without_length(
    api_server: ApiServer,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"name,detail,destination_0\n"
        # Long valid rows: the limit is reached after a few thousand rows, not millions.
        line = b"x," + b"d" * 2000 + b",+15551230001\n"
        for _ in range(MAX_BODY // (64 * len(line)) + 2):
            yield line * 64

    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        targets = f"/v1.0/outdials/{outdial['id']}/targets"
        try:
            response = await client.post(
                targets, content=chunks(), headers={"content-type": "text/csv"}
            )
        except httpx.TransportError:  # pragma: no cover - the server may close while we send
            pytest.fail("the server closed the connection instead of answering 413")
        error_of(response, 413)
        assert (await client.get(targets)).json()["result"] == []


async def test_a_bug_is_a_500_envelope_without_traceback(api_server: ApiServer) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated bug with a secret path /etc/x")

    original = api_server.store.list_outplans
    api_server.store.list_outplans = broken  # type: ignore[method-assign]
    try:
        async with api_server.client() as client:
            response = await client.get("/v1.0/outplans")
    finally:
        api_server.store.list_outplans = original  # type: ignore[method-assign]
    error = error_of(response, 500)
    assert error["status"] == "INTERNAL"
    assert "secret" not in response.text
    assert "Traceback" not in response.text
