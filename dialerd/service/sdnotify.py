"""A small sd_notify client: state datagrams to the socket systemd names in ``$NOTIFY_SOCKET``.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op returning False. Nothing here
raises into the daemon: a failed send is logged once as a warning and reported as False.
"""

from __future__ import annotations

import os
import socket
import time

import structlog

log = structlog.get_logger("dialerd.sdnotify")

_warned = False


def _address(value: str) -> str | bytes | None:
    """The socket address of ``$NOTIFY_SOCKET``: a path, or ``@name`` in the abstract namespace."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def notify(*states: str) -> bool:
    """Send ``states`` (``"READY=1"``, ``"STATUS=..."``) in one datagram; True if it was sent."""
    global _warned
    address = _address(os.environ.get("NOTIFY_SOCKET", ""))
    if address is None or not states:
        return False
    message = "\n".join(states).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block the event loop: a receiver that does not read (its queue full)
            # loses this datagram instead.
            sock.sendto(message, socket.MSG_DONTWAIT, address)
    except OSError as exc:
        if not _warned:
            _warned = True
            log.warning("cannot notify systemd", error=str(exc), states=list(states))
        return False
    return True


def ready() -> bool:
    """Tell systemd start-up (or a reload) is complete."""
    return notify("READY=1")


def status(text: str) -> bool:
    """Publish a one-line status shown by ``systemctl status``."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog() -> bool:
    """Ping the watchdog: the daemon is making progress."""
    return notify("WATCHDOG=1")


def stopping() -> bool:
    """Tell systemd the daemon is shutting down."""
    return notify("STOPPING=1")


def reloading() -> bool:
    """Tell systemd a reload started; ``ready()`` must follow once it is done."""
    monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")


def watchdog_interval() -> float | None:
    """Seconds systemd waits for a watchdog ping, or None when no watchdog is meant for us."""
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
