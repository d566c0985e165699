"""The Redis backend's pacing priors: ``P:pacing_prior:<campaign>``, the campaign's
latest prior (JSON)."""

from __future__ import annotations

import msgspec

from dialerd.core.predictive import PacingPrior
from dialerd.store.documents import decode_prior
from dialerd.store.redis.connection import RedisConnection


class RedisPriors(RedisConnection):
    """``PacingPriors`` on one string key per campaign."""

    async def save_pacing_prior(self, campaign_id: str, prior: PacingPrior) -> None:
        """Keep ``prior`` as the campaign's latest (replacing the one before)."""
        key = self._ckey(await self._owner(campaign_id), "pacing_prior", campaign_id)
        await self._guard(self._connected().set(key, msgspec.json.encode(prior)))

    async def pacing_prior(self, campaign_id: str) -> PacingPrior | None:
        """The campaign's latest prior; None if none was kept."""
        key = self._ckey(await self._owner(campaign_id), "pacing_prior", campaign_id)
        body = await self._guard(self._connected().get(key))
        return decode_prior(body)
