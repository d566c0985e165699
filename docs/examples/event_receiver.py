"""A webhook receiver for dialerd's events: verifies the signature, refuses replays,
ignores repeats (delivery is at least once) and answers 2xx quickly.

    DIALERD_WEBHOOK_SECRET=... python3 event_receiver.py 8000

Standard library only; put it behind your TLS terminator (dialerd sends only to
https:// URLs unless the operator allows the host in [webhooks] allow_hosts).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["DIALERD_WEBHOOK_SECRET"].encode()
# Refuse a signature older (or newer) than this: a replayed request.
TOLERANCE_SECONDS = 300
seen: set[str] = set()


def verified(header: str, body: bytes) -> bool:
    """``Dialerd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(SECRET, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not verified(self.headers.get("Dialerd-Signature", ""), body):
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        if event["id"] not in seen:  # keep this in your database in real life
            seen.add(event["id"])
            data = event["data"]
            print(
                event["time"],
                event["type"],
                data.get("id") or data.get("campaign_id"),
                data.get("status", ""),
                data.get("result", ""),
                flush=True,
            )
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Receiver).serve_forever()  # noqa: S104
