"""Fixtures for the tests against the real rig (Asterisk + SIPp, scripts/rig).

The session fixture `rig` runs `scripts/rig setup` and `scripts/rig start` once and stops the
rig at the end. With DIALERD_RIG_REUSE=1 a rig that already runs is used as it is and left
running (for working next to a rig someone else started). A rig that cannot be set up or
started fails the tests; it never skips them. Needs root (debootstrap, chroot).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dialerd import metrics
from tests.realpeer.rig import Rig, RigError

# A registry over the process's families: what the tests recorded, to be dropped.
REGISTRY = metrics.create_registry()


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    handle = Rig()
    reuse = os.environ.get("DIALERD_RIG_REUSE") == "1" and handle.is_running()
    if not reuse:
        try:
            handle.setup()
            handle.start()
        except RigError as exc:
            pytest.fail(f"the real-telephony rig is not available: {exc}", pytrace=False)
    yield handle
    if not reuse:
        handle.stop()


@pytest.fixture
def fresh_rig(rig: Rig) -> Iterator[Rig]:
    """The rig with every agent free and unpaused, before and after the test."""
    rig.reset_agents()
    yield rig
    rig.reset_agents()


@pytest.fixture(autouse=True)
def forget_campaign_series() -> Iterator[None]:
    """These tests drive the backend without an engine, whose loop would drop a
    campaign's series when it ends: drop the series of the campaigns they made here."""
    yield
    campaigns = {
        sample.labels["campaign_id"]
        for family in REGISTRY.collect()
        for sample in family.samples
        if "campaign_id" in sample.labels
    }
    for campaign_id in campaigns:
        metrics.forget_campaign(campaign_id)
