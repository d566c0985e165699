"""Driving a chaos campaign through a daemon's REST API: set it up, read its final state."""

from __future__ import annotations

from typing import TypeVar

import httpx
import msgspec

from dialerd.model import Campaign, Campaigncall, OutdialTarget, Outplan, Page
from scripts.chaoslib.invariants import FinalState

TOKEN = "chaos-token-0123456789"
CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
QUEUE = "99bf739a-932f-433c-b1bf-103d33d7e9bb"
MAX_TRY_COUNTS = (2, 1, 0, 0, 0)
MAX_PAGES = 1000

T = TypeVar("T")


class CampaignApi:
    """The control API of one daemon, as the chaos customer."""

    def __init__(self, port: int, ops_port: int) -> None:
        self.ops_url = f"http://127.0.0.1:{ops_port}"
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}/v1.0",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: object) -> bytes:
        reply = self.http.request(method, path, **kwargs)  # type: ignore[arg-type]
        if reply.is_error:
            raise RuntimeError(f"{method} {path}: {reply.status_code} {reply.text[:200]}")
        return reply.content

    def _get(self, path: str, kind: type[T]) -> T:
        return msgspec.json.decode(self._send("GET", path), type=kind)

    def _list(self, path: str, kind: type[T]) -> list[T]:
        found: list[T] = []
        token = ""
        for _ in range(MAX_PAGES):
            page = msgspec.json.decode(
                self._send("GET", path, params={"page_size": 100, "page_token": token}),
                type=Page[kind],  # type: ignore[valid-type]
            )
            found.extend(page.result)
            if not page.next_page_token:
                return found
            token = page.next_page_token
        raise RuntimeError(f"{path}: more than {MAX_PAGES} pages")

    def create_campaign(self, targets: int) -> str:
        """An outplan, an outdial of ``targets`` imported as CSV (every third with a second
        number), a call campaign that stops when they are done; set to run. Returns its id."""
        slots = {f"max_try_count_{n}": count for n, count in enumerate(MAX_TRY_COUNTS)}
        outplan = self._create(
            "/outplans",
            {
                "name": "chaos",
                "source": {"type": "tel", "target": "+15550000000"},
                "dial_timeout": 2000,
                "try_interval": 300,
                **slots,
            },
        )
        outdial = self._create("/outdials", {"name": "chaos"})
        rows = "destination_0,destination_1\n" + "".join(
            f"+1555{n:07d},{f'+1666{n:07d}' if n % 3 == 0 else ''}\n" for n in range(targets)
        )
        self._send(
            "POST",
            f"/outdials/{outdial}/targets",
            content=rows,
            headers={"Content-Type": "text/csv"},
        )
        campaign = self._create(
            "/campaigns",
            {
                "name": "chaos",
                "type": "call",
                "service_level": 100,
                "end_handle": "stop",
                "outplan_id": outplan,
                "outdial_id": outdial,
                "queue_id": QUEUE,
            },
        )
        self._send("PUT", f"/campaigns/{campaign}/status", json={"status": "run"})
        return campaign

    def _create(self, path: str, body: dict[str, object]) -> str:
        created = msgspec.json.decode(self._send("POST", path, json=body))
        return str(created["id"])

    def campaign_status(self, campaign_id: str) -> str | None:
        """The campaign's status, or None if the daemon does not answer now."""
        try:
            return str(self._get(f"/campaigns/{campaign_id}", Campaign).status)
        except (httpx.TransportError, RuntimeError):
            return None

    def ready(self) -> bool | None:
        """What /readyz says; None if the daemon does not answer."""
        try:
            reply = httpx.get(f"{self.ops_url}/readyz", timeout=5)
        except httpx.TransportError:
            return None
        return reply.status_code == 200

    def calls_up(self) -> int:
        """The attempts the daemon follows now (``dialerd_attempts_active``, dialing and
        progressing); 0 if it does not answer."""
        try:
            reply = httpx.get(f"{self.ops_url}/metrics", timeout=5)
        except httpx.TransportError:
            return 0
        return round(
            sum(
                float(line.rpartition(" ")[2])
                for line in reply.text.splitlines()
                if line.startswith("dialerd_attempts_active{")
            )
        )

    def final_state(self, campaign_id: str) -> FinalState:
        """The campaign, its outplan, every target of its outdial and every campaigncall."""
        campaign = self._get(f"/campaigns/{campaign_id}", Campaign)
        return FinalState(
            campaign=campaign,
            outplan=self._get(f"/outplans/{campaign.outplan_id}", Outplan),
            targets=self._list(f"/outdials/{campaign.outdial_id}/targets", OutdialTarget),
            calls=self._list(f"/campaigns/{campaign_id}/campaigncalls", Campaigncall),
        )
