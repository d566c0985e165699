"""The telephony backend, flow runner and queue adapter chosen by configuration.

The daemon builds one ``Backends`` and starts it inside its task group before the
engine; adapters that hold connections (a Redis pool, an AMI session) are opened there
and closed when the daemon stops.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from dialerd import metrics
from dialerd.adapters.action_services import ActionServices
from dialerd.adapters.asterisk.ami import AmiClient
from dialerd.adapters.asterisk.ami_queue import AsteriskQueue
from dialerd.adapters.asterisk.ari import AriTelephony
from dialerd.adapters.flow_runner import ActionFlowRunner
from dialerd.adapters.redis_queue import RedisQueue
from dialerd.adapters.sim import SimCallCentre
from dialerd.adapters.tts import CommandTts, EspeakTts, Tts
from dialerd.config import AsteriskQueueConfig, AsteriskTelephony, Config, TtsConfig
from dialerd.ports import Clock, FlowRunner, QueueAdapter, Telephony
from dialerd.store import Store

# ARI connections when [telephony.asterisk] connections is 0: one per attempt in flight
# (engine.max_concurrent_attempts), at most this many.
MAX_ARI_CONNECTIONS = 64
# Seconds the backends' close may take at most (shielded: a stop does not cut it); the
# store's close (10 s) comes after: both within systemd's TimeoutStopSec.
CLOSE_GRACE = 2.0


class Backends:
    """What the engine dials through, reads agents from, and runs actions with."""

    def __init__(self, config: Config, clock: Clock, state_dir: Path, store: Store) -> None:
        # Text to speech for talk actions (the API asks it which languages have a voice).
        self.tts = make_tts(config.tts, state_dir)
        ledger = Path(config.sim.ledger) if config.sim.ledger else None
        if ledger is not None and not ledger.is_absolute():
            ledger = state_dir / ledger
        # Webhooks, mail and the DNC list, for every executor: real on every host.
        # Raises ConfigError when the [smtp] password file cannot be read.
        self.services = ActionServices(
            store,
            clock,
            webhooks=config.webhooks,
            smtp=config.smtp,
            # Both telephony backends run a call's media steps (the sim simulates them).
            call_media=config.telephony.backend in ("sim", "asterisk"),
        )
        # Flow campaigns: the actions for real, whatever the telephony backend.
        self.flows: FlowRunner = ActionFlowRunner(self.services, clock)
        # The simulated centre always exists (the sim backends when configured).
        self.sim = SimCallCentre(config.sim, clock, ledger_path=ledger, services=self.services)
        self.telephony: Telephony = self.sim.telephony
        self.queue: QueueAdapter = self.sim.queue
        self._stack = AsyncExitStack()
        self.redis_queue: RedisQueue | None = None
        if config.queue.backend == "redis":
            redis = config.queue.redis
            self.redis_queue = RedisQueue(
                url=redis.url,
                prefix=redis.prefix,
                pool_size=redis.pool_size,
                timeout=redis.timeout,
                sentinels=redis.sentinels,
                service_name=redis.service_name,
            )
            self.queue = self.redis_queue
        self.ari: AriTelephony | None = None
        self._max_attempts = config.engine.max_concurrent_attempts
        if config.telephony.backend == "asterisk":
            assert config.telephony.asterisk is not None  # the config refuses it missing
            self.ari = self._ari(config.telephony.asterisk)
            self.telephony = self.ari
        self.ami: AmiClient | None = None
        if config.queue.backend == "asterisk":
            assert config.queue.asterisk is not None
            self.ami, self.queue = self._ami_queue(config.queue.asterisk)

    def _ari(self, settings: AsteriskTelephony) -> AriTelephony:
        return AriTelephony(
            url=settings.ari_url,
            username=settings.username,
            password=settings.read_password(),
            app=settings.app,
            endpoint=settings.endpoint,
            queue_context=settings.queue_context,
            agentless_context=settings.agentless_context,
            amd=settings.amd,
            queue_timeout=settings.queue_timeout,
            connect_timeout=settings.connect_timeout,
            request_timeout=settings.request_timeout,
            tts=self.tts,
            services=self.services,
            media_url=settings.prompts_url(),
            media_listen=settings.media_address(),
            amd_context=settings.amd_context,
            recording_dir=settings.recording_dir,
            connections=settings.connections or min(self._max_attempts, MAX_ARI_CONNECTIONS),
            registration_check_seconds=settings.registration_check_interval,
            registration_check_timeout=settings.registration_check_timeout,
        )

    @staticmethod
    def _ami_queue(settings: AsteriskQueueConfig) -> tuple[AmiClient, AsteriskQueue]:
        ami = AmiClient(
            host=settings.host,
            port=settings.port,
            username=settings.username,
            secret=settings.read_secret(),
            events="agent",
            connect_timeout=settings.connect_timeout,
            request_timeout=settings.request_timeout,
        )
        queue = AsteriskQueue(ami, wrapup_time=settings.wrapup_time)
        ami.on_event = queue.on_event
        ami.on_connection = lambda up: metrics.queue_adapter_connected(queue.name, up=up)
        return ami, queue

    async def start(self, task_group: TaskGroup) -> None:
        """Open connections and start background work in ``task_group``.

        AMI is tried once here and kept up in the background: an Asterisk that is away
        does not stop the start. (ARI is the telephony backend: the engine runs it.)
        """
        self._stack.push_async_callback(self.services.aclose)
        if self.redis_queue is not None:
            await self.redis_queue.open()
            self._stack.push_async_callback(self.redis_queue.close)
        if self.ami is not None:
            await task_group.start(self.ami.run, name="ami")

    def unavailable_reason(self) -> str | None:
        """None while the backends can place calls and count agents; else why not."""
        telephony = self.telephony.unavailable_reason()
        if telephony is not None:
            return f"telephony unavailable: {telephony}"
        if self.ami is not None:
            queue = self.ami.unavailable_reason()
            if queue is not None:
                return f"queue adapter unavailable: {queue}"
        return None

    async def close(self) -> None:
        """Close what ``start`` opened, last opened first. Idempotent.

        Shielded and bounded (``CLOSE_GRACE``), as the store's close: a stop that
        cancels the daemon's clean-up would otherwise cut it at its first wait, and
        the connections not closed by then (a Redis queue adapter's pool) stay open."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_GRACE):
            await self._stack.aclose()

    def reconfigure(self, config: Config) -> None:
        """Apply what can change while running (the simulated centre's parameters,
        ``[webhooks]`` and ``[smtp]``); raise ``ConfigError`` for an unreadable password
        file before changing anything."""
        self.services.reconfigure(config.webhooks, config.smtp)
        self.sim.reconfigure(config.sim)


def make_tts(config: TtsConfig, state_dir: Path) -> Tts:
    """The configured text-to-speech engine, rendering into its cache directory."""
    cache = Path(config.cache_dir)
    if not cache.is_absolute():
        cache = state_dir / cache
    if config.engine == "command":
        return CommandTts(cache, config.command, languages=config.languages)
    return EspeakTts(cache)
