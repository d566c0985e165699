"""The attempts this engine follows, with per-campaign counts kept as they change.

Pacing reads ``dialing`` and ``active`` of a campaign on every tick; keeping them here
costs nothing per tick, where asking the store would cost a round trip per campaign.
The engine is the only one starting and ending its campaigns' attempts, and rebuilds
this book from the store at start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from dialerd.model import Campaigncall, CampaignType
from dialerd.ports import HangupReason


class Cancellable(Protocol):
    """A timer that can be stopped."""

    def cancel(self) -> None: ...


@dataclass
class Attempt:
    """What the engine follows of one active attempt."""

    campaigncall_id: str
    campaign_id: str
    campaign_type: CampaignType
    outplan_id: str
    # Whose campaign: the calling rules that apply when it ends are the customer's.
    customer_id: str = ""
    answered: bool = False
    # The attempt's time limit (dial or flow timeout) while it runs; ``cancel`` stops it.
    timer: Cancellable | None = None
    # Set when the engine ends the attempt itself (a time limit): the reason recorded,
    # whatever the backend reports when it drops the call.
    end_reason: HangupReason | None = None
    # The backend has the call: its originate returned (or it was found live).
    placed: bool = False
    # A stop wants the call ended: cancel or hang-up is repeated until the end is seen.
    release_requested: bool = False
    # Reconciliation sweeps in a row that found no live call for it.
    missing_sweeps: int = 0
    # Monotonic times of the start and the answer (None: unknown, or not yet).
    started_at: float | None = None
    answered_at: float | None = None
    # Seconds the answered caller waited for an agent (None: no agent took the call yet).
    agent_wait: float | None = None
    # When its end was seen: the time its end records, however often the write is retried.
    ended_at: datetime | None = None
    # The attempt as the store gave it (its claim, or a restart's read): what is written
    # back if the store fails over to a replica that lost it.
    campaigncall: Campaigncall | None = None

    def ring_seconds(self, now: float) -> float | None:
        """How long the call rang: until its answer, else until ``now``; None when its
        start is unknown (an attempt restored after a restart)."""
        if self.started_at is None:
            return None
        return (self.answered_at if self.answered_at is not None else now) - self.started_at


@dataclass
class CampaignCount:
    dialing: int = 0
    active: int = 0


class AttemptsView(Protocol):
    """What the scheduler's other parts read of the attempts; only the part that owns
    them (``scheduler.calls``) changes them."""

    @property
    def dialing(self) -> int: ...

    @property
    def max_dialing(self) -> int: ...

    def __len__(self) -> int: ...

    def __contains__(self, campaigncall_id: object) -> bool: ...

    def of_campaign(self, campaign_id: str) -> CampaignCount: ...

    def of_customer(self, customer_id: str) -> int: ...

    def of(self, campaign_id: str) -> list[Attempt]: ...


@dataclass
class AttemptBook:
    """Active attempts by campaigncall id, and their counts per campaign and in all."""

    _attempts: dict[str, Attempt] = field(default_factory=dict)
    _counts: dict[str, CampaignCount] = field(default_factory=dict)
    # The same attempts by campaign: predictive pacing reads each one's age every tick.
    _by_campaign: dict[str, dict[str, Attempt]] = field(default_factory=dict)
    # Active attempts per customer (customer quotas and shares read it every tick).
    _by_customer: dict[str, int] = field(default_factory=dict)
    dialing: int = 0
    max_dialing: int = 0

    def __len__(self) -> int:
        return len(self._attempts)

    def __contains__(self, campaigncall_id: object) -> bool:
        return campaigncall_id in self._attempts

    def __iter__(self) -> Iterator[Attempt]:
        return iter(list(self._attempts.values()))

    def get(self, campaigncall_id: str) -> Attempt | None:
        return self._attempts.get(campaigncall_id)

    def add(self, attempt: Attempt) -> None:
        """Follow a new (or restored) attempt."""
        if attempt.campaigncall_id in self._attempts:
            return
        self._attempts[attempt.campaigncall_id] = attempt
        self._by_campaign.setdefault(attempt.campaign_id, {})[attempt.campaigncall_id] = attempt
        count = self._counts.setdefault(attempt.campaign_id, CampaignCount())
        count.active += 1
        self._by_customer[attempt.customer_id] = self._by_customer.get(attempt.customer_id, 0) + 1
        if not attempt.answered:
            count.dialing += 1
            self._dialing_changed(+1)

    def answer(self, campaigncall_id: str) -> Attempt | None:
        """Mark the attempt answered; None if unknown or already answered."""
        attempt = self._attempts.get(campaigncall_id)
        if attempt is None or attempt.answered:
            return None
        attempt.answered = True
        self._counts[attempt.campaign_id].dialing -= 1
        self._dialing_changed(-1)
        return attempt

    def pop(self, campaigncall_id: str) -> Attempt | None:
        """Stop following the attempt; None if it was not followed."""
        attempt = self._attempts.pop(campaigncall_id, None)
        if attempt is None:
            return None
        own = self._by_campaign[attempt.campaign_id]
        del own[campaigncall_id]
        if not own:
            del self._by_campaign[attempt.campaign_id]
        count = self._counts[attempt.campaign_id]
        count.active -= 1
        left = self._by_customer[attempt.customer_id] - 1
        if left:
            self._by_customer[attempt.customer_id] = left
        else:
            del self._by_customer[attempt.customer_id]
        if not attempt.answered:
            count.dialing -= 1
            self._dialing_changed(-1)
        if count.active == 0:
            del self._counts[attempt.campaign_id]
        return attempt

    def of_campaign(self, campaign_id: str) -> CampaignCount:
        """The campaign's dialing and active counts (zeros if it has none)."""
        return self._counts.get(campaign_id, CampaignCount())

    def of_customer(self, customer_id: str) -> int:
        """The customer's active attempts, over all its campaigns."""
        return self._by_customer.get(customer_id, 0)

    def of(self, campaign_id: str) -> list[Attempt]:
        """The campaign's active attempts."""
        return list(self._by_campaign.get(campaign_id, {}).values())

    def _dialing_changed(self, delta: int) -> None:
        self.dialing += delta
        self.max_dialing = max(self.max_dialing, self.dialing)
