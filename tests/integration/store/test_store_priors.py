"""The ``PacingPriors`` port (dialerd/store/ports.py, behaviour.md §10): a campaign's
pacing prior, kept across instances and replaced by the latest; run on every backend."""

from __future__ import annotations

import msgspec

from dialerd.core.predictive import PacingPrior
from dialerd.model import new_id
from dialerd.store import Store
from dialerd.store.documents import decode_prior


def prior(day: str, live_rate: float) -> PacingPrior:
    return PacingPrior(
        day=day,
        live_rate=live_rate,
        dials=380,
        live_rings=(2.5, 4.0, 7.25, 11.0),
        live_rings_seen=95,
        other_rings=(1.5, 20.0),
        other_rings_seen=285,
        talks=(61.0, 120.5, 299.0),
        talks_seen=90,
    )


async def test_a_campaign_without_a_prior_has_none(store: Store) -> None:
    assert await store.pacing_prior(new_id()) is None


async def test_a_prior_is_read_back_whole_by_another_instance(
    store: Store, twin_store: Store
) -> None:
    campaign_id = new_id()
    kept = prior("2026-03-01", 0.25)
    await store.save_pacing_prior(campaign_id, kept)
    assert await twin_store.pacing_prior(campaign_id) == kept


async def test_the_latest_prior_replaces_the_one_before(store: Store) -> None:
    campaign_id, other_id = new_id(), new_id()
    await store.save_pacing_prior(campaign_id, prior("2026-03-01", 0.25))
    await store.save_pacing_prior(other_id, prior("2026-03-01", 0.4))
    await store.save_pacing_prior(campaign_id, prior("2026-03-02", 0.15))
    assert await store.pacing_prior(campaign_id) == prior("2026-03-02", 0.15)
    assert await store.pacing_prior(other_id) == prior("2026-03-01", 0.4)


def test_a_prior_that_cannot_be_read_counts_as_none() -> None:
    # Kept by another version, or damaged: the day starts without it, never fails.
    kept = prior("2026-03-01", 0.25)
    assert decode_prior(msgspec.json.encode(kept)) == kept
    assert decode_prior(None) is None
    assert decode_prior(b"{not json") is None
    assert decode_prior(b'{"day": "2026-03-01"}') is None
    assert decode_prior(b'{"day": 1, "live_rate": "high", "dials": 3}') is None
