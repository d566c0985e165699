"""Hand-written hostile input, beside the schemathesis fuzz run: every body endpoint
answers a 400 naming the problem (never a 5xx), and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from dialerd.api.routes import ENDPOINTS, PREFIX
from tests.integration.api.api_conftest import ApiServer, create, error_of, running_api

# (family, raw body, what the message must say)
HOSTILE: Final[list[tuple[str, bytes, str]]] = [
    ("invalid UTF-8", b'{"name": "\xff\xfe"}', "not UTF-8: byte 10"),
    ("overlong UTF-8", b'{"name": "\xc0\xaf"}', "not UTF-8"),
    ("encoded surrogate", b'{"name": "\xed\xa0\x80"}', "not UTF-8"),
    ("escaped lone surrogate", b'{"name": "\\ud800"}', "lone UTF-16 surrogate"),
    ("escaped lone low surrogate key", b'{"\\udc00": 1}', "lone UTF-16 surrogate"),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, "nested deeper than 32 levels"),
    ("nesting in an option", b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper than 32 levels"),
    ("overlong integer", b'{"service_level": ' + b"9" * 5000 + b"}", "has 5000 digits"),
    ("overlong fraction", b'{"x": 0.' + b"1" * 100 + b"}", "at most 40"),
    ("huge exponent", b'{"x": 1e999}', "1e999 is out of range"),
    ("negative huge exponent", b'{"x": -1E+400}', "out of range"),
    ("NaN", b'{"x": NaN}', "NaN is not a JSON value"),
    ("Infinity", b'{"x": -Infinity}', "-Infinity is not a JSON value"),
    ("duplicate keys", b'{"name": "a", "name": "b"}', "the key 'name' appears twice"),
    ("nested duplicate keys", b'{"source": {"type": "tel", "type": "sip"}}', "appears twice"),
    ("byte order mark", b'\xef\xbb\xbf{"name": "a"}', "not valid JSON"),
    ("control character", b'{"name": "a\x01b"}', "not valid JSON"),
    ("trailing garbage", b'{"name": "a"} x', "not valid JSON"),
    ("empty body", b"", "not valid JSON"),
    ("truncated", b'{"name": ', "not valid JSON"),
]

BODY_ENDPOINTS: Final = [(e.method, e.path) for e in ENDPOINTS if e.body is not None]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with running_api(tmp_path_factory.mktemp("hostile")) as server:
        yield server


@pytest.fixture(scope="module")
def ids(api_server: ApiServer) -> dict[str, str]:
    """Existing resources of customer A, by the first segment of an endpoint's path."""
    headers = {"authorization": "Bearer token-of-customer-a"}
    with httpx.Client(base_url=api_server.url, headers=headers) as client:
        made = {
            kind: client.post(f"/v1.0/{kind}", json={}).json()["id"]
            for kind in ("campaigns", "outplans", "outdials")
        }
    return made


@pytest.mark.parametrize(("method", "path"), BODY_ENDPOINTS)
@pytest.mark.parametrize(("family", "body", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_json_is_a_400_naming_the_problem_on_every_body_endpoint(
    api_server: ApiServer,
    ids: dict[str, str],
    method: str,
    path: str,
    family: str,
    body: bytes,
    message: str,
) -> None:
    headers = {"authorization": "Bearer token-of-customer-a", "content-type": "application/json"}
    url = PREFIX + (path.replace("{id}", ids[path.split("/")[1]]) if "{id}" in path else path)
    with httpx.Client(base_url=api_server.url, headers=headers) as client:
        response = client.request(method, url, content=body)
        error = error_of(response, 400)
        assert message in error["message"], f"{family}: {error['message']}"
        assert error["reason"] == "MALFORMED_JSON"


async def test_hostile_ndjson_lines_and_csv_cells_are_rejected_by_line(
    api_server: ApiServer,
) -> None:
    lines = [
        b'{"destination_0": {"type": "tel", "target": "+15551230001"}}',
        b'{"name": "\xff", "destination_0": {"type": "tel", "target": "+15551230001"}}',
        b'{"name": "\\udfff", "destination_0": {"type": "tel", "target": "+15551230001"}}',
        b'{"name": "a", "name": "b", "destination_0": {"type": "tel", "target": "+15551230001"}}',
        b'{"destination_0": {"type": "tel", "target": "+15551230001", "target": "+1"}}',
    ]
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        targets = f"/v1.0/outdials/{outdial['id']}/targets"
        response = await client.post(
            targets, content=b"\n".join(lines), headers={"content-type": "application/x-ndjson"}
        )
        details = error_of(response, 400)["details"]
        assert [d["line"] for d in details] == [2, 3, 4, 5]
        assert "not UTF-8" in details[0]["problem"]
        assert "lone UTF-16 surrogate" in details[1]["problem"]
        assert "appears twice" in details[2]["problem"]
        csv = (
            "name,destination_0\n"
            "ok,+15551230001\n"
            'nan,"{""type"": ""tel"", ""target"": NaN}"\n'
            'deep,"' + '{""a"":' * 40 + "1" + "}" * 40 + '"\n'
        )
        response = await client.post(
            targets, content=csv.encode(), headers={"content-type": "text/csv"}
        )
        details = error_of(response, 400)["details"]
        assert [d["line"] for d in details] == [3, 4]
        assert "NaN is not a JSON value" in details[0]["problem"]
        assert "nested deeper" in details[1]["problem"]
        assert (await client.get(targets)).json()["result"] == []


@pytest.mark.parametrize(
    "target",
    ["5551230001", "+1555", "+1 555 123 0001", "+15551230001x", "+0123456", "+١٥٥٥١٢٣٠٠٠١"],
)
async def test_a_tel_target_is_e164_in_json_ndjson_csv_and_outplan_source(
    api_server: ApiServer, target: str
) -> None:
    tel = {"type": "tel", "target": target}
    async with api_server.client() as client:
        outdial = await create(client, "/v1.0/outdials", {})
        targets = f"/v1.0/outdials/{outdial['id']}/targets"
        answers = [
            await client.post(targets, json={"destination_0": tel}),
            await client.post("/v1.0/outplans", json={"source": tel}),
            await client.post(
                targets,
                content=json.dumps({"destination_1": tel}).encode(),
                headers={"content-type": "application/x-ndjson"},
            ),
            await client.post(
                targets,
                content=f"destination_0\n{target}\n".encode(),
                headers={"content-type": "text/csv"},
            ),
            await client.post(
                targets,
                content=(
                    "destination_0\n" + '"' + json.dumps(tel).replace('"', '""') + '"\n'
                ).encode(),
                headers={"content-type": "text/csv"},
            ),
        ]
        for response in answers:
            error = error_of(response, 400)
            text = error["message"] + json.dumps(error.get("details", []))
            assert "E.164" in text, text
        assert (await client.get(targets)).json()["result"] == []
        # Other address types keep their own target syntax.
        sip = {"type": "sip", "target": "alice@example.com"}
        assert (await client.post(targets, json={"destination_0": sip})).status_code == 200


async def test_a_json_body_over_the_json_limit_is_413_apart_from_the_import_limit(
    api_server: ApiServer,
) -> None:
    big = b'{"name": "' + b"n" * (1024 * 1024) + b'"}'
    async with api_server.client() as client:
        response = await client.post(
            "/v1.0/campaigns", content=big, headers={"content-type": "application/json"}
        )
        assert error_of(response, 413)["message"] == (
            "the request body is larger than 1048576 bytes"
        )
        outdial = await create(client, "/v1.0/outdials", {})
        rows = "".join(f"r{n},+1555123{n % 10000:04d}\n" for n in range(80_000))
        response = await client.post(
            f"/v1.0/outdials/{outdial['id']}/targets",
            content=("name,destination_0\n" + rows).encode(),
            headers={"content-type": "text/csv"},
            # A bound against a hang, not a speed check: a loaded machine takes its time.
            timeout=180,
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"count": 80_000}


def test_the_openapi_document_states_the_limits(tmp_path: Path) -> None:
    with running_api(tmp_path) as server:
        schemas = httpx.get(f"{server.url}/v1.0/openapi.json").json()["components"]["schemas"]
    campaign = schemas["CampaignCreate"]["properties"]
    assert campaign["name"]["maxLength"] == 255
    assert campaign["detail"]["maxLength"] == 2048
    assert campaign["actions"]["maxItems"] == 100
    assert schemas["OutdialCreate"]["properties"]["data"]["maxLength"] == 8192
    option = schemas["ActionBody"]["properties"]["option"]
    assert option["maxProperties"] == 64
    assert "16384 bytes" in option["description"]
    assert schemas["CampaignCreate"]["additionalProperties"] is False
