"""Configuration: a TOML file decoded into frozen structs that refuse unknown keys.

Errors name the file, the key path and what was expected, for example::

    config/x.toml: Expected `float`, got `str` - at `$.engine.tick_interval`
"""

from __future__ import annotations

import ipaddress
import os
import stat
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

import msgspec

from dialerd.core.abandonment import DEFAULT_WINDOWS, AbandonmentPolicy
from dialerd.core.fair_share import Ceiling, lower
from dialerd.core.hours import CallingHours
from dialerd.core.quotas import Count, Quotas, Rate
from dialerd.core.targets import CallingRules
from dialerd.service.logs import mask_text

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Uuid = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
CustomerId = Uuid


def parse_sentinel(text: str) -> tuple[str, int]:
    """``host:port`` as a pair; ``ValueError`` naming the text when it is not one."""
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"sentinel {text!r} is not host:port")
    return host.strip("[]"), int(port)


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class RedisConnection(_Section, frozen=True):
    url: str = "redis://127.0.0.1:6379/0"
    # Every key dialerd writes starts with "<prefix>:".
    prefix: str = "dialerd"
    pool_size: PositiveInt = 32
    # Seconds to wait for a connection from the pool, and for a reply.
    timeout: PositiveFloat = 2.0
    # Redis Sentinel: the sentinels ("host:port") asked for the primary of service_name
    # (the url then gives only the database, user and password). A failover is a short
    # outage: dialing resumes on the new primary without a restart (operations.md).
    sentinels: list[str] = msgspec.field(default_factory=list)
    service_name: str = ""
    # [store.redis] only. Replicas that must acknowledge a claim and a lease renewal
    # (WAIT) before anything is dialed on it, within replica_timeout seconds; fewer is
    # a store outage (behaviour.md, "Redis failover").
    min_replicas: NonNegativeInt = 0
    replica_timeout: PositiveFloat = 0.5
    # [store.redis] only. Seconds nothing is claimed after this instance wrote its
    # leases and live attempts back to a new primary, so the other instances sharing
    # the store have written theirs back too.
    failover_settle: NonNegativeFloat = 5.0
    # [store.redis] only. Redis Cluster: the url names one node (the others are found
    # from it); each customer's keys are on one slot (operations.md, "Redis Cluster").
    cluster: bool = False
    # Seconds the daemon waits at start for a Redis that does not answer yet (loading
    # its dataset, a Sentinel failover under way), retrying as it does in an outage; 0:
    # exit at once. [queue.redis]: counted from the start too, so the store's wait is
    # part of it. Keep it under TimeoutStartSec.
    start_wait: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        if bool(self.sentinels) != bool(self.service_name):
            raise ValueError("sentinels and service_name go together: give both or neither")
        if self.sentinels and self.url.startswith("unix://"):
            raise ValueError("with sentinels the url must start with redis:// or rediss://")
        for index, sentinel in enumerate(self.sentinels):
            try:
                parse_sentinel(sentinel)
            except ValueError as error:
                raise ValueError(f"sentinels[{index}]: {error}") from None
        if self.cluster:
            if self.sentinels:
                raise ValueError(
                    "cluster = true and sentinels do not go together: a cluster fails "
                    "over by itself"
                )
            if self.url.startswith("unix://"):
                raise ValueError(
                    "with cluster = true the url must start with redis:// or rediss://"
                )
            database = urlsplit(self.url).path.strip("/")
            if database not in ("", "0"):
                raise ValueError(
                    f"with cluster = true the url names database 0 (a cluster has no other), "
                    f"not {database}"
                )

    @property
    def durability_set(self) -> bool:
        """Whether a key that only the store uses differs from its default."""
        return (self.min_replicas, self.replica_timeout, self.failover_settle) != (0, 0.5, 5.0)

    def __repr__(self) -> str:
        # A password in the URL stays out of logs and tracebacks that print the config.
        values = {name: getattr(self, name) for name in self.__struct_fields__}
        values["url"] = mask_text(self.url, numbers=False)
        shown = ", ".join(f"{name}={value!r}" for name, value in values.items())
        return f"RedisConnection({shown})"


class StoreConfig(_Section, frozen=True):
    backend: Literal["sqlite", "redis"] = "sqlite"
    # SQLite file; relative paths are under the state directory.
    sqlite_path: str = "dialerd.sqlite3"
    redis: RedisConnection = msgspec.field(default_factory=RedisConnection)


class EngineConfig(_Section, frozen=True):
    # Seconds between two ticks of a running campaign.
    tick_interval: PositiveFloat = 1.0
    # Ceiling of concurrent attempts per campaign, whatever the service level says.
    max_concurrent_attempts: PositiveInt = 100
    # Ceiling of new attempts per second per campaign.
    max_attempts_per_second: PositiveFloat = 50.0
    # Seconds an answered attempt may go on after a stop before it is hung up.
    stop_grace: NonNegativeFloat = 30.0
    # Seconds a cancel or hang-up is repeated (with back-off) before an attempt whose
    # end the backend never reports is ended as lost, so that a stop always ends.
    release_timeout: PositiveFloat = 30.0
    # Seconds a flow attempt may run without reporting completion.
    flow_timeout: PositiveFloat = 300.0
    # Back-off after a campaign's loop fails or the backend keeps refusing.
    backoff_initial: PositiveFloat = 1.0
    backoff_max: PositiveFloat = 60.0
    # Seconds a campaign's lease lasts without renewal; another instance sharing the
    # store takes the campaign over this long after its owner died.
    lease_ttl: Annotated[float, msgspec.Meta(ge=1)] = 15.0
    # Abandonment (behaviour.md §10): a live answer not connected to an agent within
    # this many seconds counts abandoned (47 CFR 64.1200(a)(7): 2 s).
    abandon_seconds: NonNegativeFloat = 2.0
    # Moved to [abandonment] cap and windows (the governor acts only when configured).
    abandon_cap: float | None = None
    abandon_windows: list[int] | None = None
    # Where a day starts, in minutes east of UTC (60 for the UK in summer).
    abandon_day_offset_minutes: Annotated[int, msgspec.Meta(ge=-1440, le=1440)] = 0
    # Predictive pacing: seconds an agent is assumed to wrap up after a call (the queue
    # shows free agents, not when they will be free).
    predictive_wrap_up: NonNegativeFloat = 5.0

    def __post_init__(self) -> None:
        for name in ("abandon_cap", "abandon_windows"):
            if getattr(self, name) is not None:
                key = name.removeprefix("abandon_")
                raise ValueError(
                    f"{name} has moved to [abandonment] {key}: the abandonment governor "
                    "acts only when an [abandonment] table is configured"
                )
        if self.lease_ttl < 2 * self.tick_interval:
            raise ValueError(
                f"lease_ttl ({self.lease_ttl:g} s) must be at least two tick_interval "
                f"({self.tick_interval:g} s): the lease is renewed by the ticks, and would "
                "run out between them"
            )


class Range(_Section, frozen=True):
    """A uniform distribution of seconds between ``min`` and ``max``."""

    min: NonNegativeFloat
    max: NonNegativeFloat

    def __post_init__(self) -> None:
        if self.max < self.min:
            raise ValueError("max must be >= min")


class SimOutcomes(_Section, frozen=True):
    """Probabilities of each outcome of a simulated call (the rest is live answer)."""

    machine: Probability = 0.05
    busy: Probability = 0.1
    no_answer: Probability = 0.15
    failure: Probability = 0.02
    ring_time: Range = msgspec.field(default_factory=lambda: Range(min=2.0, max=12.0))
    talk_time: Range = msgspec.field(default_factory=lambda: Range(min=20.0, max=90.0))

    def __post_init__(self) -> None:
        if self.machine + self.busy + self.no_answer + self.failure > 1:
            raise ValueError("machine + busy + no_answer + failure must not exceed 1")


class SimConfig(_Section, frozen=True):
    """The simulated call centre (telephony backend and queue adapter ``sim``)."""

    seed: int = 1
    # Simulated seconds per real second.
    speed: PositiveFloat = 1.0
    default_agents: NonNegativeInt = 10
    # Agents per queue, keyed by its name ([[queues]] `name`); any other has ``default_agents``.
    agents: dict[str, NonNegativeInt] = msgspec.field(default_factory=dict)
    wrap_up: Range = msgspec.field(default_factory=lambda: Range(min=3.0, max=10.0))
    # An answered call no agent takes within this many seconds is abandoned.
    abandon_after: NonNegativeFloat = 2.0
    # Seconds the trunk takes to accept an origination (the originate call returns
    # then), and to act on a cancel or hang-up: a real backend is never instant.
    place_time: Range = msgspec.field(default_factory=lambda: Range(min=0.0, max=0.0))
    release_time: Range = msgspec.field(default_factory=lambda: Range(min=0.0, max=0.0))
    # Path of the append-only ledger of originations ("" = none); relative to state dir.
    ledger: str = ""
    outcomes: SimOutcomes = msgspec.field(default_factory=SimOutcomes)
    # Per-campaign outcome parameters, by campaign id.
    campaigns: dict[str, SimOutcomes] = msgspec.field(default_factory=dict)
    # A call's actions (behaviour.md, "Actions"): the share of callees who press each
    # key at a ``digits_receive`` (the rest press nothing), for example {"1" = 0.6,
    # "9" = 0.1}; the share of ``talk``/``play`` prompts a callee hangs up during; how
    # fast a ``talk`` text is spoken (characters per simulated second).
    digits: dict[str, Probability] = msgspec.field(default_factory=dict)
    hangup_during_prompt: Probability = 0.0
    talk_chars_per_second: PositiveFloat = 15.0

    def __post_init__(self) -> None:
        for key in self.digits:
            if len(key) != 1 or key not in "0123456789*#ABCD":
                raise ValueError(f"digits: {key!r} is not one DTMF key (0-9, *, #, A-D)")
        if sum(self.digits.values()) > 1:
            raise ValueError("digits: the shares must not add up to more than 1")


def read_secret_file(key: str, file: Path) -> str:
    """The stripped text of a password or token file; raise ``ConfigError`` naming ``key``
    and the file when it cannot be read, or when others may read it (as ssh refuses a
    private key): only its owner, and the daemon's own group, may."""
    try:
        with file.open("rb") as opened:
            status = os.fstat(opened.fileno())
            mode = stat.S_IMODE(status.st_mode)
            if mode & 0o007 or (mode & 0o070 and status.st_gid != os.getegid()):
                raise ConfigError(
                    f"{key} {str(file)!r}: open to others (mode {mode:04o}); a secret must "
                    f"be readable by its owner only: chmod 600 {file} (or 640 with the "
                    "daemon's own group, as for dialerd.toml)"
                )
            return opened.read().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{key} {str(file)!r}: cannot read: {why}") from None


class _SecretSection(_Section, frozen=True):
    """A section with a secret given inline or in a file (exactly one of the two)."""

    _section: ClassVar[str] = ""

    def __repr__(self) -> str:
        # Secrets stay out of logs and tracebacks that print the configuration.
        shown = ", ".join(
            f"{name}={'***' if name == self._secret_fields()[0] else repr(getattr(self, name))}"
            for name in self.__struct_fields__
        )
        return f"{type(self).__name__}({shown})"

    @staticmethod
    def _secret_fields() -> tuple[str, str]:
        raise NotImplementedError

    def _check_secret(self) -> None:
        inline, path = self._secret_fields()
        if bool(getattr(self, inline)) == bool(getattr(self, path)):
            raise ValueError(f"set exactly one of {inline} and {path}")

    def _read_secret(self) -> str:
        inline, path = self._secret_fields()
        value: str = getattr(self, inline)
        if value:
            return value
        file = Path(getattr(self, path))
        secret = read_secret_file(f"[{self._section}] {path}", file)
        if not secret:
            raise ConfigError(f"[{self._section}] {path} {str(file)!r} is empty")
        return secret


class AsteriskTelephony(_SecretSection, frozen=True):
    """Calls through Asterisk's REST interface (ARI)."""

    _section: ClassVar[str] = "telephony.asterisk"

    # Asterisk's HTTP server (http.conf); ARI is under /ari.
    ari_url: str = "http://127.0.0.1:8088"
    # An ari.conf user; its password inline or in a file (the file's only line).
    username: Annotated[str, msgspec.Meta(min_length=1)] = "dialerd"
    password: str = ""
    password_file: str = ""
    # The Stasis application answered calls enter before dialerd hands them on.
    app: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")] = "dialerd"
    # The dial string; {number} is the destination's target.
    endpoint: str = "PJSIP/{number}@trunk"
    # Where answered calls go (config/asterisk/extensions_dialerd.conf).
    queue_context: Annotated[str, msgspec.Meta(min_length=1)] = "dialerd-queue"
    agentless_context: Annotated[str, msgspec.Meta(min_length=1)] = "dialerd-agentless"
    # Run Asterisk's AMD() on answer; a machine ends the call as "machine".
    amd: bool = False
    # Seconds an answered call waits in the Asterisk queue for an agent.
    queue_timeout: PositiveInt = 20
    connect_timeout: PositiveFloat = 5.0
    request_timeout: PositiveFloat = 5.0
    # While connected, seconds between two checks that the application's events still
    # reach dialerd's websocket, and seconds the check's user event may take to come
    # back before the registration counts as lost (then dialerd reconnects). The checks
    # run one after the other, so the timeout may exceed the interval; at least 1 s
    # each: a timeout shorter than Asterisk's answer under load would reconnect for
    # nothing (and a reconnect hangs up the calls whose actions are running).
    registration_check_interval: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 15.0
    registration_check_timeout: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 10.0
    # Persistent HTTP connections to ARI at most (one request each at a time); 0: as many
    # as [engine] max_concurrent_attempts, up to 64 (Asterisk serves 100 sessions by
    # default: http.conf session_limit).
    connections: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    # Where dialerd serves talk prompts to Asterisk (host:port), and the URL Asterisk
    # fetches them from ("" = http://<media_listen>); "" media_listen = not served.
    media_listen: str = "127.0.0.1:8090"
    media_url: str = ""
    # The dialplan context an amd action continues into (it returns to Stasis).
    amd_context: Annotated[str, msgspec.Meta(min_length=1)] = "dialerd-amd-action"
    # Recordings (recording_start) go to <Asterisk's recording dir>/<recording_dir>/
    # <campaign id>/<campaigncall id>.<format>.
    recording_dir: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")] = (
        "dialerd"
    )

    def __post_init__(self) -> None:
        if not self.ari_url.startswith(("http://", "https://")):
            raise ValueError("ari_url must start with http:// or https://")
        if "{number}" not in self.endpoint:
            raise ValueError("endpoint must contain {number}")
        if self.media_listen and self.media_address() is None:
            raise ValueError('media_listen must be "host:port"')
        if self.media_url and not self.media_url.startswith(("http://", "https://")):
            raise ValueError("media_url must start with http:// or https://")
        if any(part in (".", "..") for part in self.recording_dir.split("/")):
            raise ValueError("recording_dir must stay under Asterisk's recording directory")
        self._check_secret()

    def media_address(self) -> tuple[str, int] | None:
        """``media_listen`` as (host, port); None when it is empty or not host:port."""
        host, _, port = self.media_listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return None
        return host.strip("[]"), int(port)

    def prompts_url(self) -> str:
        """Where Asterisk fetches prompts from."""
        return self.media_url or f"http://{self.media_listen}"

    @staticmethod
    def _secret_fields() -> tuple[str, str]:
        return ("password", "password_file")

    def read_password(self) -> str:
        """The password, read from ``password_file`` if given; raise ``ConfigError``."""
        return self._read_secret()


class AsteriskQueueConfig(_SecretSection, frozen=True):
    """Free agents of Asterisk queues, read over the manager interface (AMI)."""

    _section: ClassVar[str] = "queue.asterisk"

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 5038
    # A manager.conf user; its secret inline or in a file (the file's only line).
    username: Annotated[str, msgspec.Meta(min_length=1)] = "dialerd"
    secret: str = ""
    secret_file: str = ""
    # Seconds of wrap-up after a call when a member has no wrapuptime of its own: set it
    # to the queues' wrapuptime (AMI reports a member's, not a queue's).
    wrapup_time: NonNegativeInt = 0
    connect_timeout: PositiveFloat = 5.0
    request_timeout: PositiveFloat = 5.0

    def __post_init__(self) -> None:
        self._check_secret()

    @staticmethod
    def _secret_fields() -> tuple[str, str]:
        return ("secret", "secret_file")

    def read_secret(self) -> str:
        """The secret, read from ``secret_file`` if given; raise ``ConfigError``."""
        return self._read_secret()


class TtsConfig(_Section, frozen=True):
    """Text to speech for the talk action."""

    # "espeak-ng" (the Debian package), or "command": the program in ``command``, given
    # the text on stdin, {output} {language} {gender} in its arguments, writing a WAV.
    engine: Literal["espeak-ng", "command"] = "espeak-ng"
    command: list[str] = msgspec.field(default_factory=list)
    # The languages the command speaks (refused at create time otherwise); [] = any.
    languages: list[str] = msgspec.field(default_factory=list)
    # Where rendered prompts are kept; relative to state_dir.
    cache_dir: str = "tts"

    def __post_init__(self) -> None:
        if self.engine == "command" and not any("{output}" in part for part in self.command):
            raise ValueError('engine "command" needs a command naming its {output} file')


class TelephonyConfig(_Section, frozen=True):
    backend: Literal["sim", "asterisk"] = "sim"
    asterisk: AsteriskTelephony | None = None

    def __post_init__(self) -> None:
        if self.backend == "asterisk" and self.asterisk is None:
            raise ValueError('backend "asterisk" needs a [telephony.asterisk] section')


class QueueConfig(_Section, frozen=True):
    backend: Literal["sim", "redis", "asterisk"] = "sim"
    redis: RedisConnection = msgspec.field(default_factory=RedisConnection)
    asterisk: AsteriskQueueConfig | None = None

    def __post_init__(self) -> None:
        if self.backend == "asterisk" and self.asterisk is None:
            raise ValueError('backend "asterisk" needs a [queue.asterisk] section')
        if self.redis.durability_set:
            raise ValueError(
                "redis: min_replicas, replica_timeout and failover_settle belong to "
                "[store.redis] (the queue adapter only reads)"
            )
        if self.redis.cluster:
            raise ValueError(
                "redis: cluster belongs to [store.redis] (the queue adapter reads one server)"
            )


class QueueEntry(_Section, frozen=True):
    """A queue a customer's campaigns may name (``queue_id``), and its backend name."""

    id: Uuid
    customer_id: CustomerId
    # The queue as the backend knows it: an Asterisk queue, a Redis hash, a sim queue.
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class CustomerCallingHours(_Section, frozen=True):
    """One customer's calling hours: each key given replaces the ``[calling_hours]`` one."""

    customer_id: CustomerId
    monday: tuple[str, ...] | None = None
    tuesday: tuple[str, ...] | None = None
    wednesday: tuple[str, ...] | None = None
    thursday: tuple[str, ...] | None = None
    friday: tuple[str, ...] | None = None
    saturday: tuple[str, ...] | None = None
    sunday: tuple[str, ...] | None = None
    skip_dates: tuple[date, ...] | None = None
    # "" refuses callees of unknown zone even when [calling_hours] has a fallback.
    fallback_zone: str | None = None
    trust_data_zone: bool | None = None

    def __post_init__(self) -> None:
        self.apply(CallingHours())

    def apply(self, hours: CallingHours) -> CallingHours:
        """``hours`` with this customer's keys replacing its own."""
        given = {
            name: getattr(self, name)
            for name in CallingHours.__struct_fields__
            if getattr(self, name) is not None
        }
        return msgspec.structs.replace(hours, **given)


class CallingHoursConfig(CallingHours, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Calling hours in the callee's local time (behaviour.md §10): the default of
    every customer, and the customers' own."""

    customers: list[CustomerCallingHours] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        seen: set[str] = set()
        for index, customer in enumerate(self.customers):
            if customer.customer_id in seen:
                raise ValueError(
                    f"customers[{index}]: customer {customer.customer_id} has calling hours"
                    " twice in [[calling_hours.customers]]"
                )
            seen.add(customer.customer_id)

    def hours_for(self, customer_id: str) -> CallingHours:
        """The calling hours of ``customer_id``'s campaigns."""
        default = CallingHours(
            **{name: getattr(self, name) for name in CallingHours.__struct_fields__}
        )
        for customer in self.customers:
            if customer.customer_id == customer_id:
                return customer.apply(default)
        return default


def _check_windows(windows: list[int] | None) -> None:
    if windows is not None and not windows:
        raise ValueError("windows must name at least one window of days")


class CustomerAbandonment(_Section, frozen=True):
    """One customer's abandonment cap: each key given replaces the ``[abandonment]`` one."""

    customer_id: CustomerId
    cap: Probability | None = None
    windows: list[PositiveInt] | None = None

    def __post_init__(self) -> None:
        _check_windows(self.windows)


class AbandonmentConfig(_Section, frozen=True):
    """``[abandonment]``: the governor's cap (behaviour.md §3 and §10). Without the table
    abandonment is measured and shown, and no line is held back for it."""

    # The share of live answers a campaign may abandon, in every window (US, UK: 3 %).
    cap: Probability = 0.03
    # Windows the rate is held over, in days ending today: 1 (Ofcom), 30 (the FCC).
    windows: list[PositiveInt] = msgspec.field(default_factory=lambda: list(DEFAULT_WINDOWS))
    customers: list[CustomerAbandonment] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _check_windows(self.windows)
        seen: set[str] = set()
        for index, customer in enumerate(self.customers):
            if customer.customer_id in seen:
                raise ValueError(
                    f"customers[{index}]: customer {customer.customer_id} has an abandonment"
                    " cap twice in [[abandonment.customers]]"
                )
            seen.add(customer.customer_id)

    def policy_for(self, customer_id: str) -> AbandonmentPolicy:
        """The cap and windows ``customer_id``'s campaigns are held to."""
        cap, windows = self.cap, self.windows
        for customer in self.customers:
            if customer.customer_id == customer_id:
                cap = self.cap if customer.cap is None else customer.cap
                windows = self.windows if customer.windows is None else customer.windows
        return AbandonmentPolicy(cap=cap, windows=tuple(windows))


class ApiToken(_Section, frozen=True):
    token: Annotated[str, msgspec.Meta(min_length=8)]
    customer_id: CustomerId


class ApiConfig(_Section, frozen=True):
    enabled: bool = True
    listen: str = "127.0.0.1:8080"
    # Largest CSV or NDJSON import body (bytes); it is read as a stream, never held whole.
    max_body_bytes: PositiveInt = 64 * 1024 * 1024
    # Largest JSON body of any other request (bytes).
    max_json_bytes: PositiveInt = 1024 * 1024
    tokens: list[ApiToken] = msgspec.field(default_factory=list)
    # Accept the token in the URL (?token=, ?accesskey=) as VoIPbin does, for clients
    # that cannot send a header or cookie. Off: URLs end up in proxy and access logs.
    query_token: bool = False
    # Slow and idle clients (docs/operations.md, "Security"). Connections one listener
    # (this and [ops]) holds open; one more is answered 503 and closed.
    max_connections: PositiveInt = 512
    # Seconds a connection may stay idle between requests, and may take to send a
    # request's headers; then it is closed.
    keep_alive_timeout: PositiveFloat = 5.0
    # Seconds a request body may pause, and may take in all, before a 408.
    body_timeout: PositiveFloat = 15.0
    body_total_timeout: PositiveFloat = 600.0
    # Requests of one customer in progress at once; more are answered 429.
    max_requests_per_customer: PositiveInt = 64

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        first: dict[str, int] = {}
        for index, entry in enumerate(self.tokens):
            earlier = first.setdefault(entry.token, index)
            if earlier != index:
                # The token itself stays out of the message: it goes to logs.
                raise ValueError(
                    f"tokens[{index}] (customer {entry.customer_id}) has the same token as "
                    f"tokens[{earlier}] (customer {self.tokens[earlier].customer_id}): "
                    "each token must be unique, or its requests would go to one customer"
                )


class MetricsConfig(_Section, frozen=True):
    # Serve /metrics on the operations listener ([ops]).
    enabled: bool = True
    # Replaced by [ops] listen: /metrics is never on the API's listener any more.
    listen: str = ""

    def __post_init__(self) -> None:
        if self.listen:
            raise ValueError(
                "[metrics] listen is replaced by [ops] listen: /metrics, /healthz and /readyz "
                "share the operations listener"
            )


class OpsConfig(_Section, frozen=True):
    """The operations listener: ``/metrics``, ``/healthz``, ``/readyz``, apart from the API."""

    enabled: bool = True
    # Loopback by default: Prometheus and health checks run on the host or scrape
    # through a proxy. Port 0 picks a free port (tests).
    listen: str = "127.0.0.1:9108"
    # Optional bearer token every request must send ("Authorization: Bearer ..."),
    # inline or in a file (its only line); at most one of the two. Empty: no token.
    token: str = ""
    token_file: str = ""

    def __post_init__(self) -> None:
        parse_listen(self.listen)
        if self.token and self.token_file:
            raise ValueError("set at most one of token and token_file")
        if self.token and len(self.token) < 8:
            raise ValueError("token must be at least 8 characters")

    def __repr__(self) -> str:
        # The token stays out of logs and tracebacks that print the configuration.
        token = "***" if self.token else "''"
        return (
            f"OpsConfig(enabled={self.enabled!r}, listen={self.listen!r}, token={token}, "
            f"token_file={self.token_file!r})"
        )

    def read_token(self) -> str | None:
        """The bearer token (read from ``token_file`` if given), or None for none;
        raise ``ConfigError`` when the file cannot be read or is empty."""
        if self.token:
            return self.token
        if not self.token_file:
            return None
        file = Path(self.token_file)
        secret = read_secret_file("[ops] token_file", file)
        if len(secret) < 8:
            raise ConfigError(f"[ops] token_file {str(file)!r}: token shorter than 8 characters")
        return secret


class LogConfig(_Section, frozen=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # "auto": console on a terminal, JSON otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class CallingRulesConfig(_Section, frozen=True):
    """``[calling_rules]``: the lockout after an abandoned call (UK: 72 hours) and the
    most attempts a number gets per UTC day across a customer's campaigns; 0 is off."""

    abandoned_lockout_hours: NonNegativeFloat = 0.0
    daily_attempts_per_number: Annotated[int, msgspec.Meta(ge=0)] = 0


class WebhooksConfig(_Section, frozen=True):
    """``[webhooks]``: where a campaign's ``webhook_send`` may reach.

    A customer's URL must be ``https://`` to a host whose every address is public
    (not loopback, link-local, private, shared or otherwise special); a host named in
    ``allow_hosts`` may also be ``http://`` and resolve anywhere (an internal receiver
    the operator trusts)."""

    # Host names or IP addresses, as written in the URL (compared without case).
    allow_hosts: list[Annotated[str, msgspec.Meta(min_length=1, max_length=253)]] = msgspec.field(
        default_factory=list
    )
    # Seconds one webhook may take (connect, send, answer) before it fails.
    timeout: PositiveFloat = 10.0

    def __post_init__(self) -> None:
        for index, host in enumerate(self.allow_hosts):
            if any(char in host for char in "/:@ ") and not _is_ip(host):
                raise ValueError(
                    f"allow_hosts[{index}] {host!r}: a host name or IP address, without "
                    "scheme, port or path"
                )

    def allows(self, host: str) -> bool:
        """Whether the operator allows ``host`` (as written in a URL)."""
        host = host.lower().removeprefix("[").removesuffix("]")
        return any(host == allowed.lower().strip("[]") for allowed in self.allow_hosts)


class EventsConfig(_Section, frozen=True):
    """``[events]``: delivering each customer's events to its webhook (dialerd.events).

    Receivers are reached under the ``[webhooks]`` URL policy (``allow_hosts``)."""

    # Deliver at all (the outbox is written and the stream served either way).
    enabled: bool = True
    # How long one event is retried before it is set aside as failed (seconds).
    retry_for: PositiveFloat = 86400.0
    # The first retry's wait; each next one doubles, up to ``max_backoff`` (seconds).
    first_backoff: PositiveFloat = 1.0
    max_backoff: PositiveFloat = 300.0
    # Seconds one delivery may take (connect, send, answer).
    timeout: PositiveFloat = 10.0
    # How often the sender looks for new events when it found none (seconds).
    poll_interval: PositiveFloat = 0.1
    # Deliveries of one customer in flight at once, each of another campaign (one
    # campaign's events always go one after the other, in order).
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8
    # The delivery lease per customer: one instance sends a customer's events at a time.
    lease_ttl: PositiveFloat = 15.0
    # Delivered events are kept this long for stream clients resuming (seconds).
    keep_delivered: PositiveFloat = 3600.0

    def __post_init__(self) -> None:
        if self.lease_ttl <= self.timeout:
            raise ValueError(
                f"lease_ttl ({self.lease_ttl:g}) must be longer than timeout "
                f"({self.timeout:g}): the lease is renewed between deliveries"
            )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


class SmtpConfig(_SecretSection, frozen=True):
    """``[smtp]``: the server ``email_send`` hands mail to (absent: no ``email_send``)."""

    _section: ClassVar[str] = "smtp"

    host: Annotated[str, msgspec.Meta(min_length=1)]
    # The sender (``From:``) of every mail.
    sender: Annotated[str, msgspec.Meta(min_length=3, max_length=254)] = msgspec.field(name="from")
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 587
    # STARTTLS after connecting (port 587), or TLS from the first byte (port 465);
    # at most one of the two. Neither: plain SMTP (a relay on the same host).
    starttls: bool = True
    tls: bool = False
    # Log in when set; the password inline or in a file (its only line).
    username: str = ""
    password: str = ""
    password_file: str = ""
    # Seconds to connect, and to wait for each reply of the server.
    timeout: PositiveFloat = 30.0

    def __post_init__(self) -> None:
        if self.starttls and self.tls:
            raise ValueError("set at most one of starttls and tls")
        if self.password and self.password_file:
            raise ValueError("set at most one of password and password_file")
        if bool(self.username) != bool(self.password or self.password_file):
            raise ValueError("username needs password or password_file, and they need it")
        if "@" not in self.sender:
            raise ValueError(f"from {self.sender!r} is not an email address")

    @staticmethod
    def _secret_fields() -> tuple[str, str]:
        return ("password", "password_file")

    def read_password(self) -> str:
        """The password ("" without login), read from ``password_file`` if given; raise
        ``ConfigError`` when the file cannot be read or is empty."""
        return self._read_secret() if self.username else ""


class CustomerQuotas(_Section, frozen=True):
    """One customer's quotas: each key given replaces the ``[quotas]`` one."""

    customer_id: CustomerId
    running_campaigns: Count | None = None
    concurrent_calls: Count | None = None
    calls_per_second: Rate | None = None
    campaigns: Count | None = None
    outdials: Count | None = None
    targets_per_outdial: Count | None = None
    targets: Count | None = None
    dnc_numbers: Count | None = None

    def apply(self, quotas: Quotas) -> Quotas:
        """``quotas`` with this customer's keys replacing its own."""
        given = {
            name: getattr(self, name)
            for name in Quotas.__struct_fields__
            if getattr(self, name) is not None
        }
        return msgspec.structs.replace(quotas, **given)


class QuotasConfig(Quotas, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """``[quotas]``: every customer's limits (0: none), and ``[[quotas.customers]]``
    overrides of single customers (behaviour.md §10, Quotas)."""

    customers: list[CustomerQuotas] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for index, customer in enumerate(self.customers):
            if customer.customer_id in seen:
                raise ValueError(
                    f"customers[{index}]: customer {customer.customer_id} has quotas twice"
                    " in [[quotas.customers]]"
                )
            seen.add(customer.customer_id)

    def quotas_for(self, customer_id: str) -> Quotas:
        """The quotas of ``customer_id``."""
        default = Quotas(**{name: getattr(self, name) for name in Quotas.__struct_fields__})
        for customer in self.customers:
            if customer.customer_id == customer_id:
                return customer.apply(default)
        return default


class TrunkLimits(_Section, frozen=True):
    """The ceiling of one trunk: the telephony backend's endpoint (``[telephony.asterisk]
    endpoint``, or ``sim`` for the simulator)."""

    endpoint: Annotated[str, msgspec.Meta(min_length=1)]
    max_concurrent_calls: Count = 0
    max_calls_per_second: Rate = 0.0


class LimitsConfig(_Section, frozen=True):
    """``[limits]``: the ceiling of calls this process starts, over every customer, shared
    fairly between the customers that want calls (0: none)."""

    max_concurrent_calls: Count = 0
    max_calls_per_second: Rate = 0.0
    trunks: list[TrunkLimits] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for index, trunk in enumerate(self.trunks):
            if trunk.endpoint in seen:
                raise ValueError(
                    f"trunks[{index}]: endpoint {trunk.endpoint!r} is listed twice in "
                    "[[limits.trunks]]"
                )
            seen.add(trunk.endpoint)

    def ceiling(self, trunk: str) -> Ceiling:
        """The lower of the process's ceiling and that of ``trunk`` (the endpoint)."""
        own = next((t for t in self.trunks if t.endpoint == trunk), None)
        concurrent = lower(
            self.max_concurrent_calls or None, own.max_concurrent_calls or None if own else None
        )
        rate = lower(
            self.max_calls_per_second or None, own.max_calls_per_second or None if own else None
        )
        return Ceiling(
            concurrent_calls=None if concurrent is None else int(concurrent),
            calls_per_second=rate,
        )


class Config(_Section, frozen=True):
    state_dir: str = "/var/lib/dialerd"
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)
    telephony: TelephonyConfig = msgspec.field(default_factory=TelephonyConfig)
    queue: QueueConfig = msgspec.field(default_factory=QueueConfig)
    queues: list[QueueEntry] = msgspec.field(default_factory=list)
    # None (no [calling_hours] table): no calling hours are enforced.
    calling_hours: CallingHoursConfig | None = None
    calling_rules: CallingRulesConfig = msgspec.field(default_factory=CallingRulesConfig)
    webhooks: WebhooksConfig = msgspec.field(default_factory=WebhooksConfig)
    events: EventsConfig = msgspec.field(default_factory=EventsConfig)
    # None (no [smtp] table): campaigns with email_send cannot run.
    smtp: SmtpConfig | None = None
    # None (no [abandonment] table): abandonment is measured, no line is held back for it.
    abandonment: AbandonmentConfig | None = None
    quotas: QuotasConfig = msgspec.field(default_factory=QuotasConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    sim: SimConfig = msgspec.field(default_factory=SimConfig)
    api: ApiConfig = msgspec.field(default_factory=ApiConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    ops: OpsConfig = msgspec.field(default_factory=OpsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    tts: TtsConfig = msgspec.field(default_factory=TtsConfig)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for queue in self.queues:
            if queue.id in seen:
                raise ValueError(f"queue id {queue.id} is registered twice in [[queues]]")
            seen.add(queue.id)

    @property
    def trunk(self) -> str:
        """The trunk this process's calls go out on: the telephony backend's endpoint."""
        if self.telephony.backend == "asterisk" and self.telephony.asterisk is not None:
            return self.telephony.asterisk.endpoint
        return self.telephony.backend

    def call_ceiling(self) -> Ceiling:
        """The ceiling of calls of this process (``[limits]``, and its trunk's)."""
        return self.limits.ceiling(self.trunk)

    def rules_for(self, customer_id: str) -> CallingRules | None:
        """The calling rules of the customer's campaigns (None: none configured)."""
        rules = self.calling_rules
        if (
            self.calling_hours is None
            and not rules.abandoned_lockout_hours
            and not rules.daily_attempts_per_number
        ):
            return None
        return CallingRules(
            hours=None if self.calling_hours is None else self.calling_hours.hours_for(customer_id),
            abandoned_lockout=timedelta(hours=rules.abandoned_lockout_hours)
            if rules.abandoned_lockout_hours
            else None,
            daily_attempts=rules.daily_attempts_per_number or None,
        )

    def abandonment_for(self, customer_id: str) -> AbandonmentPolicy:
        """The abandonment windows of the customer's campaigns, and the cap the governor
        holds them to (None: no ``[abandonment]`` table, measured only)."""
        if self.abandonment is None:
            return AbandonmentPolicy()
        return self.abandonment.policy_for(customer_id)


class ConfigError(Exception):
    """The configuration file is missing or invalid; the message names file and key."""


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6); raise ``ValueError`` if malformed."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"listen address {listen!r} is not host:port")
    host = host.removeprefix("[").removesuffix("]")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"listen address {listen!r}: host {host!r} is not an IP address or localhost"
            ) from None
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"listen address {listen!r}: port {port} is out of range 0-65535")
    return host, port


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise ``ConfigError`` naming what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return decode_config(data, str(path))


def decode_config(data: bytes | str, source: str = "<config>") -> Config:
    """Validate TOML text; raise ``ConfigError`` naming ``source`` and the key path."""
    try:
        return msgspec.toml.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
