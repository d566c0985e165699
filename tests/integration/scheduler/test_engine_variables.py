"""The variables a campaign's actions read (``${name}``), as the engine hands them to the
telephony backend and the flow runner with each origination."""

from __future__ import annotations

from pathlib import Path

import msgspec

from dialerd.model import Action, CampaignType
from tests.integration.conftest import StoreMaker, tel
from tests.integration.scheduler.engine_harness import CUSTOMER, engine_on

GREETING = Action(
    type="talk", option={"text": "Hello ${target.name}, about your ${target.data.plan} plan"}
)


async def test_a_call_carries_the_campaign_call_and_target_variables(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        target = msgspec.structs.replace(
            world.make.target("", tel("+15550001111"), name="Ann Lee"),
            data='{"plan": "gold", "visits": 3, "tags": ["a", "b"], "note": null}',
        )
        campaign, _, _ = await world.campaign(targets=[target])
        await world.control.edit(CUSTOMER, campaign.id, actions=[GREETING])
        await world.run(campaign)
        (origination,) = world.calls.originated
        (call,) = await world.calls_of(campaign)
        assert origination.variables == {
            "campaign.id": campaign.id,
            "campaign.name": campaign.name,
            "campaigncall.id": call.id,
            "customer.id": CUSTOMER,
            "target.id": target.id,
            "target.name": "Ann Lee",
            "target.destination": "+15550001111",
            "target.data": target.data,
            "target.data.plan": "gold",
            "target.data.visits": "3",
            "target.data.tags": '["a","b"]',
            "target.data.note": "null",
        }


async def test_target_data_that_is_not_a_json_object_is_kept_whole(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        target = msgspec.structs.replace(
            world.make.target("", tel("+15550001111"), name="Bo"), data="vip customer"
        )
        campaign, _, _ = await world.campaign(targets=[target])
        await world.control.edit(CUSTOMER, campaign.id, actions=[GREETING])
        await world.run(campaign)
        (origination,) = world.calls.originated
        assert origination.variables["target.data"] == "vip customer"
        assert not any(name.startswith("target.data.") for name in origination.variables)


async def test_without_a_reference_to_the_target_its_name_and_data_are_not_read(
    tmp_path: Path, new_store: StoreMaker
) -> None:
    async with engine_on(new_store, tmp_path) as world:
        world.queue.available = 1
        campaign, _, (target,) = await world.campaign(targets=1)
        await world.run(campaign)
        (origination,) = world.calls.originated
        assert origination.variables["target.id"] == target.id
        assert origination.variables["target.destination"] == "+15550000000"
        assert "target.name" not in origination.variables


async def test_a_flow_carries_the_variables_too(tmp_path: Path, new_store: StoreMaker) -> None:
    webhook = Action(
        type="webhook_send",
        option={"uri": "https://hooks.example.com/${target.id}", "data": "${target.data.id}"},
    )
    async with engine_on(new_store, tmp_path) as world:
        target = msgspec.structs.replace(
            world.make.target("", tel("+15550002222"), name="Cy"), data='{"id": "crm-7"}'
        )
        campaign, _, _ = await world.campaign(targets=[target], type=CampaignType.FLOW, queue=False)
        await world.control.edit(CUSTOMER, campaign.id, actions=[webhook])
        await world.run(campaign)
        (origination,) = world.flows.originated
        assert origination.variables["target.data.id"] == "crm-7"
        assert origination.variables["campaign.name"] == campaign.name
