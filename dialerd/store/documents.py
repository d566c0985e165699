"""What both backends share about documents (campaigns, outplans, outdials and
campaigncalls kept as JSON bodies, and the pacing priors): one encoding, each kind's name
and decoder, the page size rule, and the ``Resources`` port's methods written once over
five generic steps each backend implements (``_create``, ``_get``, ``_update``,
``_delete``, ``_page``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Final, Generic, NamedTuple, Protocol, TypeVar

import msgspec

from dialerd.core.predictive import PacingPrior
from dialerd.model import Campaign, Campaigncall, CampaignStatus, Outdial, Outplan, Page
from dialerd.store.base import MAX_PAGE_SIZE, AsStored, AttemptPlan, Fence

# A document of any kind, and one of the three resources.
Document = TypeVar("Document", bound=Campaign | Outplan | Outdial | Campaigncall)
Resource = TypeVar("Resource", Campaign, Outplan, Outdial)

encode: Final = msgspec.json.Encoder().encode
# The statuses in which a campaign holds on to its outplan and outdial.
ACTIVE: Final = (CampaignStatus.RUN, CampaignStatus.STOPPING)


class Guard(NamedTuple):
    """What a campaign write is conditional on: the lease that fences it and the
    ``tm_update`` the stored campaign must still have (see ``update_campaign``)."""

    fence: Fence | None = None
    if_updated: str | None = None
    # Why the campaign changed (its event carries it): "request", "outdial exhausted"...
    cause: str = ""


NO_GUARD: Final = Guard()


class Kind(Generic[Document]):
    """One kind of document: its name (table, key part, listing) and its decoder."""

    __slots__ = ("decode", "name")

    def __init__(self, name: str, type_: type[Document]) -> None:
        self.name = name
        self.decode: Callable[[bytes], Document] = msgspec.json.Decoder(type_).decode


CAMPAIGN: Final = Kind("campaign", Campaign)
OUTPLAN: Final = Kind("outplan", Outplan)
OUTDIAL: Final = Kind("outdial", Outdial)
CAMPAIGNCALL: Final = Kind("campaigncall", Campaigncall)


def page_limit(page_size: int) -> int:
    """How many items a page holds: ``page_size`` within 1 and ``MAX_PAGE_SIZE``."""
    return max(1, min(page_size, MAX_PAGE_SIZE))


def users(resource: Outplan | Outdial, campaigns: Iterable[Campaign]) -> list[str]:
    """Ids of the ``campaigns`` that use this outplan or outdial."""
    field = "outplan_id" if isinstance(resource, Outplan) else "outdial_id"
    return [campaign.id for campaign in campaigns if getattr(campaign, field) == resource.id]


class Steps(Protocol):
    """The five generic steps a backend implements for ``ResourceMethods``."""

    async def _create(self, kind: Kind[Resource], resource: Resource) -> Resource: ...

    async def _get(
        self, kind: Kind[Resource], customer_id: str | None, resource_id: str
    ) -> Resource | None: ...

    async def _update(
        self, kind: Kind[Resource], resource: Resource, guard: Guard = NO_GUARD
    ) -> Resource: ...

    async def _delete(
        self, kind: Kind[Resource], customer_id: str, resource_id: str, now: datetime
    ) -> Resource | None: ...

    async def _page(
        self, kind: Kind[Resource], customer_id: str, page_size: int, page_token: str
    ) -> Page[Resource]: ...


class TickSteps(Protocol):
    """The two ledger steps ``ResourceMethods.start_attempts_if_unchanged`` is made of."""

    async def campaign_and_outplan(
        self, campaign_id: str
    ) -> tuple[Campaign | None, Outplan | None]: ...

    async def start_attempts(self, plans: Sequence[AttemptPlan]) -> list[Campaigncall]: ...


class ResourceMethods:
    """The ``Resources`` port's named methods, each one generic step of the backend
    (``Steps``), written once for both backends.

    The backend's ``_delete`` applies each kind's rule in the step's atomic write: a
    campaign only when stopped (``Conflict``), an outplan or outdial only when no
    ``run`` or ``stopping`` campaign of its customer uses it (``InUse``).
    """

    async def start_attempts_if_unchanged(
        self: TickSteps, plans: Sequence[AttemptPlan]
    ) -> list[Campaigncall] | AsStored:
        """The ``Ledger`` step in two (a backend may do it in one): read the campaign
        and its outplan, then claim if they are the plans'."""
        if not plans:
            return []
        first = plans[0]
        campaign, outplan = await self.campaign_and_outplan(first.campaign.id)
        if campaign != first.campaign or outplan != first.outplan:
            return AsStored(campaign, outplan)
        return await self.start_attempts(plans)

    # -- campaigns ----------------------------------------------------------------------
    async def create_campaign(self: Steps, campaign: Campaign) -> Campaign:
        return await self._create(CAMPAIGN, campaign)

    async def get_campaign(
        self: Steps, customer_id: str | None, campaign_id: str
    ) -> Campaign | None:
        return await self._get(CAMPAIGN, customer_id, campaign_id)

    async def update_campaign(
        self: Steps,
        campaign: Campaign,
        *,
        fence: Fence | None = None,
        if_updated: str | None = None,
        cause: str = "",
    ) -> Campaign:
        return await self._update(CAMPAIGN, campaign, Guard(fence, if_updated, cause))

    async def delete_campaign(
        self: Steps, customer_id: str, campaign_id: str, now: datetime
    ) -> Campaign | None:
        return await self._delete(CAMPAIGN, customer_id, campaign_id, now)

    async def list_campaigns(
        self: Steps, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[Campaign]:
        return await self._page(CAMPAIGN, customer_id, page_size, page_token)

    # -- outplans -----------------------------------------------------------------------
    async def create_outplan(self: Steps, outplan: Outplan) -> Outplan:
        return await self._create(OUTPLAN, outplan)

    async def get_outplan(self: Steps, customer_id: str | None, outplan_id: str) -> Outplan | None:
        return await self._get(OUTPLAN, customer_id, outplan_id)

    async def update_outplan(self: Steps, outplan: Outplan) -> Outplan:
        return await self._update(OUTPLAN, outplan)

    async def delete_outplan(
        self: Steps, customer_id: str, outplan_id: str, now: datetime
    ) -> Outplan | None:
        return await self._delete(OUTPLAN, customer_id, outplan_id, now)

    async def list_outplans(
        self: Steps, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[Outplan]:
        return await self._page(OUTPLAN, customer_id, page_size, page_token)

    # -- outdials -----------------------------------------------------------------------
    async def create_outdial(self: Steps, outdial: Outdial) -> Outdial:
        return await self._create(OUTDIAL, outdial)

    async def get_outdial(self: Steps, customer_id: str | None, outdial_id: str) -> Outdial | None:
        return await self._get(OUTDIAL, customer_id, outdial_id)

    async def update_outdial(self: Steps, outdial: Outdial) -> Outdial:
        return await self._update(OUTDIAL, outdial)

    async def delete_outdial(
        self: Steps, customer_id: str, outdial_id: str, now: datetime
    ) -> Outdial | None:
        return await self._delete(OUTDIAL, customer_id, outdial_id, now)

    async def list_outdials(
        self: Steps, customer_id: str, page_size: int = MAX_PAGE_SIZE, page_token: str = ""
    ) -> Page[Outdial]:
        return await self._page(OUTDIAL, customer_id, page_size, page_token)


_PRIOR: Final = msgspec.json.Decoder(PacingPrior)


def decode_prior(body: str | bytes | None) -> PacingPrior | None:
    """A stored pacing prior, or None: none kept, or one this version cannot read (a
    prior is only a head start; the campaign then learns from its own dials)."""
    if body is None:
        return None
    try:
        return _PRIOR.decode(body)
    except msgspec.DecodeError:
        return None
