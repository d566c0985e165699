"""The simulated call centre: the ``sim`` telephony backend and queue adapter.

One ``SimCallCentre`` holds the world they share: agents per queue, live calls, a seeded
``random.Random`` for every draw, and counters for the demo. Times are simulated seconds;
each one lasts ``1 / config.speed`` seconds of the injected clock, so under a fake clock a
whole campaign runs at once.

What happens to a call is drawn when it is originated, with the campaign's outcome
parameters (``config.campaigns[campaign_id]``, else ``config.outcomes``):

- failure: a quarter of them are refused at once (``OriginationError``, no call placed);
  the others end ``failed`` within a second;
- busy: ``busy`` after a short ring (1-4 s);
- no answer: rings until the engine cancels it, or ends ``no_answer`` after 120 s;
- machine: ``machine`` after the ring time, never answered;
- live: ``Answered`` after the ring time; without a queue (nil id) the callee listens
  for the talk time and the call ends ``normal``. With a queue it is connected to a
  random free agent, or waits for one up to ``abandon_after`` seconds and is then
  ``abandoned``. A connected call ends ``normal`` after the talk time and its agent
  wraps up (``wrap_up``) before taking the next call (the queue adapter reports the
  wrap-ups: ``SimQueue.wrap_ups``). When an agent takes a call the
  engine is told how long the caller waited (``AgentConnected``): the abandonment
  measurement reads it (behaviour.md §10).

A call with actions runs them on answer, through the same interpreter as a real call
(``dialerd.core.flow``): ``talk`` and ``play`` take simulated time (the text's length at
``talk_chars_per_second``; a few seconds per media URL), and the callee hangs up during
one with the probability ``hangup_during_prompt``; at a ``digits_receive`` the callee
presses a key drawn from ``config.digits`` (or nothing, and the wait runs out); ``amd``
says ``machine`` for a machine (whose call is then answered, so the flow can decide)
and ``human`` otherwise; ``queue_join`` is the queue described above, its wait counted
from the answer; when the flow ends the call is hung up (behaviour.md §8);
``webhook_send``, ``email_send`` and ``dnc_add`` are real, through ``ActionServices``.
Without actions a call joins the queue (or, without one, listens) exactly as before: a
seeded run draws the same numbers.

Occupancy is integrated over simulated time: ``busy_agent_seconds`` (talking or wrapping
up) over ``staffed_agent_seconds`` (agents logged in).

Every placed call sends exactly one ``Ended`` while the backend runs; a second
origination with the same campaigncall id is ignored. If ``ledger_path`` is given, each
placed call appends one JSON line to it (flushed at once). The ledger is never
read back: a restarted process does not remember earlier ids, so a duplicate origination
across a restart shows as a second line (the evidence a crash test looks for).
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import anyio
import anyio.lowlevel
import msgspec
import structlog
from anyio.abc import ObjectSendStream, TaskGroup, TaskStatus

from dialerd import metrics
from dialerd.adapters.flow_runner import count_chosen, run_side_effect
from dialerd.config import Range, SimConfig, SimOutcomes
from dialerd.core import flow
from dialerd.core.actions import (
    ActionsInvalid,
    DigitsReceiveOption,
    DigitsSendOption,
    PlayOption,
    Program,
    SleepOption,
    Step,
    TalkOption,
    compile_actions,
)
from dialerd.model import NIL_UUID, format_time
from dialerd.ports import (
    WRAP_UPS_KEPT,
    ActionServices,
    AgentConnected,
    Answered,
    Clock,
    Ended,
    HangupReason,
    Origination,
    OriginationError,
    TelephonyEvent,
)

log = structlog.get_logger("dialerd.sim")
# Its level, read before a line per call is made (structlog's logger is not cached).
_LEVELS = logging.getLogger("dialerd.sim")

BUSY_RING: Final = Range(min=1.0, max=4.0)
FAILURE_DELAY: Final = Range(min=0.1, max=1.0)
# Share of failures refused by the backend at once instead of ending ``failed``.
REFUSED_SHARE: Final = 0.25
# A call nobody answers ends by itself after this many seconds if no one cancels it.
NO_ANSWER_CAP: Final = 120.0
# Simulated seconds of a call's steps: a media URL played, a beep, an answering
# machine detection, a key pressed after a digits_receive starts.
PLAY_SECONDS: Final = 4.0
BEEP_SECONDS: Final = 0.5
AMD_TIME: Final = Range(min=1.5, max=3.5)
PRESS_TIME: Final = Range(min=1.0, max=4.0)
# How a flow's end becomes the call's (any other end: the call is hung up, ``normal``).
CALL_ENDS: Final = {
    flow.FlowEnd.MACHINE: HangupReason.MACHINE,
    flow.FlowEnd.FAILED: HangupReason.FAILED,
    flow.FlowEnd.BUDGET: HangupReason.FAILED,
}

CallKind = Literal["call", "flow"]


class SimSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of the simulated world since it was made, and its state right now.

    ``agents_busy`` counts agents talking or in wrap-up. ``chosen`` counts the branches
    the callees' digits took (by ``branch`` key, ``other`` for none of them), ``opt_outs``
    the numbers ``dnc_add`` put on a do-not-call list, ``prompt_hangups`` the callees who
    hung up during a prompt.
    """

    originated: int
    refused: int
    answered: int
    connected: int
    abandoned: int
    machine: int
    busy: int
    no_answer: int
    failed: int
    cancelled: int
    normal: int
    agents_total: int
    agents_busy: int
    live_calls: int
    # Agent-seconds (simulated) logged in, and talking or wrapping up, since the start.
    staffed_agent_seconds: float = 0.0
    busy_agent_seconds: float = 0.0
    chosen: dict[str, int] = msgspec.field(default_factory=dict)
    opt_outs: int = 0
    prompt_hangups: int = 0


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the ledger: a call the simulated backend really placed."""

    tm: str
    kind: CallKind
    campaigncall_id: str
    campaign_id: str
    customer_id: str
    reference_id: str
    queue_id: str
    destination: str


class AgentStatus(enum.StrEnum):
    AVAILABLE = "available"
    BUSY = "busy"  # talking; calls go straight through, there is no ringing an agent
    WRAP_UP = "wrap_up"


class _Fate(enum.Enum):
    REFUSED = enum.auto()
    FAILED = enum.auto()
    BUSY = enum.auto()
    NO_ANSWER = enum.auto()
    MACHINE = enum.auto()
    LIVE = enum.auto()


class _Phase(enum.Enum):
    RINGING = enum.auto()
    ANSWERED = enum.auto()
    ENDED = enum.auto()


@dataclass(eq=False)
class _Agent:
    id: str
    status: AgentStatus = AgentStatus.AVAILABLE
    retiring: bool = False


@dataclass(eq=False)
class _Call:
    origination: Origination
    fate: _Fate
    ring: float
    talk: float
    phase: _Phase = _Phase.RINGING
    forced: HangupReason | None = None
    # The running phase's scope (None before the first): a forced end cancels it.
    scope: anyio.CancelScope | None = None
    agent: _Agent | None = None
    # Set when an agent takes the call; made only once the call waits in a queue.
    agent_found: anyio.Event | None = None
    answered_at: float = 0.0
    program: Program | None = None


@dataclass(eq=False)
class _AgentPool:
    queue_id: str
    agents: list[_Agent] = field(default_factory=list)
    waiting: deque[_Call] = field(default_factory=deque)
    hired: int = 0
    # The wrap-ups of the latest calls (what ``SimQueue.wrap_ups`` reports).
    wrap_ups: deque[float] = field(default_factory=lambda: deque(maxlen=WRAP_UPS_KEPT))

    def free(self) -> list[_Agent]:
        return [agent for agent in self.agents if agent.status == AgentStatus.AVAILABLE]


@dataclass
class _Counters:
    originated: int = 0
    refused: int = 0
    answered: int = 0
    connected: int = 0
    ended: dict[HangupReason, int] = field(default_factory=dict)
    chosen: dict[str, int] = field(default_factory=dict)
    opt_outs: int = 0
    prompt_hangups: int = 0


def _uniform(rng: random.Random, span: Range) -> float:
    return rng.uniform(span.min, span.max)


def _queue_of(origination: Origination) -> str:
    """The simulated queue an answered call joins: the one the engine reads agents of
    (the registry's name), "" for an agentless campaign."""
    if origination.queue_id in ("", NIL_UUID):
        return ""
    return origination.queue_name or origination.queue_id


def _detects_machines(program: Program | None) -> bool:
    """Whether the call's actions contain an ``amd`` step (a machine is then answered)."""
    return program is not None and any(step.type == "amd" for step in program.steps)


def _delay(rng: random.Random, span: Range) -> float:
    """A draw from ``span``, or 0 without drawing when it is empty (so a seeded run
    without delays keeps its random sequence)."""
    return 0.0 if span.max <= 0 else _uniform(rng, span)


class SimCallCentre:
    """The shared simulated world behind ``.telephony`` and ``.queue``."""

    def __init__(
        self,
        config: SimConfig,
        clock: Clock,
        *,
        ledger_path: Path | None = None,
        services: ActionServices | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.ledger_path = ledger_path
        # What a call's webhook_send, email_send and dnc_add do (None: they fail).
        self.services = services
        self._programs: dict[bytes, Program] = {}
        self.rng = random.Random(config.seed)
        # The keys callees press, drawn apart from everything else: the n-th key pressed
        # in a run is the same whatever order the calls' timers fire in.
        self.keys = random.Random(f"{config.seed}:keys")
        self.counters = _Counters()
        self._pools: dict[str, _AgentPool] = {}
        self._placed: set[str] = set()
        # Occupancy integrals (simulated seconds) and the moment they were brought up to.
        self._staffed_seconds = 0.0
        self._busy_seconds = 0.0
        self._accounted_at = clock.monotonic()
        self.telephony = SimTelephony(self)
        self.queue = SimQueue(self)

    def reconfigure(self, config: SimConfig) -> None:
        """Apply new rates, speed and agent counts; the random sequence goes on."""
        self.account()
        self.config = config
        for pool in self._pools.values():
            self._staff(pool)

    def snapshot(self) -> SimSnapshot:
        """The counters and the agents' state, for the demo and tests."""
        self.account()
        agents = [agent for pool in self._pools.values() for agent in pool.agents]
        ended = self.counters.ended
        return SimSnapshot(
            originated=self.counters.originated,
            refused=self.counters.refused,
            answered=self.counters.answered,
            connected=self.counters.connected,
            abandoned=ended.get(HangupReason.ABANDONED, 0),
            machine=ended.get(HangupReason.MACHINE, 0),
            busy=ended.get(HangupReason.BUSY, 0),
            no_answer=ended.get(HangupReason.NO_ANSWER, 0),
            failed=ended.get(HangupReason.FAILED, 0),
            cancelled=ended.get(HangupReason.CANCELLED, 0),
            normal=ended.get(HangupReason.NORMAL, 0),
            agents_total=sum(not agent.retiring for agent in agents),
            agents_busy=sum(agent.status != AgentStatus.AVAILABLE for agent in agents),
            live_calls=len(self.telephony.calls),
            staffed_agent_seconds=self._staffed_seconds,
            busy_agent_seconds=self._busy_seconds,
            chosen=dict(self.counters.chosen),
            opt_outs=self.counters.opt_outs,
            prompt_hangups=self.counters.prompt_hangups,
        )

    def account(self) -> None:
        """Bring the occupancy integrals up to now; called before agents change state."""
        now = self.clock.monotonic()
        elapsed = (now - self._accounted_at) * self.config.speed
        self._accounted_at = now
        if elapsed <= 0:
            return
        for pool in self._pools.values():
            busy = sum(agent.status != AgentStatus.AVAILABLE for agent in pool.agents)
            self._busy_seconds += busy * elapsed
            self._staffed_seconds += len(pool.agents) * elapsed

    # -- shared by the backends --------------------------------------------------
    def program(self, origination: Origination) -> Program | None:
        """The call's compiled actions (None without actions); raise
        ``OriginationError`` for actions that do not compile."""
        if not origination.actions:
            return None
        key = msgspec.json.encode(origination.actions)
        program = self._programs.get(key)
        if program is None:
            try:
                program = compile_actions(origination.actions)
            except ActionsInvalid as exc:
                raise OriginationError(f"sim: the campaign's actions are invalid: {exc}") from None
            if len(self._programs) >= 256:
                self._programs.clear()
            self._programs[key] = program
        return program

    def outcomes_for(self, campaign_id: str) -> SimOutcomes:
        """The campaign's own outcome parameters, else the default ones."""
        return self.config.campaigns.get(campaign_id, self.config.outcomes)

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass."""
        await self.clock.sleep_until(self.clock.monotonic() + seconds / self.config.speed)

    def pool(self, queue_id: str) -> _AgentPool:
        """The agents of a queue; every queue id exists, staffed on first use."""
        pool = self._pools.get(queue_id)
        if pool is None:
            pool = self._pools[queue_id] = _AgentPool(queue_id)
            self._staff(pool)
        return pool

    def placed_before(self, origination: Origination, kind: CallKind) -> bool:
        """True (and a warning) if a call was placed for this campaigncall id."""
        campaigncall_id = origination.campaigncall_id
        if campaigncall_id not in self._placed:
            return False
        log.warning("duplicate origination ignored", campaigncall_id=campaigncall_id, kind=kind)
        return True

    def record(self, origination: Origination, kind: CallKind) -> None:
        """Remember a placed call, in the ledger too if there is one."""
        if self.ledger_path is not None:
            self._write_ledger(origination, kind)
        self._placed.add(origination.campaigncall_id)

    def dispatch(self, pool: _AgentPool) -> None:
        """Hand free agents to the calls waiting longest in the queue."""
        while pool.waiting and (free := pool.free()):
            call = pool.waiting.popleft()
            self.connect(call, self.rng.choice(free))

    def connect(self, call: _Call, agent: _Agent) -> None:
        """Put an answered call through to an agent."""
        self.account()
        agent.status = AgentStatus.BUSY
        call.agent = agent
        if call.agent_found is not None:
            call.agent_found.set()
        self.counters.connected += 1

    def _staff(self, pool: _AgentPool) -> None:
        self.account()
        wanted = self.config.agents.get(pool.queue_id, self.config.default_agents)
        active = [agent for agent in pool.agents if not agent.retiring]
        # Free agents leave first; busy ones finish their call and wrap-up before leaving.
        leaving = sorted(active, key=lambda agent: agent.status != AgentStatus.AVAILABLE)
        for agent in leaving[: max(0, len(active) - wanted)]:
            agent.retiring = True
        pool.agents = [
            agent
            for agent in pool.agents
            if not (agent.retiring and agent.status == AgentStatus.AVAILABLE)
        ]
        for _ in range(wanted - len(active)):
            pool.hired += 1
            pool.agents.append(_Agent(f"{pool.queue_id}/agent-{pool.hired}"))
        self.dispatch(pool)

    def _write_ledger(self, origination: Origination, kind: CallKind) -> None:
        assert self.ledger_path is not None
        entry = LedgerEntry(
            tm=format_time(self.clock.now()),
            kind=kind,
            campaigncall_id=origination.campaigncall_id,
            campaign_id=origination.campaign_id,
            customer_id=origination.customer_id,
            reference_id=origination.reference_id,
            queue_id=origination.queue_id,
            destination=origination.destination.target,
        )
        try:
            with self.ledger_path.open("ab") as ledger:
                ledger.write(msgspec.json.encode(entry) + b"\n")
                ledger.flush()
        except OSError as exc:
            raise OriginationError(
                f"sim ledger {self.ledger_path}: cannot write: {exc.strerror}"
            ) from None


class _SimBackend:
    """The simulated backend's calls: their tasks, events and forced ends."""

    name = "sim"
    kind: CallKind

    def __init__(self, world: SimCallCentre) -> None:
        self.world = world
        self.calls: dict[str, _Call] = {}
        self._task_group: TaskGroup | None = None
        self._events: ObjectSendStream[TelephonyEvent] | None = None

    async def run(
        self,
        events: ObjectSendStream[TelephonyEvent],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the calls' lives until cancelled, sending their events to ``events``."""
        async with events, anyio.create_task_group() as task_group:
            self._task_group, self._events = task_group, events
            if self.kind == "call":
                # The simulated trunk is there while it runs: as ARI's event stream is.
                metrics.telephony_connected(self.name, up=True)
            try:
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._task_group = self._events = None
                self.calls.clear()

    async def live_calls(self) -> set[str]:
        """Ids of the campaigncalls whose call or flow has not ended yet."""
        return set(self.calls)

    def unavailable_reason(self) -> str | None:
        """The simulated centre is always there."""
        return None

    def _place(
        self,
        origination: Origination,
        fate: _Fate,
        ring: float,
        talk: float,
        program: Program | None = None,
    ) -> None:
        if self._task_group is None:
            raise OriginationError(f"sim {self.kind} backend is not running")
        call = _Call(origination, fate, ring, talk, program=program)
        self.calls[origination.campaigncall_id] = call
        self._task_group.start_soon(
            self._life, call, name=f"sim {self.kind} {origination.campaigncall_id}"
        )

    def _force_end(self, campaigncall_id: str, reason: HangupReason, phase: _Phase) -> None:
        call = self.calls.get(campaigncall_id)
        if call is not None and call.phase == phase and call.forced is None:
            call.forced = reason
            if call.scope is not None:
                call.scope.cancel()

    async def _phase(
        self, call: _Call, body: Callable[[_Call], Awaitable[HangupReason | None]]
    ) -> HangupReason | None:
        """Run one phase of the call; a forced end (cancel, hangup) interrupts it."""
        call.scope = anyio.CancelScope()
        if call.forced is not None:
            call.scope.cancel()
        reason: HangupReason | None = None
        with call.scope:
            reason = await body(call)
        # A forced end wins even when the phase finished in the same instant.
        return call.forced if call.forced is not None else reason

    async def _life(self, call: _Call) -> None:
        raise NotImplementedError

    async def _send(self, event: TelephonyEvent) -> None:
        assert self._events is not None
        await self._events.send(event)

    async def _finish(self, call: _Call, reason: HangupReason) -> None:
        call.phase = _Phase.ENDED
        campaigncall_id = call.origination.campaigncall_id
        if _LEVELS.isEnabledFor(logging.DEBUG):
            log.debug("sim call ended", campaigncall_id=campaigncall_id, reason=reason.value)
        await self._send(Ended(campaigncall_id, reason))
        self.calls.pop(campaigncall_id, None)


class SimTelephony(_SimBackend):
    """Telephony backend ``sim``: places simulated calls (see the module docstring)."""

    kind: CallKind = "call"
    # It sends ``AgentConnected``: the engine measures (and governs) abandonment.
    reports_agent_connect = True

    @property
    def originates_at_once(self) -> bool:
        """``originate`` waits for nothing unless placing a call takes time."""
        return self.world.config.place_time.max <= 0

    async def originate(self, origination: Origination) -> None:
        """Place the call, unless one was placed for this campaigncall id already."""
        await anyio.lowlevel.checkpoint()
        if self._task_group is None:
            raise OriginationError("sim telephony backend is not running")
        world = self.world
        if world.placed_before(origination, self.kind):
            return
        program = world.program(origination)
        placing = _delay(world.rng, world.config.place_time)
        if placing > 0:
            await world.sleep(placing)
            if world.placed_before(origination, self.kind):
                return
        outcomes = world.outcomes_for(origination.campaign_id)
        fate = self._draw_fate(outcomes)
        if fate is _Fate.REFUSED:
            world.counters.refused += 1
            raise OriginationError("sim trunk refused the call")
        if fate is _Fate.BUSY:
            ring = _uniform(world.rng, BUSY_RING)
        elif fate is _Fate.FAILED:
            ring = _uniform(world.rng, FAILURE_DELAY)
        elif fate is _Fate.NO_ANSWER:
            ring = NO_ANSWER_CAP
        else:
            ring = _uniform(world.rng, outcomes.ring_time)
        talk = _uniform(world.rng, outcomes.talk_time)
        world.record(origination, self.kind)
        world.counters.originated += 1
        self._place(origination, fate, ring, talk, program)

    async def cancel(self, campaigncall_id: str) -> None:
        """End an unanswered call as ``cancelled``; nothing if it was answered or ended."""
        await anyio.lowlevel.checkpoint()
        self._after_release_time(campaigncall_id, hangup=False)

    async def hangup(self, campaigncall_id: str) -> None:
        """End an answered call as ``normal`` (a still ringing one as ``cancelled``)."""
        await anyio.lowlevel.checkpoint()
        self._after_release_time(campaigncall_id, hangup=True)

    def _after_release_time(self, campaigncall_id: str, *, hangup: bool) -> None:
        """The trunk acts on the request ``release_time`` later (at once if zero)."""
        delay = _delay(self.world.rng, self.world.config.release_time)

        def end_now() -> None:
            if hangup:
                self._force_end(campaigncall_id, HangupReason.NORMAL, _Phase.ANSWERED)
            self._force_end(campaigncall_id, HangupReason.CANCELLED, _Phase.RINGING)

        async def release() -> None:
            await self.world.sleep(delay)
            end_now()

        if delay <= 0 or self._task_group is None:
            end_now()
            return
        self._task_group.start_soon(release, name=f"sim release {campaigncall_id}")

    def _draw_fate(self, outcomes: SimOutcomes) -> _Fate:
        rng = self.world.rng
        draw = rng.random()
        for fate, share in (
            (_Fate.FAILED, outcomes.failure),
            (_Fate.BUSY, outcomes.busy),
            (_Fate.NO_ANSWER, outcomes.no_answer),
            (_Fate.MACHINE, outcomes.machine),
        ):
            if draw < share:
                if fate is _Fate.FAILED and rng.random() < REFUSED_SHARE:
                    return _Fate.REFUSED
                return fate
            draw -= share
        return _Fate.LIVE

    async def _life(self, call: _Call) -> None:
        reason = await self._phase(call, self._ring)
        if reason is None:
            call.phase = _Phase.ANSWERED
            self.world.counters.answered += 1
            # Sent outside the call's cancel scope: a hangup now must not lose the answer.
            await self._send(Answered(call.origination.campaigncall_id))
            reason = await self._phase(call, self._answered)
        reason = reason or HangupReason.NORMAL
        self._release(call)
        ended = self.world.counters.ended
        ended[reason] = ended.get(reason, 0) + 1
        await self._finish(call, reason)

    async def _ring(self, call: _Call) -> HangupReason | None:
        await self.world.sleep(call.ring)
        if call.fate is _Fate.MACHINE and _detects_machines(call.program):
            return None  # answered: the flow's amd finds the machine
        return {
            _Fate.FAILED: HangupReason.FAILED,
            _Fate.BUSY: HangupReason.BUSY,
            _Fate.NO_ANSWER: HangupReason.NO_ANSWER,
            _Fate.MACHINE: HangupReason.MACHINE,
        }.get(call.fate)

    async def _answered(self, call: _Call) -> HangupReason:
        if call.program is not None and not call.program.empty:
            return await self._run_actions(call, call.program)
        return await self._join_queue(call)

    async def _join_queue(self, call: _Call, *, after_actions: bool = False) -> HangupReason:
        """The call joins its campaign's queue (without one, the callee just listens);
        the agent's wait is counted from the answer."""
        queue = _queue_of(call.origination)
        if queue:
            world = self.world
            pool = world.pool(queue)
            free = pool.free()
            if not after_actions:
                call.answered_at = world.clock.monotonic()
            if free and not pool.waiting:
                world.connect(call, world.rng.choice(free))
            else:
                call.agent_found = anyio.Event()
                pool.waiting.append(call)
                await self._wait_for_agent(call, world.config.abandon_after)
            if call.agent is None:
                return HangupReason.ABANDONED
            wait = (world.clock.monotonic() - call.answered_at) * world.config.speed
            metrics.answer_to_agent(wait)
            await self._send(AgentConnected(call.origination.campaigncall_id, wait))
        await self.world.sleep(call.talk)
        return HangupReason.NORMAL

    async def _run_actions(self, call: _Call, program: Program) -> HangupReason:
        """Run the call's actions through the interpreter (module docstring)."""
        world = self.world
        origination = call.origination
        campaign_id = origination.campaign_id
        call.answered_at = world.clock.monotonic()
        state, instruction = flow.start(program, origination.variables)
        while isinstance(instruction, flow.Execute):
            self._chosen(campaign_id, instruction.chosen)
            step = instruction.step
            if step.type == "queue_join":
                if not _queue_of(origination):
                    outcome: flow.Outcome = flow.StepFailed("queue_join: the campaign has no queue")
                else:
                    reason = await self._join_queue(call, after_actions=True)
                    metrics.action_ran(campaign_id, step.type, "done")
                    return reason
            else:
                outcome = await self._sim_step(call, step, instruction.variables)
            metrics.action_ran(campaign_id, step.type, flow.outcome_label(outcome))
            state, instruction = flow.advance(program, state, outcome)
        self._chosen(campaign_id, instruction.chosen)
        if instruction.end is flow.FlowEnd.COMPLETED and _queue_of(origination):
            # Actions that run off their end join the campaign's queue (VoIPbin appends a
            # queue_join to a campaign's actions when it has a queue).
            reason = await self._join_queue(call, after_actions=True)
            metrics.action_ran(campaign_id, "queue_join", "done")
            return reason
        return CALL_ENDS.get(instruction.end, HangupReason.NORMAL)

    def _chosen(self, campaign_id: str, chosen: tuple[str, ...]) -> None:
        count_chosen(campaign_id, chosen)
        counts = self.world.counters.chosen
        for value in chosen:
            counts[value] = counts.get(value, 0) + 1

    async def _sim_step(self, call: _Call, step: Step, variables: dict[str, str]) -> flow.Outcome:
        """One step on the simulated line; real side effects through the services."""
        world = self.world
        option = step.option
        if world.services is not None:
            done = await run_side_effect(step, call.origination, world.services, variables)
            if done is not None:
                if step.type == "dnc_add" and isinstance(done, flow.StepDone):
                    world.counters.opt_outs += 1
                return done
        elif step.type in ("webhook_send", "email_send", "dnc_add", "message_send"):
            return flow.StepFailed(f"{step.type}: the simulated centre has no action services")
        if isinstance(option, TalkOption):
            seconds = len(option.text) / world.config.talk_chars_per_second
            if option.digits_handle == "next" and world.config.digits:
                # A key pressed during the prompt stops it.
                return await self._press(seconds, during_prompt=True)
            return await self._prompt(seconds)
        if isinstance(option, PlayOption):
            return await self._prompt(PLAY_SECONDS * len(option.stream_urls))
        if isinstance(option, SleepOption):
            await world.sleep(option.duration / 1000)
        elif isinstance(option, DigitsSendOption):
            await world.sleep(len(option.digits) * (option.duration + option.interval) / 1000)
        elif isinstance(option, DigitsReceiveOption):
            return await self._press(option.duration / 1000)
        elif step.type == "beep":
            await world.sleep(BEEP_SECONDS)
        elif step.type == "amd":
            await world.sleep(_uniform(world.rng, AMD_TIME))
            return flow.AmdDetected("machine" if call.fate is _Fate.MACHINE else "human")
        elif step.type == "connect":
            await world.sleep(call.talk)
        return flow.StepDone()

    async def _prompt(self, seconds: float) -> flow.Outcome:
        """A prompt plays for ``seconds``; the callee may hang up during it."""
        world = self.world
        if (
            world.config.hangup_during_prompt
            and world.rng.random() < world.config.hangup_during_prompt
        ):
            await world.sleep(seconds * world.rng.random())
            world.counters.prompt_hangups += 1
            return flow.CalleeHungUp()
        await world.sleep(seconds)
        return flow.StepDone()

    async def _press(self, limit: float, *, during_prompt: bool = False) -> flow.Outcome:
        """The callee presses one key drawn from ``config.digits`` within ``limit``
        seconds, or none: the wait runs out (a prompt then ends normally)."""
        world = self.world
        draw = world.keys.random()
        for key, share in world.config.digits.items():
            if draw < share:
                await world.sleep(min(limit, _uniform(world.rng, PRESS_TIME)))
                return flow.DigitsReceived(key)
            draw -= share
        await world.sleep(limit)
        return flow.StepDone() if during_prompt else flow.DigitsReceived("")

    async def _wait_for_agent(self, call: _Call, seconds: float) -> None:
        if seconds <= 0:
            return
        async with anyio.create_task_group() as task_group:

            async def give_up() -> None:
                await self.world.sleep(seconds)
                task_group.cancel_scope.cancel()

            task_group.start_soon(give_up)
            assert call.agent_found is not None
            await call.agent_found.wait()
            task_group.cancel_scope.cancel()

    def _release(self, call: _Call) -> None:
        """Take the call out of its queue; its agent, if any, goes into wrap-up."""
        queue = _queue_of(call.origination)
        if not queue:
            return
        pool = self.world.pool(queue)
        if call in pool.waiting:
            pool.waiting.remove(call)
        agent, call.agent = call.agent, None
        if agent is None:
            return
        agent.status = AgentStatus.WRAP_UP
        if self._task_group is not None:
            self._task_group.start_soon(self._wrap_up, agent, pool, name=f"sim {agent.id}")

    async def _wrap_up(self, agent: _Agent, pool: _AgentPool) -> None:
        world = self.world
        seconds = _uniform(world.rng, world.config.wrap_up)
        pool.wrap_ups.append(seconds)
        await world.sleep(seconds)
        world.account()
        agent.status = AgentStatus.AVAILABLE
        if agent.retiring:
            pool.agents.remove(agent)
        world.dispatch(pool)


class SimQueue:
    """Queue adapter ``sim``: the simulated agents of a queue who are free right now."""

    name = "sim"

    def __init__(self, world: SimCallCentre) -> None:
        self.world = world

    async def available_agents(self, queue_name: str) -> int:
        """Agents of the queue neither talking nor in wrap-up."""
        await anyio.lowlevel.checkpoint()
        pool = self.world.pool(queue_name)
        metrics.queue_agents(queue_name, (agent.status.value for agent in pool.agents))
        return len(pool.free())

    def wrap_ups(self, queue_name: str) -> Sequence[float]:
        """The wrap-ups the queue's agents drew after their latest calls (reported as an
        agent starts one: app_queue's wrap-up is known then too)."""
        return tuple(self.world.pool(queue_name).wrap_ups)

    async def has_queue(self, queue_name: str) -> bool:
        """The simulated centre staffs every queue it is asked about."""
        await anyio.lowlevel.checkpoint()
        return True
