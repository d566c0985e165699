"""The engine's share of the store's connections (``dialerd.scheduler.store_share``)."""

from __future__ import annotations

import pytest

from dialerd.scheduler.store_share import engine_share


@pytest.mark.parametrize(
    ("concurrent_calls", "share"),
    [
        # A Redis store's pool of 32 (the default) keeps 8 for its script calls: of
        # the 24 left, 6 stay for the API and the events.
        (24, 18),
        (48, 36),
        (6, 5),
        (3, 2),
        # Two: one each. One: the engine shares it with the others.
        (2, 1),
        (1, 1),
    ],
)
def test_the_engine_leaves_a_quarter_of_the_connections_to_the_others(
    concurrent_calls: int, share: int
) -> None:
    assert engine_share(concurrent_calls) == share


def test_a_store_without_a_bound_is_not_bounded() -> None:
    assert engine_share(None) is None
