"""The questions an on-call engineer asks first, answered by a real Prometheus with one
PromQL query each: which campaign is over 3 % abandoned, and why is campaign X not
dialing; and every query of the Grafana dashboard shows data for a running campaign."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.system.daemon_process import (
    CUSTOMER,
    QUEUE,
    DaemonProcess,
    callees_always_answer,
    create_campaign,
    start_prometheus,
)

WAIT_SECONDS = 30.0
DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "dialerd.json"
THIN_QUEUE = "7d0f1c2a-5b3e-4c6d-8e9f-0a1b2c3d4e5f"
# Callees ring for 2-4 s (at the test daemon's speed of 50) and always answer, so the
# agents of the thin queue can log out while its calls ring.
CENTRE = """
[sim.agents]
sales = {sales}
thin = {thin}
[[queues]]
id = "{thin_queue}"
customer_id = "{customer}"
name = "thin"
"""
OVER_THREE_PERCENT = (
    'sum by (campaign_id) (dialerd_campaign_attempts_ended_total{reason="abandoned"})'
    " / sum by (campaign_id) (dialerd_campaign_answered_total) > 0.03"
)


def centre(sales: int, thin: int) -> str:
    return callees_always_answer(ring=(100.0, 200.0)) + CENTRE.format(
        sales=sales, thin=thin, thin_queue=THIN_QUEUE, customer=CUSTOMER
    )


def query(port: int, promql: str) -> list[dict[str, Any]]:
    try:
        answer = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql}, timeout=5
        ).json()
    except (httpx.TransportError, json.JSONDecodeError):
        return []
    result: list[dict[str, Any]] = answer.get("data", {}).get("result", [])
    return result


def run(http: httpx.Client, campaign: dict[str, Any]) -> None:
    started = http.put(f"/v1.0/campaigns/{campaign['id']}/status", json={"status": "run"})
    assert started.status_code == 200, started.text


def test_one_query_names_the_campaign_over_3_percent_and_one_says_why_another_is_idle(
    tmp_path: Path,
) -> None:
    daemon = DaemonProcess(tmp_path, extra_config=centre(sales=20, thin=5))
    server, port = start_prometheus(tmp_path, daemon.ops_port)
    try:
        daemon.wait_ready()
        http = daemon.http
        dialing = create_campaign(http, 400, campaign={"queue_id": QUEUE, "name": "dialing"})
        thin = create_campaign(
            http, 400, number_prefix="+1555401", campaign={"queue_id": THIN_QUEUE, "name": "thin"}
        )
        empty = create_campaign(
            http, 0, number_prefix="+1555402", campaign={"end_handle": "continue", "name": "empty"}
        )
        for campaign in (dialing, thin, empty):
            run(http, campaign)

        # The thin queue's agents log out while its calls ring: they will be abandoned.
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            state = http.get(f"/v1.0/campaigns/{thin['id']}/state").json()
            if state["dialing"] > 0:
                break
            time.sleep(0.05)
        daemon.config.write_text(daemon.config.read_text().replace("thin = 5", "thin = 0"))
        daemon.process.send_signal(signal.SIGHUP)

        over: list[dict[str, Any]] = []
        why: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and not (over and why):
            time.sleep(0.5)
            over = query(port, OVER_THREE_PERCENT)
            why = query(port, f'dialerd_campaign_state{{campaign_id="{empty["id"]}"}} == 1')
        assert [row["metric"]["campaign_id"] for row in over] == [thin["id"]]
        assert [row["metric"]["state"] for row in why] == ["exhausted"]
        # The campaign dialing normally is not named, and says it dials (or is paced).
        dialing_state = query(port, f'dialerd_campaign_state{{campaign_id="{dialing["id"]}"}} == 1')
        assert [row["metric"]["state"] for row in dialing_state] in (["dialing"], ["paced"])
        assert daemon.stop() == 0
    finally:
        server.terminate()
        server.wait(timeout=20)
        daemon.close()


def as_prometheus_sees_it(expression: str) -> str:
    """Grafana's variables replaced by what Grafana would put there (a 1 s scrape)."""
    return (
        expression.replace("$__rate_interval", "10s")
        .replace("$window", "15m")
        .replace("$campaign", ".*")
        .replace("$queue", ".*")
    )


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel or variable, PromQL) for every query of the Grafana dashboard."""
    loaded = json.loads(DASHBOARD.read_text())
    found = [
        (panel["title"], target["expr"])
        for panel in loaded["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]
    for variable in loaded["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(<selector>, <label>): the selector must name series.
            selector = variable["query"]["query"].removeprefix("label_values(").rsplit(",", 1)[0]
            found.append((f"variable ${variable['name']}", selector))
    return found


def answered(result: list[dict[str, Any]]) -> bool:
    """A panel shows something: a series with a number (not NaN) in it."""
    return any(row["value"][1] not in ("NaN", "+Inf", "-Inf") for row in result)


def test_every_dashboard_query_shows_data_for_a_running_campaign(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path)
    server, port = start_prometheus(tmp_path, daemon.ops_port)
    try:
        daemon.wait_ready()
        campaign = create_campaign(daemon.http, 600, campaign={"queue_id": QUEUE})
        run(daemon.http, campaign)
        waiting = dashboard_queries()
        assert len(waiting) > 25
        deadline = time.monotonic() + 45
        while waiting and time.monotonic() < deadline:
            time.sleep(1.0)
            waiting = [
                (title, expression)
                for title, expression in waiting
                if not answered(query(port, as_prometheus_sees_it(expression)))
            ]
        assert waiting == [], "panels with no data"
        assert daemon.stop() == 0
    finally:
        server.terminate()
        server.wait(timeout=20)
        daemon.close()
