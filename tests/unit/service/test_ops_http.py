"""Operations endpoints: liveness, readiness with its reason, and the metrics exposition."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from dialerd import __version__, metrics
from dialerd.service.ops_http import OpsAuth, ops_app, ops_routes


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dialerd")


async def ready() -> str | None:
    return None


async def store_down() -> str | None:
    return "store unreachable: connection refused"


async def test_healthz_says_ok_while_alive() -> None:
    async with client(Starlette(routes=ops_routes(store_down))) as http:
        response = await http.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_200_when_ready() -> None:
    async with client(Starlette(routes=ops_routes(ready))) as http:
        response = await http.get("/readyz")

    assert (response.status_code, response.json()) == (200, {"status": "ready"})


async def test_readyz_is_503_with_the_reason() -> None:
    async with client(Starlette(routes=ops_routes(store_down))) as http:
        response = await http.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "reason": "store unreachable: connection refused",
    }


async def test_metrics_is_prometheus_text_with_build_info() -> None:
    routes = ops_routes(ready, registry=metrics.create_registry())
    async with client(Starlette(routes=routes)) as http:
        response = await http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    [build] = families["dialerd_build_info"].samples
    assert build.labels == {"version": __version__}


async def test_metrics_speaks_openmetrics_when_asked() -> None:
    async with client(ops_app(ready, registry=metrics.create_registry())) as http:
        response = await http.get(
            "/metrics", headers={"Accept": "application/openmetrics-text;version=1.0.0"}
        )

    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_metrics_can_be_turned_off() -> None:
    # The daemon gives no registry under [metrics] enabled = false.
    async with client(ops_app(ready, registry=None)) as http:
        assert (await http.get("/metrics")).status_code == 404
        assert (await http.get("/healthz")).status_code == 200


async def test_a_token_guards_every_operations_endpoint() -> None:
    auth = OpsAuth("scrape-secret")
    async with client(ops_app(ready, registry=metrics.create_registry(), auth=auth)) as http:
        for path in ("/metrics", "/healthz", "/readyz"):
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Bearer")
            wrong = await http.get(path, headers={"Authorization": "Bearer scrape-secreT"})
            assert wrong.status_code == 401, path
            basic = await http.get(path, headers={"Authorization": "Basic scrape-secret"})
            assert basic.status_code == 401, path
            good = await http.get(path, headers={"Authorization": "Bearer scrape-secret"})
            assert good.status_code == 200, path
        # A reload may change or drop the token: the next request sees it.
        auth.token = None
        assert (await http.get("/metrics")).status_code == 200
