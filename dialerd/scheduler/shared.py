"""What every part of the scheduler reads and writes: the ports, the ``[engine]``
configuration, each campaign's loop and the attempts in flight."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import anyio
import structlog
from anyio.abc import TaskGroup

from dialerd import metrics
from dialerd.attempts import AttemptBook
from dialerd.config import EngineConfig
from dialerd.control import CampaignControl
from dialerd.core import abandonment
from dialerd.core.abandonment import AbandonmentPolicy, DayCount
from dialerd.core.pacing import RateBudget
from dialerd.core.predictive import CallHistory
from dialerd.core.targets import CallingRules
from dialerd.insight import DialingState, TargetCounts
from dialerd.model import Campaign, Outplan
from dialerd.ports import Clock, FlowRunner, QueueAdapter, Telephony
from dialerd.queues import QueueRegistry
from dialerd.store import Fence, SchedulerStore

# Every part logs as the engine did before the scheduler was split: one logger name.
log = structlog.get_logger("dialerd.engine")

# Seconds between retries while the store is unreachable.
STORE_RETRY = 1.0
# States worth a log line when a campaign enters or leaves them.
_TROUBLE = frozenset(
    {
        DialingState.BACKING_OFF,
        DialingState.STORE_UNREACHABLE,
        DialingState.QUEUE_UNREACHABLE,
        DialingState.TELEPHONY_UNREACHABLE,
    }
)


@dataclass
class EngineStats:
    """Running totals since start, for the demo, STATUS and benchmarks."""

    attempts_started: int = 0
    attempts_finished: int = 0
    success: int = 0
    fail: int = 0
    targets_done: int = 0


@dataclass
class CampaignLoop:
    """The in-memory state of one campaign's loop."""

    campaign_id: str
    budget: RateBudget
    started_by_chain: bool = False
    dialed_any: bool = False
    woken: bool = False
    sleep_scope: anyio.CancelScope | None = None
    stopping_since: float | None = None
    backoff_until: float = 0.0
    origination_failures: int = 0
    # The campaign's lease: every write of this loop carries it (a fencing token).
    fence: Fence | None = None
    lease_renewed: float = -math.inf
    # The attempts a previous owner left have been ended or followed (``take_over``).
    taken_over: bool = False
    # When a failed tick was last logged (repeats in between are only counted).
    failure_logged: float = -math.inf
    # The campaign as read by the latest tick.
    campaign: Campaign | None = None
    # What the latest tick found, since when (wall clock), and what the pacing read.
    state: DialingState | None = None
    state_detail: str = ""
    state_since: datetime | None = None
    held_by: DialingState = DialingState.PACED
    available_agents: int | None = None
    target_counts: TargetCounts | None = None
    # What the campaign's own attempts did (the predictive model learns from it), and
    # its abandonment counts by day, read from the store once the loop runs it.
    history: CallHistory = field(default_factory=CallHistory)
    abandonment: dict[str, DayCount] | None = None
    governor_pressure: float = 0.0
    # The queue adapter failed the latest read of the campaign's free agents (logged
    # once on entering and once on leaving that state).
    queue_unavailable: bool = False


CallingRulesOf = Callable[[str], CallingRules | None]
AbandonmentOf = Callable[[str], AbandonmentPolicy]


def _no_calling_rules(customer_id: str) -> None:
    return None


def _measured_only(customer_id: str) -> AbandonmentPolicy:
    return AbandonmentPolicy()


class SharedState:
    """The ports and the memory the scheduler's parts share (one per ``Engine``)."""

    def __init__(
        self,
        *,
        store: SchedulerStore,
        queue: QueueAdapter,
        queues: QueueRegistry,
        telephony: Telephony,
        flows: FlowRunner,
        clock: Clock,
        config: EngineConfig,
        control: CampaignControl,
        owner: str,
        calling_rules: CallingRulesOf | None = None,
        abandonment: AbandonmentOf | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self.queues = queues
        self.telephony = telephony
        self.flows = flows
        self.clock = clock
        self.config = config
        self.control = control
        # This process's name on campaign leases.
        self.owner = owner
        # The calling rules of a customer's campaigns (hours, lockouts), from the config.
        self.calling_rules: CallingRulesOf = calling_rules or _no_calling_rules
        # A customer's abandonment windows, and the governor's cap when [abandonment]
        # is configured (by default: measured, not governed).
        self.abandonment: AbandonmentOf = abandonment or _measured_only
        self.loops: dict[str, CampaignLoop] = {}
        self.attempts = AttemptBook()
        self.outplans: dict[str, Outplan] = {}
        # Campaigns started by chaining whose loop has not started yet.
        self.chained: set[str] = set()
        # Campaigns another instance holds: not tried again before this monotonic time.
        self.foreign: dict[str, float] = {}
        # Running and stopping campaigns by queue id, refreshed by housekeeping: the
        # campaigns that share a queue's agents (several instances included).
        self.by_queue: dict[str, list[Campaign]] = {}
        self.task_group: TaskGroup | None = None
        self.last_progress = clock.monotonic()
        self.stats = EngineStats()
        # Set by ``drain`` (shutdown): no new attempt; ends are counted by reason.
        self.draining = False
        self.drained: Counter[str] = Counter()
        # Called with (lag, duration) of every tick; benchmarks collect the samples.
        self.tick_observer: Callable[[float, float], None] | None = None

    def fence(self, campaign_id: str) -> Fence | None:
        """The lease this instance holds on the campaign, if it runs it."""
        loop = self.loops.get(campaign_id)
        return loop.fence if loop is not None else None

    def set_state(self, loop: CampaignLoop, state: DialingState, detail: str = "") -> None:
        """Record what this tick found (the operator's "why is it not dialing?")."""
        if state != loop.state:
            loop.state_since = self.clock.now()
            metrics.campaign_state(loop.campaign_id, state)
            if state in _TROUBLE or loop.state in _TROUBLE:
                log.info(
                    "campaign dialing state changed",
                    state=state.value,
                    previous=loop.state.value if loop.state else None,
                    detail=detail,
                )
        loop.state, loop.state_detail = state, detail

    def abandonment_windows(self, loop: CampaignLoop) -> list[abandonment.WindowCount]:
        """The campaign's abandonment per configured window, as counted so far."""
        today = abandonment.campaign_day(self.clock.now(), self.config.abandon_day_offset_minutes)
        return abandonment.windows(
            (loop.abandonment or {}).values(), today, self.abandonment_policy(loop).windows
        )

    def abandonment_policy(self, loop: CampaignLoop) -> AbandonmentPolicy:
        """The abandonment windows and cap of the loop's campaign's customer."""
        if loop.campaign is None:
            return AbandonmentPolicy()
        return self.abandonment(loop.campaign.customer_id)
