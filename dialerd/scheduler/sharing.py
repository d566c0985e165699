"""The customers' share of this process's calls: after a campaign's pacing has decided
how many attempts it would start, its customer's call quotas and its fair share of the
process's (and trunk's) ceiling cut that number (behaviour.md §10, Quotas).

What each campaign wants is remembered from its latest tick (its active attempts plus
what its pacing allowed); the ceiling of concurrent calls is split between customers by
``dialerd.core.fair_share.shares`` over those wants, and the rate by ``rate_shares``
between the customers that asked for calls lately. With no ceiling and no call quota
configured nothing is cut: the seed's behaviour.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from dialerd import metrics
from dialerd.core.fair_share import Ceiling, grant, rate_shares, shares
from dialerd.core.pacing import RateBudget
from dialerd.core.quotas import Quota, Quotas, call_limits
from dialerd.insight import DialingState
from dialerd.model import Campaign
from dialerd.scheduler.shared import CampaignLoop, SharedState

QuotasOf = Callable[[str], Quotas]

# A campaign's want counts this many tick intervals after its latest tick; then only
# its active calls do (a stopped or held campaign no longer takes a share).
FRESH_TICKS = 2.0
# A campaign that found fewer targets ready than it was granted wants no more than it
# found for this many tick intervals; then it asks for its pacing's count again.
SHORT_TICKS = 10.0


@dataclass
class _Want:
    customer_id: str
    # Active attempts plus what the pacing allowed at the latest tick.
    calls: int
    at: float
    # When the campaign last started fewer attempts than granted (it found no more
    # targets ready), and how many it did start: until that is stale, it wants no more.
    short_at: float = -math.inf
    could: int = 0


def _no_quotas(customer_id: str) -> Quotas:
    return Quotas()


class CallSharing:
    """Cuts each tick's attempts to the customer's quotas and fair share; owns the
    wants, the rate budgets and the starts it counts."""

    def __init__(
        self,
        shared: SharedState,
        *,
        ceiling: Ceiling | None = None,
        quotas_of: QuotasOf | None = None,
    ) -> None:
        self.shared = shared
        self.ceiling = ceiling or Ceiling()
        self.quotas_of: QuotasOf = quotas_of or _no_quotas
        self._wants: dict[str, _Want] = {}
        self._process_budget: RateBudget | None = None
        self._budgets: dict[str, RateBudget] = {}
        # Start times of the latest second, per customer (the calls-per-second gauge).
        self._starts: defaultdict[str, deque[float]] = defaultdict(deque)
        # Attempts granted whose tick has not started them yet (ticks of several
        # campaigns run at once): they count as the customer's calls meanwhile.
        self._granted: defaultdict[str, int] = defaultdict(int)
        self._granted_to: dict[str, int] = {}

    def reconfigure(self, ceiling: Ceiling, quotas_of: QuotasOf) -> None:
        """Use a reloaded ``[limits]`` and ``[quotas]`` from the next tick on."""
        self.ceiling, self.quotas_of = ceiling, quotas_of

    def grant(self, loop: CampaignLoop, campaign: Campaign, allowed: int) -> int:
        """How many of the ``allowed`` attempts the campaign may start now."""
        customer = campaign.customer_id
        max_calls, max_rate = call_limits(self.quotas_of(customer))
        if self.ceiling.unlimited and max_calls is None and max_rate is None:
            return allowed
        now = self.shared.clock.monotonic()
        fresh = now - FRESH_TICKS * self.shared.config.tick_interval
        active = self.shared.attempts.of_campaign(campaign.id).active
        want = self._wants.get(campaign.id)
        if want is None or want.customer_id != customer:
            want = self._wants[campaign.id] = _Want(customer, 0, now)
        # The pacing's count is a ceiling, not what the outdial has ready: a campaign
        # that came up short lately wants what it could start then.
        short = want.short_at >= now - SHORT_TICKS * self.shared.config.tick_interval
        wanting = min(allowed, want.could) if short else allowed
        want.calls, want.at = active + wanting, now
        self._forget_ended()
        in_use = self._active_by_customer()
        for other, granted in self._granted.items():
            in_use[other] += granted
        used = in_use.get(customer, 0)
        concurrent_room, limit = self._concurrent_room(customer, max_calls, in_use, fresh)
        rate_room, rate = self._rate_room(customer, max_rate, fresh, now)
        decided = grant(allowed, concurrent_room=concurrent_room, rate_room=rate_room)
        self._publish(customer, used, limit, rate, now)
        self._reserve(customer, decided.attempts)
        self._granted_to[campaign.id] = decided.attempts
        if decided.attempts == 0 and allowed > 0:
            if decided.held_by == Quota.CONCURRENT_CALLS.value:
                loop.held_by = DialingState.CONCURRENCY_CEILING
                loop.state_detail = f"the customer's calls are at its limit of {limit}"
            else:
                loop.held_by = DialingState.RATE_CEILING
                loop.state_detail = f"the customer's calls per second are at {rate:g}"
        return decided.attempts

    def spent(self, campaign: Campaign, granted: int, started: int) -> None:
        """The tick started ``started`` of the ``granted`` attempts (always called once
        after ``grant``): the rest goes back to the budgets."""
        customer = campaign.customer_id
        if not self._granted_to.pop(campaign.id, 0):
            return  # nothing was reserved
        self._reserve(customer, started - granted)
        want = self._wants.get(campaign.id)
        if want is not None and started < granted:
            want.short_at, want.could = self.shared.clock.monotonic(), started
            want.calls = self.shared.attempts.of_campaign(campaign.id).active
        self._granted[customer] -= started
        if self._granted[customer] <= 0:
            del self._granted[customer]
        self._starts[customer].extend([self.shared.clock.monotonic()] * started)

    def _reserve(self, customer: str, attempts: int) -> None:
        """Take ``attempts`` from the budgets and count them granted (negative: give back)."""
        if attempts == 0:
            return
        if self._process_budget is not None:
            self._process_budget = self._process_budget.spent(attempts)
        if customer in self._budgets:
            self._budgets[customer] = self._budgets[customer].spent(attempts)
        self._granted[customer] += attempts

    # -- the parts of a grant -------------------------------------------------------------
    def _forget_ended(self) -> None:
        for campaign_id in [c for c in self._wants if c not in self.shared.loops]:
            del self._wants[campaign_id]

    def _active_by_customer(self) -> dict[str, int]:
        active: defaultdict[str, int] = defaultdict(int)
        for campaign_id, want in self._wants.items():
            active[want.customer_id] += self.shared.attempts.of_campaign(campaign_id).active
        return active

    def _concurrent_room(
        self, customer: str, max_calls: int | None, in_use: dict[str, int], fresh: float
    ) -> tuple[int | None, int | None]:
        """Calls the customer may add now, and its limit (None: neither is bounded)."""
        used = in_use.get(customer, 0)
        limit = max_calls
        capacity = self.ceiling.concurrent_calls
        if capacity is not None:
            demands: defaultdict[str, int] = defaultdict(int)
            for campaign_id, want in self._wants.items():
                calls = want.calls if want.at >= fresh else 0
                demands[want.customer_id] += max(
                    calls, self.shared.attempts.of_campaign(campaign_id).active
                )
            for other in list(demands):
                own_limit = call_limits(self.quotas_of(other))[0]
                if own_limit is not None:
                    demands[other] = min(demands[other], own_limit)
            share = shares(capacity, demands).get(customer, 0)
            limit = share if limit is None else min(limit, share)
            free = capacity - len(self.shared.attempts) - sum(self._granted.values())
            return min(limit - used, free), limit
        return (None if limit is None else limit - used), limit

    def _rate_room(
        self, customer: str, max_rate: float | None, fresh: float, now: float
    ) -> tuple[int | None, float]:
        """Attempts the customer's rate budget (and the process's) allow now, and the
        customer's rate (0: unbounded)."""
        rate = max_rate
        room: int | None = None
        ceiling = self.ceiling.calls_per_second
        if ceiling is not None:
            budget = self._process_budget or RateBudget.full(ceiling, now)
            self._process_budget = budget = budget.refilled(now, ceiling)
            room = budget.allowance
            asking = {
                want.customer_id
                for want in self._wants.values()
                if want.at >= fresh and want.calls > 0
            } | {customer}
            limits = {other: call_limits(self.quotas_of(other))[1] for other in asking}
            rate = rate_shares(ceiling, limits)[customer]
        if rate is None:
            return room, 0.0
        own = self._budgets.get(customer) or RateBudget.full(rate, now)
        self._budgets[customer] = own = own.refilled(now, rate)
        room = own.allowance if room is None else min(room, own.allowance)
        return room, rate

    def _publish(
        self, customer: str, used: int, limit: int | None, rate: float, now: float
    ) -> None:
        if limit is not None:
            metrics.quota_use(customer, Quota.CONCURRENT_CALLS.value, used, limit)
        if rate and not math.isinf(rate):
            starts = self._starts[customer]
            while starts and starts[0] <= now - 1.0:
                starts.popleft()
            metrics.quota_use(customer, Quota.CALLS_PER_SECOND.value, len(starts), rate)
