"""The daemon: one root task group that starts every component and owns the signals.

Start-up order: store, adapters, engine, HTTP servers; READY is sent to systemd only
when all of them have started. SIGTERM/SIGINT: stop ticking, let in-flight writes end,
close the store, exit 0. SIGHUP: re-read the config file and apply what can change.
"""

from __future__ import annotations

import signal
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup, TaskStatus

from dialerd import __version__, logs, metrics, sdnotify
from dialerd.api import create_app, serve_api, set_api_config
from dialerd.backends import Backends
from dialerd.clock import SystemClock
from dialerd.config import Config, ConfigError, load_config
from dialerd.control import CampaignControl, CampaignLocks
from dialerd.engine import Engine
from dialerd.identity import claim_identity
from dialerd.ops_http import metrics_app, ops_routes
from dialerd.ports import Clock
from dialerd.queues import QueueRegistry, registry_entries
from dialerd.store import Store, StoreError, create_store

log = structlog.get_logger("dialerd.daemon")

# Seconds the watchdog tolerates without scheduler progress before it stops pinging.
STALL_TICKS = 5
SHUTDOWN_GRACE = 10.0


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
    ) -> None:
        self.config = config
        self.log_format_override = log_format
        self.config_path = config_path
        self.state_dir = Path(state_dir or config.state_dir)
        self.clock = clock or SystemClock()
        self.store: Store = create_store(config.store, self.state_dir)
        self.queues = QueueRegistry(registry_entries(config.queues))
        self.backends = Backends(config, self.clock, self.state_dir, queues=self.queues)
        self.sim = self.backends.sim
        self.control = CampaignControl(
            self.store,
            self.clock,
            locks=CampaignLocks(),
            queues=self.queues,
            queue_adapter=self.backends.queue,
        )
        self.engine = Engine(
            store=self.store,
            queue=self.backends.queue,
            queues=self.queues,
            telephony=self.backends.telephony,
            flows=self.backends.flows,
            clock=self.clock,
            config=config.engine,
            control=self.control,
        )
        self.app = create_app(
            store=self.store,
            control=self.control,
            clock=self.clock,
            config=config.api,
            extra_routes=ops_routes(self.readiness, metrics_enabled=self._metrics_on_api()),
        )
        self.api_address: tuple[str, int] | None = None
        self.metrics_address: tuple[str, int] | None = None
        self.shutdown = anyio.Event()
        self._store_up = True

    def _metrics_on_api(self) -> bool:
        return self.config.metrics.enabled and not self.config.metrics.listen

    async def readiness(self) -> str | None:
        """None when ready; otherwise why not (store unreachable, scheduler stalled,
        telephony or queue backend away)."""
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
        stalled_after = STALL_TICKS * self.config.engine.tick_interval
        return self.clock.monotonic() - self.engine.last_progress > stalled_after

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until ``shutdown`` is set (by a signal or a caller)."""
        async with AsyncExitStack() as stack:
            # Under systemd StateDirectory= makes it; elsewhere no backend may assume it.
            self.state_dir.mkdir(parents=True, exist_ok=True)
            identity = claim_identity(self.state_dir)
            stack.callback(identity.release)
            self.engine.owner = identity.name
            await self.store.open()
            stack.push_async_callback(self._close_store)
            stack.push_async_callback(self.backends.close)
            # Servers stop by themselves once ``shutdown`` is set (Hypercorn's graceful
            # shutdown); the engine and the watchdog are cancelled.
            async with anyio.create_task_group() as servers, anyio.create_task_group() as core:
                await self.backends.start(core)
                await core.start(self.engine.run)
                core.start_soon(self._watchdog)
                await self._start_servers(servers)
                sdnotify.ready()
                log.info("dialerd ready", version=__version__, api=self._api_text())
                task_status.started()
                await self.shutdown.wait()
                sdnotify.stopping()
                log.info("dialerd stopping")
                core.cancel_scope.cancel()

    async def _start_servers(self, task_group: TaskGroup) -> None:
        if self.config.api.enabled:
            self.api_address = await task_group.start(
                partial(
                    serve_api,
                    self.app,
                    self.config.api.listen,
                    shutdown_trigger=self.shutdown.wait,
                )
            )
        if self.config.metrics.enabled and self.config.metrics.listen:
            self.metrics_address = await task_group.start(
                partial(
                    serve_api,
                    metrics_app(),
                    self.config.metrics.listen,
                    shutdown_trigger=self.shutdown.wait,
                )
            )

    def _api_text(self) -> str:
        if self.api_address is None:
            return "disabled"
        host, port = self.api_address
        return f"http://{host}:{port}"

    async def _close_store(self) -> None:
        # Shielded and bounded: in-flight writes end, then the store closes, whatever
        # cancelled us.
        with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_GRACE):
            await self.store.close()

    async def _watchdog(self) -> None:
        """Ping systemd (and publish STATUS) only while the scheduler makes progress."""
        interval = sdnotify.watchdog_interval()
        period = min(interval / 2, 5.0) if interval else 5.0
        while True:
            if not self._stalled():
                sdnotify.watchdog()
            sdnotify.status(
                f"{self.engine.running_campaigns} running campaigns, "
                f"{self.engine.active_attempts} active attempts"
            )
            # The store's own health: a stalled scheduler or an away PBX is not the store.
            metrics.STORE_UP.set(1 if await self._store_problem() is None else 0)
            problem = await self.readiness()
            up = problem is None
            if up != self._store_up:
                self._store_up = up
                log.warning("daemon readiness changed", ready=up, reason=problem)
            await anyio.sleep(period)

    def reload(self) -> None:
        """Re-read the config file and apply what can change while running."""
        if self.config_path is None:
            return
        sdnotify.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            metrics.config_reloaded(success=False)
            log.error("config reload rejected; running config kept", error=str(exc))
            sdnotify.ready()
            return
        logs.configure_logging(new.log.level, self._log_format(new))
        self.engine.reconfigure(new.engine)
        self.backends.reconfigure(new)
        self.queues.replace(registry_entries(new.queues))
        set_api_config(self.app, new.api)
        changed = [
            name
            for name in ("store", "telephony", "queue", "state_dir")
            if getattr(new, name) != getattr(self.config, name)
        ]
        running_api = (self.config.api.enabled, self.config.api.listen)
        if (new.api.enabled, new.api.listen) != running_api or new.metrics != self.config.metrics:
            changed.append("listen addresses")
        # What needs a restart keeps its running value, so the next reload reports it again.
        self.config = msgspec.structs.replace(
            new,
            store=self.config.store,
            queue=self.config.queue,
            telephony=self.config.telephony,
            state_dir=self.config.state_dir,
            metrics=self.config.metrics,
            api=msgspec.structs.replace(
                new.api, enabled=self.config.api.enabled, listen=self.config.api.listen
            ),
        )
        metrics.config_reloaded(success=True)
        log.info("config reloaded", needs_restart=changed)
        sdnotify.ready()

    def _log_format(self, config: Config) -> logs.LogFormat:
        return self.log_format_override or config.log.format


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
