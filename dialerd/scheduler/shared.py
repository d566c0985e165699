"""What every part of the scheduler is given: the ports and the ``[engine]``
configuration (``SharedState``), the loop record the supervisor and the tick pass
along, and the helpers the parts share (the log, the back-off).

The parts' memory is not here: each part owns its own and hands the others a view.
``calls`` owns the attempts and what they measure, ``ownership`` the leases,
``allowance`` the pacing, ``states`` the dialing state, ``supervisor`` the loops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import structlog
from anyio.abc import TaskGroup

from dialerd.campaigns import CampaignService
from dialerd.config import EngineConfig
from dialerd.core.abandonment import AbandonmentPolicy
from dialerd.core.targets import CallingRules
from dialerd.model import Campaign
from dialerd.ports import Clock, FlowRunner, QueueAdapter, Telephony
from dialerd.queues import QueueRegistry
from dialerd.store import SchedulerStore

# Every part logs as the engine did before the scheduler was split: one logger name.
log = structlog.get_logger("dialerd.engine")
# The same logger in the standard library: whether a level is logged at all, asked
# before the lines written per attempt (a line filtered out still costs its binding).
_LEVELS = logging.getLogger("dialerd.engine")


def logs_at(level: int) -> bool:
    """Whether the engine's lines of ``level`` (``logging.INFO``...) are written now."""
    return _LEVELS.isEnabledFor(level)


# Seconds between retries while the store is unreachable.
STORE_RETRY = 1.0


def backoff(config: EngineConfig, failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row (1: the first): from
    ``backoff_initial``, doubling, up to ``backoff_max``."""
    return float(min(config.backoff_initial * 2 ** (failures - 1), config.backoff_max))


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
    """One campaign's loop, as the supervisor runs it and each tick sees it."""

    campaign_id: str
    started_by_chain: bool = False
    dialed_any: bool = False
    woken: bool = False
    sleep_scope: anyio.CancelScope | None = None
    stopping_since: float | None = None
    # When a failed tick was last logged (repeats in between are only counted).
    failure_logged: float = float("-inf")
    # The campaign as read by the latest tick.
    campaign: Campaign | None = None
    # The next tick falls on the campaign's own phase of the interval (set for loops
    # started or woken all together, so that they do not all tick in one instant).
    rephase: bool = False
    # A refill (``Tick.refill``: lines freed between ticks) is under way; asked again
    # while it was.
    refilling: bool = False
    refill_again: bool = False
    # When the campaign's list is next counted (monotonic; None: not yet placed on the
    # campaign's own offset within the counting period).
    count_due: float | None = None


CallingRulesOf = Callable[[str], CallingRules | None]
AbandonmentOf = Callable[[str], AbandonmentPolicy]


def _no_calling_rules(customer_id: str) -> None:
    return None


def _measured_only(customer_id: str) -> AbandonmentPolicy:
    return AbandonmentPolicy()


@dataclass(eq=False, kw_only=True)
class SharedState:
    """The ports the scheduler's parts share (one per ``Engine``); no part's memory."""

    store: SchedulerStore
    queue: QueueAdapter
    queues: QueueRegistry
    telephony: Telephony
    flows: FlowRunner
    clock: Clock
    config: EngineConfig
    control: CampaignService
    # This process's name on campaign leases.
    owner: str
    # The calling rules of a customer's campaigns (hours, lockouts), from the config.
    calling_rules: CallingRulesOf = _no_calling_rules
    # A customer's abandonment windows, and the governor's cap when [abandonment] is
    # configured (by default: measured, not governed).
    abandonment: AbandonmentOf = _measured_only
    # Where the parts start their tasks; set once, when the engine runs.
    task_group: TaskGroup | None = None

    def use_rules(
        self, calling_rules: CallingRulesOf | None, abandonment: AbandonmentOf | None
    ) -> None:
        """Use the configured calling rules and abandonment policy (None: keep)."""
        if calling_rules is not None:
            self.calling_rules = calling_rules
        if abandonment is not None:
            self.abandonment = abandonment
