"""Backends built from configuration: the Asterisk adapters, and queue ids mapped to names."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialerd.adapters.asterisk.ami_queue import AsteriskQueue
from dialerd.adapters.asterisk.ari import AriTelephony
from dialerd.adapters.flow_runner import ActionFlowRunner
from dialerd.config import ConfigError, decode_config
from dialerd.core.actions import Capability
from dialerd.service.backends import Backends
from dialerd.service.clock import SystemClock
from dialerd.store.sqlite import SqliteStore

QUEUE_ID = "0b7c6a1e-2f4d-4e55-9a0b-5d1c2e3f4a5b"
CUSTOMER_ID = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
ASTERISK = """
[telephony]
backend = "asterisk"
[telephony.asterisk]
password = "ari-secret"
endpoint = "PJSIP/{number}@callee"
[queue]
backend = "asterisk"
[queue.asterisk]
secret = "ami-secret"
wrapup_time = 15
"""


def store(tmp_path: Path) -> SqliteStore:
    """A store for the action services (not opened: building the backends needs none)."""
    return SqliteStore(tmp_path / "dialerd.sqlite3")


def test_asterisk_backends_from_config(tmp_path: Path) -> None:
    backends = Backends(decode_config(ASTERISK), SystemClock(), tmp_path, store(tmp_path))
    assert isinstance(backends.telephony, AriTelephony)
    assert backends.telephony.name == "asterisk"
    assert backends.telephony.endpoint == "PJSIP/{number}@callee"
    assert isinstance(backends.queue, AsteriskQueue)
    assert backends.queue.wrapup_time == 15
    assert backends.ami is not None
    assert "ari-secret" not in repr(backends.telephony)
    assert "ami-secret" not in repr(backends.ami)
    # Not connected yet: no call can be placed, and /readyz says why.
    assert backends.telephony.unavailable_reason() == "ARI not connected yet"
    # Flow campaigns run their actions for real, not in the simulated centre.
    assert isinstance(backends.flows, ActionFlowRunner)
    assert backends.services.capabilities() == {
        Capability.CALL_MEDIA,
        Capability.WEBHOOK,
        Capability.DNC,
    }


def test_the_ari_adapter_checks_its_registration_as_configured(tmp_path: Path) -> None:
    text = ASTERISK.replace(
        'password = "ari-secret"',
        'password = "ari-secret"\nregistration_check_interval = 3\nregistration_check_timeout = 4',
    )
    backends = Backends(decode_config(text), SystemClock(), tmp_path, store(tmp_path))
    assert isinstance(backends.telephony, AriTelephony)
    assert backends.telephony.registration_check_seconds == 3.0
    assert backends.telephony.registration_check_timeout == 4.0
    # Without the keys, the defaults: every 15 s, 10 s to come back.
    backends = Backends(decode_config(ASTERISK), SystemClock(), tmp_path, store(tmp_path))
    assert isinstance(backends.telephony, AriTelephony)
    assert backends.telephony.registration_check_seconds == 15.0
    assert backends.telephony.registration_check_timeout == 10.0


def test_an_unreadable_password_file_stops_the_build(tmp_path: Path) -> None:
    text = ASTERISK.replace('password = "ari-secret"', f'password_file = "{tmp_path}/none"')
    with pytest.raises(ConfigError, match="password_file"):
        Backends(decode_config(text), SystemClock(), tmp_path, store(tmp_path))
