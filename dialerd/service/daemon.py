"""The daemon: one root task group that starts every component and owns the signals.

Start-up order: store, adapters, engine, HTTP servers; READY is sent to systemd only
when all of them have started. A store that does not answer yet is waited for (the ops
listener up meanwhile) for at most ``[store.redis] start_wait``, and the queue adapter's
Redis until ``[queue.redis] start_wait`` after the start. SIGTERM/SIGINT: stop
ticking, let in-flight writes end, close the store, exit 0. SIGHUP: re-read the config
file and apply what can change.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from functools import cache, partial
from pathlib import Path

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from dialerd import __version__, metrics
from dialerd.api import create_app, serve_api, set_api_config, stop_imports
from dialerd.api.server import ServerLimits
from dialerd.campaigns import CampaignScheduler, CampaignService
from dialerd.config import Config, ConfigError, load_config
from dialerd.core.targets import CallingRules
from dialerd.events.sender import EventSender
from dialerd.events.states import CampaignStateEvents
from dialerd.ports import Clock, QueueUnavailable
from dialerd.queues import QueueRegistry, registry_entries
from dialerd.scheduler import Engine
from dialerd.scheduler.shared import STORE_RETRY, backoff
from dialerd.service import logs, sdnotify
from dialerd.service.backends import Backends
from dialerd.service.clock import SystemClock
from dialerd.service.identity import claim_identity, public_id
from dialerd.service.ops_http import OpsAuth, ops_app
from dialerd.service.statedir import make_private_file, make_state_dir
from dialerd.service.store_wait import open_store, open_waiting, store_name
from dialerd.store import Store, StoreError, StoreUnavailable, create_store

log = structlog.get_logger("dialerd.daemon")

# Ticks the watchdog tolerates without scheduler progress before it stops pinging.
STALL_TICKS = 5
# A store call that cannot get an answer ends after at most this many store timeouts
# (waiting for a pooled connection, connecting, reading the reply): a scheduler round
# blocked that long on a black-holed store is still alive.
STORE_CALL_TIMEOUTS = 3
SHUTDOWN_GRACE = 10.0
# Seconds between two store checks, and the most one check may take.
HEALTH_PERIOD = 2.0
READINESS_CHECK_TIMEOUT = 5.0


def stall_limit(config: Config, watchdog: float | None = None) -> float:
    """Seconds without scheduler progress after which the scheduler counts as stalled.

    Five ticks, or longer when one store call may legitimately take longer during an
    outage (``STORE_CALL_TIMEOUTS`` x the store's timeout, plus two ticks), so an
    outage does not get the daemon killed. Under a systemd watchdog of ``watchdog``
    seconds the limit never exceeds it: a store that hangs for longer (a timeout too
    long for the watchdog, which ``check-config`` refuses) is a hung daemon.
    """
    limit = STALL_TICKS * config.engine.tick_interval
    if config.store.backend == "redis":
        store_bound = (
            STORE_CALL_TIMEOUTS * config.store.redis.timeout + 2 * config.engine.tick_interval
        )
        limit = max(limit, store_bound)
    return min(limit, watchdog) if watchdog else limit


def watchdog_problem(config: Config, watchdog: float) -> str | None:
    """Why a store outage would get the daemon killed under a ``watchdog`` of that many
    seconds, or None when it would not."""
    if config.store.backend != "redis":
        return None
    needed = stall_limit(config)
    if needed < watchdog:
        return None
    timeout = config.store.redis.timeout
    return (
        f"[store.redis] timeout = {timeout:g}: during a store outage one scheduler round may "
        f"block {needed:g} s ({STORE_CALL_TIMEOUTS} x timeout + 2 ticks), not under the "
        f"watchdog's {watchdog:g} s, so systemd would kill the daemon and the outcomes it "
        f"holds would be lost; lower the timeout below "
        f"{(watchdog - 2 * config.engine.tick_interval) / STORE_CALL_TIMEOUTS:g} s or raise "
        f"WatchdogSec"
    )


def _rules_of(config: Config) -> Callable[[str], CallingRules | None]:
    """The configuration's calling rules per customer, built once per customer: every
    claim and every finish asks for them."""
    return cache(config.rules_for)


class Daemon:
    """Every component of a running dialerd, built from one ``Config``."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        state_dir: Path | None = None,
        clock: Clock | None = None,
        log_format: logs.LogFormat | None = None,
        api_listen: str | None = None,
    ) -> None:
        if api_listen:
            config = msgspec.structs.replace(
                config, api=msgspec.structs.replace(config.api, listen=api_listen)
            )
        self.config = config
        self.log_format_override = log_format
        # ``--listen`` wins over the file on every reload too.
        self.api_listen_override = api_listen or None
        self.config_path = config_path
        self.state_dir = Path(state_dir or config.state_dir)
        self.clock = clock or SystemClock()
        self.store: Store = create_store(config.store, self.state_dir)
        self.queues = QueueRegistry(registry_entries(config.queues))
        self.backends = Backends(config, self.clock, self.state_dir, self.store)
        self.sim = self.backends.sim
        self.engine = Engine(
            store=self.store,
            queue=self.backends.queue,
            queues=self.queues,
            telephony=self.backends.telephony,
            flows=self.backends.flows,
            clock=self.clock,
            config=config.engine,
            campaigns=self._campaign_service,
            calling_rules=_rules_of(config),
            abandonment=cache(config.abandonment_for),
            ceiling=config.call_ceiling(),
            quotas_of=cache(config.quotas.quotas_for),
        )
        self.campaigns = self.engine.control
        # Events out: each customer's events to its webhook, in tasks of their own.
        self.events = EventSender(
            self.store,
            self.clock,
            owner="",
            config=config.events,
            webhooks=lambda: self.config.webhooks,
        )
        self.state_events = CampaignStateEvents(self.store, self.clock, self.engine.insight)
        self.engine.on_state_change(self.state_events.note)
        self.app = create_app(
            store=self.store,
            campaigns=self.campaigns,
            clock=self.clock,
            config=config.api,
            quotas=config.quotas,
            webhooks=config.webhooks,
            closing=lambda: self.shutdown.is_set(),
        )
        # Raises ConfigError when the token file cannot be read.
        self.ops_auth = OpsAuth(config.ops.read_token())
        # The one registry of the process's metrics ([metrics] enabled = false: no /metrics).
        self.registry = metrics.create_registry()
        self.ops_app = ops_app(
            self.readiness,
            registry=self.registry if config.metrics.enabled else None,
            auth=self.ops_auth,
        )
        self.api_address: tuple[str, int] | None = None
        self.ops_address: tuple[str, int] | None = None
        self.shutdown = anyio.Event()
        self._ready = True
        # Why the store or the queue adapter is not open yet while start-up waits for it
        # (``_open_store``, ``_open_queue``).
        self._start_problem: str | None = None
        # Why the last reload was rejected (shown in STATUS=), None after a good one.
        self.reload_problem: str | None = None

    def _campaign_service(self, scheduler: CampaignScheduler) -> CampaignService:
        """The campaign commands, telling ``scheduler`` (the engine) of each change."""
        return CampaignService(
            self.store,
            self.clock,
            scheduler,
            queues=self.queues,
            queue_adapter=self.backends.queue,
            # A campaign whose actions need more (email_send without [smtp]) cannot run.
            capabilities=self.backends.services.capabilities(),
            # A talk in a language text to speech cannot speak is a 400 (Asterisk only:
            # the sim speaks nothing).
            has_voice=self.backends.tts.has_voice if self.backends.ari is not None else None,
        )

    async def readiness(self) -> str | None:
        """None when ready; otherwise why not (store unreachable, scheduler stalled,
        telephony or queue backend away)."""
        if self._start_problem is not None:
            return self._start_problem
        store = await self._store_problem()
        if store is not None:
            return store
        if self._stalled():
            return "scheduler is not making progress"
        return self.backends.unavailable_reason()

    async def _store_problem(self) -> str | None:
        try:
            await self.store.ping()
        except StoreError as exc:
            return f"store unreachable: {exc}"
        return None

    def _stalled(self) -> bool:
        limit = stall_limit(self.config, sdnotify.watchdog_interval())
        return self.clock.monotonic() - self.engine.last_progress > limit

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until ``shutdown`` is set (by a signal or a caller)."""
        async with AsyncExitStack() as stack:
            # Under systemd StateDirectory= makes it; elsewhere no backend may assume it.
            make_state_dir(self.state_dir)
            if self.config.store.backend == "sqlite":
                # Made here, 0600: SQLite would make it (and its -wal, -shm) by the umask.
                make_private_file(self.state_dir / self.config.store.sqlite_path)
            identity = claim_identity(self.state_dir)
            stack.callback(identity.release)
            self.engine.owner = identity.name
            self.events.owner = identity.name
            failed: StoreError | QueueUnavailable | None = None
            # Servers stop by themselves once ``shutdown`` is set (Hypercorn's graceful
            # shutdown); the engine and the watchdog are cancelled. The store closes
            # after the servers have stopped (callbacks pushed on ``stack``).
            async with anyio.create_task_group() as servers:
                started = self.clock.monotonic()
                opened = False
                try:
                    if await self._open_store(servers):
                        stack.push_async_callback(self._close_store)
                        stack.push_async_callback(self.backends.close)
                        opened = await self._open_queue(servers, started)
                except (StoreError, QueueUnavailable) as exc:
                    # The ops listener (up while the store was waited for) stops first.
                    failed = exc
                    self.shutdown.set()
                self._start_problem = None
                if opened:
                    await self._run_opened(servers, identity.name, task_status)
            if failed is not None:
                raise failed

    async def _run_opened(
        self, servers: TaskGroup, instance: str, task_status: TaskStatus[None]
    ) -> None:
        """With the store open: start the rest, serve until ``shutdown``, then drain."""
        async with anyio.create_task_group() as core:
            await self.backends.start(core)
            await core.start(self.engine.run)
            await core.start(self.state_events.run)
            if self.config.events.enabled:
                # Off the dialing path: a slow receiver waits in its own task.
                await core.start(self.events.run)
            core.start_soon(self._watchdog)
            core.start_soon(self._health)
            self._warn_watchdog()
            await self._start_servers(servers)
            sdnotify.ready()
            log.info(
                "dialerd ready",
                version=__version__,
                instance=public_id(instance),
                api=self._api_text(),
                ops=_url(self.ops_address),
            )
            task_status.started()
            await self.shutdown.wait()
            sdnotify.stopping()
            log.info("dialerd stopping")
            # Now, not at Hypercorn's graceful timeout: its asyncio cancellation goes
            # through AnyIO's shields, and it then waits forever behind the body.
            stop_imports(self.app)
            # Answered calls may finish within the stop grace; nothing new starts.
            await self.engine.drain()
            core.cancel_scope.cancel()

    async def _open_store(self, servers: TaskGroup) -> bool:
        """Open the store, waiting up to ``[store.redis] start_wait`` for one that does not
        answer yet; False when the daemon is stopped meanwhile.

        While it waits, the ops listener is up (``/readyz`` says why it is not ready,
        ``dialerd_store_up`` is 0) but the API is not: every API request needs the store,
        and the campaign commands the running engine, which starts after it.
        """
        store = self.config.store
        wait = store.redis.start_wait if store.backend == "redis" else 0.0

        async def retrying(error: StoreUnavailable, pause: float) -> None:
            metrics.STORE_UP.set(0)
            await self._waiting_at_start(servers, "store", str(error))
            log.warning(
                "store unreachable at start; retrying",
                store=store_name(store),
                error=str(error),
                retry_in=round(pause, 3),
                start_wait=wait,
            )

        return await open_store(
            self.store,
            wait=wait,
            clock=self.clock,
            delay=self._start_retry_delay,
            stopping=self.shutdown,
            on_retry=retrying,
        )

    async def _open_queue(self, servers: TaskGroup, started: float) -> bool:
        """Open the Redis queue adapter (``[queue.redis]``), if configured, as the store
        is opened: waiting until ``[queue.redis] start_wait`` after the start (``started``)
        for a Redis that does not answer yet; False when the daemon is stopped meanwhile."""
        queue = self.backends.redis_queue
        if queue is None:
            return True
        wait = self.config.queue.redis.start_wait

        async def retrying(error: QueueUnavailable, pause: float) -> None:
            await self._waiting_at_start(servers, "queue adapter", str(error))
            log.warning(
                "queue adapter unreachable at start; retrying",
                queue=queue.shown_url,
                error=str(error),
                retry_in=round(pause, 3),
                start_wait=wait,
            )

        return await open_waiting(
            queue,
            QueueUnavailable,
            section="[queue.redis]",
            wait=wait,
            since=started,
            clock=self.clock,
            delay=self._start_retry_delay,
            stopping=self.shutdown,
            on_retry=retrying,
        )

    def _start_retry_delay(self, failures: int) -> float:
        """Seconds before the next try at start: the back-off of a run-time outage."""
        return min(backoff(self.config.engine, failures), STORE_RETRY)

    async def _waiting_at_start(self, servers: TaskGroup, what: str, error: str) -> None:
        """Start-up waits for ``what``: ``/readyz`` (the ops listener up, if enabled) and
        systemd's STATUS say so."""
        self._start_problem = f"{what} unreachable (waiting at start): {error}"
        if self.config.ops.enabled and self.ops_address is None:
            await self._start_ops(servers)
        sdnotify.status(f"waiting for the {what}: {error}")

    async def _start_servers(self, task_group: TaskGroup) -> None:
        if self.config.api.enabled:
            self.api_address = await task_group.start(
                partial(
                    serve_api,
                    self.app,
                    self.config.api.listen,
                    shutdown_trigger=self.shutdown.wait,
                    limits=ServerLimits.of(self.config.api),
                )
            )
        if self.config.ops.enabled and self.ops_address is None:
            await self._start_ops(task_group)

    async def _start_ops(self, task_group: TaskGroup) -> None:
        self.ops_address = await task_group.start(
            partial(
                serve_api,
                self.ops_app,
                self.config.ops.listen,
                shutdown_trigger=self.shutdown.wait,
                limits=ServerLimits.of(self.config.api),
            )
        )

    def _api_text(self) -> str:
        return _url(self.api_address)

    def _warn_watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        problem = watchdog_problem(self.config, interval) if interval else None
        if problem is not None:
            log.warning("watchdog shorter than a store outage round", problem=problem)

    async def _close_store(self) -> None:
        # Shielded and bounded: in-flight writes end, then the store closes, whatever
        # cancelled us.
        with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE):
            await self.store.close()

    async def _watchdog(self) -> None:
        """Ping systemd (and publish STATUS) only while the scheduler makes progress.

        Nothing here waits for the store: a store call blocked in an outage must not
        hold back the pings (``_health`` checks the store in a task of its own).
        """
        interval = sdnotify.watchdog_interval()
        period = min(interval / 2, 5.0) if interval else 5.0
        shown = ""
        while True:
            if not self._stalled():
                sdnotify.watchdog()
            text = self.status_text()
            if text != shown:
                shown = text if sdnotify.status(text) else ""
            await anyio.sleep(period)

    def status_text(self) -> str:
        """The one line ``systemctl status`` shows (STATUS=)."""
        text = (
            f"{self.engine.running_campaigns} running campaigns, "
            f"{self.engine.active_attempts} active attempts"
        )
        if self.reload_problem is not None:
            text += f"; last reload rejected, old config kept: {self.reload_problem}"
        return text

    async def _health(self) -> None:
        """Check the store (``dialerd_store_up``) and readiness, and log readiness changes."""
        while True:
            # The store's own health: a stalled scheduler or an away PBX is not the store.
            problem: str | None = "store check took too long"
            with anyio.move_on_after(READINESS_CHECK_TIMEOUT):
                problem = await self._store_problem()
            metrics.STORE_UP.set(1 if problem is None else 0)
            if problem is None:
                problem = "scheduler is not making progress" if self._stalled() else None
            if problem is None:
                problem = self.backends.unavailable_reason()
            up = problem is None
            if up != self._ready:
                self._ready = up
                log.warning("daemon readiness changed", ready=up, reason=problem)
            await anyio.sleep(HEALTH_PERIOD)

    def reload(self) -> bool:
        """Re-read the config file and apply what can change while running; False (and
        the reason in STATUS=) when the file is rejected and the running config kept."""
        if self.config_path is None:
            return False
        sdnotify.reloading()
        try:
            new = load_config(self.config_path)
            ops_token = new.ops.read_token()
            if new.smtp is not None:
                new.smtp.read_password()
        except ConfigError as exc:
            metrics.config_reloaded(success=False)
            log.error("config reload rejected; running config kept", error=str(exc))
            self.reload_problem = str(exc)
            sdnotify.notify("READY=1", "STATUS=" + " ".join(self.status_text().splitlines()))
            return False
        if self.api_listen_override:
            new = msgspec.structs.replace(
                new, api=msgspec.structs.replace(new.api, listen=self.api_listen_override)
            )
        logs.configure_logging(new.log.level, self._log_format(new))
        self.engine.reconfigure(
            new.engine,
            _rules_of(new),
            cache(new.abandonment_for),
            ceiling=new.call_ceiling(),
            quotas_of=cache(new.quotas.quotas_for),
        )
        self.backends.reconfigure(new)
        self.events.config = new.events
        self.campaigns.capabilities = self.backends.services.capabilities()
        self.queues.replace(registry_entries(new.queues))
        set_api_config(self.app, new.api, quotas=new.quotas, webhooks=new.webhooks)
        self.ops_auth.token = ops_token
        changed = [
            name
            for name in ("store", "telephony", "queue", "state_dir")
            if getattr(new, name) != getattr(self.config, name)
        ]
        if _listeners(new) != _listeners(self.config):
            changed.append("listen addresses")
        if ServerLimits.of(new.api) != ServerLimits.of(self.config.api):
            changed.append("listener limits")
        # What needs a restart keeps its running value, so the next reload reports it again.
        self.config = msgspec.structs.replace(
            new,
            store=self.config.store,
            queue=self.config.queue,
            telephony=self.config.telephony,
            state_dir=self.config.state_dir,
            metrics=self.config.metrics,
            api=msgspec.structs.replace(
                new.api,
                enabled=self.config.api.enabled,
                listen=self.config.api.listen,
                max_connections=self.config.api.max_connections,
                keep_alive_timeout=self.config.api.keep_alive_timeout,
            ),
            ops=msgspec.structs.replace(
                new.ops, enabled=self.config.ops.enabled, listen=self.config.ops.listen
            ),
        )
        self.reload_problem = None
        metrics.config_reloaded(success=True)
        log.info("config reloaded", needs_restart=changed)
        self._warn_watchdog()
        sdnotify.notify("READY=1", "STATUS=" + " ".join(self.status_text().splitlines()))
        return True

    def _log_format(self, config: Config) -> logs.LogFormat:
        return self.log_format_override or config.log.format


def _url(address: tuple[str, int] | None) -> str:
    if address is None:
        return "disabled"
    host, port = address
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _listeners(config: Config) -> tuple[object, ...]:
    """What of ``config`` binds sockets or mounts routes: changes need a restart."""
    return (
        config.api.enabled,
        config.api.listen,
        config.ops.enabled,
        config.ops.listen,
        config.metrics.enabled,
    )


async def serve(daemon: Daemon) -> None:
    """Run the daemon under signal control until SIGTERM or SIGINT."""
    async with anyio.create_task_group() as task_group:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_group.start_soon(daemon.run)
            async for received in signals:
                if received == signal.SIGHUP:
                    daemon.reload()
                    continue
                log.info("signal received", signal=received.name)
                daemon.shutdown.set()
                break
