"""Campaign commands: create, run, stop, edit and delete a campaign, and say what its
scheduler knows of it. The one path by which a campaign's status changes.

The API and the engine both change campaigns; every read-modify-write of a campaign
goes through ``CampaignLocks`` so an edit and a status change never overwrite each
other. The service raises its own refusals (``CampaignRefused``); the API renders them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import anyio
import msgspec
import structlog

from dialerd.core import lifecycle
from dialerd.core.actions import (
    BASE_CAPABILITIES,
    ActionError,
    ActionsInvalid,
    Capability,
    QueueJoinOption,
    call_only,
    compile_actions,
    missing,
)
from dialerd.insight import CampaignInsight
from dialerd.model import (
    NIL_UUID,
    Action,
    Campaign,
    CampaignStatus,
    CampaignType,
    format_time,
    parse_time,
)
from dialerd.ports import Clock, QueueAdapter, QueueUnavailable
from dialerd.queues import QueueRegistry
from dialerd.service.identity import public_id
from dialerd.store import CampaignChanged, Conflict, ControlStore, Fence
from dialerd.store import Quotas as QuotaCounts

log = structlog.get_logger("dialerd.campaigns")

T = TypeVar("T")
# Read-decide-write rounds of one change before a concurrent writer wins (a Conflict).
WRITE_ATTEMPTS = 8
# The fields of a campaign that name another resource of the same customer.
REFERENCES = (
    ("outplan_id", "outplan"),
    ("outdial_id", "outdial"),
    ("next_campaign_id", "campaign"),
)


class CampaignRefused(Exception):
    """A campaign command the service refuses; nothing was changed."""


class CampaignNotFound(CampaignRefused):
    """No such campaign for this customer (or it was deleted)."""

    def __init__(self, campaign_id: str) -> None:
        self.campaign_id = campaign_id
        super().__init__(f"campaign {campaign_id} not found")


class RunRefused(CampaignRefused):
    """The campaign may not run (or a running campaign may not be edited so);
    ``problems`` names each thing missing or invalid."""

    def __init__(self, campaign_id: str, problems: list[str]) -> None:
        self.campaign_id = campaign_id
        self.problems = problems
        super().__init__(f"campaign {campaign_id} cannot run: " + "; ".join(problems))


class CampaignNotStopped(CampaignRefused):
    """Only a stopped campaign may be deleted."""

    def __init__(self, campaign_id: str, status: CampaignStatus) -> None:
        self.campaign_id = campaign_id
        self.status = status
        super().__init__(f"campaign {campaign_id} is {status.value}: stop it before deleting it")


class ReferenceMissing(CampaignRefused):
    """A set outplan, outdial or next campaign id names nothing of this customer."""

    def __init__(self, field: str, kind: str, value: str) -> None:
        self.field = field
        self.kind = kind
        self.value = value
        super().__init__(f"{field}: {kind} {value} not found")


class ActionsRefused(CampaignRefused):
    """Actions that could not run (``errors``: each one's index, field and why)."""

    def __init__(self, errors: list[ActionError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(f"{first.message} - at `{first.field}`")


class CampaignScheduler(Protocol):
    """What the service needs of the scheduler running campaigns in this process."""

    def wake(self, campaign_id: str) -> None:
        """Tick the campaign now (starting its loop if it has none)."""

    def note_stop(self, campaign_id: str) -> None:
        """A stop was stored just now (the grace of answered calls counts from here)."""

    def insight(self, campaign_id: str) -> CampaignInsight | None:
        """What the scheduler knows of a campaign it runs; None if it runs it not."""


class NoScheduler:
    """No scheduler in this process (an API served alone): nothing to wake or ask."""

    def wake(self, campaign_id: str) -> None:
        pass

    def note_stop(self, campaign_id: str) -> None:
        pass

    def insight(self, campaign_id: str) -> CampaignInsight | None:
        return None


class CampaignQuotas(Protocol):
    """The customers' campaign quotas as the API holds them (``api.quotas.QuotaGate``):
    ``room`` refuses a change that would take the customer over one (the refusal, the
    gate's own 409, passes through the service unchanged)."""

    def room(
        self, store: QuotaCounts, customer_id: str, kind: str, adding: int = 1
    ) -> AbstractAsyncContextManager[object]: ...


def _action_problem(error: ActionError) -> str:
    return f"action {error.index}: {error.message} - at `{error.field}`"


class CampaignLocks:
    """One lock per campaign id, for read-modify-write of that campaign (or per any
    key); a key's lock is dropped once nothing holds or waits on it."""

    def __init__(self) -> None:
        self._locks: dict[str, anyio.Lock] = {}
        self._users: dict[str, int] = {}

    def __len__(self) -> int:
        """How many keys have a lock now (held or waited on)."""
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, campaign_id: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(campaign_id, anyio.Lock())
        self._users[campaign_id] = self._users.get(campaign_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[campaign_id] -= 1
            if self._users[campaign_id] == 0:
                del self._users[campaign_id]
                del self._locks[campaign_id]


class CampaignService:
    """Validates and applies campaign commands; tells the scheduler after each."""

    def __init__(
        self,
        store: ControlStore,
        clock: Clock,
        scheduler: CampaignScheduler | None = None,
        *,
        locks: CampaignLocks | None = None,
        queues: QueueRegistry | None = None,
        queue_adapter: QueueAdapter | None = None,
        capabilities: frozenset[Capability] = BASE_CAPABILITIES,
        has_voice: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.scheduler: CampaignScheduler = scheduler or NoScheduler()
        self.locks = locks or CampaignLocks()
        self.queues = queues if queues is not None else QueueRegistry()
        self.queue_adapter = queue_adapter
        # What this host's backends can run (``ActionServices.capabilities()``, set again
        # on reload), and whether text to speech has a voice for a (language, gender):
        # actions needing more are a 400 when stored and make ``run`` a 409.
        self.capabilities = capabilities
        self.has_voice = has_voice

    # -- the API's commands ----------------------------------------------------------
    async def get(self, customer_id: str, campaign_id: str) -> Campaign:
        """The customer's campaign; ``CampaignNotFound`` if there is none."""
        campaign = await self.store.get_campaign(customer_id, campaign_id)
        if campaign is None:
            raise CampaignNotFound(campaign_id)
        return campaign

    async def create(self, campaign: Campaign, quotas: CampaignQuotas) -> Campaign:
        """Store a new campaign whose references and actions are valid, within the
        customer's campaign quota."""
        customer_id = campaign.customer_id
        await self.check_references(
            customer_id, {field: getattr(campaign, field) for field, _ in REFERENCES}
        )
        self.check_actions(campaign.type, campaign.actions)
        async with quotas.room(self.store, customer_id, "campaign"):
            return await self.store.create_campaign(campaign)

    async def command(
        self,
        customer_id: str,
        campaign_id: str,
        changes: dict[str, Any],
        status: CampaignStatus | None,
        quotas: CampaignQuotas,
    ) -> Campaign:
        """A request's edit, run or stop, as one step: references and actions checked
        first, a run counted against the customer's ``running_campaigns`` quota; a
        refused run, or an edit a running campaign could not run with, changes nothing."""
        await self.check_references(customer_id, changes)
        if "actions" in changes or "type" in changes:
            campaign = await self.get(customer_id, campaign_id)
            self.check_actions(
                changes.get("type", campaign.type), changes.get("actions", campaign.actions)
            )
        if status is not CampaignStatus.RUN:
            return await self.change(customer_id, campaign_id, changes, status)
        # A stopped campaign that runs counts against running_campaigns.
        current = await self.get(customer_id, campaign_id)
        adding = 1 if current.status is CampaignStatus.STOP else 0
        async with quotas.room(self.store, customer_id, "run", adding):
            return await self.change(customer_id, campaign_id, changes, status)

    async def delete(self, customer_id: str, campaign_id: str) -> Campaign:
        """Delete a stopped campaign; ``CampaignNotStopped`` otherwise. The store checks
        the status in the same atomic step as it deletes."""
        for _ in range(WRITE_ATTEMPTS):
            try:
                deleted = await self.store.delete_campaign(
                    customer_id, campaign_id, self.clock.now()
                )
            except Conflict:
                # Read after the refusal, only to say why (or see it stopped meanwhile).
                campaign = await self.get(customer_id, campaign_id)
                if campaign.status is CampaignStatus.STOP:
                    continue
                raise CampaignNotStopped(campaign_id, campaign.status) from None
            if deleted is None:
                raise CampaignNotFound(campaign_id)
            return deleted
        raise Conflict(f"campaign {campaign_id} kept changing while being deleted; try again")

    async def state(self, customer_id: str, campaign_id: str) -> CampaignInsight:
        """What the campaign's latest tick found, or why no tick here runs it."""
        campaign = await self.get(customer_id, campaign_id)
        insight = self.scheduler.insight(campaign_id)
        if insight is not None:
            return insight
        # Not run by this instance: stopped, not picked up yet, or another one's.
        owner = await self.store.lease_owner(campaign_id, self.clock.now())
        # The instance's opaque id: its full name holds the host's name.
        instance = public_id(owner) if owner is not None else ""
        if campaign.status is CampaignStatus.STOP:
            state, detail = "stopped", ""
        elif instance:
            state, detail = "run_elsewhere", f"run by instance {instance}; ask its API"
        else:
            state, detail = "starting", "no instance has taken the campaign up yet"
        return CampaignInsight(
            campaign_id=campaign_id,
            status=campaign.status.value,
            state=state,
            detail=detail,
            instance=instance,
            service_level=campaign.service_level,
        )

    async def running_by_queue(self, customer_id: str) -> dict[str, list[str]]:
        """The customer's running (or stopping) campaigns' ids by queue id, sorted."""
        by_queue: dict[str, list[str]] = {}
        running = (CampaignStatus.RUN, CampaignStatus.STOPPING)
        for campaign in await self.store.campaigns_with_status(running):
            if campaign.customer_id == customer_id:
                by_queue.setdefault(campaign.queue_id, []).append(campaign.id)
        return {queue_id: sorted(ids) for queue_id, ids in by_queue.items()}

    async def check_references(self, customer_id: str, changes: dict[str, Any]) -> None:
        """``ReferenceMissing`` when a set outplan, outdial or next campaign id in
        ``changes`` names nothing of this customer."""
        for field, kind in REFERENCES:
            if field in changes:
                await self.check_reference(customer_id, field, kind, changes[field])

    async def check_reference(self, customer_id: str, field: str, kind: str, value: str) -> None:
        """``ReferenceMissing`` when ``value`` is set but names no ``kind`` (outplan,
        outdial or campaign) of this customer."""
        get = {
            "outplan": self.store.get_outplan,
            "outdial": self.store.get_outdial,
            "campaign": self.store.get_campaign,
        }[kind]
        if value != NIL_UUID and await get(customer_id, value) is None:
            raise ReferenceMissing(field, kind, value)

    def check_actions(self, campaign_type: CampaignType, actions: list[Action]) -> None:
        """``ActionsRefused`` naming each action (index and field) that could not run;
        a ``flow`` campaign's actions may not need a call."""
        try:
            compile_actions(actions, has_voice=self.has_voice)
        except ActionsInvalid as exc:
            raise ActionsRefused(exc.errors) from None
        if campaign_type is CampaignType.FLOW and (errors := call_only(actions)):
            raise ActionsRefused(errors)

    # -- the status changes, for the API and the engine -------------------------------
    async def problems(self, campaign: Campaign) -> list[str]:
        """Why ``campaign`` may not run now (behaviour.md §2); empty when it may."""
        customer = campaign.customer_id
        outplan = (
            await self.store.get_outplan(customer, campaign.outplan_id)
            if campaign.outplan_id != NIL_UUID
            else None
        )
        outdial = (
            await self.store.get_outdial(customer, campaign.outdial_id)
            if campaign.outdial_id != NIL_UUID
            else None
        )
        next_campaign = (
            await self.store.get_campaign(customer, campaign.next_campaign_id)
            if campaign.next_campaign_id not in (NIL_UUID, campaign.id)
            else None
        )
        problems = lifecycle.run_problems(campaign, outplan, outdial, next_campaign)
        return problems + await self._queue_problems(campaign) + self._action_problems(campaign)

    def _action_problems(self, campaign: Campaign) -> list[str]:
        """Each action this host cannot run for the campaign (stored before a check, a
        capability not configured, a queue_join without a queue)."""
        try:
            program = compile_actions(campaign.actions, has_voice=self.has_voice)
        except ActionsInvalid as exc:
            return [_action_problem(error) for error in exc.errors]
        errors = missing(program, campaign.type, self.capabilities)
        if campaign.type is CampaignType.FLOW:
            errors = call_only(campaign.actions) + errors
        for step in program.steps:
            option = step.option
            if isinstance(option, QueueJoinOption):
                queue_id = option.queue_id.lower() or campaign.queue_id
                if queue_id == NIL_UUID:
                    message = "queue_join has no queue: set its queue_id or the campaign's"
                elif self.queues.get(campaign.customer_id, queue_id) is None:
                    message = f"queue {queue_id} is not registered for this customer"
                else:
                    continue
                errors.append(ActionError(step.index, f"$.actions[{step.index}].option", message))
        return [_action_problem(error) for error in errors]

    async def _queue_problems(self, campaign: Campaign) -> list[str]:
        if campaign.queue_id == NIL_UUID:
            return []
        queue = self.queues.get(campaign.customer_id, campaign.queue_id)
        if queue is None:
            return [f"queue {campaign.queue_id} is not registered for this customer"]
        if self.queue_adapter is None:
            return []
        adapter = self.queue_adapter.name
        try:
            known = await self.queue_adapter.has_queue(queue.name)
        except QueueUnavailable as exc:
            return [f"queue {campaign.queue_id}: the {adapter} queue adapter cannot tell: {exc}"]
        if not known:
            return [f"queue {campaign.queue_id} ({queue.name}) is unknown to the {adapter} backend"]
        return []

    async def run(self, customer_id: str, campaign_id: str, *, cause: str = "request") -> Campaign:
        """Start the campaign; raise ``RunRefused`` naming what is missing."""
        return await self.change(customer_id, campaign_id, {}, CampaignStatus.RUN, cause=cause)

    async def change(
        self,
        customer_id: str,
        campaign_id: str,
        changes: dict[str, Any],
        status: CampaignStatus | None = None,
        *,
        cause: str = "request",
    ) -> Campaign:
        """Edit fields and/or run or stop the campaign, as one step.

        A campaign that is to run, or runs already, is checked as edited first: when it
        could not run so, ``RunRefused`` names why and nothing is changed.
        """
        if "status" in changes:
            raise ValueError("status changes go through run() and stop()")
        if status is CampaignStatus.STOP:
            # Stopped first, so the edit is not held to what a running campaign needs.
            stopped = await self.stop(customer_id, campaign_id, cause=cause)
            if not changes:
                return stopped
            return await self.change(customer_id, campaign_id, changes, cause=cause)
        run = status is CampaignStatus.RUN

        async def once() -> tuple[Campaign, Campaign, bool]:
            campaign = await self.get(customer_id, campaign_id)
            edited = msgspec.structs.replace(campaign, **changes)
            starting = run and campaign.status != CampaignStatus.RUN
            if starting or (changes and campaign.status == CampaignStatus.RUN):
                problems = await self.problems(edited)
                if problems:
                    raise RunRefused(campaign_id, problems)
            if not changes and not starting:
                return campaign, campaign, False
            written = {**changes, "status": CampaignStatus.RUN} if starting else changes
            why = cause if starting else ""
            return campaign, await self._write(campaign, cause=why, **written), starting

        async with self.locks.hold(campaign_id):
            campaign, updated, starting = await self._until_unchanged(campaign_id, once)
        if not changes and not starting:
            return updated
        if starting:
            log.info(
                "campaign status changed",
                campaign_id=campaign_id,
                status="run",
                previous=campaign.status.value,
                cause=cause,
            )
        self.scheduler.wake(campaign_id)
        return updated

    async def stop(self, customer_id: str, campaign_id: str, *, cause: str = "request") -> Campaign:
        """Stop the campaign: ``stopping`` while attempts are active, else ``stop``.

        ``stopping`` is stored first and the attempts counted after: a claim either came
        before that write (and is counted) or is refused by the store.
        """

        async def once() -> tuple[Campaign, Campaign]:
            campaign = updated = await self.get(customer_id, campaign_id)
            if campaign.status == CampaignStatus.RUN:
                updated = await self._write(updated, cause=cause, status=CampaignStatus.STOPPING)
            active = len(await self.store.active_attempts(campaign_id))
            status = lifecycle.status_after_stop_request(updated.status, active)
            if status != updated.status:
                updated = await self._write(updated, cause=cause, status=status)
            return campaign, updated

        async with self.locks.hold(campaign_id):
            campaign, updated = await self._until_unchanged(campaign_id, once)
        if updated.status == campaign.status:
            return updated
        log.info(
            "campaign status changed",
            campaign_id=campaign_id,
            status=updated.status.value,
            previous=campaign.status.value,
            cause=cause,
        )
        self.scheduler.note_stop(campaign_id)
        return updated

    async def edit(self, customer_id: str, campaign_id: str, **changes: Any) -> Campaign:
        """Change the given fields (not ``status``); they take effect at the next tick.

        A running campaign keeps running only if still valid: else ``RunRefused``."""
        return await self.change(customer_id, campaign_id, changes)

    async def transition(
        self,
        campaign_id: str,
        expected: CampaignStatus,
        status: CampaignStatus,
        *,
        cause: str,
        fence: Fence | None = None,
    ) -> Campaign | None:
        """The engine's own change: ``expected`` -> ``status``, if nobody changed it meanwhile.

        With ``fence``, the write happens only while the engine still holds the lease.
        """

        async def once() -> Campaign | None:
            campaign = await self.store.get_campaign(None, campaign_id)
            if campaign is None or campaign.status != expected:
                return None
            return await self._write(campaign, fence=fence, cause=cause, status=status)

        async with self.locks.hold(campaign_id):
            updated = await self._until_unchanged(campaign_id, once)
        if updated is None:
            return None
        log.info(
            "campaign status changed",
            campaign_id=campaign_id,
            status=status.value,
            previous=expected.value,
            cause=cause,
        )
        return updated

    async def _until_unchanged(self, campaign_id: str, once: Callable[[], Awaitable[T]]) -> T:
        """Run a read-decide-write of the campaign again while another writer (another
        instance, say) changed it between the read and the write."""
        for _ in range(WRITE_ATTEMPTS - 1):
            try:
                return await once()
            except CampaignChanged:
                log.debug("campaign changed meanwhile; read again", campaign_id=campaign_id)
        return await once()

    async def _write(
        self, campaign: Campaign, *, fence: Fence | None = None, cause: str = "", **changes: Any
    ) -> Campaign:
        """Write the changes, only if the campaign is still as it was read."""
        moment = self.clock.now()
        if campaign.tm_update is not None and parse_time(campaign.tm_update) >= moment:
            # The version must move even if this clock is behind the last writer's.
            moment = parse_time(campaign.tm_update) + timedelta(microseconds=1)
        updated = msgspec.structs.replace(campaign, tm_update=format_time(moment), **changes)
        return await self.store.update_campaign(
            updated, fence=fence, if_updated=campaign.tm_update or "", cause=cause
        )
