"""Campaign status rules (behaviour.md §2, §6, §7), as pure functions.

``stop`` (initial) -> ``run`` -> ``stopping`` -> ``stop``. A client may ask for ``run`` or
``stop`` only; ``stopping`` is the engine's, while answered attempts finish.
"""

from __future__ import annotations

from dialerd.model import (
    NIL_UUID,
    Campaign,
    CampaignStatus,
    EndHandle,
    Outdial,
    Outplan,
)


def run_problems(
    campaign: Campaign,
    outplan: Outplan | None,
    outdial: Outdial | None,
    next_campaign: Campaign | None,
) -> list[str]:
    """Why the campaign may not run; empty when it may.

    ``outplan``, ``outdial`` and ``next_campaign`` are what the store returned for the
    campaign's ids within its customer (``None``: missing, deleted or another customer's).
    """
    problems: list[str] = []
    if campaign.outplan_id == NIL_UUID:
        problems.append("outplan_id is not set")
    elif outplan is None:
        problems.append(f"outplan {campaign.outplan_id} does not exist")
    elif not any(limit > 0 for limit in outplan.max_try_counts):
        problems.append(f"outplan {outplan.id} allows no try: every max_try_count_N is 0")
    if campaign.outdial_id == NIL_UUID:
        problems.append("outdial_id is not set")
    elif outdial is None:
        problems.append(f"outdial {campaign.outdial_id} does not exist")
    if campaign.next_campaign_id != NIL_UUID:
        if campaign.next_campaign_id == campaign.id:
            problems.append("next_campaign_id names the campaign itself")
        elif next_campaign is None:
            problems.append(f"next campaign {campaign.next_campaign_id} does not exist")
    return problems


def status_after_stop_request(current: CampaignStatus, active_attempts: int) -> CampaignStatus:
    """A stop with attempts still active goes through ``stopping``."""
    if current == CampaignStatus.STOP:
        return CampaignStatus.STOP
    return CampaignStatus.STOPPING if active_attempts > 0 else CampaignStatus.STOP


def status_when_exhausted(end_handle: EndHandle) -> CampaignStatus:
    """``end_handle = stop`` stops an exhausted campaign; ``continue`` keeps it running."""
    return CampaignStatus.STOP if end_handle == EndHandle.STOP else CampaignStatus.RUN


def should_chain(
    stopped: Campaign,
    next_campaign: Campaign | None,
    *,
    started_by_chain: bool,
    dialed_any: bool,
) -> bool:
    """Start ``next_campaign_id`` after ``stopped`` ran out of targets?

    Only a valid, stopped campaign of the same customer is started, and a chained
    campaign that dialed nothing does not chain further, so a cycle cannot spin.
    """
    if next_campaign is None or stopped.next_campaign_id == NIL_UUID:
        return False
    if started_by_chain and not dialed_any:
        return False
    return (
        next_campaign.id == stopped.next_campaign_id
        and next_campaign.id != stopped.id
        and next_campaign.customer_id == stopped.customer_id
        and next_campaign.status == CampaignStatus.STOP
    )
