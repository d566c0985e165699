"""The engine: the scheduler's one entry point for the daemon, the control API, the
demo and the tests. It wires the parts together and answers for them."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence

import anyio
from anyio.abc import TaskStatus

from dialerd import metrics
from dialerd.campaigns import CampaignScheduler, CampaignService
from dialerd.config import EngineConfig
from dialerd.core.fair_share import Ceiling
from dialerd.insight import CampaignInsight
from dialerd.model import Campaign, CampaignStatus, format_time, new_id
from dialerd.ports import Clock, FlowRunner, QueueAdapter, Telephony, TelephonyEvent
from dialerd.queues import QueueRegistry
from dialerd.scheduler.allowance import Allowance, talk_times
from dialerd.scheduler.calls import Calls, MeasuresView
from dialerd.scheduler.ending import CampaignEnding
from dialerd.scheduler.ownership import Ownership
from dialerd.scheduler.registry import Leases, RunningCampaigns
from dialerd.scheduler.shared import (
    AbandonmentOf,
    CallingRulesOf,
    CampaignLoop,
    EngineStats,
    SharedState,
    log,
)
from dialerd.scheduler.sharing import CallSharing, QuotasOf, no_quotas
from dialerd.scheduler.states import DialingStates
from dialerd.scheduler.store_share import bounded_store, engine_share
from dialerd.scheduler.supervisor import Supervisor
from dialerd.scheduler.tick import Tick
from dialerd.service.identity import public_id
from dialerd.store import SchedulerStore, Store

# Outcome events waiting to be written; a bounded buffer, so a stalled store pushes
# back on the backends instead of growing without limit.
EVENT_BUFFER = 10_000
EVENT_WORKERS = 16


class Engine:
    """Runs every campaign whose status is ``run`` or ``stopping``."""

    def __init__(
        self,
        *,
        store: Store,
        queue: QueueAdapter,
        telephony: Telephony,
        flows: FlowRunner,
        clock: Clock,
        config: EngineConfig,
        campaigns: Callable[[CampaignScheduler], CampaignService] | None = None,
        owner: str | None = None,
        queues: QueueRegistry | None = None,
        calling_rules: CallingRulesOf | None = None,
        abandonment: AbandonmentOf | None = None,
        ceiling: Ceiling | None = None,
        quotas_of: QuotasOf | None = None,
    ) -> None:
        queues = queues if queues is not None else QueueRegistry()
        # The engine's store calls under way at once: its share of the store's
        # connections (``store_share``), the rest kept for the API and the events.
        share = engine_share(store.concurrent_calls)
        self._store_slots = None if share is None else anyio.Semaphore(share, fast_acquire=True)
        # The campaign service, made with this engine as the scheduler it tells.
        self.control = (
            campaigns(self)
            if campaigns is not None
            else CampaignService(store, clock, self, queues=queues, queue_adapter=queue)
        )
        self._shared = shared = SharedState(
            store=bounded_store(store, self._store_slots),
            queue=queue,
            queues=queues,
            telephony=telephony,
            flows=flows,
            clock=clock,
            config=config,
            control=self.control,
            owner=owner or f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}",
        )
        shared.use_rules(calling_rules, abandonment)
        # Each part owns its state and is given only what it reads of the others'.
        leases = self._leases = Leases()
        running = self._running = RunningCampaigns(leases)
        states = self._states = DialingStates(clock)
        # An ended attempt frees a line: the campaign refills it now (``Tick.refill``).
        calls = self._calls = Calls(shared, fence=leases.fence, runs=running.__contains__,
                                    wake=self._refill)  # fmt: skip
        self._ownership = Ownership(shared, leases, calls)
        ending = CampaignEnding(shared, attempts=calls.view, states=states, fence=leases.fence)
        self._sharing = CallSharing(
            shared, calls.view, running.__contains__, ceiling or Ceiling(), quotas_of or no_quotas
        )
        allowance = self._allowance = Allowance(
            shared,
            attempts=calls.view,
            measures=calls.measures,
            sharing=self._sharing,
            neighbours=running.on_queue,
            stop_invalid=ending.stop_invalid,
        )

        def read(loop: CampaignLoop, campaign: Campaign | None) -> None:
            running.read(loop, campaign)
            calls.uses_outplan(loop.campaign_id, None if campaign is None else campaign.outplan_id)

        self._tick = Tick(
            shared,
            calls=calls,
            allowance=allowance,
            ending=ending,
            states=states,
            fence=leases.fence,
            reconcile=self._ownership.reconcile,
            wake=running.wake,
            read=read,
            loop_of=running.get,
        )

        def loop_ended(campaign_id: str) -> None:
            states.forget(campaign_id)
            allowance.forget(campaign_id)
            calls.measures.forget(campaign_id)
            calls.loop_ended(campaign_id)

        self._supervisor = Supervisor(
            shared,
            running,
            leases,
            self._ownership,
            self._tick,
            states,
            started_by_chain=ending.take_chained,
            outplan=calls.outplan,
            loop_ended=loop_ended,
            keep_learnt=allowance.keep_prior,
        )

    # -- what the daemon, the API and the tests see --------------------------------
    @property
    def store(self) -> SchedulerStore:
        return self._shared.store

    @store.setter
    def store(self, store: SchedulerStore) -> None:
        self._shared.store = bounded_store(store, self._store_slots)

    @property
    def queues(self) -> QueueRegistry:
        return self._shared.queues

    @property
    def owner(self) -> str:
        """This process's name on campaign leases."""
        return self._shared.owner

    @owner.setter
    def owner(self, owner: str) -> None:
        self._shared.owner = owner

    @property
    def stats(self) -> EngineStats:
        return self._calls.measures.stats

    @property
    def last_progress(self) -> float:
        """When housekeeping or a tick last got through (the watchdog's heartbeat)."""
        return self._supervisor.last_progress

    @property
    def tick_observer(self) -> Callable[[float, float], None] | None:
        """Called with (lag, duration) of every tick; benchmarks collect the samples."""
        return self._tick.observer

    @tick_observer.setter
    def tick_observer(self, observer: Callable[[float, float], None] | None) -> None:
        self._tick.observer = observer

    @property
    def running_campaigns(self) -> int:
        return len(self._running)

    @property
    def active_attempts(self) -> int:
        return len(self._calls.view)

    @property
    def max_dialing(self) -> int:
        """The most attempts that were dialing at one moment."""
        return self._calls.view.max_dialing

    # -- lifecycle ---------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the backends, reconcile, pick up campaigns, then run until cancelled."""
        shared = self._shared
        metrics.declare_backends(
            telephony=[shared.telephony.name, shared.flows.name],
            queue_adapter=shared.queue.name,
        )
        send, receive = anyio.create_memory_object_stream[TelephonyEvent](EVENT_BUFFER)
        async with anyio.create_task_group() as task_group:
            shared.task_group = task_group
            async with send:
                await task_group.start(shared.telephony.run, send.clone())
                await task_group.start(shared.flows.run, send.clone())
            for _ in range(EVENT_WORKERS):
                task_group.start_soon(self._calls.handle_events, receive.clone())
            await receive.aclose()
            await self._ownership.reconcile_at_start()
            for campaign in await shared.store.campaigns_with_status(
                [CampaignStatus.RUN, CampaignStatus.STOPPING]
            ):
                self._supervisor.ensure_loop(campaign.id, spread=True)
            task_group.start_soon(self._supervisor.housekeeping)
            log.info("engine started", campaigns=len(self._running))
            task_status.started()

    def reconfigure(
        self,
        config: EngineConfig,
        calling_rules: CallingRulesOf | None = None,
        abandonment: AbandonmentOf | None = None,
        *,
        ceiling: Ceiling | None = None,
        quotas_of: QuotasOf | None = None,
    ) -> None:
        """Apply a reloaded ``[engine]`` section (and calling rules, abandonment cap, ceiling
        of calls and quotas); every sleeping loop ticks at once, so a new tick interval
        applies now."""
        self._shared.config = config
        self._shared.use_rules(calling_rules, abandonment)
        if ceiling is not None and quotas_of is not None:
            self._sharing.reconfigure(ceiling, quotas_of)
        self._supervisor.reconfigured()

    def wake(self, campaign_id: str) -> None:
        """Tick the campaign now (starting its loop if it has none)."""
        self._supervisor.wake(campaign_id)

    def _refill(self, campaign_id: str) -> bool:
        return self._tick.refill(campaign_id)

    def note_stop(self, campaign_id: str) -> None:
        """A stop was stored just now: the grace of answered calls counts from here."""
        self._supervisor.note_stop(campaign_id)

    async def drain(self) -> None:
        """Shutdown: start nothing more, cancel unanswered calls (their tries go back),
        let answered ones go on up to ``stop_grace``, then hang them up; return once
        every call has ended (bounded by ``stop_grace + release_timeout``)."""
        await self._calls.drain()

    def on_state_change(self, listener: Callable[[str], None]) -> None:
        """Have ``listener`` told the id of each campaign whose dialing state changes
        (synchronously, inside the tick: it must only note it)."""
        self._states.on_change = listener

    def insight(self, campaign_id: str) -> CampaignInsight | None:
        """What this instance knows of a campaign it runs; None if it runs it not."""
        loop = self._running.get(campaign_id)
        state = self._states.get(campaign_id)
        pacing = self._allowance.view(campaign_id)
        if (
            loop is None
            or self._leases.fence(campaign_id) is None
            or loop.campaign is None
            or state.state is None
        ):
            return None
        campaign = loop.campaign
        count = self._calls.view.of_campaign(campaign_id)
        running = self._running_actions(campaign_id)
        detail = state.detail
        if running and not detail:
            ranked = sorted(running.items(), key=lambda item: (-item[1], item[0]))
            detail = "flows wait on " + ", ".join(f"{kind} {n}" for kind, n in ranked)
        windows = self._shared.abandonment(campaign.customer_id).windows
        return CampaignInsight(
            campaign_id=campaign_id,
            status=campaign.status.value,
            state=state.state.value,
            detail=detail,
            since=format_time(state.since) if state.since else "",
            instance=public_id(self._shared.owner),
            available_agents=pacing.available_agents if pacing else None,
            dialing=count.dialing,
            talking=count.active - count.dialing,
            service_level=campaign.service_level,
            targets=state.target_counts,
            pacing_mode=campaign.pacing_mode.value,
            abandonment=self._calls.measures.abandonment_counted(campaign_id, windows),
            governor_pressure=pacing.governor_pressure if pacing else 0.0,
            running_actions=running,
            **self._estimates(
                self._calls.measures.view(campaign_id),
                talk_times(self._calls.view, campaign_id, self._shared.clock.monotonic()),
            ),
        )

    def _running_actions(self, campaign_id: str) -> dict[str, int]:
        """What the campaign's running flows execute now, when the flow runner can say
        (``running_actions``, as ``ActionFlowRunner`` has); else nothing."""
        tell = getattr(self._shared.flows, "running_actions", None)
        if tell is None:
            return {}
        ids = {attempt.campaigncall_id for attempt in self._calls.view.of(campaign_id)}
        running: dict[str, int] = tell(ids)
        return running

    @staticmethod
    def _estimates(measures: MeasuresView | None, talking: Sequence[float]) -> dict[str, float]:
        """The model's estimates as /state shows them: its talk time counts the calls
        still running (``talking``), as pacing does."""
        if measures is None:
            return {}
        waits = measures.answer_to_agent_seconds
        measured = {} if waits is None else {"answer_to_agent_seconds": round(waits, 2)}
        estimates = measures.history.estimates(talking)
        if estimates is None:
            return measured
        return {
            **measured,
            "live_rate": round(estimates.live_rate, 4),
            "answer_seconds": round(estimates.answer_seconds, 2),
            "talk_seconds": round(estimates.talk_seconds, 2),
        }
