"""What the demos share: reading back how far a campaign's list got."""

from __future__ import annotations

from dialerd.model import TargetStatus
from dialerd.service.daemon import Daemon


async def count_done_targets(daemon: Daemon, outdial_id: str) -> int:
    """Targets of the outdial whose status is ``done``, read back from the store."""
    done, token = 0, ""
    while True:
        page = await daemon.store.list_targets(outdial_id, 100, token)
        done += sum(1 for target in page.result if target.status == TargetStatus.DONE)
        if not page.next_page_token:
            return done
        token = page.next_page_token
