"""Configuration validation: defaults, and errors that name the file, the key and the fix."""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from dialerd.config import Config, ConfigError, decode_config, load_config, parse_listen
from dialerd.core.hours import CallingHours, calling_window

SOURCE = "config/site.toml"


def config_error(text: str) -> str:
    """The message of the ConfigError that ``text`` raises."""
    with pytest.raises(ConfigError) as raised:
        decode_config(text, SOURCE)
    message = str(raised.value)
    assert message.startswith(f"{SOURCE}: ")
    return message


def test_empty_file_gives_the_defaults() -> None:
    config = decode_config("", SOURCE)
    assert config == Config()
    assert config.store.backend == "sqlite"
    assert config.engine.tick_interval == 1.0
    assert config.api.listen == "127.0.0.1:8080"
    assert config.api.tokens == []


def test_values_given_override_the_defaults() -> None:
    config = decode_config(
        """
        state_dir = "/srv/dialerd"
        [engine]
        tick_interval = 0.5
        max_concurrent_attempts = 20
        [api]
        listen = "[::1]:9000"
        [[api.tokens]]
        token = "s3cret-token"
        customer_id = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
        """,
        SOURCE,
    )
    assert config.state_dir == "/srv/dialerd"
    assert config.engine.tick_interval == 0.5
    assert config.engine.max_concurrent_attempts == 20
    assert config.api.tokens[0].customer_id == "5e4a0680-804e-11ec-98a7-2fea5968d85b"
    assert config.store == Config().store


def test_misspelt_key_names_the_file_the_section_and_the_key() -> None:
    message = config_error("[engine]\ntick_intervall = 2\n")
    assert "`tick_intervall`" in message
    assert "`$.engine`" in message


def test_misspelt_nested_key_names_its_full_path() -> None:
    message = config_error("[store.redis]\nprefx = 'x'\n")
    assert "`prefx`" in message
    assert "`$.store.redis`" in message


def test_misspelt_top_level_section_is_named() -> None:
    assert "`engines`" in config_error("[engines]\ntick_interval = 1\n")


def test_wrong_type_names_the_key_path_and_the_expected_type() -> None:
    message = config_error('[engine]\ntick_interval = "fast"\n')
    assert "`$.engine.tick_interval`" in message
    assert "Expected `float`" in message


def test_non_positive_ceiling_is_refused() -> None:
    message = config_error("[engine]\nmax_concurrent_attempts = 0\n")
    assert "`$.engine.max_concurrent_attempts`" in message
    assert ">= 1" in message


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_probability_out_of_range_is_refused(value: str) -> None:
    message = config_error(f"[sim.outcomes]\nbusy = {value}\n")
    assert "`$.sim.outcomes.busy`" in message


def test_outcome_probabilities_summing_above_one_are_refused() -> None:
    message = config_error("[sim.outcomes]\nbusy = 0.5\nno_answer = 0.6\n")
    assert "must not exceed 1" in message
    assert "`$.sim.outcomes`" in message


def test_ring_time_with_min_above_max_is_refused() -> None:
    message = config_error("[sim.outcomes.ring_time]\nmin = 5\nmax = 2\n")
    assert "max must be >= min" in message
    assert "`$.sim.outcomes.ring_time`" in message


def test_per_campaign_outcomes_are_validated_too() -> None:
    campaign = "183c0d5c-691e-42f3-af2b-9bffc2740f83"
    message = config_error(f'[sim.campaigns."{campaign}"]\nmachine = 2\n')
    # msgspec shows a dict key as "[...]": the path names the table, not the campaign id.
    assert "`$.sim.campaigns[...].machine`" in message


@pytest.mark.parametrize(
    ("section", "listen"),
    [
        ("api", "127.0.0.1"),
        ("api", "127.0.0.1:70000"),
        ("api", ":8080"),
        ("api", "example.com:8080"),
        ("ops", "nope"),
    ],
)
def test_bad_listen_address_names_the_key_and_the_value(section: str, listen: str) -> None:
    message = config_error(f'[{section}]\nlisten = "{listen}"\n')
    assert f"`$.{section}`" in message
    assert "listen" in message
    assert repr(listen) in message


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("localhost:9090", ("localhost", 9090)),
        ("[::1]:8080", ("::1", 8080)),
    ],
)
def test_good_listen_addresses_are_accepted(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected
    assert decode_config(f'[api]\nlisten = "{listen}"\n').api.listen == listen


def test_the_operations_listener_is_apart_from_the_api_on_loopback() -> None:
    config = decode_config("")
    assert config.ops.enabled
    assert config.ops.listen == "127.0.0.1:9108"
    assert config.ops.listen != config.api.listen
    assert config.ops.read_token() is None


def test_metrics_listen_names_its_replacement() -> None:
    message = config_error('[metrics]\nlisten = "127.0.0.1:9100"\n')
    assert "[ops] listen" in message


def test_ops_token_inline_or_from_a_file_never_both(tmp_path: Path) -> None:
    assert decode_config('[ops]\ntoken = "scrape-secret"\n').ops.read_token() == "scrape-secret"
    file = tmp_path / "ops-token"
    file.write_text("from-a-file-secret\n")
    file.chmod(0o600)
    config = decode_config(f'[ops]\ntoken_file = "{file}"\n')
    assert config.ops.read_token() == "from-a-file-secret"
    assert "***" not in repr(config.ops)
    assert "scrape-secret" not in repr(decode_config('[ops]\ntoken = "scrape-secret"\n'))
    both = config_error(f'[ops]\ntoken = "scrape-secret"\ntoken_file = "{file}"\n')
    assert "at most one of token and token_file" in both
    missing = decode_config(f'[ops]\ntoken_file = "{tmp_path / "absent"}"\n')
    with pytest.raises(ConfigError, match="token_file"):
        missing.ops.read_token()


def test_api_token_with_a_bad_customer_id_is_refused() -> None:
    message = config_error('[[api.tokens]]\ntoken = "s3cret-token"\ncustomer_id = "acme"\n')
    assert "`$.api.tokens[0].customer_id`" in message


def test_api_token_too_short_is_refused() -> None:
    message = config_error(
        '[[api.tokens]]\ntoken = "abc"\ncustomer_id = "5e4a0680-804e-11ec-98a7-2fea5968d85b"\n'
    )
    assert "`$.api.tokens[0].token`" in message
    assert "length >= 8" in message


def test_unknown_backend_is_refused() -> None:
    message = config_error('[store]\nbackend = "postgres"\n')
    assert "`$.store.backend`" in message
    assert "'postgres'" in message


def test_file_that_is_not_toml_is_refused() -> None:
    assert "not valid TOML" in config_error("[engine\n")


def test_load_config_of_a_missing_file_cannot_read_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="cannot read") as raised:
        load_config(missing)
    assert str(missing) in str(raised.value)


def test_load_config_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "dialerd.toml"
    path.write_text("[engine]\ntick_interval = -1\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert "`$.engine.tick_interval`" in str(raised.value)


def test_load_config_reads_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "dialerd.toml"
    path.write_text('[store]\nbackend = "redis"\n[queue]\nbackend = "redis"\n')
    config = load_config(path)
    assert config.store.backend == "redis"
    assert config.queue.backend == "redis"


# Calling hours: [calling_hours] for every customer, [[calling_hours.customers]] per customer.

CUSTOMER = "5e4a0680-804e-11ec-98a7-2fea5968d85b"
OTHER_CUSTOMER = "0b6f54aa-7e13-4a43-a0a3-d1f1f7d1a6b2"


def test_no_calling_rules_apply_until_configured() -> None:
    assert decode_config("", SOURCE).rules_for(CUSTOMER) is None


def test_lockout_and_daily_attempts_are_read_from_calling_rules() -> None:
    config = decode_config(
        "[calling_rules]\nabandoned_lockout_hours = 72\ndaily_attempts_per_number = 3\n", SOURCE
    )
    rules = config.rules_for(CUSTOMER)
    assert rules is not None
    assert (rules.hours, rules.abandoned_lockout, rules.daily_attempts) == (
        None,
        timedelta(hours=72),
        3,
    )
    with pytest.raises(ConfigError, match="daily_attempts_per_number"):
        decode_config("[calling_rules]\ndaily_attempts_per_number = -1\n", SOURCE)


def test_calling_hours_default_to_eight_to_nine_and_refuse_unknown_zones() -> None:
    config = decode_config("[calling_hours]\n", SOURCE)
    assert config.calling_hours is not None
    hours = config.calling_hours.hours_for(CUSTOMER)
    assert hours == CallingHours()
    rules = config.rules_for(CUSTOMER)
    assert rules is not None
    assert rules.hours == hours
    assert hours.monday == hours.sunday == ("08:00-21:00",)
    assert hours.skip_dates == ()
    assert hours.fallback_zone is None


def test_calling_hours_table_is_every_customers_default() -> None:
    config = decode_config(
        "[calling_hours]\n"
        'fallback_zone = "Europe/London"\n'
        'saturday = ["10:00-14:00"]\n'
        "sunday = []\n"
        "skip_dates = [2026-12-25, 2027-01-01]\n",
        SOURCE,
    )
    hours = config.calling_hours.hours_for(CUSTOMER)
    assert hours.monday == ("08:00-21:00",)
    assert hours.saturday == ("10:00-14:00",)
    assert hours.sunday == ()
    assert hours.skip_dates == (date(2026, 12, 25), date(2027, 1, 1))
    assert hours.fallback_zone == "Europe/London"


def test_a_customers_calling_hours_replace_only_the_keys_given() -> None:
    config = decode_config(
        "[calling_hours]\n"
        'fallback_zone = "Europe/London"\n'
        "skip_dates = [2026-12-25]\n"
        "[[calling_hours.customers]]\n"
        f'customer_id = "{CUSTOMER}"\n'
        'monday = ["09:00-12:00", "14:00-20:00"]\n'
        'fallback_zone = ""\n',
        SOURCE,
    )
    mine = config.calling_hours.hours_for(CUSTOMER)
    assert mine.monday == ("09:00-12:00", "14:00-20:00")
    assert mine.tuesday == ("08:00-21:00",)
    assert mine.skip_dates == (date(2026, 12, 25),)
    # "" refuses unknown zones although the default has a fallback.
    assert calling_window(mine, (), datetime(2026, 1, 5, 12, tzinfo=UTC)).reason == "unknown_zone"
    other = config.calling_hours.hours_for(OTHER_CUSTOMER)
    assert other.monday == ("08:00-21:00",)
    assert other.fallback_zone == "Europe/London"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[calling_hours]\nmonday = ["08:00-07:00"]\n',
            "monday[0]: end 07:00 is before start 08:00 - at `$.calling_hours`",
        ),
        (
            '[calling_hours]\nfallback_zone = "Mars/Base"\n',
            "fallback_zone: 'Mars/Base' is not an IANA time zone - at `$.calling_hours`",
        ),
        ('[calling_hours]\nmonday = "08:00-21:00"\n', "`$.calling_hours.monday`"),
        ('[calling_hours]\nskip_dates = ["25 December"]\n', "`$.calling_hours.skip_dates[0]`"),
        ("[calling_hours]\nmondya = []\n", "unknown field `mondya` - at `$.calling_hours`"),
        (
            f'[[calling_hours.customers]]\ncustomer_id = "{CUSTOMER}"\nsunday = ["8-12"]\n',
            "sunday[0]: '8-12' is not a window HH:MM-HH:MM - at `$.calling_hours.customers[0]`",
        ),
        (
            '[[calling_hours.customers]]\ncustomer_id = "acme"\n',
            "`$.calling_hours.customers[0].customer_id`",
        ),
        (
            f'[[calling_hours.customers]]\ncustomer_id = "{CUSTOMER}"\n'
            f'[[calling_hours.customers]]\ncustomer_id = "{CUSTOMER}"\n',
            f"customers[1]: customer {CUSTOMER} has calling hours twice",
        ),
    ],
)
def test_bad_calling_hours_name_the_key(text: str, expected: str) -> None:
    assert expected in config_error(text)


def test_the_example_configs_calling_hours_are_valid() -> None:
    text = (Path(__file__).resolve().parents[2] / "config" / "dialerd.toml").read_text()
    lines = text.splitlines()
    start = lines.index("# [[calling_hours.customers]]")
    for index in range(start, len(lines)):
        lines[index] = lines[index].removeprefix("# ")
    lines[lines.index('# fallback_zone = "Europe/London"')] = 'fallback_zone = "Europe/London"'
    hours = decode_config("\n".join(lines), "config/dialerd.toml").calling_hours
    assert hours.hours_for(OTHER_CUSTOMER) == CallingHours(fallback_zone="Europe/London")
    mine = hours.hours_for(CUSTOMER)
    assert mine.saturday == ("10:00-14:00",)
    assert mine.skip_dates == (date(2026, 12, 25), date(2027, 1, 1))


def test_a_lease_shorter_than_two_ticks_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"lease_ttl \(15 s\) must be at least two tick_interval"):
        decode_config("[engine]\ntick_interval = 60\n", SOURCE)
    config = decode_config("[engine]\ntick_interval = 60\nlease_ttl = 120\n", SOURCE)
    assert config.engine.lease_ttl == 120


def test_webhooks_and_smtp_are_read() -> None:
    config = decode_config(
        """
        [webhooks]
        allow_hosts = ["hooks.internal", "10.0.0.5"]
        timeout = 3
        [smtp]
        host = "mail.example.com"
        port = 465
        tls = true
        starttls = false
        username = "dialer"
        password_file = "/etc/dialerd/smtp-password"
        from = "dialer@example.com"
        """,
        SOURCE,
    )
    assert config.webhooks.allows("HOOKS.internal")
    assert not config.webhooks.allows("hooks.internal.evil.com")
    assert config.smtp is not None
    assert (config.smtp.port, config.smtp.tls, config.smtp.sender) == (
        465,
        True,
        "dialer@example.com",
    )
    assert decode_config("", SOURCE).smtp is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[webhooks]\nallow_host = []\n", "`allow_host`"),
        ('[webhooks]\nallow_hosts = ["https://x.example"]\n', "allow_hosts[0]"),
        ("[webhooks]\ntimeout = 0\n", "`$.webhooks.timeout`"),
        ('[smtp]\nhost = "m"\nfrom = "a@b.c"\nstarttls = true\ntls = true\n', "starttls and tls"),
        ('[smtp]\nhost = "m"\n', "`from`"),
        ('[smtp]\nhost = "m"\nfrom = "nobody"\n', "not an email address"),
        ('[smtp]\nhost = "m"\nfrom = "a@b.c"\npassword = "x"\n', "username"),
        ('[smtp]\nhost = "m"\nfrom = "a@b.c"\nsender = "a@b.c"\n', "`sender`"),
        ('[smtp]\nhost = "m"\nfrom = "a@b.c"\nport = 0\n', "`$.smtp.port`"),
    ],
)
def test_bad_webhooks_and_smtp_keys_are_named(text: str, named: str) -> None:
    assert named in config_error(text)


def test_the_smtp_password_stays_out_of_the_repr(tmp_path: Path) -> None:
    config = decode_config(
        '[smtp]\nhost = "m"\nfrom = "a@b.c"\nusername = "u"\npassword = "s3cret"\n', SOURCE
    )
    assert config.smtp is not None
    assert "s3cret" not in repr(config.smtp)
    assert config.smtp.read_password() == "s3cret"
    empty = tmp_path / "empty"
    empty.write_text("")
    empty.chmod(0o600)
    with_file = decode_config(
        f'[smtp]\nhost = "m"\nfrom = "a@b.c"\nusername = "u"\npassword_file = "{empty}"\n', SOURCE
    )
    assert with_file.smtp is not None
    with pytest.raises(ConfigError, match=r"\[smtp\] password_file .* is empty"):
        with_file.smtp.read_password()


def test_check_config_names_an_unreadable_smtp_password_file(tmp_path: Path) -> None:
    from dialerd.cli import main

    config = tmp_path / "dialerd.toml"
    config.write_text(
        f'[smtp]\nhost = "m"\nfrom = "a@b.c"\nusername = "u"\n'
        f'password_file = "{tmp_path}/missing"\n'
    )
    assert main(["check-config", str(config)]) == 1


# The abandonment governor: [abandonment] for every customer, per customer overrides.

REPO = Path(__file__).resolve().parents[2]


def test_without_an_abandonment_table_abandonment_is_measured_not_governed() -> None:
    policy = decode_config("", SOURCE).abandonment_for(CUSTOMER)
    assert policy.cap is None
    assert policy.windows == (1, 30)


def test_the_abandonment_table_sets_every_customers_cap_and_a_customer_may_replace_it() -> None:
    config = decode_config(
        "[abandonment]\n"
        "windows = [1, 7]\n"
        "[[abandonment.customers]]\n"
        f'customer_id = "{CUSTOMER}"\n'
        "cap = 0.01\n",
        SOURCE,
    )
    mine = config.abandonment_for(CUSTOMER)
    assert (mine.cap, mine.windows) == (0.01, (1, 7))
    other = config.abandonment_for(OTHER_CUSTOMER)
    assert (other.cap, other.windows) == (0.03, (1, 7))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[abandonment]\ncap = 1.5\n", "`$.abandonment.cap`"),
        ("[abandonment]\nwindows = []\n", "windows must name at least one window"),
        ("[abandonment]\nwindows = [0]\n", "`$.abandonment.windows[0]`"),
        ("[abandonment]\ncapp = 0.03\n", "unknown field `capp` - at `$.abandonment`"),
        (
            f'[[abandonment.customers]]\ncustomer_id = "{CUSTOMER}"\n'
            f'[[abandonment.customers]]\ncustomer_id = "{CUSTOMER}"\n',
            f"customers[1]: customer {CUSTOMER} has an abandonment cap twice",
        ),
        (
            "[engine]\nabandon_cap = 0.03\n",
            "abandon_cap has moved to [abandonment] cap",
        ),
        (
            "[engine]\nabandon_windows = [1]\n",
            "abandon_windows has moved to [abandonment] windows",
        ),
    ],
)
def test_bad_abandonment_config_names_the_key(text: str, expected: str) -> None:
    assert expected in config_error(text)


def test_the_shipped_config_governs_abandonment_and_the_sim_config_does_not() -> None:
    production = load_config(REPO / "config" / "dialerd.toml")
    assert production.abandonment_for(CUSTOMER).cap == 0.03
    text = (REPO / "config" / "dialerd.toml").read_text()
    lines = text.splitlines()
    start = lines.index("# [[abandonment.customers]]")
    for index in range(start, start + 3):
        lines[index] = lines[index].removeprefix("# ")
    example = decode_config("\n".join(lines), "config/dialerd.toml")
    assert example.abandonment_for(CUSTOMER).cap == 0.01
    assert load_config(REPO / "config" / "sim.toml").abandonment_for(CUSTOMER).cap is None


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o606, 0o660])
def test_a_token_file_others_may_read_is_refused_as_ssh_would(tmp_path: Path, mode: int) -> None:
    file = tmp_path / "ops-token"
    file.write_text("from-a-file-secret\n")
    file.chmod(mode)
    if mode & 0o070:
        try:  # a group other than the daemon's (root may give any)
            os.chown(file, -1, os.getegid() + 1)
        except PermissionError:
            pytest.skip("cannot give the file a group other than our own")
    config = decode_config(f'[ops]\ntoken_file = "{file}"\n')
    with pytest.raises(ConfigError) as refused:
        config.ops.read_token()
    message = str(refused.value)
    assert message.startswith(f"[ops] token_file '{file}': open to others (mode {mode:04o})")
    assert f"chmod 600 {file}" in message
    assert "from-a-file-secret" not in message


def test_a_token_file_of_the_daemons_own_group_is_read(tmp_path: Path) -> None:
    # root:dialerd 0640, as the installed dialerd.toml is.
    file = tmp_path / "ops-token"
    file.write_text("from-a-file-secret\n")
    file.chmod(0o640)
    os.chown(file, -1, os.getegid())
    assert decode_config(f'[ops]\ntoken_file = "{file}"\n').ops.read_token() == (
        "from-a-file-secret"
    )


def test_a_redis_password_stays_out_of_the_configs_repr() -> None:
    config = decode_config(
        '[store]\nbackend = "redis"\n[store.redis]\nurl = "redis://ops:s3cret@10.0.0.1:6379/0"\n'
        '[queue]\nbackend = "redis"\n[queue.redis]\nurl = "rediss://:s3cret@10.0.0.2/1"\n',
        SOURCE,
    )
    shown = repr(config)
    assert "s3cret" not in shown
    assert "redis://ops:***@10.0.0.1:6379/0" in shown
    assert "rediss://:***@10.0.0.2/1" in shown
    assert config.store.redis.url == "redis://ops:s3cret@10.0.0.1:6379/0"  # still usable


# Redis Sentinel ([store.redis] and [queue.redis]).


def test_sentinels_and_a_service_name_are_read_for_the_store_and_the_queue() -> None:
    config = decode_config(
        '[store]\nbackend = "redis"\n[store.redis]\n'
        'sentinels = ["10.0.0.1:26379", "[::1]:26380"]\nservice_name = "dialerd"\n'
        "min_replicas = 1\n"
        '[queue]\nbackend = "redis"\n[queue.redis]\n'
        'sentinels = ["10.0.0.1:26379"]\nservice_name = "agents"\n',
        SOURCE,
    )
    assert config.store.redis.sentinels == ["10.0.0.1:26379", "[::1]:26380"]
    assert config.store.redis.min_replicas == 1
    assert config.queue.redis.service_name == "agents"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('sentinels = ["h:26379"]', "sentinels and service_name go together"),
        ('service_name = "dialerd"', "sentinels and service_name go together"),
        ('sentinels = ["h"]\nservice_name = "d"', r"sentinels\[0\]: sentinel 'h' is not host:port"),
        ('sentinels = ["h:0"]\nservice_name = "d"', "is not host:port"),
        (
            'url = "unix:///run/redis.sock"\nsentinels = ["h:1"]\nservice_name = "d"',
            "with sentinels the url must start with redis://",
        ),
        ("min_replicas = -1", "min_replicas"),
    ],
)
def test_a_bad_sentinel_setting_is_refused_naming_it(section: str, expected: str) -> None:
    assert re.search(expected, config_error(f"[store.redis]\n{section}\n"))


def test_min_replicas_belongs_to_the_store_only() -> None:
    message = config_error('[queue]\nbackend = "redis"\n[queue.redis]\nmin_replicas = 1\n')
    assert "min_replicas, replica_timeout and failover_settle belong to [store.redis]" in message


# Redis Cluster ([store.redis] cluster = true).


def test_cluster_is_read_for_the_store() -> None:
    config = decode_config(
        '[store]\nbackend = "redis"\n[store.redis]\nurl = "redis://10.0.0.1:7000"\n'
        "cluster = true\n",
        SOURCE,
    )
    assert config.store.redis.cluster
    assert not decode_config("", SOURCE).store.redis.cluster


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            'cluster = true\nsentinels = ["h:26379"]\nservice_name = "d"',
            "cluster = true and sentinels do not go together",
        ),
        ('cluster = true\nurl = "unix:///run/redis.sock"', "with cluster = true the url must"),
        ('cluster = true\nurl = "redis://h:7000/2"', "names database 0"),
        ('cluster = "yes"', "cluster"),
    ],
)
def test_a_bad_cluster_setting_is_refused_naming_it(section: str, expected: str) -> None:
    assert re.search(expected, config_error(f"[store.redis]\n{section}\n"))


def test_cluster_belongs_to_the_store_only() -> None:
    message = config_error('[queue]\nbackend = "redis"\n[queue.redis]\ncluster = true\n')
    assert "cluster belongs to [store.redis]" in message


# How long a start waits for the store and the queue adapter (start_wait).


def test_start_wait_defaults_to_30_seconds_and_takes_0() -> None:
    assert decode_config("", SOURCE).store.redis.start_wait == 30.0
    config = decode_config('[store]\nbackend = "redis"\n[store.redis]\nstart_wait = 0\n', SOURCE)
    assert config.store.redis.start_wait == 0


def test_a_negative_or_endless_start_wait_is_refused_naming_the_key() -> None:
    for value in ("-1", "3601", '"soon"'):
        message = config_error(f"[store.redis]\nstart_wait = {value}\n")
        assert "$.store.redis.start_wait" in message


def test_the_queue_adapter_has_a_start_wait_of_its_own() -> None:
    assert decode_config("", SOURCE).queue.redis.start_wait == 30.0
    config = decode_config('[queue]\nbackend = "redis"\n[queue.redis]\nstart_wait = 5\n', SOURCE)
    assert config.queue.redis.start_wait == 5
    message = config_error("[queue.redis]\nstart_wait = -1\n")
    assert "$.queue.redis.start_wait" in message
