"""The table of control API endpoints: what the app routes and the OpenAPI document describes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from dialerd.api import (
    bodies,
    campaigncalls,
    campaigns,
    customer,
    dnc,
    outdials,
    outplans,
    queues,
)
from dialerd.api.context import Handler
from dialerd.insight import CampaignInsight
from dialerd.model import (
    Campaign,
    Campaigncall,
    DncNumber,
    Outdial,
    OutdialTarget,
    Outplan,
    Page,
)

PREFIX: Final = "/v1.0"


@dataclass(frozen=True)
class Endpoint:
    """One operation: path (under ``/v1.0``), method, handler and its documented shapes."""

    path: str
    method: str
    handler: Handler
    summary: str
    response: Any
    body: Any = None
    listing: bool = False
    # Bulk import: the body may also be CSV or NDJSON; ``csv_doc`` says what the CSV holds.
    bulk: bool = False
    csv_doc: str = ""
    # Other shapes the operation may answer with (for the given body's shape).
    also_returns: tuple[Any, ...] = ()
    # Extra query parameters (name -> description), all optional UUIDs.
    uuid_queries: tuple[tuple[str, str], ...] = ()

    @property
    def operation_id(self) -> str:
        """A stable, unique name for the operation."""
        return self.handler.__name__


ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    # campaigns
    Endpoint("/campaigns", "POST", campaigns.create_campaign, "Create a campaign (status stop)",
             Campaign, bodies.CampaignCreate),
    Endpoint("/campaigns", "GET", campaigns.list_campaigns, "List campaigns, newest first",
             Page[Campaign], listing=True),
    Endpoint("/campaigns/{id}", "GET", campaigns.get_campaign, "Get a campaign", Campaign),
    Endpoint("/campaigns/{id}", "PUT", campaigns.update_campaign,
             "Change the fields present; status run/stop starts or stops it",
             Campaign, bodies.CampaignUpdate),
    Endpoint("/campaigns/{id}", "DELETE", campaigns.delete_campaign,
             "Delete a stopped campaign", Campaign),
    Endpoint("/campaigns/{id}/status", "PUT", campaigns.update_campaign_status,
             "Run or stop a campaign", Campaign, bodies.CampaignStatusBody),
    Endpoint("/campaigns/{id}/service_level", "PUT", campaigns.update_service_level,
             "Change a campaign's service level", Campaign, bodies.ServiceLevelBody),
    Endpoint("/campaigns/{id}/actions", "PUT", campaigns.update_actions,
             "Replace a campaign's actions", Campaign, bodies.ActionsBody),
    Endpoint("/campaigns/{id}/resource_info", "PUT", campaigns.update_resource_info,
             "Change the outplan, outdial, queue or next campaign present in the body",
             Campaign, bodies.ResourceInfoBody),
    Endpoint("/campaigns/{id}/next_campaign_id", "PUT", campaigns.update_next_campaign_id,
             "Change the campaign started when this one is exhausted",
             Campaign, bodies.NextCampaignIdBody),
    Endpoint("/campaigns/{id}/state", "GET", campaigns.get_campaign_state,
             "Why the campaign is or is not dialing (dialerd extension)", CampaignInsight),
    Endpoint("/campaigns/{id}/campaigncalls", "GET", campaigns.list_campaign_campaigncalls,
             "List a campaign's campaigncalls, newest first", Page[Campaigncall], listing=True),
    # campaigncalls
    Endpoint("/campaigncalls", "GET", campaigncalls.list_campaigncalls,
             "List campaigncalls, newest first", Page[Campaigncall], listing=True,
             uuid_queries=(("campaign_id", "Only this campaign's campaigncalls"),)),
    Endpoint("/campaigncalls/{id}", "GET", campaigncalls.get_campaigncall,
             "Get a campaigncall", Campaigncall),
    Endpoint("/campaigncalls/{id}", "DELETE", campaigncalls.delete_campaigncall,
             "Delete a finished campaigncall", Campaigncall),
    # outplans
    Endpoint("/outplans", "POST", outplans.create_outplan, "Create an outplan",
             Outplan, bodies.OutplanCreate),
    Endpoint("/outplans", "GET", outplans.list_outplans, "List outplans, newest first",
             Page[Outplan], listing=True),
    Endpoint("/outplans/{id}", "GET", outplans.get_outplan, "Get an outplan", Outplan),
    Endpoint("/outplans/{id}", "PUT", outplans.update_outplan,
             "Change an outplan's name or detail", Outplan, bodies.OutplanUpdate),
    Endpoint("/outplans/{id}", "DELETE", outplans.delete_outplan,
             "Delete an outplan no running campaign uses", Outplan),
    Endpoint("/outplans/{id}/dial_info", "PUT", outplans.update_dial_info,
             "Change the dialing fields present in the body", Outplan, bodies.DialInfoBody),
    # outdials
    Endpoint("/outdials", "POST", outdials.create_outdial, "Create an outdial",
             Outdial, bodies.OutdialCreate),
    Endpoint("/outdials", "GET", outdials.list_outdials, "List outdials, newest first",
             Page[Outdial], listing=True),
    Endpoint("/outdials/{id}", "GET", outdials.get_outdial, "Get an outdial", Outdial),
    Endpoint("/outdials/{id}", "PUT", outdials.update_outdial,
             "Change an outdial's name or detail", Outdial, bodies.OutdialUpdate),
    Endpoint("/outdials/{id}", "DELETE", outdials.delete_outdial,
             "Delete an outdial no running campaign dials", Outdial),
    Endpoint("/outdials/{id}/campaign_id", "PUT", outdials.update_outdial_campaign_id,
             "Change an outdial's campaign id", Outdial, bodies.OutdialCampaignIdBody),
    Endpoint("/outdials/{id}/data", "PUT", outdials.update_outdial_data,
             "Change an outdial's data", Outdial, bodies.OutdialDataBody),
    Endpoint("/outdials/{id}/targets", "POST", outdials.create_targets,
             "Add one target (JSON) or import many (CSV, NDJSON; all or nothing)",
             OutdialTarget, bodies.TargetCreate, bulk=True,
             csv_doc="Header row, then one target per row. Columns: name, detail, data, "
             "destination_0 .. destination_4; a destination is an E.164 number or Address JSON."),
    Endpoint("/outdials/{id}/targets", "GET", outdials.list_targets,
             "List an outdial's targets, newest first", Page[OutdialTarget], listing=True),
    Endpoint("/outdials/{id}/targets/{target_id}", "GET", outdials.get_target,
             "Get a target", OutdialTarget),
    Endpoint("/outdials/{id}/targets/{target_id}", "DELETE", outdials.delete_target,
             "Delete a target that is not being dialed", OutdialTarget),
    # queues: read only, registered in [[queues]]
    Endpoint("/queues", "GET", queues.list_queues,
             "List the customer's registered queues, with their agents by state and the "
             "campaigns running on them; the page_token is the last id of the previous page",
             Page[queues.Queue], listing=True),
    Endpoint("/queues/{id}", "GET", queues.get_queue, "Get a registered queue", queues.Queue),
    # do-not-call numbers (dialerd extension)
    Endpoint("/dnc_numbers", "POST", dnc.create_dnc_numbers,
             "Add a number (JSON object) or several (JSON array), or import a CSV or NDJSON "
             "file (all or nothing); a listed number keeps its entry",
             DncNumber, bodies.DncNumbersCreate, bulk=True, csv_doc=dnc.CSV_DOC,
             also_returns=(bodies.DncNumberList,)),
    Endpoint("/dnc_numbers", "GET", dnc.list_dnc_numbers,
             "List the do-not-call numbers, newest first", Page[DncNumber], listing=True),
    Endpoint("/dnc_numbers/{number}", "GET", dnc.get_dnc_number,
             "Get a do-not-call number's entry", DncNumber),
    Endpoint("/dnc_numbers/{number}", "DELETE", dnc.delete_dnc_number,
             "Take a number off the do-not-call list", DncNumber),
    # the caller's webhook settings and its events (events out)
    Endpoint("/customer", "GET", customer.get_customer,
             "The caller's customer: its webhook settings", customer.Customer),
    Endpoint("/customer", "PUT", customer.update_customer,
             "Change the webhook settings present (webhook_method, webhook_uri, "
             "webhook_secret); a secret generated here is shown in this answer only",
             customer.Customer, customer.CustomerUpdate),
    Endpoint("/events/failed", "GET", customer.list_failed_events,
             "The events set aside after their receiver did not take them in time, oldest "
             "first", customer.FailedDeliveries),
    Endpoint("/events/failed/{id}/redeliver", "POST", customer.redeliver_failed_event,
             "Send a failed event again", customer.FailedDelivery),
)  # fmt: skip
