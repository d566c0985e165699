"""The Asterisk backend dials only a destination that cannot change its dial string."""

from __future__ import annotations

import httpx
import pytest

from dialerd.adapters.asterisk.ari import AriTelephony, trunk_endpoint
from dialerd.model import Address, AddressType
from dialerd.ports import Origination, OriginationError

NIL = "00000000-0000-0000-0000-000000000000"


def origination(target: str) -> Origination:
    return Origination(
        campaigncall_id="6c1b9a52-8a0c-4f5e-9c7d-2b3a4c5d6e7f",
        campaign_id=NIL,
        customer_id=NIL,
        reference_id=NIL,
        queue_id=NIL,
        source=Address(type=AddressType.TEL, target="+15550000000"),
        destination=Address(type=AddressType.TEL, target=target),
        actions=[],
        dial_timeout_ms=30_000,
    )


@pytest.mark.parametrize("target", ["+15551234567\n", "+15551234567\r\n", "1001\n"])
async def test_a_number_with_a_trailing_line_end_is_refused_before_any_request(
    target: str,
) -> None:
    requests: list[httpx.Request] = []
    backend = AriTelephony(url="http://127.0.0.1:1", username="dialerd", password="x")
    backend._connected = True
    backend._http = httpx.AsyncClient(
        base_url="http://127.0.0.1:1",
        transport=httpx.MockTransport(
            lambda request: requests.append(request) or httpx.Response(200)
        ),
    )
    try:
        with pytest.raises(OriginationError, match="cannot be dialled"):
            await backend.originate(origination(target))
    finally:
        await backend._http.aclose()
    assert requests == []


@pytest.mark.parametrize(
    ("endpoint", "trunk"),
    [
        ("PJSIP/{number}@trunk", "PJSIP/trunk"),
        ("PJSIP/+1{number}@carrier-a", "PJSIP/carrier-a"),
        ("PJSIP/carrier/sip:{number}@192.0.2.1:5060", "PJSIP/carrier"),
        # No endpoint the same for every number: the calls go through the application.
        ("PJSIP/{number}", None),
        ("PJSIP/{number}/sip:x@192.0.2.1", None),
        ("Local/{number}@outbound", None),
        ("SIP/trunk/{number}", None),
    ],
)
def test_the_trunk_whose_events_direct_calls_are_read_from(
    endpoint: str, trunk: str | None
) -> None:
    assert trunk_endpoint(endpoint) == trunk
