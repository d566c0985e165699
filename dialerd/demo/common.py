"""What the demos share: storing and running their campaign, reading back how far its
list got."""

from __future__ import annotations

from dialerd.model import Campaign, Outdial, OutdialTarget, Outplan, TargetStatus
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


async def store_and_run(
    daemon: Daemon,
    customer_id: str,
    resources: tuple[Outplan, Outdial, list[OutdialTarget], Campaign],
) -> Campaign:
    """Store the demo's outplan, outdial, targets and campaign, then run the campaign."""
    outplan, outdial, targets, campaign = resources
    await daemon.store.create_outplan(outplan)
    await daemon.store.create_outdial(outdial)
    await daemon.store.create_targets(targets)
    await daemon.store.create_campaign(campaign)
    await daemon.campaigns.run(customer_id, campaign.id, cause="demo")
    return campaign
