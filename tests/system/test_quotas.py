"""Quotas in the running daemon: read from the config file, applied on reload, refused
requests counted in the metrics (docs/operations.md, Quotas)."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.system.daemon_process import CUSTOMER, DaemonProcess, event_is, wait_for_line


def test_quotas_from_the_config_file_hold_and_change_on_reload(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path, extra_config="[quotas]\noutdials = 1\n")
    try:
        daemon.wait_ready()
        assert daemon.http.post("/v1.0/outdials", json={"name": "a"}).status_code == 200
        refused = daemon.http.post("/v1.0/outdials", json={"name": "b"})
        assert refused.status_code == 409
        assert refused.json()["error"]["message"].startswith("quota outdials is 1:")
        scrape = daemon.ops.get("/metrics").text
        assert (
            f'dialerd_quota_refusals_total{{customer_id="{CUSTOMER}",quota="outdials"}} 1.0'
            in scrape
        )

        daemon.config.write_text(daemon.config.read_text().replace("outdials = 1", "outdials = 2"))
        daemon.process.send_signal(signal.SIGHUP)
        wait_for_line(daemon, event_is("config reloaded"))

        assert daemon.http.post("/v1.0/outdials", json={"name": "b"}).status_code == 200
        assert daemon.http.post("/v1.0/outdials", json={"name": "c"}).status_code == 409
        assert daemon.stop() == 0
    finally:
        daemon.close()
