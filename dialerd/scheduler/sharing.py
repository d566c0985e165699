"""The customers' share of this process's calls: after a campaign's pacing has decided
how many attempts it would start, its customer's call quotas and its fair share of the
process's (and trunk's) ceiling cut that number (behaviour.md §10, Quotas).

What each campaign wants is remembered from its latest tick (its active attempts plus
what its pacing allowed); the ceiling of concurrent calls is split between customers by
``dialerd.core.fair_share.shares`` over those wants, and the rate by ``rate_shares``
between the customers that asked for calls lately. The split is taken afresh a few
times per tick interval, not on every tick (it reads every campaign's want); a
customer's calls are counted on every tick: its active attempts and what ticks under
way were granted. With no ceiling and no call quota configured nothing is cut: the
seed's behaviour.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from dialerd import metrics
from dialerd.attempts import AttemptsView
from dialerd.core import fair_share
from dialerd.core.fair_share import Ceiling, rate_shares, shares
from dialerd.core.pacing import RateBudget
from dialerd.core.quotas import Quota, Quotas, call_limits
from dialerd.insight import DialingState
from dialerd.model import Campaign
from dialerd.scheduler.shared import SharedState

QuotasOf = Callable[[str], Quotas]
# What held a campaign's attempts back, and why in words (None: nothing).
Hold = tuple[DialingState, str] | None

# A campaign's want counts this many tick intervals after its latest tick; then only
# its active calls do (a stopped or held campaign no longer takes a share).
FRESH_TICKS = 2.0
# A campaign that found fewer targets ready than it was granted wants no more than it
# found for this many tick intervals; then it asks for its pacing's count again.
SHORT_TICKS = 10.0
# How often the split between customers is taken afresh, in tick intervals.
SPLIT_TICKS = 0.25


@dataclass
class _Want:
    customer_id: str
    # Active attempts plus what the pacing allowed at the latest tick, and that part.
    calls: int
    wanting: int
    at: float
    # When the campaign last started fewer attempts than granted (it found no more
    # targets ready), and how many it did start: until that is stale, it wants no more.
    short_at: float = -math.inf
    could: int = 0


@dataclass
class _Split:
    """The customers' wants and shares as taken at ``at``."""

    at: float
    # Customers with a campaign this engine runs (a new one forces a new split).
    customers: set[str]
    # Shares of the concurrent ceiling, and of the rate ceiling (empty without one).
    shares: dict[str, int]
    rates: dict[str, float]


def no_quotas(customer_id: str) -> Quotas:
    return Quotas()


@dataclass(eq=False)
class CallSharing:
    """Cuts each tick's attempts to the customer's quotas and fair share; owns the
    wants, the split, the rate budgets and the starts it counts."""

    shared: SharedState
    attempts: AttemptsView
    # Whether this instance runs the campaign (the wants of the others are dropped).
    runs: Callable[[str], bool]
    ceiling: Ceiling = field(default_factory=Ceiling)
    quotas_of: QuotasOf = no_quotas
    _wants: dict[str, _Want] = field(default_factory=dict)
    _split: _Split = field(
        default_factory=lambda: _Split(at=-math.inf, customers=set(), shares={}, rates={})
    )
    # Attempts granted whose tick has not started them yet (ticks of several campaigns
    # run at once): they count as the customer's calls meanwhile.
    _granted: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    _granted_to: dict[str, int] = field(default_factory=dict)
    _process_budget: RateBudget | None = None
    _budgets: dict[str, RateBudget] = field(default_factory=dict)
    # Start times of the latest second, per customer (the calls-per-second gauge).
    _starts: defaultdict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def reconfigure(self, ceiling: Ceiling, quotas_of: QuotasOf) -> None:
        """Use a reloaded ``[limits]`` and ``[quotas]`` from the next tick on."""
        self.ceiling, self.quotas_of = ceiling, quotas_of
        self._split.at = -math.inf

    def grant(self, campaign: Campaign, allowed: int) -> tuple[int, Hold]:
        """How many of the ``allowed`` attempts the campaign may start now, and what
        held them back when none may."""
        customer = campaign.customer_id
        max_calls, max_rate = call_limits(self.quotas_of(customer))
        if self.ceiling.unlimited and max_calls is None and max_rate is None:
            return allowed, None
        now = self.shared.clock.monotonic()
        self._note_want(campaign, allowed, now)
        split = self._split
        interval = self.shared.config.tick_interval
        if now - split.at >= SPLIT_TICKS * interval or customer not in split.customers:
            split = self._take_split(now)
        used = self.attempts.of_customer(customer) + self._granted[customer]
        concurrent_room, limit = self._concurrent_room(customer, max_calls, used)
        rate_room, rate = self._rate_room(customer, max_rate, now)
        decided = fair_share.grant(allowed, concurrent_room=concurrent_room, rate_room=rate_room)
        self._publish(customer, used + decided.attempts, limit, rate, now)
        self._reserve(customer, decided.attempts)
        self._granted_to[campaign.id] = decided.attempts
        if decided.attempts == 0 and allowed > 0:
            if decided.held_by == Quota.CONCURRENT_CALLS:
                return 0, (
                    DialingState.CONCURRENCY_CEILING,
                    f"the customer's calls are at its limit of {limit}",
                )
            return 0, (
                DialingState.RATE_CEILING,
                f"the customer's calls per second are at {rate:g}",
            )
        return decided.attempts, None

    def spent(self, campaign: Campaign, granted: int, started: int, *, claimed: bool) -> None:
        """The tick started ``started`` of the ``granted`` attempts (always called once
        after ``grant``; ``claimed``: the store answered, so fewer means fewer targets
        were ready, not an error): the rest goes back to the budgets."""
        customer = campaign.customer_id
        if not self._granted_to.pop(campaign.id, 0):
            return  # nothing was reserved
        self._reserve(customer, started - granted)
        self._granted[customer] -= started
        if self._granted[customer] <= 0:
            del self._granted[customer]
        now = self.shared.clock.monotonic()
        self._starts[customer].extend([now] * started)
        want = self._wants.get(campaign.id)
        if want is not None and claimed and started < granted:
            want.short_at, want.could = now, started
            want.calls = self.attempts.of_campaign(campaign.id).active
            want.wanting = 0

    # -- the parts of a grant -------------------------------------------------------------
    def _note_want(self, campaign: Campaign, allowed: int, now: float) -> None:
        """Remember what the campaign wants this tick."""
        active = self.attempts.of_campaign(campaign.id).active
        want = self._wants.get(campaign.id)
        if want is None or want.customer_id != campaign.customer_id:
            want = self._wants[campaign.id] = _Want(campaign.customer_id, 0, 0, now)
        # The pacing's count is a ceiling, not what the outdial has ready: a campaign
        # that came up short lately wants what it could start then.
        short = want.short_at >= now - SHORT_TICKS * self.shared.config.tick_interval
        want.wanting = min(allowed, want.could) if short else allowed
        want.calls, want.at = active + want.wanting, now

    def _take_split(self, now: float) -> _Split:
        """Count every customer's calls and wants, and split the ceilings anew."""
        for campaign_id in [c for c in self._wants if not self.runs(c)]:
            del self._wants[campaign_id]
        fresh = now - FRESH_TICKS * self.shared.config.tick_interval
        demands: defaultdict[str, int] = defaultdict(int)
        asking: set[str] = set()
        for campaign_id, want in self._wants.items():
            calls = self.attempts.of_campaign(campaign_id).active
            if want.at >= fresh:
                calls = max(calls, want.calls)
                if want.wanting > 0:
                    asking.add(want.customer_id)
            demands[want.customer_id] += calls
        limits = {customer: call_limits(self.quotas_of(customer)) for customer in demands}
        split = _Split(at=now, customers=set(demands), shares={}, rates={})
        if self.ceiling.concurrent_calls is not None:
            for customer, (max_calls, _) in limits.items():
                if max_calls is not None:
                    demands[customer] = min(demands[customer], max_calls)
            split.shares = shares(self.ceiling.concurrent_calls, demands)
        if self.ceiling.calls_per_second is not None:
            rates = {customer: limits[customer][1] for customer in asking}
            split.rates = rate_shares(self.ceiling.calls_per_second, rates)
        self._split = split
        return split

    def _reserve(self, customer: str, attempts: int) -> None:
        """Take ``attempts`` from the budgets and count them granted (negative: give back)."""
        if attempts == 0:
            return
        if self._process_budget is not None:
            self._process_budget = self._process_budget.spent(attempts)
        if customer in self._budgets:
            self._budgets[customer] = self._budgets[customer].spent(attempts)
        self._granted[customer] += attempts

    def _concurrent_room(
        self, customer: str, max_calls: int | None, used: int
    ) -> tuple[int | None, int | None]:
        """Calls the customer may add now, and its limit (None: neither is bounded)."""
        limit = max_calls
        capacity = self.ceiling.concurrent_calls
        if capacity is None:
            return (None if limit is None else limit - used), limit
        share = self._split.shares.get(customer, 0)
        limit = share if limit is None else min(limit, share)
        free = capacity - len(self.attempts) - sum(self._granted.values())
        return min(limit - used, free), limit

    def _rate_room(
        self, customer: str, max_rate: float | None, now: float
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
            # A customer that was not asking at the split asks now: an equal part.
            asking = max(1, len(self._split.rates) + (customer not in self._split.rates))
            rate = self._split.rates.get(customer, ceiling / asking)
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
