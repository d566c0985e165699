"""Steps the store suites share: an attempt claimed, an attempt ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dialerd.core.targets import RetryRule
from dialerd.model import Campaigncall, CampaigncallResult

if TYPE_CHECKING:
    from datetime import datetime

    from dialerd.store import Store
    from tests.integration.conftest import Dialing

FAIL = CampaigncallResult.FAIL
SUCCESS = CampaigncallResult.SUCCESS


async def claim(store: Store, dialing: Dialing, now: datetime) -> Campaigncall:
    """Start an attempt that must find a target."""
    campaigncall = await store.start_attempt(dialing.plan(now))
    assert campaigncall is not None
    return campaigncall


async def finish(store: Store, dialing: Dialing, campaigncall: Campaigncall, now: datetime) -> None:
    """End an attempt as failed (busy); it must not have ended before."""
    done = await store.finish_attempt(
        campaigncall.id, FAIL, "busy", RetryRule.of(dialing.outplan), now
    )
    assert done is not None
    assert done.finished
