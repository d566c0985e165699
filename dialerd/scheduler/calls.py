"""The attempts in flight: origination, the dial timeout, release (cancel or hang-up,
repeated until the backend reports the end), and ending them, exactly once, from the
backend's events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ObjectReceiveStream

from dialerd import metrics
from dialerd.attempts import Attempt
from dialerd.core import targets
from dialerd.core.targets import RetryRule
from dialerd.model import Campaigncall, CampaignType
from dialerd.ports import AgentConnected, Answered, HangupReason, Origination, TelephonyEvent
from dialerd.scheduler.measures import Measures
from dialerd.scheduler.shared import STORE_RETRY, SharedState, log
from dialerd.store import LeaseLost, StoreError

# Seconds between repeats of a cancel or hang-up the backend has not confirmed yet:
# from the first value, doubling up to the second.
RELEASE_RETRY_FIRST = 0.5
RELEASE_RETRY_MAX = 8.0
# Seconds between two looks at the calls still up while draining for shutdown.
DRAIN_POLL = 0.1


class Calls:
    """Starts, times, releases and ends the attempts this instance follows."""

    def __init__(self, shared: SharedState, *, wake: Callable[[str], None]) -> None:
        self.shared = shared
        # Ticks the campaign now: an ended attempt frees a line.
        self.wake = wake
        self.measures = Measures(shared)

    def follow(
        self, campaigncall: Campaigncall, *, answered: bool = False, placed: bool = False
    ) -> None:
        """Follow an attempt: its events, its timers and its release are this engine's."""
        campaign_type = (
            CampaignType.FLOW if campaigncall.reference_type == "flow" else CampaignType.CALL
        )
        self.shared.attempts.add(
            Attempt(
                campaigncall_id=campaigncall.id,
                campaign_id=campaigncall.campaign_id,
                campaign_type=campaign_type,
                outplan_id=campaigncall.outplan_id,
                customer_id=campaigncall.customer_id,
                answered=answered,
                placed=placed,
                # Restored attempts (a restart) have no known start: no ring time.
                started_at=None if placed else self.shared.clock.monotonic(),
            )
        )
        self.publish_active(campaigncall.campaign_id)

    async def originate(self, origination: Origination, campaign_type: CampaignType) -> None:
        attempt = self.shared.attempts.get(origination.campaigncall_id)
        if attempt is None:
            return
        if attempt.release_requested:
            # Stopped between the claim and now: nothing was placed, the try goes back.
            await self.reliably(
                origination.campaigncall_id, "stopped before origination", self.finish,
                HangupReason.CANCELLED,
            )  # fmt: skip
            return
        try:
            if campaign_type == CampaignType.FLOW:
                await self.shared.flows.start_flow(origination)
                limit, reason = self.shared.config.flow_timeout, HangupReason.TIMEOUT
            else:
                await self.shared.telephony.originate(origination)
                limit, reason = origination.dial_timeout_ms / 1000, HangupReason.NO_ANSWER
        except Exception as exc:
            # One failed origination ends that attempt only; the campaign backs off.
            backend = (
                self.shared.flows.name
                if campaign_type == CampaignType.FLOW
                else self.shared.telephony.name
            )
            metrics.origination_error(backend)
            log.warning(
                "origination failed",
                campaigncall_id=origination.campaigncall_id,
                error=str(exc) or type(exc).__name__,
            )
            self._back_off(origination.campaign_id)
            await self.reliably(
                origination.campaigncall_id, "origination failed", self.finish, HangupReason.ERROR
            )
            return
        attempt.placed = True
        loop = self.shared.loops.get(origination.campaign_id)
        if loop is not None:
            loop.origination_failures = 0
        if attempt.release_requested:
            # A stop came while the origination was in flight: end the call now.
            await self.release(attempt)
            return
        if limit > 0 and not attempt.answered:
            await self._expire(attempt, limit, reason)

    def _back_off(self, campaign_id: str) -> None:
        loop = self.shared.loops.get(campaign_id)
        if loop is None:
            return
        loop.origination_failures += 1
        delay = min(
            self.shared.config.backoff_initial * 2 ** (loop.origination_failures - 1),
            self.shared.config.backoff_max,
        )
        loop.backoff_until = self.shared.clock.monotonic() + delay

    async def _expire(self, attempt: Attempt, seconds: float, reason: HangupReason) -> None:
        """End the attempt with ``reason`` if it is not answered (or reported) in time."""
        with anyio.CancelScope() as scope:
            attempt.timer = scope
            await self.shared.clock.sleep_until(self.shared.clock.monotonic() + seconds)
        if scope.cancelled_caught or attempt.campaigncall_id not in self.shared.attempts:
            return
        # The call is dropped at once, even while the store is away; the attempt is then
        # recorded with this reason, whichever of the two writes comes first.
        attempt.end_reason = reason
        await self.release(attempt)
        await self.reliably(attempt.campaigncall_id, f"expired {reason}", self.finish, reason)

    async def release(self, attempt: Attempt) -> None:
        """Tell the backend to drop a call the engine has ended itself."""
        try:
            if attempt.campaign_type == CampaignType.FLOW:
                await self.shared.flows.stop_flow(attempt.campaigncall_id)
            elif attempt.answered:
                await self.shared.telephony.hangup(attempt.campaigncall_id)
            else:
                await self.shared.telephony.cancel(attempt.campaigncall_id)
        except Exception as exc:
            log.warning(
                "backend did not release call",
                campaigncall_id=attempt.campaigncall_id,
                error=str(exc) or type(exc).__name__,
            )

    def release_soon(self, attempt: Attempt) -> None:
        """Have the call ended (cancel or hang-up, repeated until its end is seen)."""
        if attempt.release_requested or self.shared.task_group is None:
            return
        attempt.release_requested = True
        self.shared.task_group.start_soon(self._release_until_ended, attempt)

    async def _release_until_ended(self, attempt: Attempt) -> None:
        """Cancel (or hang up) the call again and again, backing off, until its end is
        reported; after ``release_timeout`` end it as lost, so a stop always ends."""
        campaigncall_id = attempt.campaigncall_id
        give_up = self.shared.clock.monotonic() + self.shared.config.release_timeout
        delay = RELEASE_RETRY_FIRST
        while self.shared.attempts.get(campaigncall_id) is attempt:
            if attempt.placed:
                await self.release(attempt)
            now = self.shared.clock.monotonic()
            if now >= give_up:
                log.warning(
                    "backend never confirmed the end of the call; attempt ended as lost",
                    campaigncall_id=campaigncall_id,
                    waited=self.shared.config.release_timeout,
                )
                await self.reliably(
                    campaigncall_id, "release unconfirmed", self.finish, HangupReason.LOST
                )
                return
            await self.shared.clock.sleep_until(min(now + delay, give_up))
            delay = min(delay * 2, RELEASE_RETRY_MAX)

    async def live_calls(self) -> set[str]:
        """The calls and flows the backends have up now (raises TelephonyUnavailable)."""
        return await self.shared.telephony.live_calls() | await self.shared.flows.live_calls()

    async def drain(self) -> None:
        """Shutdown: see ``Engine.drain``."""
        self.shared.draining = True
        dialing = self.shared.attempts.dialing
        log.info(
            "shutdown: ending calls",
            dialing=dialing,
            answered=len(self.shared.attempts) - dialing,
            grace=self.shared.config.stop_grace,
        )
        started = self.shared.clock.monotonic()
        for attempt in self.shared.attempts:
            if not attempt.answered:
                self.release_soon(attempt)
        await self._wait_calls_ended(started + self.shared.config.stop_grace)
        for attempt in self.shared.attempts:
            self.release_soon(attempt)
        await self._wait_calls_ended(
            started
            + self.shared.config.stop_grace
            + self.shared.config.release_timeout
            + RELEASE_RETRY_MAX
        )
        log.info(
            "shutdown: calls ended",
            ended=dict(self.shared.drained),
            still_up=len(self.shared.attempts),
        )

    async def _wait_calls_ended(self, deadline: float) -> None:
        while len(self.shared.attempts) and self.shared.clock.monotonic() < deadline:
            await self.shared.clock.sleep_until(
                min(self.shared.clock.monotonic() + DRAIN_POLL, deadline)
            )

    async def handle_events(self, events: ObjectReceiveStream[TelephonyEvent]) -> None:
        """Apply the backends' events, one at a time, until the stream ends."""
        async with events:
            async for event in events:
                await self._apply(event)

    async def _apply(self, event: TelephonyEvent) -> None:
        """Write one backend event (see ``reliably``)."""
        if isinstance(event, Answered):
            await self.reliably(event.campaigncall_id, "answered", self._answered)
        elif isinstance(event, AgentConnected):
            await self.measures.agent_connected(event)
        else:
            await self.reliably(
                event.campaigncall_id, f"ended {event.reason}", self.finish, event.reason
            )

    async def reliably(
        self,
        campaigncall_id: str,
        what: str,
        write: Callable[..., Awaitable[None]],
        *args: HangupReason,
    ) -> None:
        """Write an attempt's change; while the store is unreachable, keep it and retry.

        A task held here stops taking events, so the event stream's buffer (bounded) holds
        the rest, and backends wait once it is full: no outcome is dropped. Never raises.
        """
        outage_logged = False
        while True:
            try:
                await write(campaigncall_id, *args)
                return
            except LeaseLost:
                return  # another instance owns the campaign now; it reconciles the attempt
            except StoreError as exc:
                if not outage_logged:
                    log.warning(
                        "attempt change kept until the store answers",
                        campaigncall_id=campaigncall_id,
                        change=what,
                        error=str(exc),
                    )
                    outage_logged = True
                await self.shared.clock.sleep_until(self.shared.clock.monotonic() + STORE_RETRY)
            except Exception as exc:
                log.error(
                    "attempt change not applied",
                    campaigncall_id=campaigncall_id,
                    change=what,
                    error=str(exc) or type(exc).__name__,
                    exc_info=True,
                )
                return

    async def _answered(self, campaigncall_id: str) -> None:
        attempt = self.shared.attempts.get(campaigncall_id)
        if attempt is None:
            return  # not ours (any more), or already ended
        if self.shared.attempts.answer(campaigncall_id) is not None:
            if attempt.timer is not None:
                attempt.timer.cancel()
            attempt.answered_at = self.shared.clock.monotonic()
            if attempt.started_at is not None:
                metrics.RING_TIME.observe(attempt.answered_at - attempt.started_at)
                loop = self.shared.loops.get(attempt.campaign_id)
                if loop is not None:
                    loop.history.answered_live(attempt.answered_at - attempt.started_at)
        with metrics.store_operation("mark_answered", self.shared.store.backend):
            answered = await self.shared.store.mark_answered(
                campaigncall_id,
                self.shared.clock.now(),
                fence=self.shared.fence(attempt.campaign_id),
            )
        if answered is not None:
            metrics.ANSWERED.inc()
            if attempt.campaign_id in self.shared.loops:
                metrics.campaign_answered(attempt.campaign_id)
            self.publish_active(attempt.campaign_id)
            log.debug("attempt answered", campaigncall_id=campaigncall_id,
                      campaign_id=answered.campaign_id)  # fmt: skip

    async def finish(
        self,
        campaigncall_id: str,
        reason: HangupReason,
        *,
        campaigncall: Campaigncall | None = None,
    ) -> None:
        """End the attempt once; a repeated or late event changes nothing."""
        attempt = self.shared.attempts.pop(campaigncall_id)
        give_back_try = False
        if attempt is not None:
            if attempt.timer is not None:
                attempt.timer.cancel()
            reason = attempt.end_reason or reason
            campaign_id, outplan_id = attempt.campaign_id, attempt.outplan_id
            customer_id = attempt.customer_id
            give_back_try = targets.gives_try_back(
                reason, answered=attempt.answered, stopped=attempt.release_requested
            )
        elif campaigncall is not None:
            campaign_id, outplan_id = campaigncall.campaign_id, campaigncall.outplan_id
            customer_id = campaigncall.customer_id
        else:
            return  # a late or repeated event of an attempt this engine no longer follows
        rule = await self._retry_rule(outplan_id)
        result = targets.result_for(reason)
        try:
            with metrics.store_operation("finish_attempt", self.shared.store.backend):
                finished = await self.shared.store.finish_attempt(
                    campaigncall_id,
                    result,
                    reason.value,
                    rule,
                    self.shared.clock.now(),
                    fence=self.shared.fence(campaign_id),
                    give_back_try=give_back_try,
                    calling_rules=self.shared.calling_rules(customer_id),
                )
        except LeaseLost:
            log.warning("attempt left to the campaign's new owner", campaigncall_id=campaigncall_id)
            return
        except BaseException:
            if attempt is not None:
                # Not written: keep following it so a later event or tick can finish it.
                self.shared.attempts.add(attempt)
            raise
        self.publish_active(campaign_id)
        if finished is None or not finished.finished:
            return
        if self.shared.draining:
            self.shared.drained[reason.value] += 1
        metrics.attempt_finished(result.value, reason.value)
        if campaign_id in self.shared.loops:
            metrics.campaign_attempt_ended(campaign_id, result.value, reason.value)
        if attempt is not None:
            self.measures.observe_call_times(attempt)
            await self.measures.measure_end(attempt, reason)
        self.measures.count_finished(finished.campaigncall, finished.target)
        call = finished.campaigncall
        log.info(
            "attempt ended",
            campaign_id=call.campaign_id,
            campaigncall_id=call.id,
            target_id=call.outdial_target_id,
            result=result.value,
            reason=reason.value,
            target_status=finished.target.status.value if finished.target else None,
        )
        if call.campaign_id in self.shared.loops:
            self.wake(call.campaign_id)

    def publish_active(self, campaign_id: str | None = None) -> None:
        dialing = self.shared.attempts.dialing
        metrics.attempts_active(dialing=dialing, progressing=len(self.shared.attempts) - dialing)
        if campaign_id is not None and campaign_id in self.shared.loops:
            count = self.shared.attempts.of_campaign(campaign_id)
            metrics.campaign_activity(
                campaign_id, dialing=count.dialing, talking=count.active - count.dialing
            )

    async def _retry_rule(self, outplan_id: str) -> RetryRule:
        outplan = self.shared.outplans.get(outplan_id)
        if outplan is None:
            # None when the outplan is gone: no retry can follow, the target ends done.
            outplan = await self.shared.store.get_outplan(None, outplan_id)
            if outplan is not None:
                self.shared.outplans[outplan_id] = outplan
        return RetryRule.of(outplan)
