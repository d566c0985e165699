"""Per-customer quotas (dialerd/core/quotas.py) and their configuration (``[quotas]``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialerd.config import ConfigError, decode_config, load_config
from dialerd.core.quotas import Quota, Quotas, Usage, first_over, over

ACME = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
GLOBEX = "6f5b1791-804e-11ec-98a7-2fea5968d85b"


def test_no_quota_is_the_default_and_nothing_is_refused() -> None:
    assert over(Quotas(), Quota.TARGETS, used=10**9, adding=10**9) is None


def test_a_change_within_the_quota_passes_and_one_past_it_is_refused() -> None:
    quotas = Quotas(targets=100)

    assert over(quotas, Quota.TARGETS, used=90, adding=10) is None
    refusal = over(quotas, Quota.TARGETS, used=90, adding=11)

    assert refusal is not None
    assert (refusal.quota, refusal.limit) == (Quota.TARGETS, 100)
    assert str(refusal) == "quota targets is 100: 90 in use, 11 more would exceed it"


def test_targets_are_checked_per_outdial_before_in_all() -> None:
    quotas = Quotas(targets_per_outdial=5, targets=8)

    per_outdial = first_over(quotas, "target", Usage(targets=3, outdial_targets=3), adding=3)
    in_all = first_over(quotas, "target", Usage(targets=7, outdial_targets=0), adding=2)

    assert per_outdial is not None
    assert per_outdial.quota is Quota.TARGETS_PER_OUTDIAL
    assert in_all is not None
    assert in_all.quota is Quota.TARGETS


def test_a_customer_override_replaces_only_the_keys_it_gives() -> None:
    config = decode_config(
        f"""
        [quotas]
        campaigns = 10
        concurrent_calls = 50

        [[quotas.customers]]
        customer_id = "{ACME}"
        concurrent_calls = 200
        """
    )

    assert config.quotas.quotas_for(ACME) == Quotas(campaigns=10, concurrent_calls=200)
    assert config.quotas.quotas_for(GLOBEX) == Quotas(campaigns=10, concurrent_calls=50)


def test_quotas_are_off_without_a_quotas_table() -> None:
    assert decode_config("").quotas.quotas_for(ACME) == Quotas()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[quotas]\ncampaigns = -1", r"Expected `int` >= 0 - at `\$.quotas.campaigns`"),
        ("[quotas]\ncampaign = 3", r"unknown field `campaign` - at `\$.quotas`"),
        (
            f'[[quotas.customers]]\ncustomer_id = "{ACME}"\n'
            f'[[quotas.customers]]\ncustomer_id = "{ACME}"',
            f"customer {ACME} has quotas twice",
        ),
        ("[limits]\nmax_calls_per_second = -2", r"at `\$.limits.max_calls_per_second`"),
    ],
)
def test_bad_quotas_name_the_key(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        decode_config(text)


def test_the_ceiling_is_the_lower_of_the_process_and_its_trunk() -> None:
    config = decode_config(
        """
        [limits]
        max_concurrent_calls = 100
        max_calls_per_second = 20

        [[limits.trunks]]
        endpoint = "sim"
        max_concurrent_calls = 40

        [[limits.trunks]]
        endpoint = "PJSIP/{number}@other"
        max_concurrent_calls = 5
        """
    )

    ceiling = config.call_ceiling()

    assert (ceiling.concurrent_calls, ceiling.calls_per_second) == (40, 20)


def test_no_limits_table_is_no_ceiling() -> None:
    assert decode_config("").call_ceiling().unlimited


def test_the_shipped_production_config_turns_quotas_and_the_ceiling_on() -> None:
    root = Path(__file__).resolve().parents[3]
    shipped = load_config(root / "config" / "dialerd.toml")
    demo = load_config(root / "config" / "sim.toml")

    quotas = shipped.quotas.quotas_for(ACME)
    assert all(quotas.limit(quota) > 0 for quota in Quota)
    assert not shipped.call_ceiling().unlimited
    # The demo runs as the seed did.
    assert demo.quotas.quotas_for(ACME) == Quotas()
