"""The store conformance suite runs on every backend, a Redis Cluster included (three
primaries with a replica each, one for the whole session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import BACKENDS, StoreMaker, store_maker


@pytest.fixture(params=[*BACKENDS, "cluster"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    """Makes unopened store instances of one backend that all share the same data."""
    return store_maker(request.param, request, tmp_path)


# The size tests run the same scripts on a cluster as on one server (only the routing
# differs): they run on one server only, to keep the suite short.
SIZE_TESTS = (
    "test_thousands_of_targets_waiting_for_their_retry",
    "test_a_claim_finds_the_target_behind_5000_staged_import_rows",
    "test_a_claim_walks_past_thousands_of_spent_targets",
    "test_thousands_due_at_once_are_claimed_in_the_order_sqlite_takes",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        if "[cluster" in item.nodeid and item.nodeid.split("::")[-1].startswith(SIZE_TESTS):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
