"""The flow runner: a ``flow`` campaign's actions, run per target without a call.

Each target's attempt runs the interpreter (``dialerd.core.flow``) with real executors:
``webhook_send``, ``email_send`` and ``dnc_add`` through ``ActionServices``, ``sleep`` on
the clock; ``variable_set``, ``goto``, ``branch``, ``stop`` are the interpreter's own.
``message_send`` has no backend (a campaign naming it cannot run), and a step that
needs a call fails. The attempt ends ``normal`` when the flow completes (or stops),
``failed`` otherwise, so the outplan retries it; the engine's ``flow_timeout`` bounds
it. Nothing is simulated: every outcome is what the executors saw.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

import anyio
import anyio.lowlevel
import msgspec
import structlog
from anyio.abc import ObjectSendStream, TaskGroup, TaskStatus

from dialerd import metrics
from dialerd.core import flow
from dialerd.core.actions import (
    ActionsInvalid,
    DncAddOption,
    EmailSendOption,
    MessageSendOption,
    Program,
    SleepOption,
    Step,
    WebhookSendOption,
    compile_actions,
)
from dialerd.model import AddressType
from dialerd.ports import (
    ActionFailed,
    ActionServices,
    Clock,
    Ended,
    HangupReason,
    Origination,
    OriginationError,
    TelephonyEvent,
)

log = structlog.get_logger("dialerd.flows")

# Campaigncall ids remembered after their flow ended, so a repeated start is ignored.
REMEMBERED: Final = 100_000
# How a flow's end becomes the attempt's.
END_REASONS: Final = {
    flow.FlowEnd.COMPLETED: HangupReason.NORMAL,
    flow.FlowEnd.STOP: HangupReason.NORMAL,
    flow.FlowEnd.HANGUP: HangupReason.NORMAL,
}


def count_chosen(campaign_id: str, chosen: tuple[str, ...]) -> None:
    """Count the branches the interpreter took (``dialerd_campaign_digits_chosen``)."""
    for value in chosen:
        metrics.digits_chosen(campaign_id, value)


def number_of(origination: Origination) -> str:
    """The callee's phone number ("" when the destination is not a number)."""
    destination = origination.destination
    if destination.type in (AddressType.TEL, AddressType.NONE, AddressType.SIP):
        return destination.target
    return ""


def opt_out_detail(origination: Origination, detail: str) -> str:
    """The DNC entry's detail: the option's, else which campaign and call put it there."""
    return detail or (
        f"opted out in campaign {origination.campaign_id}, "
        f"campaigncall {origination.campaigncall_id}"
    )


async def run_side_effect(
    step: Step, origination: Origination, services: ActionServices, variables: dict[str, str]
) -> flow.Outcome | None:
    """Run a step that acts outside the call (webhook, mail, DNC, message); None when
    ``step`` is not one. Shared by the flow runner and the simulated calls."""
    option = step.option
    try:
        if isinstance(option, WebhookSendOption):
            status = await services.webhook_send(option, variables)
            return flow.HttpAnswered(status)
        if isinstance(option, EmailSendOption):
            await services.email_send(with_target_email(option, origination), variables)
            return flow.StepDone()
        if isinstance(option, DncAddOption):
            number = number_of(origination)
            if not number:
                return flow.StepFailed("dnc_add: the destination is not a phone number")
            detail = opt_out_detail(origination, option.detail)
            await services.dnc_add(origination.customer_id, number, detail)
            metrics.opt_out(origination.campaign_id)
            return flow.StepDone()
    except ActionFailed as exc:
        log.info(
            "action failed",
            campaigncall_id=origination.campaigncall_id,
            action=step.type,
            index=step.index,
            reason=str(exc),
        )
        return flow.StepFailed(f"{step.type}: {exc}")
    if isinstance(option, MessageSendOption):
        return flow.StepFailed("message_send: no message backend is configured")
    return None


def with_target_email(option: EmailSendOption, origination: Origination) -> EmailSendOption:
    """``email_send``'s option with the target's address added when it is an email."""
    destination = origination.destination
    if destination.type != AddressType.EMAIL or destination in option.destinations:
        return option
    return msgspec.structs.replace(option, destinations=[destination, *option.destinations])


class ActionFlowRunner:
    """Flow runner ``actions``: the interpreter with real executors (module docstring)."""

    name = "actions"
    # ``start_flow`` only starts the flow's task: it waits for nothing.
    originates_at_once = True

    def __init__(self, services: ActionServices, clock: Clock) -> None:
        self.services = services
        self.clock = clock
        self.flows: dict[str, anyio.CancelScope] = {}
        self._started: OrderedDict[str, None] = OrderedDict()
        self._programs: dict[tuple[object, ...], Program] = {}
        self._task_group: TaskGroup | None = None
        self._events: ObjectSendStream[TelephonyEvent] | None = None
        # What the running flows are doing now, by step type (``/state`` shows it).
        self.doing: dict[str, str] = {}

    async def run(
        self,
        events: ObjectSendStream[TelephonyEvent],
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the flows until cancelled, sending their ends to ``events``."""
        async with events, anyio.create_task_group() as task_group:
            self._task_group, self._events = task_group, events
            try:
                task_status.started()
                await anyio.sleep_forever()
            finally:
                self._task_group = self._events = None
                self.flows.clear()
                self.doing.clear()

    async def start_flow(self, origination: Origination) -> None:
        """Start the flow, unless one was started for this campaigncall id already."""
        await anyio.lowlevel.checkpoint()
        if self._task_group is None:
            raise OriginationError("flow runner is not running")
        campaigncall_id = origination.campaigncall_id
        if campaigncall_id in self._started:
            log.warning("duplicate flow start ignored", campaigncall_id=campaigncall_id)
            return
        self._started[campaigncall_id] = None
        while len(self._started) > REMEMBERED:
            self._started.popitem(last=False)
        scope = self.flows[campaigncall_id] = anyio.CancelScope()
        self._task_group.start_soon(self._life, origination, scope, name=f"flow {campaigncall_id}")

    async def stop_flow(self, campaigncall_id: str) -> None:
        """Stop a running flow; it ends as ``cancelled``."""
        await anyio.lowlevel.checkpoint()
        scope = self.flows.get(campaigncall_id)
        if scope is not None:
            scope.cancel()

    async def live_calls(self) -> set[str]:
        """Ids of the campaigncalls whose flow has not ended yet."""
        return set(self.flows)

    def unavailable_reason(self) -> str | None:
        return None

    def running_actions(self, campaigncall_ids: set[str]) -> dict[str, int]:
        """What the given flows run now, counted by step type (``/state`` shows it)."""
        counts: dict[str, int] = {}
        for campaigncall_id in campaigncall_ids:
            doing = self.doing.get(campaigncall_id)
            if doing:
                counts[doing] = counts.get(doing, 0) + 1
        return counts

    def _program(self, origination: Origination) -> Program:
        key = tuple(msgspec.json.encode(action) for action in origination.actions)
        program = self._programs.get(key)
        if program is None:
            if len(self._programs) > 256:
                self._programs.clear()
            program = self._programs[key] = compile_actions(origination.actions)
        return program

    async def _life(self, origination: Origination, scope: anyio.CancelScope) -> None:
        campaigncall_id = origination.campaigncall_id
        reason = HangupReason.CANCELLED
        with scope:
            reason = await self._execute(origination)
        self.flows.pop(campaigncall_id, None)
        self.doing.pop(campaigncall_id, None)
        if scope.cancelled_caught:
            reason = HangupReason.CANCELLED
        log.debug("flow ended", campaigncall_id=campaigncall_id, reason=reason.value)
        events = self._events
        if events is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await events.send(Ended(campaigncall_id, reason))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                log.warning("flow end not reported: the engine is gone",
                            campaigncall_id=campaigncall_id)  # fmt: skip

    async def _execute(self, origination: Origination) -> HangupReason:
        try:
            program = self._program(origination)
        except ActionsInvalid as exc:
            log.warning("flow actions invalid", campaigncall_id=origination.campaigncall_id,
                        error=str(exc))  # fmt: skip
            return HangupReason.FAILED
        campaign_id = origination.campaign_id
        # A webhook answered other than 2xx fails the attempt (so the outplan retries
        # it) even when, without ``sync``, the flow went on after it.
        refused: list[str] = []
        state, instruction = flow.start(program, origination.variables)
        while isinstance(instruction, flow.Execute):
            count_chosen(campaign_id, instruction.chosen)
            step = instruction.step
            self.doing[origination.campaigncall_id] = step.type
            outcome = await self._step(step, origination, instruction.variables)
            metrics.action_ran(campaign_id, step.type, flow.outcome_label(outcome))
            if isinstance(outcome, flow.HttpAnswered) and not 200 <= outcome.status < 300:
                refused.append(f"webhook_send (action {step.index}): HTTP {outcome.status}")
            state, instruction = flow.advance(program, state, outcome)
        count_chosen(campaign_id, instruction.chosen)
        reason = END_REASONS.get(instruction.end, HangupReason.FAILED)
        if reason is not HangupReason.NORMAL or refused:
            log.info(
                "flow failed",
                campaigncall_id=origination.campaigncall_id,
                end=str(instruction.end),
                detail=instruction.detail or "; ".join(refused),
            )
            return HangupReason.FAILED
        return reason

    async def _step(
        self, step: Step, origination: Origination, variables: dict[str, str]
    ) -> flow.Outcome:
        done = await run_side_effect(step, origination, self.services, variables)
        if done is not None:
            return done
        if isinstance(step.option, SleepOption):
            seconds = step.option.duration / 1000
            await self.clock.sleep_until(self.clock.monotonic() + seconds)
            return flow.StepDone()
        return flow.StepFailed(f"{step.type}: needs a call; a flow campaign has none")
