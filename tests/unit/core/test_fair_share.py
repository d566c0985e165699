"""Sharing the process's ceiling of calls between customers (dialerd/core/fair_share.py)."""

from __future__ import annotations

from dialerd.core.fair_share import grant, rate_shares, shares


def test_a_customer_with_many_campaigns_gets_no_more_than_one_with_one() -> None:
    # Twenty campaigns wanting 100 calls each against one campaign wanting 100.
    assert shares(20, {"many": 2000, "one": 100}) == {"many": 10, "one": 10}


def test_what_a_customer_leaves_goes_to_the_others() -> None:
    assert shares(20, {"many": 2000, "one": 3}) == {"many": 17, "one": 3}


def test_a_remainder_goes_one_each_and_never_beyond_the_capacity() -> None:
    split = shares(10, {"a": 100, "b": 100, "c": 100})

    assert sorted(split.values()) == [3, 3, 4]
    assert sum(split.values()) == 10


def test_nobody_wanting_gets_nothing() -> None:
    assert shares(10, {"a": 0}) == {"a": 0}


def test_a_rate_is_split_evenly_and_a_capped_customer_leaves_the_rest() -> None:
    assert rate_shares(10.0, {"a": None, "b": None}) == {"a": 5.0, "b": 5.0}
    assert rate_shares(10.0, {"a": None, "b": 2.0}) == {"a": 8.0, "b": 2.0}


def test_a_grant_is_cut_to_the_tighter_room_and_says_which() -> None:
    assert grant(5, concurrent_room=None, rate_room=None).attempts == 5
    cut = grant(5, concurrent_room=3, rate_room=1)
    assert (cut.attempts, cut.held_by) == (1, "calls_per_second")
    assert grant(5, concurrent_room=-2, rate_room=None).attempts == 0
