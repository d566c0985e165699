"""The two registries the scheduler's parts look things up in: the leases this
instance holds (changed by ``ownership`` alone) and the campaign loops it runs (changed
by ``supervisor`` alone). The other parts are given their read methods (``fence``,
``__contains__``, ``on_queue``) and ``wake``, so that ``calls``, for one, needs nothing
above it to end an attempt."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from dialerd.model import Campaign
from dialerd.scheduler.shared import CampaignLoop
from dialerd.store import Fence


@dataclass
class Lease:
    """A lease this instance holds on a campaign."""

    # Every write of the campaign's loop carries it (a fencing token).
    fence: Fence
    renewed: float
    # The attempts a previous owner left have been ended or followed (``take_over``).
    taken_over: bool = False


class Leases:
    """The leases this instance holds, by campaign: changed by ``Ownership`` only, read
    by every part that writes for a campaign (``fence``)."""

    def __init__(self) -> None:
        self._held: dict[str, Lease] = {}
        # Campaigns another instance holds: not tried again before this monotonic time.
        self._foreign: dict[str, float] = {}

    def fence(self, campaign_id: str) -> Fence | None:
        """The lease this instance holds on the campaign, if it runs it."""
        lease = self._held.get(campaign_id)
        return lease.fence if lease is not None else None

    def fences(self) -> list[Fence]:
        """Every lease this instance holds."""
        return [lease.fence for lease in self._held.values()]

    def held_elsewhere(self, campaign_id: str, now: float) -> bool:
        """Another instance held the campaign's lease at the latest try, lately."""
        return self._foreign.get(campaign_id, -math.inf) > now

    # -- changed by ``Ownership`` alone -------------------------------------------------------
    def lease(self, campaign_id: str) -> Lease | None:
        return self._held.get(campaign_id)

    def take(self, campaign_id: str, lease: Lease) -> Lease:
        self._held[campaign_id] = lease
        return lease

    def drop(self, campaign_id: str) -> Lease | None:
        return self._held.pop(campaign_id, None)

    def refused(self, campaign_id: str, until: float) -> None:
        self._foreign[campaign_id] = until


class RunningCampaigns:
    """The campaign loops of this instance, and the running and stopping campaigns of
    every instance by queue (housekeeping's latest read): changed by the supervisor
    only, read by the other parts through its methods."""

    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self.loops: dict[str, CampaignLoop] = {}
        self.by_queue: dict[str, list[Campaign]] = {}
        # The loops by the queue of their campaign as last read (``read``), so a tick
        # finds its queue's neighbours without going through every loop.
        self._own_by_queue: dict[str, dict[str, CampaignLoop]] = {}

    def read(self, loop: CampaignLoop, campaign: Campaign | None) -> None:
        """A tick read the loop's campaign (None: gone)."""
        before = loop.campaign
        loop.campaign = campaign
        if before is not None and (campaign is None or campaign.queue_id != before.queue_id):
            self._unindex(loop.campaign_id, before.queue_id)
        if campaign is not None:
            self._own_by_queue.setdefault(campaign.queue_id, {})[loop.campaign_id] = loop

    def ended(self, campaign_id: str) -> None:
        """The campaign's loop ended."""
        loop = self.loops.pop(campaign_id, None)
        if loop is not None and loop.campaign is not None:
            self._unindex(campaign_id, loop.campaign.queue_id)

    def _unindex(self, campaign_id: str, queue_id: str) -> None:
        on_queue = self._own_by_queue.get(queue_id)
        if on_queue is not None:
            on_queue.pop(campaign_id, None)
            if not on_queue:
                del self._own_by_queue[queue_id]

    def __contains__(self, campaign_id: object) -> bool:
        return campaign_id in self.loops

    def __len__(self) -> int:
        return len(self.loops)

    def get(self, campaign_id: str) -> CampaignLoop | None:
        return self.loops.get(campaign_id)

    def wake(self, campaign_id: str) -> bool:
        """Tick the campaign's loop now; False when it has none."""
        loop = self.loops.get(campaign_id)
        if loop is None:
            return False
        loop.woken = True
        if loop.sleep_scope is not None:
            loop.sleep_scope.cancel()
        return True

    def owned(self) -> list[Campaign]:
        """The campaigns this instance runs (leased), as their latest tick read them."""
        return [
            loop.campaign
            for loop in self.loops.values()
            if loop.campaign is not None and self.leases.fence(loop.campaign_id) is not None
        ]

    def on_queue(self, queue_id: str) -> tuple[Iterable[Campaign], Iterable[Campaign]]:
        """The campaigns on the queue: this instance's own, and every instance's."""
        own = [
            loop.campaign
            for loop in self._own_by_queue.get(queue_id, {}).values()
            if loop.campaign is not None and self.leases.fence(loop.campaign_id) is not None
        ]
        return own, self.by_queue.get(queue_id, [])
