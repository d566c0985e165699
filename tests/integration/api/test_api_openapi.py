"""The OpenAPI document of /v1.0, and a bounded property-based fuzz run against it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks
from schemathesis.core.result import Ok

from tests.integration.api.api_conftest import (
    CUSTOMER_A,
    TOKEN_A,
    ApiServer,
    runnable_campaign,
    running_api,
    start_attempt,
)
from tests.integration.conftest import queue_of

EXAMPLES_PER_OPERATION = 8
FUZZ_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def test_openapi_describes_every_endpoint_without_authentication(tmp_path: Path) -> None:
    with running_api(tmp_path) as server:
        response = httpx.get(f"{server.url}/v1.0/openapi.json")
    assert response.status_code == 200
    document = response.json()
    operations = {
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    }
    assert ("PUT", "/v1.0/campaigns/{id}/resource_info") in operations
    assert ("POST", "/v1.0/outdials/{id}/targets") in operations
    assert ("DELETE", "/v1.0/outdials/{id}/targets/{target_id}") in operations
    # VoIPbin's 31 operations and its 2 queue reads, dialerd's campaign state and its
    # 4 do-not-call operations.
    assert ("GET", "/v1.0/campaigns/{id}/state") in operations
    assert ("DELETE", "/v1.0/dnc_numbers/{number}") in operations
    assert ("GET", "/v1.0/queues") in operations
    assert ("GET", "/v1.0/queues/{id}") in operations
    # Events out: the customer's webhook settings (2), its failed events (2).
    assert ("PUT", "/v1.0/customer") in operations
    assert ("POST", "/v1.0/events/failed/{id}/redeliver") in operations
    assert len(operations) == 42
    schemas = document["components"]["schemas"]
    assert {"Campaign", "Campaigncall", "Outplan", "Outdial", "OutdialTarget"} <= set(schemas)
    assert schemas["CampaignCreate"]["properties"]["service_level"]["minimum"] == 0
    assert set(document["components"]["securitySchemes"]) == {"bearer", "accesskey", "token"}
    target_post = document["paths"]["/v1.0/outdials/{id}/targets"]["post"]
    assert {"application/json", "text/csv", "application/x-ndjson"} == set(
        target_post["requestBody"]["content"]
    )
    assert "413" in target_post["responses"]


def fuzz_operation(
    operation: Any, server: ApiServer, session: requests.Session, ids: dict[str, str]
) -> Counter[int]:
    """Fuzz one operation; return how many responses had each status code."""
    statuses: Counter[int] = Counter()
    kind = operation.path.split("/")[2]
    path_parameters = {
        name: ids[key]
        for name, key in (("id", kind), ("target_id", "targets"))
        if "{" + name + "}" in operation.path
    }
    # CSV and NDJSON bodies are covered by test_api_import; fuzz the JSON form.
    strategy = (
        operation.as_strategy(path_parameters=path_parameters, media_type="application/json")
        if operation.body
        else operation.as_strategy(path_parameters=path_parameters)
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        response = case.call_and_validate(
            base_url=server.url,
            session=session,
            headers={"authorization": f"Bearer {TOKEN_A}"},
            checks=FUZZ_CHECKS,
        )
        statuses[response.status_code] += 1

    run()
    return statuses


async def seed(server: ApiServer) -> dict[str, str]:
    """Resources for the fuzzed operations' path ids, so they reach more than 404."""
    async with server.client() as client:
        campaign = await runnable_campaign(client)
        await client.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "run"})
        attempt = start_attempt(server, campaign["id"])
        return {
            "campaigns": campaign["id"],
            "outplans": campaign["outplan_id"],
            "outdials": campaign["outdial_id"],
            "targets": attempt["outdial_target_id"],
            "campaigncalls": attempt["id"],
            "queues": queue_of(CUSTOMER_A),
            "events": server.call(server.store.read_events, CUSTOMER_A, "", 1)[0].position,
        }


def test_fuzzing_the_api_finds_no_server_error_and_no_undocumented_response(
    tmp_path: Path,
) -> None:
    with running_api(tmp_path) as server, requests.Session() as session:
        document = httpx.get(f"{server.url}/v1.0/openapi.json").json()
        schema = schemathesis.openapi.from_dict(document)
        ids = anyio.run(seed, server)
        statuses: Counter[int] = Counter()
        operations = 0
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            statuses += fuzz_operation(result.ok(), server, session, ids)
            operations += 1
    assert operations == 42
    assert sum(statuses.values()) >= 32
    assert statuses[200] > 0
    assert not [code for code in statuses if code >= 500]
