"""``campaign_state`` events (dialerd/events/states.py): a change the scheduler notes
becomes one event with the campaign's state answer, on every store backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from dialerd.events.model import event_of
from dialerd.events.states import CampaignStateEvents
from dialerd.insight import CampaignInsight
from dialerd.model import new_id
from dialerd.store import Store
from tests.fakes.clock import FakeClock

if TYPE_CHECKING:
    from tests.integration.conftest import Factory


async def test_noted_state_changes_become_events_with_the_state_answer(
    store: Store, make: Factory
) -> None:
    dialing = await make.dialing(store)
    campaign_id = dialing.campaign.id
    answers = {
        campaign_id: CampaignInsight(
            campaign_id=campaign_id,
            status="run",
            state="no_eligible_target",
            detail="retry_interval 1",
            since=make.stamp(3),
            service_level=100,
        )
    }
    events = CampaignStateEvents(store, FakeClock(), answers.get)
    events.note(campaign_id)
    events.note(campaign_id)
    events.note(new_id())  # a campaign the scheduler no longer runs: nothing
    await events.flush()
    entries = await store.read_events(dialing.campaign.customer_id, "", 100)
    assert [entry.type for entry in entries] == ["campaign_created", "campaign_state"]
    event = event_of(entries[-1])
    assert msgspec.json.decode(event.data) == msgspec.to_builtins(answers[campaign_id])
    assert event.time == make.stamp(3)
    await events.flush()
    assert len(await store.read_events(dialing.campaign.customer_id, "", 100)) == 2
